"""Pieces shared by the steps: the tracking context, params fingerprints, the ingested dataset."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from salnas_core.errors import UserError
from salnas_core.utils.hashing import sha256_file as file_sha256  # noqa: F401  (the one sha256 helper)
from salnas_core.utils.models import supernet_file  # noqa: F401  (the one model discovery)

log = logging.getLogger(__name__)


def params_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_dataset(data: str | Path) -> Path:
    """One ingested dataset folder (has manifest.json), or a folder holding exactly one."""
    from salnas_core.evaluate.tables import dataset_dirs

    dirs = dataset_dirs(data)
    if not dirs:
        raise FileNotFoundError(f"{data}: no manifest.json here or in a subfolder (not an ingested dataset; "
                                "run `salnas ingest`)")
    if len(dirs) != 1:
        raise UserError(f"{data}: holds {len(dirs)} ingested datasets ({', '.join(d.name for d in dirs)}); "
                         "pass one of them")
    return dirs[0]


@contextlib.contextmanager
def tracking(step: str, params: dict[str, Any], enabled: bool = True, run_name: str | None = None,
             also: Callable[..., None] | None = None
             ) -> Iterator[tuple[Callable[..., None], Callable[[str | Path], None]]]:
    """(log(metrics, step), log_artifact(path)) bound to an MLflow child run, or no-ops when
    tracking is off or absent; `also` (e.g. a JSONL file logger) receives every metric either way."""
    def noop_log(metrics, step=None):
        pass

    def noop_art(path):
        pass

    base = also or noop_log
    if not enabled:
        yield base, noop_art
        return
    try:
        from salnas_core.tracking import mlflow_utils
    except ImportError as e:  # tracking layer absent: the step still runs
        log.warning("MLflow tracking unavailable (%s)", e)
        yield base, noop_art
        return
    with mlflow_utils.start_run(step, params=params, run_name=run_name) as run:
        if run is None:  # tracking switched off (SALNAS_TRACKING=off)
            yield base, noop_art
            return
        import mlflow

        mlog = mlflow_utils.mlflow_logger(run)

        def both(metrics: dict[str, float], step: int | None = None) -> None:
            base(metrics, step)
            mlog(metrics, step)

        def art(path: str | Path) -> None:
            p = Path(path)
            if p.is_dir():
                mlflow.log_artifacts(str(p), artifact_path=p.name)
            elif p.exists():
                mlflow.log_artifact(str(p))

        yield both, art
