"""Finding model files in run folders, the one home.

- a distill folder holds <variant>/model.pt (and <variant>/extracted.pt): `variant_models`;
- a run folder or an artifact download holds one model.pt somewhere: `model_file_in`;
- a train-supernet run folder holds supernet.pt (final) or best.pt (best epoch): `supernet_file`;
- a variant name found under a runs folder: `named_variant` (RUNS/distill/<name>/model.pt).
"""
from __future__ import annotations

import os
from pathlib import Path

MODEL_FILE = "model.pt"
EXTRACTED_FILE = "extracted.pt"
SUPERNET_FILES = ("supernet.pt", "best.pt")


class AmbiguousModelError(FileNotFoundError):
    """A folder holds several model files where one was expected."""


def variant_models(folder: str | os.PathLike, name: str = MODEL_FILE) -> dict[str, Path]:
    """{variant: FOLDER/<variant>/model.pt} in name order; {} when there are none."""
    root = Path(folder)
    if not root.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(root.glob(f"*/{name}")) if p.is_file()}


def model_file_in(folder: str | os.PathLike) -> Path | None:
    """FOLDER/model.pt, else the one model.pt below it; None when there is none; raises
    AmbiguousModelError when there are several."""
    folder = Path(folder)
    direct = folder / MODEL_FILE
    if direct.is_file():
        return direct
    found = sorted(folder.rglob(MODEL_FILE))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise AmbiguousModelError(f"{folder}: holds several {MODEL_FILE} files "
                                  f"({', '.join(map(str, found[:5]))}); name one")
    return None


def supernet_file(path: str | os.PathLike) -> Path:
    """RUN_DIR/supernet.pt (final), else RUN_DIR/best.pt, or the file itself."""
    path = Path(path)
    if path.is_file():
        return path
    for name in SUPERNET_FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no supernet.pt or best.pt (run `salnas train-supernet --out {path}`)")


def named_variant(runs: str | os.PathLike, name: str) -> Path:
    """Where a distilled variant called `name` lives under a runs folder (may not exist)."""
    return Path(runs) / "distill" / name / MODEL_FILE
