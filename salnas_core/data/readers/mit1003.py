"""MIT1003 (Judd et al., ICCV 2009), official release layout.

Source: people.csail.mit.edu/tjudd/WherePeopleLook: ALLSTIMULI/<name>.jpeg (1003 images, max
side 1024) and ALLFIXATIONMAPS/<name>_fixMap.jpg (blurred) + <name>_fixPts.jpg (binary map of
all 15 viewers' fixations, the ground truth the MIT benchmark scores against).
Fixations are taken from <name>_fixPts (.png preferred if present, else .jpg). The raw eye data
(DATA/<subject>/<name>.mat, 240 Hz samples) needs the authors' MATLAB fixation detector and is
not read. fixPts is JPEG-compressed: a point is a connected blob above half the map's maximum,
located at its brightest pixel (so fixations of the same pixel count once, as in the map).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Problem, ReadResult, Record, first_existing, list_images, register_reader


def blobs_to_rc(a: np.ndarray) -> np.ndarray:
    """Peak pixel of each connected bright blob of a (possibly JPEG-blurred) binary map, as pixel centres."""
    from scipy import ndimage

    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.max(initial=0) <= 0:
        return np.zeros((0, 2))
    labels, n = ndimage.label(a > 0.5 * a.max(), structure=np.ones((3, 3)))
    peaks = ndimage.maximum_position(a, labels, index=np.arange(1, n + 1))
    return np.asarray(peaks, dtype=np.float64).reshape(-1, 2) + 0.5


@register_reader("mit1003", dataset="mit1003")
def read_mit1003(root: Path) -> ReadResult:
    from PIL import Image

    root = Path(root)
    stim = first_existing(root, ("ALLSTIMULI",), "ALLSTIMULI/ folder")
    maps = first_existing(root, ("ALLFIXATIONMAPS",), "ALLFIXATIONMAPS/ folder")
    res = ReadResult()
    pts_files = {}
    for p in sorted(maps.iterdir()):
        if p.stem.endswith("_fixPts"):
            stem = p.stem[: -len("_fixPts")]
            if stem not in pts_files or p.suffix.lower() == ".png":
                pts_files[stem] = p
    images = list_images(stim)
    for stem in sorted(set(images) | set(pts_files)):
        p = pts_files.get(stem)
        if p is None:
            res.problems.append(Problem(str(images[stem]), "image_without_fixations", f"no {stem}_fixPts in {maps}"))
            continue
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L"))
        except Exception as e:
            res.problems.append(Problem(str(p), "malformed_annotation", f"unreadable fixation-points image ({e})"))
            continue
        res.records.append(Record(id=stem, image=images.get(stem), points_rc=blobs_to_rc(a), source=str(p),
                                  size_hw=a.shape[:2], n_subjects=15))
    return res
