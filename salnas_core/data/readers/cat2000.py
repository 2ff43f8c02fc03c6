"""CAT2000 (Borji & Itti 2015), official trainSet layout (the testSet has no public fixations).

Source: saliency.mit.edu trainSet.zip: trainSet/Stimuli/<Category>/<NNN>.jpg (1920x1080, 20
categories x 100), trainSet/FIXATIONMAPS/<Category>/<NNN>.jpg, trainSet/FIXATIONLOCS/<Category>/
<NNN>.mat holding `fixLocs`, a binary HxW map of all viewers' fixations. Ids are
"<Category>__<NNN>". Category subfolders such as Output/ are ignored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (Problem, ReadResult, Record, binary_map_to_rc, first_existing, list_images, load_mat, mat_var,
                   register_reader)


@register_reader("cat2000", dataset="cat2000")
def read_cat2000(root: Path) -> ReadResult:
    root = Path(root)
    base = root / "trainSet" if (root / "trainSet").is_dir() else root
    stim = first_existing(base, ("Stimuli",), "Stimuli/ folder")
    locs = first_existing(base, ("FIXATIONLOCS",), "FIXATIONLOCS/ folder")
    res = ReadResult()
    for cat in sorted(p for p in stim.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = list_images(cat)
        mats = {p.stem: p for p in sorted((locs / cat.name).glob("*.mat"))} if (locs / cat.name).is_dir() else {}
        for stem in sorted(set(images) | set(mats)):
            rid = f"{cat.name}__{stem}"
            p = mats.get(stem)
            if p is None:
                res.problems.append(Problem(str(images[stem]), "image_without_fixations",
                                            f"no {cat.name}/{stem}.mat in {locs}"))
                continue
            try:
                fix = np.asarray(mat_var(load_mat(p), "fixLocs", p))
                if fix.ndim != 2:
                    raise ValueError(f"{p}: fixLocs has shape {fix.shape}, expected a 2-D map")
            except (ValueError, FileNotFoundError) as e:
                res.problems.append(Problem(str(p), "malformed_annotation", str(e)))
                continue
            res.records.append(Record(id=rid, image=images.get(stem), points_rc=binary_map_to_rc(fix),
                                      source=str(p), size_hw=fix.shape))
    return res
