"""Data loading throughput, images/s, on the real OSIE images (800x600 JPEG -> 288x384).

Stages, measured in one run on this machine:
  * ingest-prep : decode JPEG + EXIF/mode checks + resize + map fixations + density map
                  (what `salnas ingest` does per image, without writing), 1 thread
  * ingest      : the whole `salnas ingest` on the same images (writes PNG/npy, hashes), threads as default
  * loader      : SaliencyDataset via make_loader (PNG decode + npy + fixation map + normalise +
                  augmentation), batch 8, num_workers 0 and 2
Writes one row per stage to bench/RESULTS.md (section "Loader throughput").

    .venv/bin/python bench/loader_throughput.py --n 100
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from _machine import machine  # noqa: E402
from _results import write_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TITLE = "## Loader throughput (bench/loader_throughput.py)"
HEADER = ("| date | machine | stage | images | size | images/s (wall) | CPU ms/image | command |\n"
          "|---|---|---|---|---|---|---|---|")




def bench_prep(records, size, sigma) -> tuple[float, float]:
    from salnas_core.data import ground_truth as gt
    from salnas_core.data.ingest import load_image, resize_rgb

    t, c = time.perf_counter(), time.process_time()
    for r in records:
        arr, pts, _ = load_image(r.image, r.points_rc, r.size_hw)
        h, w = arr.shape[:2]
        pts = pts[gt.inside(pts, (h, w))]
        resize_rgb(arr, size)
        gt.density_map(gt.resize_points(pts, (h, w), size), size, sigma)
    return len(records) / (time.perf_counter() - t), 1000 * (time.process_time() - c) / len(records)


def bench_loader(root, workers: int, batches: int) -> tuple[float, int, float | None]:
    from salnas_core.data.dataset import make_loader

    dl = make_loader(root, "all", batch_size=8, normalization="imagenet", augment=True, shuffle=True,
                     num_workers=workers, seed=0)
    it = iter(dl)
    next(it)  # start workers outside the timing
    n = 0
    t, c = time.perf_counter(), time.process_time()
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            break
        n += len(b["id"])
    # worker processes' CPU time is not visible from here
    cpu = 1000 * (time.process_time() - c) / max(n, 1) if workers == 0 else None
    return n / (time.perf_counter() - t), n, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "osie"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", nargs=2, type=int, default=[288, 384])
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    size = tuple(args.size)

    from salnas_core.data import ground_truth as gt
    from salnas_core.data.ingest import ingest
    from salnas_core.data.readers import get_reader

    records = sorted(get_reader("shared_json")(Path(args.data)).records, key=lambda r: r.id)[: args.n]
    sigma = gt.scale_sigma(24.0, (600, 800), size)
    cmd = f"`python bench/loader_throughput.py --n {args.n} --size {size[0]} {size[1]}`"
    day = time.strftime("%Y-%m-%d")
    rows = []
    rate, cpu = bench_prep(records, size, sigma)
    rows.append(("ingest-prep (decode+resize+GT, 1 thread)", len(records), rate, cpu))
    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        s = ingest(args.data, "shared_json", tmp, working_size=size, limit=args.n, progress=False)
        rows.append((f"salnas ingest (all of it, {min(4, os.cpu_count() or 1)} threads)", s["images"],
                     s["images"] / (time.perf_counter() - t), 1000 * (time.process_time() - c) / s["images"]))
        for w in (0, 2):
            rate, n, cpu = bench_loader(s["out"], w, batches=max(1, (args.n - 8) // 8))
            rows.append((f"loader (SaliencyDataset, batch 8, augment, workers={w})", n, rate, cpu))
    lines = [f"| {day} | {machine()} | {stage} | {n} | {size[0]}x{size[1]} | {rate:.1f} | "
             f"{'-' if cpu is None else f'{cpu:.0f}'} | {cmd} |" for stage, n, rate, cpu in rows]
    print(HEADER)
    print("\n".join(lines))
    write_rows(Path(args.results), TITLE, "Real OSIE JPEGs (800x600); compare rows of one run only.", HEADER, lines)


if __name__ == "__main__":
    main()
