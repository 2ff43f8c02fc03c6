"""Why an OSIE-trained model trails the classics on NUS Scene: the post-processing each dataset's
own training data would choose, side by side.

For a trained model (a main job's champion), the blur + centre-prior grid (mixed in with a weight,
or multiplied in to a power) of
`salnas_core.evaluate.postprocess.fit_postprocess` is scored on two training-side sets: OSIE's
holdout slice (what distill fits on, and ships) and NUS Scene's train split (never used by the
project's models). Each set's best (blur, centre weight) and the CC along each axis of the grid are
written to bench/RESULTS.md. The validation splits are not read. The centre prior's spread is the
scored set's own training fixations (as distill's fit uses OSIE's).

    .venv/bin/python bench/cross_dataset_prior.py --run /path/to/main-job-checkout [--variant XL]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _machine import machine as _machine  # noqa: E402
from _results import write_rows  # noqa: E402

TITLE = "## Cross-dataset prior: the post-processing each dataset would choose (bench/cross_dataset_prior.py)"
BLURS = (0.0, 1.5, 3.0, 5.0, 8.0)
WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.7)
POWERS = (0.0, 0.15, 0.3, 0.5, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=".", help="a finished main job's checkout (runs/distill, data/ingested)")
    ap.add_argument("--variant", default="XL")
    ap.add_argument("--limit", type=int, default=100, help="images per scored set")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    a = ap.parse_args()

    import torch

    from salnas_core.data.dataset import make_loader
    from salnas_core.evaluate.baselines import CenterBias
    from salnas_core.evaluate.postprocess import fit_postprocess
    from salnas_core.supernet import load_model

    run = Path(a.run)
    model = load_model(run / "runs" / "distill" / a.variant / "model.pt")
    shipped = model.postprocess.as_dict() if model.postprocess is not None else {}
    size = tuple(model.meta.get("input_size") or (144, 192))
    rows, when, mach = [], time.strftime("%Y-%m-%d %H:%M"), _machine()
    cmd = "`.venv/bin/python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]) + "`"
    for ds, split in (("osie", "holdout"), ("nus_scene", "train")):
        root = run / "data" / "ingested" / ds
        cb = CenterBias.fit_dataset(root, "train")
        loader = make_loader(root, split, 8, model.meta.get("normalization", "imagenet"), shuffle=False,
                             limit=a.limit, size=size)
        with torch.inference_mode():
            fit = fit_postprocess(model, loader, (cb.sigma_y, cb.sigma_x), blur_grid=BLURS, weight_grid=WEIGHTS,
                                  power_grid=POWERS)
        grid = {(g["blur_px"], g["centre_weight"], g["centre_power"]): g for g in fit["grid"]}
        none = grid[(0.0, 0.0, 0.0)]
        by_w = ", ".join(f"{w}: {grid[(0.0, w, 0.0)]['cc']:.3f}" for w in WEIGHTS)
        by_p = ", ".join(f"{pw}: {grid[(0.0, 0.0, pw)]['cc']:.3f}" for pw in POWERS)
        by_b = ", ".join(f"{b}: {grid[(b, 0.0, 0.0)]['cc']:.3f}" for b in BLURS)
        best = grid[(fit["blur_px"], fit["centre_weight"], fit["centre_power"])]
        rows.append(f"| {when} | {mach} | {a.variant} of `{run.name}` (shipped: blur {shipped.get('blur_px')}, "
                    f"centre weight {shipped.get('centre_weight')}, power {shipped.get('centre_power', 0.0)}) | {ds} {split} ({fit['n_images']} images, "
                    f"{size[0]}x{size[1]}) | {cb.sigma_y:.3f} / {cb.sigma_x:.3f} | {none['cc']:.3f} / {none['score']:.3f} "
                    f"| blur {fit['blur_px']}, weight {fit['centre_weight']}, power {fit['centre_power']}: "
                    f"{best['cc']:.3f} / {best['score']:.3f} | {by_w} | {by_p} | {by_b} | {cmd} |")
        print(rows[-1], flush=True)
    write_rows(Path(a.results), TITLE,
               "The blur + centre-prior grid (evaluate.postprocess: the prior mixed in with a weight, or multiplied in to a power) scored on OSIE's holdout slice (what distill "
               "fits on and ships) and on NUS Scene's train split (never used by the models), for a main job's "
               "model; CC and the selection score (lower is better) at the scoring size, maps against the "
               "working-size densities. Validation splits are not read. Space `lite`, preset `cpu`, protocol `mit`.",
               "| date | machine | model | scored set | centre-bias sigma y / x (fraction) | no post-processing CC / score "
               "| best on this set: CC / score | CC by centre weight (mixed in; no blur) | CC by centre power "
               "(multiplied in; no blur) | CC by blur px (no centre) | command |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|", rows)


if __name__ == "__main__":
    main()
