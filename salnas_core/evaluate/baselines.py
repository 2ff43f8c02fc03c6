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
        from salnas_core.utils.io import read_json

        root = Path(root)
        man = read_json(root / "manifest.json")
        pts = []
        for it in man["items"]:
            if it["split"] != split:
                continue
            rel = it.get("orig_fixations") or it["fixations"]
            size = it.get("orig_size") if it.get("orig_fixations") else man["working_size"]
            pts.append((np.load(root / rel), tuple(size)))
        return cls.fit(pts)

    def as_dict(self) -> dict[str, Any]:
        return {"sigma_y": self.sigma_y, "sigma_x": self.sigma_x}
