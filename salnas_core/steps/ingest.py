"""Step `salnas ingest`: read, validate and preprocess a saliency dataset (logic in salnas_core.data.ingest)."""
from __future__ import annotations

import json
from typing import Any


def run(source: str, fmt: str, out: str, *, limit: int | None = None, name: str | None = None,
        working_size: tuple[int, int] | None = None, params_path: str | None = None, preset: str | None = None,
        overrides: dict | None = None, progress: bool = True) -> dict[str, Any]:
    """Ingest `source` into OUT/<dataset>/ with params.yaml `ingest:` (arguments given here win)."""
    from ..data.ingest import ingest
    from ..utils.params import step_params

    p = step_params("ingest", preset, params_path, overrides)
    working_size = tuple(working_size or p.get("working_size") or (288, 384))
    limit = limit or p.get("limit") or None
    sigma = p.get("sigma_px")
    return ingest(source, fmt, out, working_size=working_size, limit=limit, seed=int(p.get("seed", 42)), name=name,
                  sigma=sigma, sigma_ref_size=working_size if sigma is not None else None, workers=p.get("workers"),
                  cache_dir=p.get("cache_dir"), progress=progress)


def summarize(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, default=str)
