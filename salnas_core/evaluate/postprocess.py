"""Fit a model's post-processing (nn.postprocess: blur + centre prior) on training images.

The MIT benchmark's practice, and the SalNAS authors': the blur and the weight of the centre prior
are chosen on training data, never on the split the model is reported on. The net's raw maps are
computed once; each (blur, weight) of a small grid is scored with the selection score (lower is
better) on the same images, and the best is kept (the identity, if nothing beats it).
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

BLUR_GRID_PX = (0.0, 1.5, 3.0, 5.0, 8.0)        # sigma at the working size (288x384: 8 px ~ 1.7% of the diagonal)
CENTRE_WEIGHT_GRID = (0.0, 0.1, 0.2, 0.35, 0.5)


def fit_postprocess(model: Any, loader: Iterable[dict], centre_sigma: Sequence[float], device: str = "cpu",
                    blur_grid: Sequence[float] = BLUR_GRID_PX,
                    weight_grid: Sequence[float] = CENTRE_WEIGHT_GRID) -> dict[str, Any]:
    """The best {blur_px, centre_weight, centre_sigma} for `model` (a SalNASNet) on `loader`
    (training images at the working size), with the score of every grid point tried."""
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
    for blur, w in itertools.product(blur_grid, weight_grid):
        post = Postprocess(blur, w, tuple(centre_sigma))
        m = SaliencyMetrics(names=SELECTION_METRICS)
        with torch.inference_mode():
            for y, d, f in zip(raw, dens, fix):
                m.update(post(y), d, f)
        vals = {k: float(v) for k, v in m.compute().items()}
        tried.append({**post.as_dict(), "score": float(selection_score(vals)), "cc": vals["cc"]})
    best = min(tried, key=lambda t: t["score"])
    identity = next(t for t in tried if t["blur_px"] == 0 and t["centre_weight"] == 0)
    log.info("postprocess: blur %.1f px, centre weight %.2f: score %.4f (none: %.4f) on %d training images",
             best["blur_px"], best["centre_weight"], best["score"], identity["score"], sum(len(y) for y in raw))
    return {"blur_px": best["blur_px"], "centre_weight": best["centre_weight"],
            "centre_sigma": list(map(float, centre_sigma)), "score": best["score"],
            "score_without": identity["score"], "n_images": sum(len(y) for y in raw), "grid": tried}
