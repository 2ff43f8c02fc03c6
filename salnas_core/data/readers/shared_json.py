"""The common `fixations.json` schema of ../shared/data (OSIE, NUS Scene) and of synthetic data.

Layout: ROOT/fixations.json + the images it names (relative paths, e.g. stimuli/1001.jpg).
Schema: {"dataset", "coordinates", "n_images", "n_fixations", "images": [{"file", "width",
"height", "subjects": [{"subject", "x": [...], "y": [...], "dur_ms": [...]}]}]}; x = column,
y = row, MATLAB 1-based continuous pixels of the stored image. Optional top-level keys written
by salnas_core.data.synthetic: "synthetic": true, "sigma_px", "sigma_ref_size": [h, w].
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...utils.io import read_json
from .base import Problem, ReadResult, Record, list_images, matlab_xy_to_rc, pair_images, register_reader


@register_reader("shared_json")
def read_shared_json(root: Path) -> ReadResult:
    root = Path(root)
    path = root / "fixations.json"
    data = read_json(path)  # names the file on missing/malformed JSON
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path}: expected an object with an 'images' list (the fixations.json schema)")
    res = ReadResult(meta={k: data[k] for k in ("dataset", "synthetic", "sigma_px", "sigma_ref_size") if k in data})
    seen: set[str] = set()
    folders: set[Path] = set()
    root_norm = os.path.normpath(os.path.abspath(root))
    for i, entry in enumerate(data["images"]):
        where = f"{path} images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"].strip():
            res.problems.append(Problem(where, "malformed_annotation", "entry has no 'file' string"))
            continue
        rel = entry["file"]
        # the path stays inside the dataset folder as written (no absolute paths, no '..' out of it);
        # symlinks inside the folder are followed as usual (DVC checkouts use them)
        img_norm = os.path.normpath(os.path.join(root_norm, rel))
        if os.path.isabs(rel) or "\0" in rel or os.path.commonpath([root_norm, img_norm]) != root_norm:
            res.problems.append(Problem(f"{where} ({rel})", "path_outside_dataset",
                                        f"image path leaves the dataset folder {root}; entry skipped"))
            continue
        img = Path(img_norm)
        folders.add(img.parent)
        stem = img.stem
        if stem in seen:
            res.problems.append(Problem(where, "duplicate_annotation", f"image {rel} listed twice; second entry ignored"))
            continue
        seen.add(stem)
        try:
            pts, n_sub = _points(entry)
            size = _declared_size(entry)
        except (TypeError, ValueError, KeyError) as e:
            res.problems.append(Problem(f"{where} ({rel})", "malformed_annotation", str(e)))
            continue
        res.records.append(Record(id=stem, image=img if img.is_file() else None, points_rc=pts,
                                  source=str(path), size_hw=size, n_subjects=n_sub))
    for folder in sorted(folders):
        pair_images(res, list_images(folder, res.problems), seen, path)
    return res


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _declared_size(entry: dict) -> tuple[int, int] | None:
    """(height, width) if the entry declares both; wrong types are an error, not an unchecked size."""
    h, w = entry.get("height"), entry.get("width")
    if h is None and w is None:
        return None
    for key, v in (("height", h), ("width", w)):
        if not (_is_number(v) and float(v).is_integer() and v > 0):
            raise TypeError(f"'{key}' must be a positive integer, got {v!r}")
    return int(h), int(w)


def _points(entry: dict) -> tuple[np.ndarray, int]:
    subjects = entry.get("subjects", [])
    if not isinstance(subjects, list):
        raise TypeError("'subjects' is not a list")
    xs: list = []
    ys: list = []
    for k, s in enumerate(subjects):
        if not isinstance(s, dict):
            raise TypeError(f"subject {k}: not an object")
        if "x" not in s or "y" not in s:
            raise KeyError(f"subject {k}: no 'x' or 'y' list")
        x, y = s["x"], s["y"]
        if not isinstance(x, list) or not isinstance(y, list):
            raise TypeError(f"subject {k}: 'x' and 'y' must be lists of numbers")
        if len(x) != len(y):
            raise ValueError(f"subject {k}: x and y have different lengths ({len(x)} vs {len(y)})")
        for axis, vals in (("x", x), ("y", y)):
            bad = next((j for j, v in enumerate(vals) if not _is_number(v)), None)
            if bad is not None:
                raise TypeError(f"subject {k}: {axis}[{bad}] is {vals[bad]!r}, not a number")
        xs.extend(x)
        ys.extend(y)
    return matlab_xy_to_rc(xs, ys), len(subjects)
