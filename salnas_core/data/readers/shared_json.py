"""The common `fixations.json` schema of ../shared/data (OSIE, NUS Scene) and of synthetic data.

Layout: ROOT/fixations.json + the images it names (relative paths, e.g. stimuli/1001.jpg).
Schema: {"dataset", "coordinates", "n_images", "n_fixations", "images": [{"file", "width",
"height", "subjects": [{"subject", "x": [...], "y": [...], "dur_ms": [...]}]}]}; x = column,
y = row, MATLAB 1-based continuous pixels of the stored image. Optional top-level keys written
by salnas_core.data.synthetic: "synthetic": true, "sigma_px", "sigma_ref_size": [h, w].
"""
from __future__ import annotations

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
    for i, entry in enumerate(data["images"]):
        where = f"{path} images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            res.problems.append(Problem(where, "malformed_annotation", "entry has no 'file' string"))
            continue
        rel = entry["file"]
        img = root / rel
        folders.add(img.parent)
        stem = Path(rel).stem
        if stem in seen:
            res.problems.append(Problem(where, "duplicate_annotation", f"image {rel} listed twice; second entry ignored"))
            continue
        seen.add(stem)
        try:
            pts, n_sub = _points(entry)
        except (TypeError, ValueError, KeyError) as e:
            res.problems.append(Problem(f"{where} ({rel})", "malformed_annotation", f"bad subjects/x/y: {e}"))
            continue
        size = None
        if isinstance(entry.get("height"), int) and isinstance(entry.get("width"), int):
            size = (entry["height"], entry["width"])
        res.records.append(Record(id=stem, image=img if img.is_file() else None, points_rc=pts,
                                  source=str(path), size_hw=size, n_subjects=n_sub))
    for folder in sorted(folders):
        pair_images(res, list_images(folder), seen, path)
    return res


def _points(entry: dict) -> tuple[np.ndarray, int]:
    subjects = entry.get("subjects", [])
    if not isinstance(subjects, list):
        raise TypeError("'subjects' is not a list")
    xs: list = []
    ys: list = []
    for k, s in enumerate(subjects):
        x, y = s["x"], s["y"]
        if len(x) != len(y):
            raise ValueError(f"subject {k}: x and y have different lengths ({len(x)} vs {len(y)})")
        xs.extend(x)
        ys.extend(y)
    return matlab_xy_to_rc(xs, ys), len(subjects)
