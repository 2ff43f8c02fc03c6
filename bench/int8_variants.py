"""Which convolutions int8 should quantise: ONNX Runtime static int8 variants of a space's max subnet
against its fp32 graph, batch-1 speed in one run.

Variants (onnxruntime.quantization.quantize_static, per-channel int8 weights, uint8 activations, the
stem and last 3 convolutions kept fp32 as salnas_core.runtime.quantize_onnx does): QDQ on every
other convolution (the shipped int8), QDQ on pointwise (1x1, group 1) convolutions only, QDQ on
depthwise convolutions only. QOperator format is tried too (the quantiser fails on these graphs in
onnxruntime 1.32: reported as failed). Random weights and random calibration tensors: the speed of an
int8 graph does not depend on the values. Each time is the median over 3 fresh sessions of the
median of 8 runs. Writes rows to bench/RESULTS.md.

    .venv/bin/python bench/int8_variants.py --space lite --space salnas
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402

TITLE = "## int8 variants: which convolutions to quantise (bench/int8_variants.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", action="append", default=None)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    a = ap.parse_args()

    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from salnas_core import runtime as R
    from salnas_core.supernet import create_supernet
    from salnas_core.utils.timing import time_call

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the quantiser logs on the root logger
    tmp = Path(tempfile.mkdtemp())

    def timed(path: Path, x: torch.Tensor) -> float:
        runs = []
        for _ in range(3):
            s = R.session(str(path))
            feed = {R.INPUT: x.numpy()}
            runs.append(time_call(lambda: s.run(None, feed), "cpu", 2, 8))
        return sorted(runs)[1]

    rows, when, mach = [], time.strftime("%Y-%m-%d %H:%M"), _machine()
    cmd = "`.venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]) + "`"
    vers = f"torch {torch.__version__}, onnxruntime {ort.__version__}, {torch.get_num_threads()} threads"
    for space in a.space or ["lite", "salnas"]:
        net = create_supernet(space, pretrained=False).eval()
        sub = net.build_from_config(net.space.max_config(), preserve_weight=False).eval()
        h, w = R.working_size(sub, (288, 384))
        x = torch.rand(1, 3, h, w)
        fp = tmp / f"{space}.onnx"
        R.export_onnx(R.prepare(R.core_module(sub), x), x, fp)
        convs = [n for n in onnx.load(str(fp)).graph.node if n.op_type == "Conv"]
        group = {n.name: next((at.i for at in n.attribute if at.name == "group"), 1) for n in convs}
        pointwise = [n for n, g in group.items() if g == 1]
        depthwise = [n for n, g in group.items() if g > 1]
        keep = R._fp32_convs(fp)
        calib = [np.random.default_rng(i).random((1, 3, h, w), dtype=np.float32) for i in range(6)]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self._it = iter(calib)

            def get_next(self):
                v = next(self._it, None)
                return None if v is None else {R.INPUT: v}

        base = timed(fp, x)
        variants = {
            "QDQ, every convolution (shipped)": (QuantFormat.QDQ, keep),
            "QDQ, pointwise only": (QuantFormat.QDQ, keep + depthwise),
            "QDQ, depthwise only": (QuantFormat.QDQ, keep + pointwise),
            "QOperator, every convolution": (QuantFormat.QOperator, keep),
        }
        for name, (fmt, exclude) in variants.items():
            q = tmp / f"{space}-{len(rows)}.onnx"
            try:
                quantize_static(str(fp), str(q), Reader(), quant_format=fmt, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=["Conv"], nodes_to_exclude=list(exclude))
                ms = timed(q, x)
                cells = f"{ms:.1f} | {base / ms:.2f}x"
            except Exception as e:  # noqa: BLE001 - a variant the quantiser cannot make is a result too
                cells = f"failed: {str(e).splitlines()[0][:80]} | -"
            rows.append(f"| {when} | {mach} | {vers} | `{space}` max ({h}x{w}, {len(pointwise)} pointwise, "
                        f"{len(depthwise)} depthwise convs) | {base:.1f} | {name} | {cells} | {cmd} |")
            print(rows[-1], flush=True)
    write_rows(Path(a.results), TITLE,
               "Batch-1 ms of ONNX Runtime fp32 and of static int8 variants (per-channel int8 weights, uint8 "
               "activations, stem and last 3 convolutions fp32), median over 3 fresh sessions; random weights. "
               "Issue 15's goal is int8 >= 1.8x fp32.",
               "| date | machine | versions | subnet | fp32 ms | int8 variant | int8 ms | speed vs fp32 | command |\n"
               "|---|---|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main()
