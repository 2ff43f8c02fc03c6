"""Supernet training throughput on CPU: images per second of one sandwich step (max + 2 random +
min, forward + backward + optimiser step), with and without the Self-KD teacher's forward.

    .venv/bin/python bench/train_throughput.py [--threads 1] [--batch 8] [--size 192 256] [--repeats 3]

Appends a row to the "Supernet training throughput" table in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HEADER = """
## Supernet training throughput (bench/train_throughput.py)
One sandwich step (max + 2 random + min subnets, forward + backward + SGD step) on a synthetic batch,
median of the timed repeats after one warm-up. "+ teacher" adds the Self-KD teacher's forward (epochs >= 2).
The machine is shared: compare rows of one run, not across runs.

| date | machine | threads | space | resolutions | input | batch | step s | images/s | step s + teacher | images/s + teacher | load avg | command |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=[192, 256])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256])
    ap.add_argument("--space", default="lite")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from torch.utils.data import TensorDataset

    from salnas_core.supernet import create_supernet
    from salnas_core.train.checkpoint import set_resolutions
    from salnas_core.train.trainer import SupernetTrainer, TrainConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    b = args.batch
    model = set_resolutions(create_supernet(args.space, pretrained=False), args.resolutions)
    dens = torch.rand(b, 1, h, w)
    batch = {"image": torch.randn(b, 3, h, w), "density": dens / dens.sum(dim=(-2, -1), keepdim=True),
             "fixations": (torch.rand(b, 1, h, w) > 0.995).float()}
    dummy = TensorDataset(torch.zeros(b))
    cfg = TrainConfig(batch_size=b, self_kd=True, seed=0)
    tr = SupernetTrainer(model, dummy, dummy, cfg, out_dir="/tmp/salnas_train_throughput")
    tr.teacher.update(tr.model)

    def timed(use_teacher: bool) -> float:
        tr.train_step(batch, use_teacher)  # warm-up (oneDNN primitives for new shapes)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tr.train_step(batch, use_teacher)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    plain, kd = timed(False), timed(True)
    load = os.getloadavg()[0]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    cmd = "python bench/train_throughput.py " + " ".join(sys.argv[1:])
    row = (f"| {datetime.datetime.now():%Y-%m-%d %H:%M} | {machine} | {args.threads} | {args.space} | "
           f"{args.resolutions} | {h}x{w} | {b} | {plain:.2f} | {b / plain:.2f} | {kd:.2f} | {b / kd:.2f} | "
           f"{load:.1f} | `{cmd.strip()}` |")
    print(row)
    from salnas_core.utils.io import atomic_write_text

    res = REPO / "bench" / "RESULTS.md"
    text = res.read_text() if res.exists() else "# Benchmark results\n"
    if "## Supernet training throughput" not in text:
        text = text.rstrip("\n") + "\n" + HEADER
    # insert the row at the end of this section's table
    head, sep, tail = text.partition("## Supernet training throughput")
    nxt = tail.find("\n## ")
    section, rest = (tail, "") if nxt < 0 else (tail[:nxt], tail[nxt:])
    section = section.rstrip("\n") + "\n" + row + "\n"
    atomic_write_text(res, head + sep + section + rest)


if __name__ == "__main__":
    main()
