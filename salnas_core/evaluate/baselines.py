"""Baselines that need no search: the centre-bias Gaussian, fitted to training fixations."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np


@dataclass
class CenterBias:
    """An axis-aligned Gaussian at the image centre; sigmas are fractions of height and width.

    The defaults are replaced by `fit` with the spread of the training split's fixations, so the
    baseline is the best centred Gaussian a model could learn without looking at the image.
    """

    sigma_y: float = 0.25
    sigma_x: float = 0.25

    def map(self, shape: tuple[int, int]) -> np.ndarray:
        """Density (sums to 1) of the given (H, W), float64."""
        h, w = int(shape[0]), int(shape[1])
        y = (np.arange(h) + 0.5) / h - 0.5
        x = (np.arange(w) + 0.5) / w - 0.5
        g = np.exp(-0.5 * (y[:, None] / self.sigma_y) ** 2) * np.exp(-0.5 * (x[None, :] / self.sigma_x) ** 2)
        return g / g.sum()

    @classmethod
    def fit(cls, points: Iterable[tuple[np.ndarray, tuple[int, int]]]) -> "CenterBias":
        """Root-mean-square distance of fixations from the centre, per axis, in image fractions.

        points: (rows_cols (N, 2) 0-based, (h, w)) per image.
        """
        dy: list[np.ndarray] = []
        dx: list[np.ndarray] = []
        for rc, (h, w) in points:
            rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
            if len(rc):
                dy.append((rc[:, 0] + 0.5) / h - 0.5)
                dx.append((rc[:, 1] + 0.5) / w - 0.5)
        if not dy:
            raise ValueError("centre bias: no fixations to fit")
        ys, xs = np.concatenate(dy), np.concatenate(dx)
        return cls(float(np.sqrt((ys ** 2).mean())), float(np.sqrt((xs ** 2).mean())))

    @classmethod
    def fit_dataset(cls, root: str | Path, split: str = "train") -> "CenterBias":
        """Fit on an ingested dataset's split (original-size fixations from the manifest)."""
        from salnas_core.data.dataset import split_items
        from salnas_core.utils.io import read_json

        root = Path(root)
        man = read_json(root / "manifest.json")
        pts = []
        for it in split_items(man, split):  # "train": without the holdout slice (data.dataset)
            rel = it.get("orig_fixations") or it["fixations"]
            size = it.get("orig_size") if it.get("orig_fixations") else man["working_size"]
            pts.append((np.load(root / rel), tuple(size)))
        return cls.fit(pts)

    def as_dict(self) -> dict[str, Any]:
        return {"sigma_y": self.sigma_y, "sigma_x": self.sigma_x}


def spectral_residual(rgb: np.ndarray, width: int = 64, avg: int = 3, sigma: float = 2.5) -> np.ndarray:
    """Spectral residual saliency (Hou & Zhang, CVPR 2007) of an RGB image, as a density of the same
    (H, W) that sums to 1 (float64).

    The grey image at `width` px wide; the log amplitude spectrum minus its `avg` x `avg` local mean
    (the "residual"); back to space with the original phase, squared; a Gaussian blur of `sigma` px
    at that scale (the paper's sigma 8 at 64 px is for 64x64 inputs; 2.5 keeps its relative size
    on 64x48); resized to the image size.
    """
    from scipy import ndimage

    rgb = np.asarray(rgb, dtype=np.float64)
    grey = rgb[..., :3] @ np.array([0.299, 0.587, 0.114]) if rgb.ndim == 3 else rgb
    h, w = grey.shape
    scale = width / w
    small = ndimage.zoom(grey, (max(8, round(h * scale)) / h, width / w), order=1)
    spec = np.fft.fft2(small)
    log_amp = np.log(np.abs(spec) + 1e-12)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=avg, mode="nearest")
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
    sal = ndimage.gaussian_filter(sal, sigma)
    full = ndimage.zoom(sal, (h / sal.shape[0], w / sal.shape[1]), order=1)[:h, :w]
    if full.shape != (h, w):  # zoom rounding: pad the last row/column
        full = np.pad(full, ((0, h - full.shape[0]), (0, w - full.shape[1])), mode="edge")
    full = np.maximum(full, 0)
    total = full.sum()
    return full / total if total > 0 else np.full((h, w), 1.0 / (h * w))


def spectral_residual_x_centre(rgb: np.ndarray, center: CenterBias, shape: tuple[int, int]) -> np.ndarray:
    """Spectral residual saliency multiplied by the fitted centre bias (both at `shape`), renormalised:
    the classical 'bottom-up saliency x centre prior' baseline of the saliency benchmarks."""
    from scipy import ndimage

    sr = spectral_residual(rgb)
    if sr.shape != tuple(shape):
        sr = ndimage.zoom(sr, (shape[0] / sr.shape[0], shape[1] / sr.shape[1]), order=1)
        sr = np.pad(sr, ((0, max(0, shape[0] - sr.shape[0])), (0, max(0, shape[1] - sr.shape[1]))), mode="edge")
        sr = np.maximum(sr[: shape[0], : shape[1]], 0)
    m = sr * center.map(shape)
    total = m.sum()
    return m / total if total > 0 else center.map(shape)
