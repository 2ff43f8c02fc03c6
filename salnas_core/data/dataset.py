"""torch Dataset over an ingested folder (manifest.json), and the loaders the steps use."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..utils.io import read_json
from . import ground_truth as gt
from .transforms import PairedAugment, augment_for, get_normalization


@lru_cache(maxsize=16)
def _manifest_cached(path: str, mtime_ns: int) -> dict:
    return read_json(path)


def load_manifest(root: str | Path) -> dict:
    """manifest.json of an ingested dataset folder, with an error that says what to run if missing."""
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no manifest (not an ingested dataset, or ingest did not finish: "
                                f"run `salnas ingest`)")
    return _manifest_cached(str(path), path.stat().st_mtime_ns)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def split_items(manifest: dict, split: str) -> list[dict]:
    """The manifest's items of `split`; "train" excludes the holdout slice, "holdout" is that slice."""
    held = set((manifest.get("holdout") or {}).get("ids", ()))
    if split == "all":
        return list(manifest["items"])
    if split == "holdout":
        return [it for it in manifest["items"] if it["split"] == "train" and it["id"] in held]
    return [it for it in manifest["items"] if it["split"] == split and it["id"] not in held]


class SaliencyDataset(Dataset):
    """Items of one split: {"image": (3,H,W) normalised, "density": (1,H,W) sums to 1,
    "fixations": (1,H,W) binary, "id": str}.

    `size` (H, W) other than the ingested working size resizes the image (bilinear), maps the
    fixation coordinates and recomputes the density with the sigma scaled to that size.
    `split` may be "train" (without the holdout slice), "holdout" (the slice of the training split
    that model selection scores on: manifest `holdout`, data.splits.holdout_ids), "val", "test" or
    "all".
    """

    def __init__(self, root: str | Path, split: str = "train", normalization: str = "imagenet",
                 augment: bool | PairedAugment = False, size: tuple[int, int] | None = None,
                 seed: int | None = None):
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        self.items = split_items(self.manifest, split)
        if not self.items:
            if split == "holdout":
                raise ValueError(f"{self.root}/manifest.json: no holdout slice of the training split (ingested "
                                 "with `ingest.holdout: 0` or before it existed): re-run `salnas ingest`")
            have = sorted({it["split"] for it in self.manifest["items"]})
            raise ValueError(f"{self.root}: split {split!r} is empty (splits present: {have})")
        self.split = split
        self.normalize = get_normalization(normalization)
        # True: the dataset's own training augmentation (transforms.DATASET_AUGMENT)
        self.augment = augment_for(self.manifest.get("dataset")) if augment is True else (augment or None)
        self.working_size = tuple(self.manifest["working_size"])
        self.size = tuple(size) if size else self.working_size
        self.sigma = float(self.manifest["sigma_px"])
        if self.size != self.working_size:
            self.sigma = gt.scale_sigma(self.sigma, self.working_size, self.size)
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> list[str]:
        return [it["id"] for it in self.items]

    def _rng(self) -> np.random.Generator:
        if self._gen is not None:
            return np.random.default_rng(int(torch.randint(2**62, (), generator=self._gen)))
        # torch's global RNG differs per DataLoader worker and follows torch.manual_seed
        return np.random.default_rng(int(torch.randint(2**62, ())))

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        rgb = _load_rgb(self.root / it["image"])
        pts = np.load(self.root / it["fixations"], allow_pickle=False)
        if self.size == self.working_size:
            dens = np.load(self.root / it["density"], allow_pickle=False)
        else:
            from PIL import Image

            rgb = np.asarray(Image.fromarray(rgb).resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR))
            pts = gt.resize_points(pts, self.working_size, self.size)
            dens = gt.density_map(pts, self.size, self.sigma)
        # per-item work stays in numpy (single-threaded); tensors only at the end
        img = rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
        dens = dens[None].astype(np.float32, copy=False)
        fix = gt.fixation_map(pts, self.size)[None]
        if self.augment is not None:
            img, dens, fix = self.augment(img, dens, fix, self._rng())
        return {"image": torch.from_numpy(np.ascontiguousarray(self.normalize(img))),
                "density": torch.from_numpy(np.ascontiguousarray(dens)),
                "fixations": torch.from_numpy(np.ascontiguousarray(fix)), "id": it["id"]}


def make_loader(root: str | Path, split: str, batch_size: int, normalization: str = "imagenet",
                augment: bool = False, shuffle: bool | None = None, num_workers: int = 0,
                limit: int | None = None, size: tuple[int, int] | None = None, seed: int | None = None,
                drop_last: bool = False) -> DataLoader:
    """DataLoader over a split; shuffles the train split by default; `limit` keeps the first N items."""
    ds: Dataset = SaliencyDataset(root, split, normalization=normalization, augment=augment, size=size)
    if limit is not None:
        ds = Subset(ds, list(range(min(int(limit), len(ds)))))
    if shuffle is None:
        shuffle = split == "train"
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=gen,
                      drop_last=drop_last, persistent_workers=num_workers > 0)


def find_item(root: str | Path, item: dict | str) -> dict:
    if isinstance(item, dict):
        return item
    for it in load_manifest(root)["items"]:
        if it["id"] == item:
            return it
    raise KeyError(f"{root}: no item {item!r} in manifest")


def load_original_ground_truth(root: str | Path, item: dict | str) -> tuple[np.ndarray, np.ndarray]:
    """(fixation_map, density) float32 (h, w) at the item's original image size.

    The density uses the dataset's sigma scaled to that size (ground_truth.scale_sigma), as the
    benchmarks compute ground truth at the stimulus resolution.
    """
    man = load_manifest(root)
    it = find_item(root, item)
    shape = tuple(it["orig_size"])
    pts = np.load(Path(root) / it["orig_fixations"], allow_pickle=False)
    sigma = gt.scale_sigma(man["sigma_ref_px"], tuple(man["sigma_ref_size"]), shape)
    return gt.fixation_map(pts, shape), gt.density_map(pts, shape, sigma)
