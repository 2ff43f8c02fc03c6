"""How well the search's latency table predicts the deployed form: predicted vs measured batch-1
latency, eager (channels_last PyTorch) and ONNX Runtime fp32 (the `salnas predict` default on
CPU), for the max, the min and random subnets of a space (and a main job's variants), in one run.
Writes rows to bench/RESULTS.md.

    .venv/bin/python bench/latency_table_error.py --space lite --random 6 [--variants runs/search/variants.json]

The table is built fresh (a temporary cache) at the main job's settings (params.yaml
search.latency: input size, calibration count, warm-up, repeats) and calibrated on the subnets the
search step calibrates on (max, min, random ones from seed + 17); it is the same LatencyTable the
step builds: the eager table sums PyTorch operator times, the onnx table sums blocks timed in ONNX
Runtime (salnas_core.search.latency).
Besides the table's own fit ("table", measured minutes before the scored subnets, as the step's
is), two refits are scored: "same-round" (a * sum + b on the calibration subnets measured in the
same interleaved passes as the scored ones: the table without this machine's drift) and "more"
(the same on --extra more calibration subnets). Measured = the median over --rounds interleaved
passes of the median of --repeats calls after --warmup, a fresh export per subnet
(salnas_core.runtime). The machine is shared: the load average is in each row.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402


def _fit(s, w):
    import numpy as np

    s, w = np.asarray(s, float), np.asarray(w, float)
    if len(s) >= 2 and np.ptp(s) > 0:
        a, b = np.polyfit(s, w, 1)
        if a > 0 and b >= 0:  # the table's own guard (LatencyTable.calibrate)
            return float(a), float(b)
    return float(w.sum() / max(s.sum(), 1e-9)), 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="lite")
    ap.add_argument("--random", type=int, default=6, help="random subnets scored (besides max and min)")
    ap.add_argument("--extra", type=int, default=4, help="extra calibration subnets for the 'more' fit")
    ap.add_argument("--variants", default=None, help="a search's variants.json: its variants are scored too")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved passes measuring every scored subnet")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--op-threads", type=int, default=None, help="LatencyTable op_threads (operators timed on N threads)")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import torch

    from salnas_core.search.latency import LatencyTable, measure_deployed
    from salnas_core.supernet import create_supernet
    from salnas_core.utils.io import read_json
    from salnas_core.utils.params import step_params

    if args.threads:
        torch.set_num_threads(args.threads)
    p = step_params("search")
    lat_p, seed = p["latency"], int(p["seed"])
    size, n_cal = tuple(lat_p["input_size"]), int(lat_p["calibrate"])
    net = create_supernet(args.space, pretrained=False).eval()
    space = net.space
    rng = random.Random(seed + 17)  # the step's calibration subnets (steps/search.py)
    cal = [space.max_config(), space.min_config()] + [space.sample_config(rng) for _ in range(max(0, n_cal - 2))]
    extra = [space.sample_config(rng) for _ in range(args.extra)]
    rng = random.Random(args.seed)
    scored = [("max", space.max_config()), ("min", space.min_config())]
    scored += [(f"random {i}", space.sample_config(rng)) for i in range(args.random)]
    if args.variants:
        for name, v in read_json(args.variants).items():
            scored.append((f"variant {name}", v["config"]))

    def static(cfg):
        return net.build_from_config(cfg, preserve_weight=False).eval()

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tables = {e: LatencyTable("cpu", size, 1, tmp, int(lat_p["warmup"]), int(lat_p["repeats"]), engine=e,
                               op_threads=args.op_threads or lat_p.get("op_threads"))
                  for e in ("eager", "onnx")}
        for e, t in tables.items():
            t.calibrate([static(c) for c in cal])
            print(f"{e}: table fit a={t.calibration['a']:.3f} b={t.calibration['b']:.2f} residuals "
                  + ", ".join(f"{r:+.1f}%" for r in t.calibration["residual_pct"]), flush=True)
        # measured: the median over --rounds interleaved passes over every subnet, the calibration
        # and extra subnets included. This machine's speed drifts by up to ~50% over minutes (other
        # tenants): the table's own calibration ("table") was measured minutes before the scored
        # subnets; "same-round" refits a * sum + b on the calibration subnets measured in the same
        # passes as the scored ones, which is the table's own error without the drift; "more" does
        # so on the calibration + --extra subnets.
        cal_nets, extra_nets = [static(c) for c in cal], [static(c) for c in extra]
        nets = [static(cfg) for _, cfg in scored]
        everything = cal_nets + extra_nets + nets
        meas = {e: [[] for _ in everything] for e in tables}
        for _ in range(args.rounds):
            for i, m in enumerate(everything):
                for e in tables:
                    meas[e][i].append(measure_deployed(m, size, 1, "cpu", args.warmup, args.repeats, e))
        med = {e: [statistics.median(v) for v in meas[e]] for e in tables}
        sums = {e: [t.op_sum(m) for m in everything] for e, t in tables.items()}
        n_c, n_x = len(cal_nets), len(extra_nets)
        fits = {e: {"table": (t.calibration["a"], t.calibration["b"]),
                    "same": _fit(sums[e][:n_c], med[e][:n_c]),
                    "more": _fit(sums[e][:n_c + n_x], med[e][:n_c + n_x])} for e, t in tables.items()}
        results = []
        for i, (label, cfg) in enumerate(scored):
            row = {"subnet": label, "res": cfg["resolution"][0]}
            for e in tables:
                sm = sums[e][n_c + n_x + i]
                row[e] = {"measured": med[e][n_c + n_x + i], **{k: a * sm + b for k, (a, b) in fits[e].items()}}
            results.append(row)
            print(f"{label:12s} res {row['res']}: " + "; ".join(
                f"{e} measured {row[e]['measured']:.1f} ms, table {row[e]['table']:.1f} "
                f"({100 * (row[e]['table'] / row[e]['measured'] - 1):+.1f}%), same-round {row[e]['same']:.1f}, "
                f"more {row[e]['more']:.1f}" for e in tables), flush=True)
    seconds = time.time() - t0

    def err(e, k, rows):
        return [abs(r[e][k] / r[e]["measured"] - 1) * 100 for r in rows]

    when = time.strftime("%Y-%m-%d %H:%M")
    mach = _machine()
    cmd = "`.venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]) + "`"
    vers = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    rows = []
    for r in results:
        cells = []
        for e in ("eager", "onnx"):
            x = r[e]
            cells += [f"{x['measured']:.1f}", f"{x['table']:.1f}", f"{100 * (x['table'] / x['measured'] - 1):+.1f}%",
                      f"{100 * (x['same'] / x['measured'] - 1):+.1f}%", f"{100 * (x['more'] / x['measured'] - 1):+.1f}%"]
        rows.append(f"| {when} | {mach} | {vers} | `{args.space}` {r['subnet']} ({r['res']}) | {size[0]}x{size[1]} | "
                    + " | ".join(cells) + f" | {cmd} |")
    summary = []
    for e in ("eager", "onnx"):
        for k in ("table", "same", "more"):
            es = err(e, k, results)
            summary.append(f"{e}/{'same-round' if k == 'same' else k}: max abs err {max(es):.1f}%, median {sorted(es)[len(es) // 2]:.1f}%, "
                           f"{sum(x <= 15 for x in es)}/{len(es)} within 15%")
    print("\n".join(summary))
    rows.append(f"| {when} | {mach} | {vers} | summary | {size[0]}x{size[1]} | " + "; ".join(summary)
                + f" ({seconds:.0f} s) |" + " |" * 9 + f" {cmd} |")
    write_rows(Path(args.results), "## Latency table error (bench/latency_table_error.py)",
               "Predicted (the search's LatencyTable, params search.latency settings, calibrated on the step's "
               f"{n_cal} subnets) vs measured batch-1 latency in ms, per deployed form: eager = channels_last "
               "PyTorch, onnx = ONNX Runtime fp32 (predict's default on CPU). Error = predicted / measured - 1; "
               "`same-round`: a * sum + b refitted on the calibration subnets measured in the same interleaved "
               "passes as the scored ones (the table without the machine's drift); `more`: the same on "
               f"{n_cal} + --extra calibration subnets. Random weights; the machine is shared (load in the row).",
               "| date | machine | versions | subnet (resolution) | input | eager measured | eager table | eager err "
               "| eager err same-round | eager err more | onnx measured | onnx table | onnx err | onnx err same-round "
               "| onnx err more | command |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main()
