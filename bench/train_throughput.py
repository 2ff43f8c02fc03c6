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

`--data DIR` (an ingested dataset, e.g. `salnas ingest` of OSIE): whole training epochs instead,
through the real loader (augmentation on, batch 8 at 192x256, Self-KD teacher on as in epochs >= 2),
images/s as the trainer reports it: old (NCHW, no prefetch), new (channels_last, the default), new + prefetch.
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


EPOCH_TITLE = "## Supernet training epochs, old vs new trainer (bench/train_throughput.py --data)"
EPOCH_INTRO = ("Whole training epochs (`SupernetTrainer.train_epoch`, teacher on) through the real loader "
               "(ingested OSIE subset, augmentation on, workers 0) on the main job's settings; images/s as the "
               "trainer reports it. old = NCHW, new = channels_last (the default), + prefetch = `prefetch=True`. "
               "Interleaved rounds, medians; compare within a row.")
EPOCH_HEADER = ("| date | machine | threads | images/epoch | loader s/batch | old images/s | new images/s | "
                "new + prefetch images/s | speed-up new/old | prefetch gain | command |\n|---|---|---|---|---|---|---|---|---|---|---|")


def epochs(args, model, cmd: str) -> None:
    import copy

    import torch

    from salnas_core.data.dataset import SaliencyDataset
    from salnas_core.train.trainer import SupernetTrainer, TrainConfig

    h, w = args.size
    train = SaliencyDataset(args.data, "train", normalization="lite", augment=True, size=(h, w))
    val = SaliencyDataset(args.data, "val", normalization="lite", augment=False, size=(h, w))
    base = {"batch_size": args.batch, "lr": 0.035, "t0": 3, "epochs": 3, "self_kd": True, "seed": 3407,
            "steps_per_epoch": args.steps or None}
    variants = {"old": {"channels_last": False, "prefetch": False},
                "new": {"channels_last": True, "prefetch": False},
                "new_prefetch": {"channels_last": True, "prefetch": True}}
    trainers = {}
    for name, kw in variants.items():
        tr = SupernetTrainer(copy.deepcopy(model), train, val, TrainConfig(**base, **kw),
                             out_dir=f"/tmp/salnas_train_epochs_{name}")
        tr.teacher.update(tr.model)
        trainers[name] = tr
    t0 = time.perf_counter()
    n = min(len(trainers["old"].train_loader), args.steps or 10**9)
    for i, _ in enumerate(trainers["old"].train_loader):
        if i + 1 >= n:
            break
    loader_s = (time.perf_counter() - t0) / n
    ips = {k: [] for k in trainers}
    for r in range(args.repeats + 1):  # round 0: warm-up
        for name, tr in trainers.items():
            _, v = tr.train_epoch(1)
            if r:
                ips[name].append(v)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in ips.items() if r), flush=True)
    med = {k: statistics.median(v) for k, v in ips.items()}
    print(f"loader {loader_s:.3f} s/batch; images/s " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    row = (f"| {time.strftime('%Y-%m-%d %H:%M')} | {machine()} | {torch.get_num_threads()} | {n * args.batch} | "
           f"{loader_s:.3f} | {med['old']:.2f} | {med['new']:.2f} | {med['new_prefetch']:.2f} | "
           f"{med['new'] / med['old']:.2f}x | {med['new_prefetch'] / med['new']:.2f}x | `{cmd.strip()}` |")
    write_rows(Path(args.results), EPOCH_TITLE, EPOCH_INTRO, EPOCH_HEADER, [row])


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
    ap.add_argument("--data", help="an ingested dataset: time whole epochs through the loader instead")
    ap.add_argument("--steps", type=int, default=0, help="--data: steps per epoch (0: the whole split)")
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
    cmd = "python bench/train_throughput.py " + " ".join(sys.argv[1:])
    if args.data:
        return epochs(args, model, cmd)
    g = torch.Generator().manual_seed(0)
    dens = torch.rand(b, 1, h, w, generator=g)
    batch = {"image": torch.randn(b, 3, h, w, generator=g), "density": dens / dens.sum(dim=(-2, -1), keepdim=True),
             "fixations": (torch.rand(b, 1, h, w, generator=g) > 0.995).float()}
    dummy = TensorDataset(torch.zeros(b))
    # the cpu preset's TrainConfig (params.yaml); the rest are TrainConfig's defaults
    base = {"batch_size": b, "lr": 0.035, "t0": 3, "epochs": 3, "self_kd": True, "seed": 3407}
    trainers = {}
    for name, cl in (("old", False), ("new", True)):
        tr = SupernetTrainer(copy.deepcopy(model), dummy, dummy, TrainConfig(channels_last=cl, **base),
                             out_dir=f"/tmp/salnas_train_throughput_{name}")
        tr.teacher.update(tr.model)
        trainers[name] = tr

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
