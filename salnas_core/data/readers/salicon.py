"""SALICON (Jiang et al., CVPR 2015), official release layout, train and val (test has no public fixations).

Source: salicon.net / LSUN challenge downloads:
  images/{train,val,test}/COCO_<split>2014_<12 digits>.jpg (640x480)
  maps/{train,val}/*.png (the official blurred maps; not needed, we rebuild them from points)
  fixations: either the 2017 per-image .mat files fixations/{train,val}/<name>.mat with
    `image` (name), `resolution` [480 640] ([h w]), `gaze` (1xK struct: `location` mouse samples
    Nx2 [x y], `timestamp`, `fixations` Mx2 [x y], MATLAB 1-based),
  or the 2015 COCO-style JSON fixations_{train,val}2014.json: {"images": [{"id", "file_name",
    "width", "height"}], "annotations": [{"image_id", "worker_id", "fixations": [[row, col], ...]}]}
    (1-based integer [row, col], as the SALICON API's buildFixMap indexes them).
The official train/val split is kept.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...utils.io import read_json
from .base import (Problem, ReadResult, Record, list_images, load_mat, mat_str, mat_var, matlab_xy_to_rc,
                   pair_images, register_reader)

SPLITS = ("train", "val")


@register_reader("salicon", dataset="salicon")
def read_salicon(root: Path) -> ReadResult:
    root = Path(root)
    if not (root / "images").is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder (SALICON layout: images/{{train,val,test}})")
    res = ReadResult()
    found = False
    for split in SPLITS:
        images = list_images(root / "images" / split)
        mat_dir = root / "fixations" / split
        js = root / f"fixations_{split}2014.json"
        if mat_dir.is_dir():
            found = True
            seen = _read_mats(res, mat_dir, images, split)
        elif js.exists():
            found = True
            seen = _read_json(res, js, images, split, root)
        else:
            continue
        pair_images(res, images, seen, mat_dir if mat_dir.is_dir() else js)
    if not found:
        raise FileNotFoundError(f"{root}: no SALICON fixations (fixations/{{train,val}}/*.mat or "
                                "fixations_{train,val}2014.json)")
    res.meta["test_images_without_public_fixations"] = len(list_images(root / "images" / "test"))
    return res


def _read_mats(res: ReadResult, mat_dir: Path, images: dict[str, Path], split: str) -> set[str]:
    seen: set[str] = set()
    for p in sorted(mat_dir.glob("*.mat")):
        try:
            m = load_mat(p)
            gaze = mat_var(m, "gaze", p)
            name = mat_str(m["image"]) if "image" in m else p.stem
            size = None
            if "resolution" in m:
                r = np.asarray(m["resolution"]).ravel()
                size = (int(r[0]), int(r[1]))
            parts = []
            for g in np.asarray(gaze).ravel():
                fx = np.asarray(g["fixations"], dtype=np.float64)
                if fx.size == 0:
                    continue
                fx = fx.reshape(-1, 2)
                parts.append(matlab_xy_to_rc(fx[:, 0], fx[:, 1]))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            msg = str(e) if str(e).startswith(str(p)) else f"{p}: unexpected structure ({e})"
            res.problems.append(Problem(str(p), "malformed_annotation", msg))
            continue
        stem = Path(name).stem or p.stem
        seen.add(stem)
        res.records.append(Record(id=stem, image=images.get(stem), split=split, source=str(p), size_hw=size,
                                  points_rc=np.concatenate(parts) if parts else np.zeros((0, 2)),
                                  n_subjects=len(parts)))
    return seen


def _read_json(res: ReadResult, js: Path, images: dict[str, Path], split: str, root: Path) -> set[str]:
    data = read_json(js)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{js}: expected a COCO-style object with 'images' and 'annotations'")
    by_id: dict = {}
    for im in data["images"]:
        by_id[im["id"]] = {"stem": Path(im["file_name"]).stem, "size": (int(im["height"]), int(im["width"])),
                           "parts": [], "workers": set()}
    for k, ann in enumerate(data["annotations"]):
        e = by_id.get(ann.get("image_id"))
        if e is None:
            res.problems.append(Problem(f"{js} annotations[{k}]", "malformed_annotation",
                                        f"image_id {ann.get('image_id')!r} not in 'images'"))
            continue
        fx = np.asarray(ann.get("fixations", []), dtype=np.float64).reshape(-1, 2)
        # [row, col], 1-based integers -> continuous pixel centres
        e["parts"].append(np.stack([fx[:, 0] - 0.5, fx[:, 1] - 0.5], axis=1))
        e["workers"].add(ann.get("worker_id"))
    for e in by_id.values():
        res.records.append(Record(id=e["stem"], image=images.get(e["stem"]), split=split, source=str(js),
                                  size_hw=e["size"], n_subjects=len(e["workers"]),
                                  points_rc=np.concatenate(e["parts"]) if e["parts"] else np.zeros((0, 2))))
    return {e["stem"] for e in by_id.values()}
