"""Every inference form of the project's nets in one run: eager NCHW, eager channels_last (what
predict ran before), ONNX Runtime fp32 (the default engine on CPU) and ONNX Runtime int8, for the
`salnas` and `lite` max and min subnets (random weights: cost does not depend on them), batch 1
and batch 8 (ms per image), interleaved rounds, medians. Each form is timed through the engine
object `salnas predict` calls (serve.engines), at the 288x384 working size. int8 is calibrated on
OSIE photos; its CC to the fp32 map on held-out photos is printed beside it.

    .venv/bin/python bench/inference_forms.py --threads 2 --rounds 7

Goals (issue 15): `salnas` max <= 60 ms batch 1 through the default engine; int8 >= 1.8x faster
than ONNX fp32 at batch 1 with CC within 0.01; batch 8 per image never slower than batch 1; a
searched variant < 15 ms batch 1 (the `lite` min subnet is the smallest any search can pick).
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

FORMS = ("eager NCHW", "eager channels_last", "onnx fp32", "onnx int8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_arguments(ap)
    ap.add_argument("--calibration", default=str(REPO.parent / "shared" / "data" / "osie" / "stimuli"))
    ap.add_argument("--calibration-images", type=int, default=16)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from salnas_core.serve import engines
    from salnas_core.serve.models import resolve_model

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="inference-forms-"))
    os.environ[engines.CACHE_ENV] = str(tmp / "cache")
    rows_data = []
    gen = torch.Generator().manual_seed(0)
    for spec in args.models:
        path, name = model_file(spec, tmp)
        lm = resolve_model(str(path))
        H, W = lm.working_size
        res = lm.resolution
        eng = {"eager channels_last": engines.TorchEngine(lm, torch.device("cpu")),
               "onnx fp32": engines.OrtEngine(lm),
               "onnx int8": engines.OrtEngine(lm, int8=True, calibration=args.calibration)}
        eng["eager NCHW"] = engines.TorchEngine(resolve_model(str(path)), torch.device("cpu"), channels_last=False)
        xs = {b: torch.rand(b, 3, H, W, generator=gen) for b in (1, args.batch)}
        # int8 agreement with fp32 on real photos the quantiser held out
        from salnas_core.serve.export import calibration_images

        photos = calibration_images(args.calibration, (H, W), args.calibration_images + 4)[-4:]
        ccs = []
        for p in photos:
            a = eng["onnx fp32"](torch.from_numpy(p)).numpy().ravel()
            b = eng["onnx int8"](torch.from_numpy(p)).numpy().ravel()
            ccs.append(float(np.corrcoef(a, b)[0, 1]))
        times = {(f, b): [] for f in FORMS for b in xs}
        for f in FORMS:  # warm-up
            for b, x in xs.items():
                eng[f](x, resolution=res)
        for _ in range(args.rounds):
            for f in FORMS:
                for b, x in xs.items():
                    t = time.perf_counter()
                    eng[f](x, resolution=res)
                    times[(f, b)].append((time.perf_counter() - t) * 1000 / b)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows_data.append((name, f"{H}x{W}", med, min(ccs)))
        print(name, {f"{f} b{b}": round(v, 1) for (f, b), v in med.items()}, "int8 CC", round(min(ccs), 4), flush=True)

    cmd = "`.venv/bin/python bench/inference_forms.py " + " ".join(sys.argv[1:]) + "`"
    env = f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads"
    header = ("| date | machine | versions | model | input | " + " | ".join(f"{f} b1" for f in FORMS) + " | "
              + " | ".join(f"{f} b{args.batch}/img" for f in FORMS) + " | onnx vs channels_last b1 | int8 vs onnx b1 "
              "| int8 CC to fp32 (min of 4) | command |\n|" + "---|" * (9 + 2 * len(FORMS)))
    stamp = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    for name, size, med, cc in rows_data:
        rows.append(f"| {stamp} | {_machine()} | {env} | {name} | {size} | "
                    + " | ".join(f"{med[(f, 1)]:.1f}" for f in FORMS) + " | "
                    + " | ".join(f"{med[(f, args.batch)]:.1f}" for f in FORMS)
                    + f" | {med[('eager channels_last', 1)] / med[('onnx fp32', 1)]:.2f}x"
                    + f" | {med[('onnx fp32', 1)] / med[('onnx int8', 1)]:.2f}x | {cc:.4f} | {cmd} |")
    print(header)
    print("\n".join(rows))
    write_rows(Path(args.results), "## Inference forms (bench/inference_forms.py)",
               "ms per image, medians of interleaved rounds through the engine `salnas predict` calls "
               "(serve.engines), random weights, 288x384-class working size; int8 = ONNX Runtime static QDQ "
               "(convolutions, per-channel), calibrated on OSIE photos. The machine is shared (load average "
               "in the machine column): compare within a row.", header, rows)


if __name__ == "__main__":
    main()
