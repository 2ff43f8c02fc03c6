"""NUS Scene (Liang et al. 2015, 500 SUN2012 images) in its original release layout.

Source: github.com/Yanakz/Scene data/ (as in ../shared/data/nus_scene): stimuli/<001..500>.jpg,
fixations.mat with `fixations`, a 500x12 cell (image x subject slot, some empty) of Nx4 arrays
[y, x, onset_s, duration_s] (y first; MATLAB 1-based), rows following the sorted file names;
imgInfo.mat with `imgInfo.size`, 500x2 [height width].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, first_existing, list_images, load_mat, mat_struct, mat_var,
                   matlab_xy_to_rc, register_reader)


@register_reader("nus_scene", dataset="nus_scene")
def read_nus_scene(root: Path) -> ReadResult:
    root = Path(root)
    mat = first_existing(root, ("fixations.mat", "tidy/fixations.mat", "data/tidy/fixations.mat"), "Scene fixations.mat")
    stimuli = first_existing(root, ("stimuli", "data/stimuli"), "stimuli/ folder")
    cells = mat_var(load_mat(mat), "fixations", mat)
    if not isinstance(cells, np.ndarray) or cells.dtype != object or cells.ndim != 2:
        raise ValueError(f"{mat}: 'fixations' is not a 2-D cell array (images x subjects)")
    sizes = None
    info = mat.parent / "imgInfo.mat"
    if info.exists():
        try:
            sizes = np.asarray(mat_struct(mat_var(load_mat(info), "imgInfo", info))["size"]).reshape(-1, 2)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{info}: unexpected imgInfo structure ({e})") from None
    names = list(list_images(stimuli).items())
    res = ReadResult()
    if len(names) != cells.shape[0]:
        res.problems.append(Problem(str(mat), "count_mismatch", f"{cells.shape[0]} rows of fixations but "
                                    f"{len(names)} images in {stimuli}; rows matched to sorted names"))
    for i in range(max(cells.shape[0], len(names))):
        stem, path = names[i] if i < len(names) else (f"row{i + 1:03d}", None)
        if i >= cells.shape[0]:
            res.problems.append(Problem(str(path), "image_without_fixations", f"no row for this image in {mat}"))
            continue
        parts, n_sub = [], 0
        try:
            for c in cells[i]:
                a = np.asarray(c, dtype=np.float64)
                if a.size == 0:
                    continue
                if a.ndim != 2 or a.shape[1] < 2:
                    raise ValueError(f"subject array of shape {a.shape}, expected Nx4 [y x onset dur]")
                parts.append(matlab_xy_to_rc(a[:, 1], a[:, 0]))
                n_sub += 1
        except (TypeError, ValueError) as e:
            res.problems.append(Problem(f"{mat} fixations{{{i + 1},:}}", "malformed_annotation", str(e)))
            continue
        size = tuple(int(v) for v in sizes[i]) if sizes is not None and i < len(sizes) else None
        res.records.append(Record(id=stem, image=path, points_rc=np.concatenate(parts) if parts else np.zeros((0, 2)),
                                  source=str(mat), size_hw=size, n_subjects=n_sub))
    return res
