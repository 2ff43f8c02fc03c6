"""Supernet training throughput on CPU, old vs new trainer: images per second of one sandwich step
(max + 2 random + min, forward + backward + SGD step) on the main job's settings (`cpu` preset of
`train_supernet`: lite space, pretrained EfficientNet-Lite0 encoder, 192x256, resolutions [256],
batch 8, SGD nesterov lr 0.035, dropout/drop-connect 0.2 on the max subnet), with and without the
Self-KD teacher's forward (epochs >= 2).

"old" is the trainer in NCHW (`TrainConfig(channels_last=False)`, the layout every run used before),
"new" the default (`channels_last=True`). Both trainers start from the same weights and seed, draw
the same subnets, and run interleaved (old, new, old, new, ...) on the same synthetic batch; each
row gives medians and the largest loss difference between them (same seed: same results).

    .venv/bin/python bench/train_throughput.py [--threads 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from _machine import machine  # noqa: E402
from _results import write_rows  # noqa: E402

TITLE = "## Supernet training throughput, old vs new trainer (bench/train_throughput.py)"
INTRO = ("One sandwich step (max + 2 random + min subnets, forward + backward + SGD step) of "
         "`SupernetTrainer.train_step` on the main job's settings, synthetic batch; old = NCHW "
         "(`channels_last=False`), new = the default. Interleaved rounds, medians; the machine is shared "
         "(load average in the machine column): compare the two columns of one row, not rows.")
HEADER = ("| date | machine | threads | teacher | input | batch | old step s | new step s | old images/s | "
          "new images/s | speed-up | max loss diff | command |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=[192, 256])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256])
    ap.add_argument("--space", default="lite")
    ap.add_argument("--no-pretrained", action="store_true")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up round")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    import torch
    from torch.utils.data import TensorDataset

    from salnas_core.supernet import create_supernet
    from salnas_core.train.checkpoint import set_resolutions
    from salnas_core.train.trainer import SupernetTrainer, TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    b = args.batch
    model = set_resolutions(create_supernet(args.space, pretrained=not args.no_pretrained), args.resolutions)
    g = torch.Generator().manual_seed(0)
    dens = torch.rand(b, 1, h, w, generator=g)
    batch = {"image": torch.randn(b, 3, h, w, generator=g), "density": dens / dens.sum(dim=(-2, -1), keepdim=True),
             "fixations": (torch.rand(b, 1, h, w, generator=g) > 0.995).float()}
    dummy = TensorDataset(torch.zeros(b))
    # the cpu preset's TrainConfig (params.yaml); the rest are TrainConfig's defaults
    base = dict(batch_size=b, lr=0.035, t0=3, epochs=3, self_kd=True, seed=3407)
    trainers = {}
    for name, cl in (("old", False), ("new", True)):
        tr = SupernetTrainer(copy.deepcopy(model), dummy, dummy, TrainConfig(channels_last=cl, **base),
                             out_dir=f"/tmp/salnas_train_throughput_{name}")
        tr.teacher.update(tr.model)
        trainers[name] = tr

    cmd = "python bench/train_throughput.py " + " ".join(sys.argv[1:])
    rows = []
    for use_teacher in (False, True):
        times = {k: [] for k in trainers}
        diff = 0.0
        for r in range(args.repeats + 1):  # round 0: warm-up (oneDNN primitives for new shapes)
            losses = {}
            for name, tr in trainers.items():
                torch.manual_seed(r)  # both draw the same dropout masks
                t0 = time.perf_counter()
                losses[name] = tr.train_step(batch, use_teacher)
                if r:
                    times[name].append(time.perf_counter() - t0)
            diff = max([diff] + [abs(losses["old"][k] - losses["new"][k]) for k in losses["old"]])
        old, new = statistics.median(times["old"]), statistics.median(times["new"])
        line = (f"teacher={use_teacher}: old {old:.2f} s ({b / old:.2f} img/s), new {new:.2f} s "
                f"({b / new:.2f} img/s), speed-up {old / new:.2f}x, max loss diff {diff:.1e}")
        print(line, [f"{t:.2f}" for t in times["old"]], [f"{t:.2f}" for t in times["new"]], flush=True)
        rows.append(f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine()} | {torch.get_num_threads()} | "
                    f"{'yes' if use_teacher else 'no'} | {h}x{w} res {args.resolutions} | {b} | {old:.2f} | "
                    f"{new:.2f} | {b / old:.2f} | {b / new:.2f} | {old / new:.2f}x | {diff:.1e} | `{cmd.strip()}` |")
    write_rows(Path(args.results), TITLE, INTRO, HEADER, rows)


if __name__ == "__main__":
    main()
