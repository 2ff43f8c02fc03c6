"""`salnas ingest`: read, validate and preprocess a saliency dataset (logic in salnas_core.data.ingest)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any


def run(source: str, fmt: str, out: str, working_size: tuple[int, int] | None = None, limit: int | None = None,
        seed: int | None = None, params: str | None = None, name: str | None = None, sigma: float | None = None,
        workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Ingest `source` into OUT/<dataset>/; unset arguments come from params.yaml `ingest:`."""
    from ..data.ingest import ingest
    from ..utils.params import step_params

    p = step_params("ingest", path=params)
    local = fetch_source(source, p.get("cache_dir"))
    working_size = tuple(working_size or p.get("working_size") or (288, 384))
    seed = int(seed if seed is not None else p.get("seed", 42))
    sigma = sigma if sigma is not None else p.get("sigma_px")
    workers = workers or p.get("workers")
    return ingest(local, fmt, out, working_size=working_size, limit=limit, seed=seed, name=name, sigma=sigma,
                  sigma_ref_size=working_size if sigma is not None else None, workers=workers,
                  progress=progress, source_label=str(source))


def fetch_source(source: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A local folder for `source`: an s3:// prefix is downloaded (resumably, checked by sha256)
    into CACHE_DIR/<bucket_prefix> (default ~/.cache/salnas/sources); a path is returned as is.
    The step does the download so that data/ingest stays local-only (no boto3 below steps/)."""
    s = str(source)
    if not s.startswith("s3://"):
        return s
    from ..tracking.storage import download_prefix

    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "salnas" / "sources"
    dest = cache / re.sub(r"[^A-Za-z0-9_.-]", "_", s[len("s3://"):].strip("/"))
    logging.getLogger(__name__).info("downloading %s to %s", s, dest)
    return str(download_prefix(s, dest))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="dataset folder or s3://bucket/prefix")
    parser.add_argument("--format", dest="fmt", required=True,
                        help="reader: shared_json, osie, salicon, mit1003, cat2000, pascal_s, dut_omron, fiwi, toronto")
    parser.add_argument("--out", required=True, help="output folder; the dataset goes to OUT/<name>/")
    parser.add_argument("--working-size", nargs=2, type=int, metavar=("H", "W"), help="default: params ingest.working_size")
    parser.add_argument("--limit", type=int, help="ingest only the first N images (sorted by id)")
    parser.add_argument("--seed", type=int, help="split seed (default: params ingest.seed = 42, SalNAS's OSIE split)")
    parser.add_argument("--params", help="params.yaml to read (default: the working root's: $SALNAS_ROOT, else here)")
    parser.add_argument("--name", help="dataset name (default: from the format, or the source folder name)")
    parser.add_argument("--sigma", type=float, help="Gaussian sigma in px at the working size (default: per dataset)")
    parser.add_argument("--workers", type=int, help="decode threads (default: min(4, cores))")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    from ..utils.logs import setup_logging, show_progress

    setup_logging()
    try:
        summary = run(args.source, args.fmt, args.out, working_size=args.working_size, limit=args.limit,
                      seed=args.seed, params=args.params, name=args.name, sigma=args.sigma, workers=args.workers,
                      progress=show_progress(not args.no_progress))
    except (FileNotFoundError, ValueError) as e:
        logging.getLogger("salnas.ingest").error("%s", e)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
