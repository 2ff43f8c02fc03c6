"""Deployment speed: the same subnet as PyTorch (eager, as `salnas predict` runs it), PyTorch with
BN folded, ONNX Runtime and TorchScript (both from `salnas export`), batch 1 at the working size.
Ratios are within one run (the machine's load moves absolute times). Writes a row to
bench/RESULTS.md.

    .venv/bin/python bench/serve_speed.py --space lite --subnet max --repeats 10 --threads 1

One thread: on a shared 2-core machine, torch's 2-thread pool collapses under oversubscription
(a forward measured 10x slower), which would say nothing about the runtimes themselves.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))




def _time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model.pt (default: a random-init subnet of --space/--subnet)")
    ap.add_argument("--space", default="lite")
    ap.add_argument("--subnet", choices=("max", "min"), default="max")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from salnas_core.runtime import fold_batchnorm, freeze_same_padding
    from salnas_core.serve.export import _wrapper, run
    from salnas_core.serve.models import resolve_model
    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet, save_model

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="serve-speed-"))
    path = args.model
    if path is None:  # costs do not depend on the weights
        sp = get_space(args.space)
        path = save_model(tmp / "model.pt", build_subnet(sp.max_config() if args.subnet == "max" else sp.min_config()))
    lm = resolve_model(str(path))
    H, W = lm.working_size
    x = torch.rand(1, 3, H, W)
    wrapped = _wrapper(lm)
    folded, _ = fold_batchnorm(wrapped, x)
    freeze_same_padding(folded)
    onnx_s = run(str(path), tmp / "m.onnx", "onnx")
    run(str(path), tmp / "m.pt", "torchscript")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(tmp / "m.onnx"), opts, providers=["CPUExecutionProvider"])
    ts = torch.jit.load(str(tmp / "m.pt"))
    cl = x.contiguous(memory_format=torch.channels_last)
    eager = wrapped.to(memory_format=torch.channels_last)
    folded_cl = folded.to(memory_format=torch.channels_last)
    xn = x.numpy()
    with torch.inference_mode():
        t = {"pytorch eager (BN unfolded, channels_last)": _time(lambda: eager(cl), args.repeats),
             "pytorch BN folded (channels_last)": _time(lambda: folded_cl(cl), args.repeats),
             "onnxruntime (exported)": _time(lambda: sess.run(None, {"image": xn}), args.repeats),
             "torchscript (exported)": _time(lambda: ts(x), args.repeats)}
    base = t["pytorch eager (BN unfolded, channels_last)"]
    name = Path(args.model).as_posix() if args.model else f"{args.space} {args.subnet} subnet"
    header = ("| date | machine | model | input | threads | runtime | latency b1 (ms, median) | vs eager | "
              "export max abs diff | command |\n|---|---|---|---|---|---|---|---|---|---|")
    cmd = "`.venv/bin/python bench/serve_speed.py " + " ".join(sys.argv[1:]) + "`"
    rows = [f"| {time.strftime('%Y-%m-%d %H:%M')} | {_machine()} | {name} | {H}x{W} | {torch.get_num_threads()} | {k} "
            f"| {v:.1f} | {base / v:.2f}x | {onnx_s['max_abs_diff']:.1e} | {cmd} |" for k, v in t.items()]
    print(header)
    print("\n".join(rows))
    write_rows(Path(args.results), "## Deployment speed (bench/serve_speed.py)",
               "Batch 1, same subnet in each runtime; `vs eager` = eager time / this time, within one run.",
               header, rows)


if __name__ == "__main__":
    main()
