"""Scoring a (sub)network: validation metrics and the model-selection score (lower is better).

Used by train (distill), search and the steps: it lives here, below them all."""
from __future__ import annotations

from typing import Any, Iterable

SELECTION_METRICS = ("cc", "kld", "nss", "sim", "auc_judd")


def validate(model: Any, loader: Iterable[dict], device: str = "cpu",
             names: tuple[str, ...] = SELECTION_METRICS) -> dict[str, float]:
    """Mean metrics over the loader at its working size, plus `score` = selection_score."""
    import torch

    from . import SaliencyMetrics, selection_score

    metric = SaliencyMetrics(names=names)
    model = model.to(device).eval()
    n = 0
    with torch.inference_mode():
        for batch in loader:
            x = batch["image"].to(device)
            pred = model(x).float().cpu()
            if pred.shape[-2:] != batch["density"].shape[-2:]:
                pred = torch.nn.functional.interpolate(pred, size=batch["density"].shape[-2:], mode="bilinear",
                                                       align_corners=False)
            metric.update(pred, batch["density"], batch["fixations"])
            n += x.shape[0]
    if n == 0:
        raise ValueError("validate: the validation loader is empty")
    m = {k: float(v) for k, v in metric.compute().items()}
    m["score"] = float(selection_score(m))
    return m
