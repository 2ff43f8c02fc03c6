"""Per-encoder normalisation and paired augmentation (numpy + torch; torchvision is not used).

NORMALIZATIONS[name](x) maps a float image in [0, 1], (3, H, W) or (B, 3, H, W), torch tensor or
numpy array, to what the encoder expects. Paired augmentation flips image, density and fixation map together (the maps
stay aligned with the pixels); colour jitter touches the image only. Which augmentation a dataset
trains with is one table, DATASET_AUGMENT (the SalNAS authors': jitter on SALICON only).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std per channel, for x in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if isinstance(x, np.ndarray):
            shape = (3, 1, 1) if x.ndim == 3 else (1, 3, 1, 1)
            mean = np.asarray(self.mean, np.float32).reshape(shape)
            return ((x - mean) * (1.0 / np.asarray(self.std, np.float32)).reshape(shape)).astype(np.float32)
        shape = (3, 1, 1) if x.dim() == 3 else (1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        shape = (3, 1, 1) if x.dim() == 3 else (1, 3, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return x * std + mean


NORMALIZATIONS: dict[str, Normalize] = {
    # torchvision / timm ImageNet statistics (the `salnas` space's EfficientNet-style encoders)
    "imagenet": Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # EfficientNet-Lite (TF-Lite) convention: (x*255 - 127) / 128
    "lite": Normalize((127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3),
    # identity, for pictures and debugging
    "none": Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


def get_normalization(name: str) -> Normalize:
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; known: {', '.join(sorted(NORMALIZATIONS))}")
    return NORMALIZATIONS[name]


def _gray(x: np.ndarray) -> np.ndarray:
    # ITU-R 601 luma, as PIL and torchvision use
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


# Per-item augmentation runs in numpy on (C, H, W) float32 arrays: it is single-threaded, so
# it does not fight the training loop for torch's intra-op threads (8x slower on 2 busy cores).

def _shift_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue of an RGB (3, H, W) image in [0, 1] by `shift` turns (torchvision's
    adjust_hue: RGB -> HSV, h + shift mod 1, back to RGB)."""
    r, g, b = img
    v = img.max(0)
    delta = v - img.min(0)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0)
    d = np.where(delta > 0, delta, 1)
    rc, gc, bc = (v - r) / d, (v - g) / d, (v - b) / d
    h = np.where(v == r, bc - gc, np.where(v == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    h = (h + shift) % 1.0 * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    out = np.stack([np.choose(i, [v, q, p, p, t, v]), np.choose(i, [t, v, v, q, p, p]),
                    np.choose(i, [p, p, t, v, v, q])])
    return out.astype(np.float32, copy=False)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - v, 1 + v] and a hue rotation in
    [-hue, hue] turns, applied in random order (torchvision's ColorJitter)."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ops = [(name, 1.0 + rng.uniform(-v, v)) for name, v in
               (("b", self.brightness), ("c", self.contrast), ("s", self.saturation)) if v > 0]
        if self.hue > 0:
            ops.append(("h", rng.uniform(-self.hue, self.hue)))
        for i in rng.permutation(len(ops)):
            name, f = ops[i]
            if name == "b":
                img = img * np.float32(f)
            elif name == "c":
                m = np.float32(_gray(img).mean())
                img = (img - m) * np.float32(f) + m
            elif name == "s":
                g = _gray(img)
                img = (img - g) * np.float32(f) + g
            else:
                img = _shift_hue(img, f)
            np.clip(img, 0.0, 1.0, out=img)
        return img.astype(np.float32, copy=False)


@dataclass(frozen=True)
class PairedAugment:
    """Horizontal flip (same for image, density, fixations) then colour jitter (image only).

    Arrays are (C, H, W) numpy; the flip happens on the last axis of all three together.
    """

    hflip_p: float = 0.5
    jitter: ColorJitter | None = None

    def __call__(self, image: np.ndarray, density: np.ndarray, fixations: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.hflip_p > 0 and rng.random() < self.hflip_p:
            image, density, fixations = image[..., ::-1], density[..., ::-1], fixations[..., ::-1]
        if self.jitter is not None:
            image = self.jitter(np.ascontiguousarray(image), rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(density), np.ascontiguousarray(fixations)


# Training augmentation per dataset, as the SalNAS authors' data.py: SALICON gets flips and
# ColorJitter(0.4, 0.4, 0.4, hue=0.2) (L97-118), every other dataset flips only (L237-247 etc.).
DATASET_AUGMENT: dict[str, PairedAugment] = {
    "salicon": PairedAugment(hflip_p=0.5, jitter=ColorJitter(0.4, 0.4, 0.4, hue=0.2)),
}
DEFAULT_AUGMENT = PairedAugment(hflip_p=0.5, jitter=None)


def augment_for(dataset: str | None) -> PairedAugment:
    """The training augmentation of `dataset` (its ingested name): DATASET_AUGMENT, else flips only."""
    return DATASET_AUGMENT.get(str(dataset or "").lower(), DEFAULT_AUGMENT)
