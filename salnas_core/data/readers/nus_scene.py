"""NUS Scene (Liang et al. 2015, 500 SUN2012 images) in its original release layout.

Source: github.com/Yanakz/Scene data/ (as in ../shared/data/nus_scene): stimuli/<001..500>.jpg,
fixations.mat with `fixations`, a 500x12 cell (image x subject slot, some empty) of Nx4 arrays
[y, x, onset_s, duration_s] (y first; MATLAB 1-based), row i belonging to image number i
(001.jpg ... 500.jpg); imgInfo.mat with `imgInfo.size`, 500x2 [height width]. Files are matched to
rows by their number, not their position in the folder: a stray, missing or duplicated file is
reported and shifts nothing; the declared sizes are checked against each image at ingest.
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
    res = ReadResult()
    images = list_images(stimuli, res.problems)
    rows = cells.shape[0]
    # The release's own index: row i is image number i + 1 (001.jpg ... 500.jpg). Files are matched
    # to rows by that number, never by position, so a stray or missing file shifts nothing.
    by_number: dict[int, tuple[str, Path]] = {}
    clashing: set[int] = set()
    for stem, p in images.items():
        n = int(stem) if stem.isascii() and stem.isdigit() else None
        if n is None or not 1 <= n <= rows:
            res.problems.append(Problem(str(p), "image_without_fixations",
                                        f"not an image number 1..{rows} of {mat} (rows follow the numbers "
                                        "001..); ignored"))
            continue
        if n in by_number or n in clashing:
            other = by_number.pop(n, None)
            clashing.add(n)
            res.problems.append(Problem(str(p), "duplicate_id", f"image number {n} is also "
                                        f"{other[1].name if other else 'another file'}; row {n} kept for neither"))
            continue
        by_number[n] = (stem, p)
    if sizes is not None and len(sizes) != rows:
        res.problems.append(Problem(str(info), "count_mismatch", f"{len(sizes)} image sizes for {rows} rows of "
                                    f"{mat}; sizes not checked", "warning"))
        sizes = None
    for i in range(rows):
        if i + 1 in clashing:
            continue
        stem, path = by_number.get(i + 1, (f"{i + 1:03d}", None))
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
        size = tuple(int(v) for v in sizes[i]) if sizes is not None else None
        res.records.append(Record(id=stem, image=path, points_rc=np.concatenate(parts) if parts else np.zeros((0, 2)),
                                  source=f"{mat} row {i + 1}", size_hw=size, n_subjects=n_sub))
    return res
