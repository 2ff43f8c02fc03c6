"""Supernet training on real data: OSIE (../shared/data/osie), the `cpu` preset, Self-KD on and off.

Ingests OSIE if needed, trains two supernets side by side (one process each, one thread each, so
the pair fits 2 cores), then scores the max and min subnets of each final supernet on the whole
validation split (200 images; BN recalibrated on training images) with the project's metrics,
next to a centre-bias Gaussian fitted to the training fixations, on the same split and at the same
resolution. Appends the table to bench/RESULTS.md.

    .venv/bin/python bench/train_osie.py [--work /tmp/salnas_train] [--preset cpu] [--epochs N]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
METRICS = ("cc", "kld", "nss", "sim", "auc_judd")


def ingest(work: Path) -> Path:
    root = work / "ingested" / "osie"
    if not (root / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "salnas_core.cli", "ingest", "--source", str(REPO.parent / "shared/data/osie"),
                        "--format", "shared_json", "--out", str(work / "ingested"), "--name", "osie", "--no-progress"],
                       cwd=REPO, check=True)
    return root


def train(root: Path, work: Path, preset: str, epochs: int | None, extra: list[str]) -> dict[str, Path]:
    runs = {"selfkd": work / f"{preset}_selfkd", "no_selfkd": work / f"{preset}_no_selfkd"}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for name, out in runs.items():
        cmd = [sys.executable, "-m", "salnas_core.cli", "train-supernet", "--data", str(root), "--out", str(out),
               "--preset", preset, "--set", "threads=1", "--set", "tracking=none", *extra]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        if (out / "checkpoints" / "last.pt").exists():
            cmd.append("--resume")
        if name == "no_selfkd":
            cmd.append("--no-self-kd")
        out.mkdir(parents=True, exist_ok=True)
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(out / "train.log", "a"),
                                        stderr=subprocess.STDOUT), time.time())
    for name, (p, t0) in procs.items():
        if p.wait() != 0:
            raise SystemExit(f"training {name} failed: see {runs[name] / 'train.log'}")
    return runs


def evaluate(root: Path, run: Path, size, calib_images: int, seed: int) -> dict[str, dict[str, float]]:
    """Max and min subnets of the final supernet, BN recalibrated on training images, whole val split."""
    import torch
    from torch.utils.data import DataLoader

    from salnas_core.data.dataset import SaliencyDataset
    from salnas_core.metrics import SaliencyMetrics, selection_score
    from salnas_core.supernet import recalibrate_bn
    from salnas_core.train.checkpoint import load_supernet
    from salnas_core.train.trainer import calibration_subset

    net = load_supernet(run / "supernet.pt")
    norm = net.space.normalization
    calib = calibration_subset(SaliencyDataset(root, "train", normalization=norm, size=size), calib_images, seed)
    val = SaliencyDataset(root, "val", normalization=norm, size=size)
    out = {}
    for name in ("max", "min"):
        getattr(net, f"sample_{name}_subnet")()
        sub = net.get_active_subnet(preserve_weight=True)
        recalibrate_bn(sub, DataLoader(calib, batch_size=16), 10**6)
        sub.eval()
        m = SaliencyMetrics(names=METRICS)
        with torch.no_grad():
            for b in DataLoader(val, batch_size=16):
                m.update(sub(b["image"], out_size=tuple(b["density"].shape[-2:])), b["density"], b["fixations"])
        r = {k: float(v) for k, v in m.compute().items()}
        r["score"] = float(selection_score(r))
        out[name] = r
    return out


def centre_bias(root: Path, size) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from salnas_core.data.dataset import SaliencyDataset
    from salnas_core.evaluate.baselines import CenterBias
    from salnas_core.metrics import SaliencyMetrics, selection_score

    cb = CenterBias.fit_dataset(root, "train")
    val = SaliencyDataset(root, "val", normalization="none", size=size)
    m = SaliencyMetrics(names=METRICS)
    for b in DataLoader(val, batch_size=16):
        h, w = b["density"].shape[-2:]
        pred = torch.from_numpy(cb.map((h, w))).float().expand(b["density"].shape[0], 1, h, w)
        m.update(pred, b["density"], b["fixations"])
    r = {k: float(v) for k, v in m.compute().items()}
    r["score"] = float(selection_score(r))
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/salnas_train")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra train_supernet overrides KEY=VALUE")
    ap.add_argument("--skip-train", action="store_true", help="score runs already in --work")
    ap.add_argument("--reuse-metrics", action="store_true",
                    help="take the subnets' scores from the runs' metrics.json (the trainer's last validation: "
                         "same recalibration and metrics) instead of re-scoring the saved supernet.pt")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = ingest(work)
    extra = [x for s in args.set for x in ("--set", s)]
    t0 = time.time()
    runs = ({"selfkd": work / f"{args.preset}_selfkd", "no_selfkd": work / f"{args.preset}_no_selfkd"}
            if args.skip_train else train(root, work, args.preset, args.epochs, extra))
    wall = time.time() - t0

    from salnas_core.steps.train_supernet import resolve_params, split_params

    import yaml

    p = resolve_params(args.preset, args.epochs,
                       overrides={k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)} or None)
    step, cfg = split_params(p)
    size = tuple(step["input_size"]) if step.get("input_size") else None
    rows = {"centre bias (fitted on train fixations)": centre_bias(root, size)}
    info = {}
    for name, run in runs.items():
        m = json.loads((run / "metrics.json").read_text())
        info[name] = m
        ev = m["final"] if args.reuse_metrics else evaluate(root, run, size, cfg.calib_images, cfg.seed)
        label = "Self-KD" if name == "selfkd" else "no Self-KD"
        rows[f"max subnet, {label}"] = ev["max"]
        rows[f"min subnet, {label}"] = ev["min"]

    machine = f"{platform.node()} ({os.cpu_count()} CPU, torch {__import__('torch').__version__})"
    lines = [f"\n## Supernet training on OSIE, preset `{args.preset}` ({datetime.datetime.now():%Y-%m-%d %H:%M})\n",
             f"Machine: {machine}, shared with other jobs (load varies). Command: "
             f"`.venv/bin/python bench/train_osie.py --preset {args.preset}"
             + (f" --epochs {args.epochs}" if args.epochs else "") + "`.",
             f"Training: {len(json.loads((runs['selfkd'] / 'metrics.json').read_text())['history'])} epochs, "
             f"input {size or 'working size'}, resolutions {step.get('resolutions')}, train_limit {step.get('train_limit')}, "
             f"batch {cfg.batch_size}, lr {cfg.lr}; both runs in parallel, 1 thread each, wall {wall / 60:.1f} min "
             f"(Self-KD run {info['selfkd']['train_seconds'] / 60:.1f} min, no-Self-KD run "
             f"{info['no_selfkd']['train_seconds'] / 60:.1f} min of training loop).",
             "Scores: OSIE validation split (200 images, SalNAS split), at the training resolution, "
             "`SaliencyMetrics` (MIT conventions), subnets BN-recalibrated on training images. "
             "Selection score = (1-CC)+KLD+(1-sigmoid(NSS))+(1-SIM)+(1-AUC-Judd), lower is better.\n",
             "| model | CC | KLD | NSS | SIM | AUC-Judd | score |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['cc']:.3f} | {r['kld']:.3f} | {r['nss']:.3f} | {r['sim']:.3f} | "
                     f"{r['auc_judd']:.3f} | {r['score']:.3f} |")
    cb = rows["centre bias (fitted on train fixations)"]
    verdict = []
    for label in ("Self-KD", "no Self-KD"):
        mx = rows[f"max subnet, {label}"]
        beats = {k: mx[k] > cb[k] for k in ("cc", "nss", "auc_judd")}
        verdict.append(f"max subnet ({label}) beats centre bias on CC/NSS/AUC-Judd: "
                       + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in beats.items()))
    lines += ["", *[f"- {v}" for v in verdict], ""]
    text = "\n".join(lines)
    print(text)
    res = REPO / "bench" / "RESULTS.md"
    from salnas_core.utils.io import atomic_write_text

    old = res.read_text() if res.exists() else "# Benchmark results\n"
    atomic_write_text(res, old.rstrip("\n") + "\n" + text)
    (work / f"osie_{args.preset}_table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
