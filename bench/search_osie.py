"""The real run of search -> Self-KD distillation -> evaluation on OSIE (and NUS Scene cross-dataset).

Uses a supernet trained on OSIE (`salnas train-supernet --preset cpu`), the `cpu` presets of the
three steps, and writes the section "Search, distillation and evaluation on OSIE" of
bench/RESULTS.md: step times (wall and CPU seconds: the machine is shared, CPU time is the figure
that carries over), the Pareto front, the chosen variants, their metrics on the OSIE validation
split against the centre-bias baseline and the max subnet, each without distillation (extracted,
BN recalibrated), with Self-KD distillation and with the same fine-tuning without Self-KD, the
cross-dataset table (trained on OSIE, tested on NUS Scene) and the efficiency rows.

    .venv/bin/python bench/search_osie.py --supernet RUN_DIR --data INGESTED/osie --cross INGESTED/nus_scene \
        --out bench/out/search_osie
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path
from _machine import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TITLE = "## Search, distillation and evaluation on OSIE (bench/search_osie.py)"




def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def timed(label: str, times: list, fn, *a, **kw):
    w0, c0 = time.perf_counter(), cpu_s()
    out = fn(*a, **kw)
    times.append((label, time.perf_counter() - w0, cpu_s() - c0))
    print(f"[bench] {label}: {times[-1][1]:.0f} s wall, {times[-1][2]:.0f} s CPU", flush=True)
    return out


def f3(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def metric_rows(rows: list[dict], rename: dict[str, str] | None = None) -> list[dict]:
    out = []
    for r in rows:
        r = dict(r)
        if rename and r["model"] in rename:
            r["model"] = rename[r["model"]]
        out.append(r)
    return out


def table(rows: list[dict], keys=("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score")) -> list[str]:
    arrows = {"kld": "↓", "score": "↓"}
    lines = ["| model | " + " | ".join(f"{k} {arrows.get(k, '↑')}" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f3(r.get(k)) for k in keys) + " |")
    return lines


def write_section(results: Path, body: str) -> None:
    from salnas_core.utils.io import atomic_write_text

    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if TITLE in text:
        start = text.index(TITLE)
        nxt = text.find("\n## ", start + len(TITLE))
        text = text[:start].rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n" + (text[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    atomic_write_text(results, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--data", required=True, help="ingested OSIE folder")
    ap.add_argument("--cross", default=None, help="ingested dataset for the cross-dataset table (NUS Scene)")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "search_osie"))
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--no-ablation", dest="ablation", action="store_false", help="skip fine-tuning without Self-KD")
    ap.add_argument("--search-set", action="append", default=[], help="search override KEY=VALUE")
    ap.add_argument("--distill-set", action="append", default=[], help="distill override KEY=VALUE")
    ap.add_argument("--eval-set", action="append", default=[], help="evaluate override KEY=VALUE")
    ap.add_argument("--ablation-variant", default=None, help="fine-tune only this variant without Self-KD")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--report-only", action="store_true", help="only rewrite the results section from OUT")
    ap.add_argument("--times-from-log", default=None, help="with --report-only: step times from a run's log")
    ap.add_argument("--run-command", default=None, help="with --report-only: the command of the run reported")
    args = ap.parse_args()
    os.environ.setdefault("SALNAS_TRACKING", "off")

    import torch

    from salnas_core.steps import distill, evaluate, search
    from salnas_core.utils.params import parse_set

    out = Path(args.out)
    times: list = []
    started = time.strftime("%Y-%m-%d %H:%M")
    mach = machine()
    s_over, d_over, ev_over = parse_set(args.search_set), parse_set(args.distill_set), parse_set(args.eval_set)
    if args.report_only:
        times = [tuple(t) for t in json.loads((out / "times.json").read_text())] if (out / "times.json").exists() else []
        if args.times_from_log:  # "[bench] label: W s wall, C s CPU" lines of an earlier run's log
            import re

            times = [(m[1], float(m[2]), float(m[3])) for m in
                     re.finditer(r"\[bench\] (.+?): (\d+) s wall, (\d+) s CPU", Path(args.times_from_log).read_text())]
    else:
        timed("search", times, search.run, args.supernet, args.data, out / "search", preset=args.preset,
              overrides=s_over, track=False)
        timed("distill (Self-KD)", times, distill.run, out / "search" / "variants.json", args.supernet, args.data,
              out / "distill", preset=args.preset, overrides=d_over, track=False)
        if args.ablation:
            timed("distill (no Self-KD)", times, distill.run, out / "search" / "variants.json", args.supernet,
                  args.data, out / "distill_nokd", variant=args.ablation_variant, preset=args.preset,
                  self_kd=False, overrides=d_over, track=False)
        data = [args.data] + ([args.cross] if args.cross else [])
        timed("evaluate", times, evaluate.run, out / "distill", data, out / "evaluate", search=out / "search",
              preset=args.preset, overrides=ev_over, track=False)
        if args.ablation:
            timed("evaluate (no Self-KD models)", times, evaluate.run, out / "distill_nokd", [args.data],
                  out / "evaluate_nokd", preset=args.preset, overrides=ev_over, efficiency=False, track=False)
        (out / "times.json").write_text(json.dumps(times))
    d = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "distill").glob("*/metrics.json"))}
    d0 = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "distill_nokd").glob("*/metrics.json"))}
    e = json.loads((out / "evaluate" / "metrics.json").read_text())
    e0 = json.loads((out / "evaluate_nokd" / "metrics.json").read_text()) if (out / "evaluate_nokd" / "metrics.json").exists() else {"rows": []}
    args.ablation = bool(d0)
    cands = json.loads((out / "search" / "candidates.json").read_text())
    pareto = json.loads((out / "search" / "pareto.json").read_text())
    variants = json.loads((out / "search" / "variants.json").read_text())
    eff = json.loads((out / "evaluate" / "efficiency.json").read_text())["rows"]
    cmd = args.run_command or ("python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO)] + sys.argv[1:]))
    L = [TITLE, "",
         f"Run {started} on {mach}; torch {torch.__version__}, {torch.get_num_threads()} threads; presets "
         f"`{args.preset}`; supernet `{args.supernet}`. Command: `{cmd}`. The machine was shared with other "
         "jobs: wall times are inflated, CPU seconds are the comparable figure.", "",
         "| step | wall s | CPU s |", "|---|---|---|"]
    L += [f"| {k} | {w:.0f} | {c:.0f} |" for k, w, c in times]
    L += [f"| total | {sum(t[1] for t in times):.0f} | {sum(t[2] for t in times):.0f} |", ""]
    over = {"search": s_over, "distill": d_over, "evaluate": ev_over}  # as given to this invocation
    if any(over.values()):
        L += [f"Overrides of the presets for this run: `{json.dumps({k: v for k, v in over.items() if v})}`.", ""]
    pr = cands["predictor"]
    L += [f"Search: {cands['n']} candidates scored (BN recalibrated on {cands.get('score_input_size')} training "
          f"images' batches, selection score on the validation subset); latency `{cands['latency']['mode']}` on "
          f"{cands['latency']['device']} at {cands['cost_input_size']} (table calibration "
          f"a={cands['latency']['calibration'] and cands['latency']['calibration'].get('a')}); predictor "
          f"{pr['name']}: held-out Spearman rho {f3(pr['held_out_spearman']['spearman'])} "
          f"(n={pr['held_out_spearman']['n']}, {pr['held_out_spearman']['folds']}-fold), screening rho "
          f"{f3(pr['screening_spearman']['spearman'])} (n={pr['screening_spearman']['n']}). Skipped budgets: "
          f"{cands['skipped_budgets'] or 'none'}.", "",
          f"Pareto front (score against MACs at input {cands['cost_input_size']}):", "", "| GMACs | Mparams | latency ms | score |",
          "|---|---|---|---|"]
    L += [f"| {c['macs'] / 1e9:.3f} | {c['params'] / 1e6:.2f} | {c['latency_ms']:.1f} | {c['score']:.3f} |"
          for c in pareto["front_macs"]]
    L += ["", "Chosen variants (XL = max subnet; FIXED = random non-searched config of M's MACs):", "",
          "| variant | GMACs | Mparams | latency ms | search score | limits |", "|---|---|---|---|---|---|"]
    for k, v in variants.items():
        lim = v.get("limits") or {}
        lim_s = ", ".join(f"{a}<={b / 1e9:.2f}G" if a == "macs" else f"{a}<={b:.1f}" for a, b in lim.items() if b) or "-"
        L.append(f"| {k} | {v['macs'] / 1e9:.3f} | {v['params'] / 1e6:.2f} | {v['latency_ms']:.1f} | "
                 f"{v['score']:.3f} | {lim_s} |")
    L += ["", "Distillation (validation selection score on the distill step's validation subset; lower is better):",
          "", "| variant | extracted (BN recal.) | Self-KD distilled | no Self-KD | chosen |", "|---|---|---|---|---|"]
    for k, v in d.items():
        nk = d0[k]["with"]["score"] if args.ablation and k in d0 else None
        L.append(f"| {k} | {v['without']['score']:.3f} | {v['with']['score']:.3f} | {f3(nk)} | {v['chosen']} |")
    rows = [r for r in e["rows"] if not r["blur"]]
    if args.ablation:
        rows += metric_rows([r for r in e0["rows"] if not r["blur"] and r["model"] != "centre_bias"
                             and "(extracted)" not in r["model"]],
                            {k: f"{k} (no Self-KD)" for k in d0})
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        rr = [r for r in rows if r["dataset"] == ds]
        order = lambda r: (r["model"] != "centre_bias", r.get("variant") or r["model"].split(" ")[0], r["model"])  # noqa: E731
        rr.sort(key=order)
        L += ["", f"Metrics on {ds} ({rr[0]['split']} split, n={rr[0]['n']}, original image size, no blur"
              f"{', cross-dataset: trained on OSIE' if rr[-1].get('cross') else ''}); "
              "`(extracted)` = without distillation; XL = max subnet:", ""]
        L += table(rr)
    blurred = [r for r in e["rows"] if r["blur"]]
    if blurred:
        L += ["", "With the paper's blur (11x11, sigma 10.5):", ""] + table(blurred)
    L += ["", "Efficiency (the same input for every model):", ""]
    from salnas_core.evaluate.efficiency import efficiency_markdown

    L += efficiency_markdown(eff).splitlines()
    write_section(Path(args.results), "\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
