"""`--engine bf16` against the default CPU engine (ONNX Runtime fp32) in one run: batch-1 and
batch-8 ms per image through the engine objects `salnas predict` calls (serve.engines), medians of
interleaved rounds, for the `salnas` and `lite` max and min subnets (random weights: cost does not
depend on them) or given model.pt files; with each bf16 package's compile time and its map's CC to
fp32 on OSIE photos.

    .venv/bin/python bench/bf16_engine.py --rounds 7

Goal (issue 15): the paper's XL (`salnas` max) at most 60 ms batch 1.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine as _machine  # noqa: E402
from _models import add_timing_arguments, model_file  # noqa: E402
from _results import write_rows  # noqa: E402

FORMS = ("onnx fp32", "bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_arguments(ap)
    ap.add_argument("--photos", default=str(REPO.parent / "shared" / "data" / "osie" / "stimuli"))
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from salnas_core.serve import engines
    from salnas_core.serve.export import calibration_images
    from salnas_core.serve.models import resolve_model

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bf16-engine-"))
    os.environ[engines.CACHE_ENV] = str(tmp / "cache")
    gen = torch.Generator().manual_seed(0)
    rows_data = []
    for spec in args.models:
        path, name = model_file(spec, tmp)
        lm = resolve_model(str(path))
        H, W = lm.working_size
        eng = {"onnx fp32": engines.OrtEngine(lm), "bf16": engines.Bf16Engine(lm)}
        t = time.perf_counter()
        eng["bf16"](torch.rand(1, 3, H, W, generator=gen))  # compiles the package for this size
        compile_s = time.perf_counter() - t
        ccs = []
        for p in calibration_images(args.photos, (H, W), 4) if Path(args.photos).exists() else []:
            a, b = (eng[f](torch.from_numpy(p)).numpy().ravel() for f in FORMS)
            ccs.append(float(np.corrcoef(a, b)[0, 1]))
        xs = {b: torch.rand(b, 3, H, W, generator=gen) for b in (1, args.batch)}
        for f in FORMS:  # warm-up
            for x in xs.values():
                eng[f](x)
        times = {(f, b): [] for f in FORMS for b in xs}
        for _ in range(args.rounds):
            for f in FORMS:
                for b, x in xs.items():
                    # one process serves one engine: let the other runtime's spinning threads settle and
                    # warm this one's pool, so neither pays for the other (ONNX Runtime and OpenMP spin)
                    time.sleep(0.2)
                    eng[f](x)
                    t = time.perf_counter()
                    eng[f](x)
                    times[(f, b)].append((time.perf_counter() - t) * 1000 / b)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows_data.append((name, f"{H}x{W}", med, compile_s, min(ccs) if ccs else float("nan")))
        print(name, {f"{f} b{b}": round(v, 1) for (f, b), v in med.items()}, f"compile {compile_s:.0f} s", flush=True)

    cmd = "`.venv/bin/python bench/bf16_engine.py " + " ".join(sys.argv[1:]) + "`"
    env = f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads"
    header = ("| date | machine | versions | model | input | onnx fp32 b1 | bf16 b1 | bf16 speed-up b1 "
              f"| onnx fp32 b{args.batch}/img | bf16 b{args.batch}/img | bf16 compile (s, once per size) "
              "| bf16 map CC to fp32 (min of 4 photos) | command |\n|" + "---|" * 13)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    rows = [f"| {stamp} | {_machine()} | {env} | {name} | {size} | {med[('onnx fp32', 1)]:.1f} | {med[('bf16', 1)]:.1f} "
            f"| {med[('onnx fp32', 1)] / med[('bf16', 1)]:.2f}x | {med[('onnx fp32', args.batch)]:.1f} "
            f"| {med[('bf16', args.batch)]:.1f} | {cs:.0f} | {cc:.4f} | {cmd} |"
            for name, size, med, cs, cc in rows_data]
    print(header)
    print("\n".join(rows))
    write_rows(Path(args.results), "## bf16 engine against ONNX Runtime fp32 (bench/bf16_engine.py)",
               "ms per image, medians of interleaved rounds (each timed call after a pause and an untimed call of the "
               "same engine, as in a process that serves one) through serve.engines' OrtEngine (the CPU default) "
               "and Bf16Engine (`--engine bf16`: AOTInductor package, bfloat16, channels_last, BN folded, one "
               "static shape per input size, batches run image by image), random weights unless a model.pt is "
               "named. The machine is shared (load average in the machine column): compare within a row.",
               header, rows)


if __name__ == "__main__":
    main()
