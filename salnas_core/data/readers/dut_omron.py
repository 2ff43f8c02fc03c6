"""DUT-OMRON (Yang et al., CVPR 2013): 5168 images (max side 400) with eye fixations.

Source: saliencydetection.net/dut-omron: DUT-OMRON-image/<name>.jpg and
DUT-OMRON-eye-fixations/mat/<name>.mat holding `s`, an Nx3 array [x, y, subject]; the first
row (subject 0) is the image size, not a fixation. Coordinates are 0-based pixel indices (the
data contains 0 values), read as pixel centres.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, first_existing, index_xy_to_rc, list_images, load_mat, mat_var,
                   register_reader)


@register_reader("dut_omron", dataset="dut_omron")
def read_dut_omron(root: Path) -> ReadResult:
    root = Path(root)
    stim = first_existing(root, ("DUT-OMRON-image",), "DUT-OMRON-image/ folder")
    mats = first_existing(root, ("DUT-OMRON-eye-fixations/mat",), "DUT-OMRON-eye-fixations/mat/ folder")
    images = list_images(stim)
    mat_files = {p.stem: p for p in sorted(mats.glob("*.mat"))}
    res = ReadResult()
    for stem in sorted(set(images) | set(mat_files)):
        p = mat_files.get(stem)
        if p is None:
            res.problems.append(Problem(str(images[stem]), "image_without_fixations", f"no {stem}.mat in {mats}"))
            continue
        try:
            s = np.asarray(mat_var(load_mat(p), "s", p), dtype=np.float64)
            if s.ndim != 2 or s.shape[1] != 3:
                raise ValueError(f"{p}: 's' has shape {s.shape}, expected Nx3 [x y subject]")
        except (ValueError, FileNotFoundError) as e:
            res.problems.append(Problem(str(p), "malformed_annotation", str(e)))
            continue
        fx = s[s[:, 2] > 0]
        res.records.append(Record(id=stem, image=images.get(stem), points_rc=index_xy_to_rc(fx[:, 0], fx[:, 1]),
                                  source=str(p), n_subjects=int(len(np.unique(fx[:, 2])))))
    return res
