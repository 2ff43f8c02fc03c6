"""Toronto (Bruce & Tsotsos 2006): 120 colour images (681x511), 20 viewers.

Source: eyetrackingdata.zip from the authors: eyetrackingdata/fixdens/Original Image Set/
<1..120>.jpg and eyetrackingdata/fixdens/origfixdata.mat holding `white`, a 1x120 cell of
binary HxW maps of all viewers' fixations (image i = cell i). ROOT may be the folder holding
eyetrackingdata/, eyetrackingdata/ itself, or fixdens/.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, binary_map_to_rc, first_existing, list_images, load_mat, mat_var,
                   pair_images, register_reader)


@register_reader("toronto", dataset="toronto")
def read_toronto(root: Path) -> ReadResult:
    root = Path(root)
    fixdens = first_existing(root, ("eyetrackingdata/fixdens", "fixdens", "."), "fixdens/ folder")
    mat = first_existing(fixdens, ("origfixdata.mat",), "origfixdata.mat")
    stim = first_existing(fixdens, ("Original Image Set",), "'Original Image Set' folder")
    cells = mat_var(load_mat(mat), "white", mat)
    if not isinstance(cells, np.ndarray) or cells.dtype != object:
        raise ValueError(f"{mat}: 'white' is not a cell array of fixation maps")
    images = list_images(stim)
    res = ReadResult()
    seen = set()
    for i, cell in enumerate(cells.ravel()):
        stem = str(i + 1)
        fix = np.asarray(cell)
        if fix.ndim != 2:
            res.problems.append(Problem(f"{mat} white{{{i + 1}}}", "malformed_annotation",
                                        f"fixation map of shape {fix.shape}, expected 2-D"))
            continue
        seen.add(stem)
        res.records.append(Record(id=stem, image=images.get(stem), points_rc=binary_map_to_rc(fix),
                                  source=f"{mat} white{{{i + 1}}}", size_hw=fix.shape))
    pair_images(res, images, seen, mat)
    return res
