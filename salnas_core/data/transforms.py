"""Per-encoder normalisation and paired augmentation (torch only; torchvision is not used).

NORMALIZATIONS[name](x) maps a float image in [0, 1], (3, H, W) or (B, 3, H, W), to what the
encoder expects. Paired augmentation flips image, density and fixation map together (the maps
stay aligned with the pixels); colour jitter touches the image only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Normalize:
    """(x - mean) / std per channel, for x in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
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


def _gray(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601 luma, as PIL and torchvision use
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 - v, 1 + v], applied in random order."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(self, img: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        ops = []
        for name, v in (("b", self.brightness), ("c", self.contrast), ("s", self.saturation)):
            if v > 0:
                f = 1.0 + (torch.rand((), generator=gen).item() * 2 - 1) * v
                ops.append((name, f))
        order = torch.randperm(len(ops), generator=gen).tolist()
        for i in order:
            name, f = ops[i]
            if name == "b":
                img = img * f
            elif name == "c":
                img = (img - _gray(img).mean()) * f + _gray(img).mean()
            else:
                g = _gray(img)
                img = (img - g) * f + g
            img = img.clamp(0.0, 1.0)
        return img


@dataclass(frozen=True)
class PairedAugment:
    """Horizontal flip (same for image, density, fixations) then colour jitter (image only)."""

    hflip_p: float = 0.5
    jitter: ColorJitter | None = ColorJitter()

    def __call__(self, image: torch.Tensor, density: torch.Tensor, fixations: torch.Tensor,
                 gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.hflip_p > 0 and torch.rand((), generator=gen).item() < self.hflip_p:
            image, density, fixations = image.flip(-1), density.flip(-1), fixations.flip(-1)
        if self.jitter is not None:
            image = self.jitter(image, gen)
        return image, density, fixations
