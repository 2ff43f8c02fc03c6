"""PASCAL-S (Li et al., CVPR 2014): 850 PASCAL VOC images with eye fixations of 8 viewers.

Source: the salObj release (cbi.gatech.edu/salobj): datasets/imgs/pascal/<1..850>.jpg and
datasets/fixations/pascalFix.mat holding `fixCell`, a 1x850 cell of Nx3 arrays [y, x, subject]
(MATLAB 1-based). The released file is MATLAB v7.3 (HDF5): base.load_mat reads it with h5py into
the same cell array scipy gives for v5/v7 files. ROOT may be the folder holding datasets/ or datasets/ itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, first_existing, list_images, load_mat, mat_var, matlab_xy_to_rc,
                   pair_images, register_reader)


def _cells(mat: Path) -> list[np.ndarray]:
    m = load_mat(mat)  # v7.3 (the release) and v5/v7 give the same cell array
    return [np.asarray(c) for c in np.asarray(mat_var(m, "fixCell", mat)).ravel()]


@register_reader("pascal_s", dataset="pascal_s")
def read_pascal_s(root: Path) -> ReadResult:
    root = Path(root)
    base = root / "datasets" if (root / "datasets").is_dir() else root
    stim = first_existing(base, ("imgs/pascal",), "imgs/pascal/ folder")
    mat = first_existing(base, ("fixations/pascalFix.mat",), "fixations/pascalFix.mat")
    images = list_images(stim)
    res = ReadResult()
    seen = set()
    for i, a in enumerate(_cells(mat)):
        stem = str(i + 1)
        a = np.asarray(a, dtype=np.float64)
        if a.size and (a.ndim != 2 or a.shape[1] != 3):
            res.problems.append(Problem(f"{mat} fixCell{{{i + 1}}}", "malformed_annotation",
                                        f"array of shape {a.shape}, expected Nx3 [y x subject]"))
            continue
        a = a.reshape(-1, 3)
        seen.add(stem)
        res.records.append(Record(id=stem, image=images.get(stem), points_rc=matlab_xy_to_rc(a[:, 1], a[:, 0]),
                                  source=f"{mat} fixCell{{{i + 1}}}", n_subjects=int(len(np.unique(a[:, 2])))))
    pair_images(res, images, seen, mat)
    return res
