"""Step `salnas snapshot`: the raw data the pipeline versions (DVC stage `snapshot`, out data/raw).

`data.dataset: osie | nus_scene` copies the files ingest reads from the shared eye-tracking data
(`$SALNAS_SHARED_DATA`, else `../shared/data` beside the working directory) into OUT/<dataset>/;
`data.dataset: synthetic` generates a dataset with objects and fixations drawn from a known
density. `data.cross_datasets` (e.g. [nus_scene]) are copied beside it: evaluate scores the
models on them too, never trained on (skipped, with a warning, where the shared data is absent).
The same inputs give the same bytes, so the snapshot's DVC hash (in dvc.lock) is a stable data
version. OUT holds exactly those datasets afterwards.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

SHARED_ENV = "SALNAS_SHARED_DATA"
SHARED_DATASETS = ("osie", "nus_scene")
SYNTHETIC = "synthetic"


def shared_root() -> Path:
    """Where the shared eye-tracking data lives: $SALNAS_SHARED_DATA, else ../shared/data beside the working root."""
    from salnas_core.utils.root import work_root

    return Path(os.environ.get(SHARED_ENV) or work_root().parent / "shared" / "data")


def shared_source(dataset: str) -> Path | None:
    """The shared dataset folder when it holds a fixations.json and stimuli/, else None."""
    src = shared_root() / dataset
    return src if (src / "fixations.json").is_file() and (src / "stimuli").is_dir() else None


def copy_shared(src: Path, dest: Path) -> dict[str, Any]:
    """Copy the files ingest reads (fixations.json, the images it lists, LICENSE) into `dest`,
    whole or not at all."""
    from salnas_core.utils.io import read_json, replace_dir

    meta = read_json(src / "fixations.json")
    images = sorted(meta.get("images") or [], key=lambda e: e["file"])
    if not images:
        raise UserError(f"{src / 'fixations.json'}: no images listed")
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(src / "fixations.json", tmp / "fixations.json")
        for e in images:
            target = tmp / e["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / e["file"], target)
        for extra in ("LICENSE", "LICENSE.txt"):
            if (src / extra).is_file():
                shutil.copyfile(src / extra, tmp / extra)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dataset": dest.name, "source": str(src), "images": len(images), "synthetic": False}


def generate(dest: Path, n_images: int, seed: int = 0) -> dict[str, Any]:
    from salnas_core.data import synthetic
    from salnas_core.utils.io import replace_dir

    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        synthetic.generate(tmp, n_images=n_images, seed=seed)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dataset": dest.name, "source": f"synthetic.generate(n_images={n_images}, seed={seed})",
            "images": n_images, "synthetic": True}


def run(out: str | os.PathLike, *, dataset: str | None = None, params_path: str | None = None,
        preset: str | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Write the raw snapshot of params `data.dataset` into OUT/<dataset>/, and each dataset of
    `data.cross_datasets` (evaluated, never trained on) into OUT/<name>/."""
    from salnas_core.utils.params import step_params

    p = step_params("data", preset, params_path, overrides)
    dataset = dataset or p["dataset"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = _snapshot_training_set(out, dataset, p)
    info["cross"] = []
    for name in p.get("cross_datasets") or []:
        src = shared_source(name) if name in SHARED_DATASETS and name != info["dataset"] else None
        if src is None:  # the user without ../shared/data still runs the job: said, not fatal
            log.warning("snapshot: cross-dataset %r skipped (%s)", name, "it is the training set"
                        if name == info["dataset"] else f"not found under {shared_root()}")
            continue
        copy_shared(src, out / name)
        info["cross"].append(name)
    keep = {info["dataset"], *info["cross"]}
    for other in out.iterdir():  # OUT holds exactly the snapshot the pipeline reads
        if other.name not in keep:
            shutil.rmtree(other) if other.is_dir() else other.unlink()
    return info


def _snapshot_training_set(out: Path, dataset: str, p: dict[str, Any]) -> dict[str, Any]:
    if dataset == SYNTHETIC:
        n = int(p.get("synthetic_images") or 160)
        log.warning("snapshot: GENERATING a synthetic dataset (%d images with objects and fixations drawn from a "
                    "known density), not real eye-tracking data", n)
        info = generate(out / SYNTHETIC, n)
    elif dataset in SHARED_DATASETS:
        src = shared_source(dataset)
        if src is None:
            raise UserError(f"{shared_root() / dataset}: shared eye-tracking data not found; run `salnas main` "
                            f"(it generates a dataset when the real one is absent), set {SHARED_ENV}, or "
                            f"`dvc exp run -S data.dataset=synthetic`")
        log.info("snapshot: real eye-tracking data from %s", src)
        info = copy_shared(src, out / dataset)
    else:
        raise UserError(f"data.dataset: unknown dataset {dataset!r} (have: {', '.join(SHARED_DATASETS)}, {SYNTHETIC})")
    return info


def summarize(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=1)
