"""Where ONNX Runtime spends a subnet's batch-1 time: its profiler's kernel time per operator type.

The deployed fp32 form (salnas_core.runtime: BN folded, all graph optimisations, torch's thread
count) of a space's max or min subnet with random weights, at the working size of a 288x384 image;
--runs profiled runs after 3 warm-up runs. Writes one row per subnet to bench/RESULTS.md.

    .venv/bin/python bench/ort_profile.py --space salnas --subnet max
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402

TITLE = "## ONNX Runtime profile by operator type (bench/ort_profile.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="salnas")
    ap.add_argument("--subnet", choices=("max", "min"), default="max")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    a = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from salnas_core import runtime as R
    from salnas_core.supernet import create_supernet

    net = create_supernet(a.space, pretrained=False).eval()
    cfg = net.space.max_config() if a.subnet == "max" else net.space.min_config()
    sub = net.build_from_config(cfg, preserve_weight=False).eval()
    h, w = R.working_size(sub, (288, 384))
    x = torch.rand(1, 3, h, w)
    graph = R.export_onnx(R.prepare(R.core_module(sub), x), x)
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        feed = {R.INPUT: np.ascontiguousarray(x.numpy())}
        for _ in range(3):
            sess.run(None, feed)
        t0 = time.perf_counter()
        for _ in range(a.runs):
            sess.run(None, feed)
        wall = (time.perf_counter() - t0) * 1e3 / a.runs
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    runs = 3 + a.runs  # the profiler records the warm-up runs too
    total = sum(per_op.values())
    top = "; ".join(f"{op} {v / runs / 1e3:.1f} ms ({100 * v / total:.0f}%, {nodes[op] // runs} nodes)"
                    for op, v in per_op.most_common(a.top))
    row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {_machine()} | onnxruntime {ort.__version__}, "
           f"{torch.get_num_threads()} threads | `{a.space}` {a.subnet} | {h}x{w} | {wall:.1f} | "
           f"{total / runs / 1e3:.1f} | {top} | `.venv/bin/python bench/{Path(__file__).name} "
           + " ".join(sys.argv[1:]) + "` |")
    print(row)
    write_rows(Path(a.results), TITLE,
               "Kernel time per ONNX operator type from ONNX Runtime's profiler (mean per run), the deployed fp32 "
               "form, random weights, batch 1. QuickGelu is ORT's fused swish (x * sigmoid(x)); ReorderInput/"
               "ReorderOutput are the NCHWc layout changes ORT inserts around ops it runs in blocked layout.",
               "| date | machine | versions | subnet | input | wall ms per run (profiling on) | kernel ms per run "
               "| top operator types | command |\n|---|---|---|---|---|---|---|---|---|", [row])


if __name__ == "__main__":
    main()
