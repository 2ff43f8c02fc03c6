"""Why `salnas predict` writes 16-bit PNGs: how much 8-bit vs 16-bit rounding of a saliency map
changes KLD (MIT benchmark definition) on real OSIE maps.

For each of the first N OSIE images: the human density map (all observers, sigma 24 px at
800x600, the dataset's own setting) is the ground truth. Two kinds of "prediction" are stored the
way `salnas predict` stores a map (divided by its maximum, rounded to 2^b - 1 levels) and read back:
  * ideal     - the ground-truth map itself (what a perfect model outputs);
  * half-obs  - the density of half the observers (odd subjects), a human-level prediction.
KLD(gt, stored) is compared with KLD(gt, float map). Writes a row per case to bench/RESULTS.md.

    .venv/bin/python bench/png16_kld.py --n 100
"""
from __future__ import annotations

import argparse
import json
import os
import time
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from salnas_core.data.ground_truth import density_map  # noqa: E402
from salnas_core.data.readers.base import matlab_xy_to_rc  # noqa: E402
from salnas_core.serve.predict import to_uint16  # noqa: E402
from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402

EPS = np.finfo(np.float64).eps  # MIT benchmark KLD: eps = 2.2204e-16


def kld(pred: np.ndarray, gt: np.ndarray) -> float:
    try:
        from salnas_core.metrics import kld as mit_kld

        return float(mit_kld(pred, gt))
    except ImportError:  # metrics layer not there yet: the MIT formula, KLdiv.m
        p = pred.astype(np.float64) / pred.sum()
        q = gt.astype(np.float64) / gt.sum()
        return float(np.sum(q * np.log(EPS + q / (p + EPS))))


def quantize(m: np.ndarray, bits: int) -> np.ndarray:
    if bits == 16:
        return to_uint16(m).astype(np.float64) / 65535.0  # exactly what predict writes
    levels = 2 ** bits - 1
    return np.rint(m / m.max() * levels) / levels




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "osie"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args()

    meta = json.loads((Path(args.data) / "fixations.json").read_text())
    rows: dict[str, dict[str, list[float]]] = {"ideal": {}, "half-obs": {}}
    for entry in meta["images"][: args.n]:
        shape = (entry["height"], entry["width"])
        subs = entry["subjects"]
        pts = [matlab_xy_to_rc(s["x"], s["y"]) for s in subs]
        gt = density_map(np.concatenate(pts), shape, 24.0).astype(np.float64)
        half = np.concatenate(pts[1::2])
        cases = {"ideal": gt, "half-obs": density_map(half, shape, 24.0).astype(np.float64)}
        for case, pred in cases.items():
            ref = kld(pred / pred.max(), gt)
            for bits in (8, 16):
                got = kld(quantize(pred, bits), gt)
                rows[case].setdefault(f"d{bits}", []).append(got - ref)
            rows[case].setdefault("ref", []).append(ref)

    lines = []
    for case, r in rows.items():
        ref, d8, d16 = (np.array(r[k]) for k in ("ref", "d8", "d16"))
        rel = f" ({100 * d8.mean() / ref.mean():+.1f}%)" if ref.mean() > 1e-3 else ""
        lines.append(f"| {case} | {len(ref)} | {abs(ref.mean()):.4f} | {d8.mean():+.4f}{rel} "
                     f"| {np.abs(d8).max():.4f} | {d16.mean():+.2e} | {np.abs(d16).max():.2e} |")
    header = ("| map | images | KLD float | mean change 8-bit | max abs change 8-bit | mean change 16-bit "
              "| max abs change 16-bit |\n|---|---|---|---|---|---|---|")
    print(header)
    print("\n".join(lines))
    stamp = f"{time.strftime('%Y-%m-%d %H:%M')}, {_machine()}: `.venv/bin/python bench/png16_kld.py --n {args.n}`"
    write_rows(Path(args.results), "## PNG bit depth and KLD (bench/png16_kld.py)",
               "OSIE, sigma 24 px at 800x600; change = KLD(gt, stored map) - KLD(gt, float map).",
               header, lines + ["", stamp])


if __name__ == "__main__":
    main()
