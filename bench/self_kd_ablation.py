"""The real Self-KD ablation: the supernet trained with and without Self-KD (same seed, same budget),
its max and min subnets scored on the validation split.

The distill step's "extracted vs distilled" rows are not this ablation (the supernet they start from
was already trained with Self-KD). Here two supernets differ only in `train_supernet.self_kd`; both
choose their best epoch (and the Self-KD run its teacher's updates) on the holdout slice of the
training split, and the validation split is read once, by the final scoring. Reuses
bench/train_osie.py (ingest, two trainings side by side with one thread each, scoring); appends a
dated section to bench/RESULTS.md. A small budget by default (2 cores, shared with other jobs):

    .venv/bin/python bench/self_kd_ablation.py [--work /tmp/salnas_selfkd] [--epochs 3] [--train-limit 96]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    from _machine import machine
    from train_osie import evaluate, ingest, train

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/salnas_selfkd")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=96)
    ap.add_argument("--input-size", default="192,256", help="H,W the dataset is resized to (cpu preset: 192,256)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    root = ingest(work)
    h, w = (int(v) for v in args.input_size.split(","))
    sets = {"train_limit": args.train_limit, "input_size": f"[{h},{w}]"}
    extra = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    t0 = time.time()
    runs = train(root, work, args.preset, args.epochs, extra)
    wall = time.time() - t0

    import yaml

    from salnas_core.data.dataset import load_manifest
    from salnas_core.steps.train_supernet import resolve_params, split_params

    p = resolve_params(args.preset, args.epochs, overrides={k: yaml.safe_load(str(v)) for k, v in sets.items()})
    step, cfg = split_params(p)
    man = load_manifest(root)
    rows, info = {}, {}
    for name, run in runs.items():
        info[name] = json.loads((run / "metrics.json").read_text())
        ev = evaluate(root, run, (h, w), cfg.calib_images, cfg.seed)
        for sub in ("max", "min"):
            rows[(sub, name)] = ev[sub]
    cmd = (f"python bench/self_kd_ablation.py --epochs {args.epochs} --train-limit {args.train_limit} "
           f"--input-size {h},{w}")
    now = datetime.datetime.now()
    lines = [f"\n## Self-KD ablation: supernet trained with and without Self-KD ({now:%Y-%m-%d %H:%M})",
             f"Machine: {machine(load=False)}, load average {load_before:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end (shared with other engineers' jobs). Command: `{cmd}`.",
             f"Space `{info['selfkd'].get('space')}`, preset `{args.preset}` with train_limit {args.train_limit}, "
             f"input {h}x{w}, resolutions {step.get('resolutions')}, {args.epochs} epochs, batch {cfg.batch_size}, "
             f"lr {cfg.lr}, seed {cfg.seed}; dataset OSIE ingested with protocol `{man.get('protocol')}` "
             f"({man['splits'].get('train')} train of which {man['splits'].get('holdout')} holdout, "
             f"{man['splits'].get('val')} val). Both runs side by side, 1 thread each, wall {wall / 60:.1f} min. "
             "Best epoch / teacher updates chosen on the holdout slice; scores below on the whole validation "
             "split at the training input, subnets BN-recalibrated on training images; selection score = "
             "(1-CC)+KLD+(1-sigmoid(NSS))+(1-SIM)+(1-AUC-Judd), lower is better. Self-KD acts from epoch 2. "
             "One seed, one short run: the seed-to-seed spread was not measured, so small differences are not conclusive.\n",
             "| subnet | Self-KD | CC | KLD | NSS | SIM | AUC-Judd | score | best epoch | train min |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (sub, name), r in rows.items():
        m = info[name]
        lines.append(f"| {sub} | {'on' if name == 'selfkd' else 'off'} | {r['cc']:.3f} | {r['kld']:.3f} | "
                     f"{r['nss']:.3f} | {r['sim']:.3f} | {r['auc_judd']:.3f} | {r['score']:.3f} | "
                     f"{m.get('best_epoch')} | {m.get('train_seconds', 0) / 60:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    from salnas_core.utils.io import atomic_write_text

    res = REPO / "bench" / "RESULTS.md"
    old = res.read_text() if res.exists() else "# Benchmark results\n"
    atomic_write_text(res, old.rstrip("\n") + "\n" + text)
    (work / "self_kd_ablation.json").write_text(json.dumps({f"{s}/{n}": r for (s, n), r in rows.items()}, indent=1))


if __name__ == "__main__":
    main()
