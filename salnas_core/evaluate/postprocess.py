"""Fit a model's post-processing (nn.postprocess: blur + centre prior) on training images.

The MIT benchmark's practice, and the SalNAS authors': the blur and the weight of the centre prior
are chosen on training data, never on the split the model is reported on. The net's raw maps are
computed once; each (blur, weight or power) of a small grid is scored with the selection score (lower is
better) on the same images, and the best is kept (the identity, if nothing beats it).
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

BLUR_GRID_PX = (0.0, 1.5, 3.0, 5.0, 8.0)        # sigma at the working size (288x384: 8 px ~ 1.7% of the diagonal)
CENTRE_WEIGHT_GRID = (0.0, 0.1, 0.2, 0.35, 0.5)
CENTRE_POWER_GRID = (0.0, 0.15, 0.3, 0.5, 1.0)  # map x prior^p (nn.postprocess)


def fit_postprocess(model: Any, loader: Iterable[dict], centre_sigma: Sequence[float], device: str = "cpu",
                    blur_grid: Sequence[float] = BLUR_GRID_PX,
                    weight_grid: Sequence[float] = CENTRE_WEIGHT_GRID,
                    power_grid: Sequence[float] = CENTRE_POWER_GRID) -> dict[str, Any]:
    """The best {blur_px, centre_weight, centre_sigma, centre_power} for `model` (a SalNASNet) on
    `loader` (training images at the working size), with the score of every grid point tried."""
    import torch
    import torch.nn.functional as F

    from salnas_core.metrics import SaliencyMetrics
    from salnas_core.metrics.scoring import SELECTION_METRICS
    from salnas_core.metrics.selection import selection_score
    from salnas_core.nn.postprocess import Postprocess

    before = model.postprocess
    model.set_postprocess(None)
    raw, dens, fix = [], [], []
    try:
        model = model.to(device).eval()
        with torch.inference_mode():
            for b in loader:
                y = model(b["image"].to(device)).float().cpu()
                if y.shape[-2:] != b["density"].shape[-2:]:
                    y = F.interpolate(y, size=b["density"].shape[-2:], mode="bilinear", align_corners=False)
                raw.append(y), dens.append(b["density"]), fix.append(b["fixations"])
    finally:
        model.set_postprocess(before)
    if not raw:
        raise ValueError("fit_postprocess: the loader is empty")
    tried = []
    # the prior is weighed in one way at a time: mixed in (weight) or multiplied in (power)
    points = [(b, w, 0.0) for b, w in itertools.product(blur_grid, weight_grid)]
    points += [(b, 0.0, pw) for b, pw in itertools.product(blur_grid, power_grid) if pw > 0]
    for blur, w, pw in points:
        post = Postprocess(blur, w, tuple(centre_sigma), pw)
        m = SaliencyMetrics(names=SELECTION_METRICS)
        with torch.inference_mode():
            for y, d, f in zip(raw, dens, fix):
                m.update(post(y), d, f)
        vals = {k: float(v) for k, v in m.compute().items()}
        tried.append({**post.as_dict(), "score": float(selection_score(vals)), "cc": vals["cc"]})
    best = min(tried, key=lambda t: t["score"])
    identity = next(t for t in tried if t["blur_px"] == 0 and t["centre_weight"] == 0 and t["centre_power"] == 0)
    log.info("postprocess: blur %.1f px, centre weight %.2f, centre power %.2f: score %.4f (none: %.4f) on %d "
             "training images", best["blur_px"], best["centre_weight"], best["centre_power"], best["score"],
             identity["score"], sum(len(y) for y in raw))
    return {"blur_px": best["blur_px"], "centre_weight": best["centre_weight"],
            "centre_sigma": list(map(float, centre_sigma)), "centre_power": best["centre_power"],
            "score": best["score"],
            "score_without": identity["score"], "n_images": sum(len(y) for y in raw), "grid": tried}


def refit_on_dataset(model: Any, root: str | Path, centre: Any, split: str = "train", limit: int | None = 100,
                     batch_size: int = 8, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """A copy of `model` whose post-processing is refitted on `split` of the ingested dataset at
    `root`; the network is untouched, and `model` is left as it was.

    This is how the MIT benchmark treats a model on a dataset it was not trained on: the blur and
    the centre bias are chosen on that dataset's training fixations (as the classical baselines'
    centre bias is). `centre` (evaluate.baselines.CenterBias) is the prior's spread, fitted on the
    same split. Returns (the copy, fit_postprocess's result without its grid)."""
    import copy

    from salnas_core.data.dataset import make_loader

    meta = getattr(model, "meta", {}) or {}
    size = meta.get("input_size")
    loader = make_loader(root, split, batch_size, meta.get("normalization") or model.space.normalization,
                         shuffle=False, limit=limit, size=tuple(size) if size else None)
    adapted = copy.deepcopy(model)
    fit = fit_postprocess(adapted, loader, (centre.sigma_y, centre.sigma_x), device=device)
    adapted.set_postprocess({k: fit[k] for k in ("blur_px", "centre_weight", "centre_sigma", "centre_power")})
    return adapted, {k: v for k, v in fit.items() if k != "grid"} | {"fitted_on": f"{Path(root).name} {split}"}
