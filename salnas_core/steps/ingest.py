"""Step `salnas ingest`: read, validate and preprocess a saliency dataset (logic in salnas_core.data.ingest).

An s3:// source is downloaded here, by the step (data/ingest reads local folders only)."""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError


def run(source: str, fmt: str = "shared_json", out: str = "data/ingested", *, limit: int | None = None, name: str | None = None,
        working_size: tuple[int, int] | None = None, protocol: str | None = None, params_path: str | None = None,
        preset: str | None = None, overrides: dict | None = None, progress: bool = True) -> dict[str, Any]:
    """Ingest `source` into OUT/<dataset>/ with params.yaml `ingest:` (arguments given here win)."""
    from ..data.ingest import ingest
    from ..utils.params import step_params

    p = step_params("ingest", preset, params_path, overrides)
    local = fetch_source(source, p.get("cache_dir"))
    working_size = tuple(working_size or p.get("working_size") or (288, 384))
    limit = limit or p.get("limit") or None
    sigma = p.get("sigma_px")

    def one(src: str | os.PathLike, label: str, name: str | None) -> dict[str, Any]:
        return ingest(src, fmt, out, working_size=working_size, limit=limit, seed=int(p.get("seed", 42)), name=name,
                      sigma=sigma, sigma_ref_size=working_size if sigma is not None else None,
                      workers=p.get("workers"), progress=progress, source_label=label,
                      protocol=protocol or p.get("protocol"), holdout=p.get("holdout"))

    subs = dataset_folders(Path(local), fmt)
    if not subs:
        return one(local, str(source), name)
    if name:
        raise UserError(f"{source}: --name names one dataset; this folder holds {len(subs)} ({', '.join(d.name for d in subs)})")
    done = [one(d, f"{str(source).rstrip('/')}/{d.name}", None) for d in subs]
    return {"datasets": done}


def dataset_folders(source: Path, fmt: str) -> list[Path]:
    """The datasets in a folder of them (the snapshot's data/raw: OUT/<dataset>/fixations.json), each
    ingested into OUT/<its name>/; [] when `source` is one dataset."""
    if fmt != "shared_json" or not source.is_dir() or (source / "fixations.json").exists():
        return []
    return sorted(d for d in source.iterdir() if (d / "fixations.json").is_file())


def fetch_source(source: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A local folder for `source`: an s3:// prefix is downloaded (resumably, checked by sha256)
    into CACHE_DIR/<bucket_prefix> (default ~/.cache/salnas/sources; a PVC on Kubeflow), keeping
    the files it already has with the same content (storage.download_prefix); a path is returned as is.
    The step does the download so that data/ingest stays local-only (no boto3 below steps/)."""
    s = str(source)
    if not s.startswith("s3://"):
        return s
    from ..tracking.storage import download_prefix

    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "salnas" / "sources"
    dest = cache / re.sub(r"[^A-Za-z0-9_.-]", "_", s[len("s3://"):].strip("/"))
    logging.getLogger(__name__).info("downloading %s to %s", s, dest)
    return str(download_prefix(s, dest))


def summarize(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, default=str)
