"""OSIE (Xu et al., JoV 2014) in its original release layout.

Source: github.com/NUS-VIP/predicting-human-gaze-beyond-pixels, folder data/:
  stimuli/<1001..1700>.jpg (800x600) and eye/fixations.mat (also accepted: ROOT/fixations.mat,
  as in ../shared/data/osie). fixations.mat holds `fixations`, a 700x1 cell of structs
  {img: '1001.jpg', subjects: 15x1 cell of structs {fix_x, fix_y, fix_duration}}; fix_x/fix_y
  are MATLAB 1-based pixel coordinates. FiWI (same lab) uses the same structure (see fiwi.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, first_existing, list_images, load_mat, mat_str, mat_struct, mat_var,
                   matlab_xy_to_rc, pair_images, register_reader)


def read_nus_struct_mat(mat_path: Path, stimuli: Path) -> ReadResult:
    """The NUS-VIP `fixations` cell of {img, subjects{fix_x, fix_y, ...}} structs."""
    m = load_mat(mat_path)
    cells = mat_var(m, "fixations", mat_path)
    if not isinstance(cells, np.ndarray) or cells.dtype != object or cells.size == 0:
        raise ValueError(f"{mat_path}: 'fixations' is not a non-empty cell array")
    res = ReadResult()
    images = list_images(stimuli)
    seen: set[str] = set()
    for i, cell in enumerate(cells.ravel()):
        where = f"{mat_path} fixations{{{i + 1}}}"
        try:
            e = mat_struct(cell)
            name = mat_str(e["img"])
            subjects = e["subjects"]
            parts = []
            subs = subjects.ravel() if isinstance(subjects, np.ndarray) else []
            for s in subs:
                s = mat_struct(s)
                if isinstance(s, np.ndarray) and s.size == 0:
                    continue
                parts.append(matlab_xy_to_rc(s["fix_x"], s["fix_y"]))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            res.problems.append(Problem(where, "malformed_annotation", f"unexpected structure ({err})"))
            continue
        if not name:
            res.problems.append(Problem(where, "malformed_annotation", "empty image name"))
            continue
        stem = Path(name).stem
        if stem in seen:
            res.problems.append(Problem(where, "duplicate_annotation", f"image {name} listed twice; ignored"))
            continue
        seen.add(stem)
        pts = np.concatenate(parts) if parts else np.zeros((0, 2))
        res.records.append(Record(id=stem, image=images.get(stem), points_rc=pts, source=str(mat_path),
                                  n_subjects=len(parts)))
    pair_images(res, images, seen, mat_path)
    return res


@register_reader("osie", dataset="osie")
def read_osie(root: Path) -> ReadResult:
    root = Path(root)
    mat = first_existing(root, ("eye/fixations.mat", "fixations.mat", "data/eye/fixations.mat"), "OSIE fixations.mat")
    stimuli = first_existing(root, ("stimuli", "data/stimuli"), "stimuli/ folder")
    return read_nus_struct_mat(mat, stimuli)
