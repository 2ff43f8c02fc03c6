"""Ground truth from fixation points: binary fixation maps and Gaussian density maps.

Coordinate conventions (used across salnas_core.data):
- *continuous* points are float (N, 2) arrays of (row, col) in 0-based pixel-edge coordinates:
  pixel (r, c) covers [r, r+1) x [c, c+1), so its centre is (r + 0.5, c + 0.5). A MATLAB
  1-based coordinate x maps to x - 0.5 (MATLAB's pixel centre of the top-left pixel is (1, 1)).
- *index* points are integer (N, 2) arrays of (row, col) array indices.

Resizing maps coordinates and never interpolates a binary map, so every fixation survives;
several fixations landing on one pixel stay as repeated rows (their count weights the density).
"""
from __future__ import annotations

import math

import numpy as np


def to_indices(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Continuous (row, col) -> int32 indices, clipped into `shape` (callers drop outside points first)."""
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    idx = np.floor(pts).astype(np.int64)
    idx[:, 0] = np.clip(idx[:, 0], 0, shape[0] - 1)
    idx[:, 1] = np.clip(idx[:, 1], 0, shape[1] - 1)
    return idx.astype(np.int32)


def inside(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of continuous points that lie inside an image of `shape` (finite and in range)."""
    pts = np.asarray(points_rc, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(pts).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (pts[:, 0] >= 0) & (pts[:, 0] < shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < shape[1])
    return ok


def resize_points(points_rc: np.ndarray, from_shape: tuple[int, int], to_shape: tuple[int, int]) -> np.ndarray:
    """Map points from an image of `from_shape` to one of `to_shape`; returns int32 (N, 2) indices.

    Integer input is taken as pixel indices (mapped through the pixel centres), float input as
    continuous coordinates. The number of rows never changes.
    """
    pts = np.asarray(points_rc).reshape(-1, 2)
    scale = np.array([to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]], dtype=np.float64)
    cont = pts.astype(np.float64) + (0.5 if np.issubdtype(pts.dtype, np.integer) else 0.0)
    return to_indices(cont * scale, to_shape)


def fixation_counts(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """float64 map with the number of fixations at each pixel (index points)."""
    idx = np.asarray(points_rc, dtype=np.int64).reshape(-1, 2)
    counts = np.zeros(shape, dtype=np.float64)
    np.add.at(counts, (idx[:, 0], idx[:, 1]), 1.0)
    return counts


def fixation_map(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Binary float32 map: 1 where at least one fixation landed (index points)."""
    idx = np.asarray(points_rc, dtype=np.int64).reshape(-1, 2)
    fmap = np.zeros(shape, dtype=np.float32)
    fmap[idx[:, 0], idx[:, 1]] = 1.0
    return fmap


def gaussian_blur(img: np.ndarray, sigma: float, method: str = "fft") -> np.ndarray:
    """Gaussian blur with zero padding outside the image (mass blurred off the edge is lost).

    "fft" and "direct" (scipy.ndimage.gaussian_filter, truncate=4) give the same map up to
    float32 rounding; FFT is 7-15x faster for the sigmas used here (12-100 px).
    """
    if sigma <= 0:
        return img.astype(np.float64)
    if method == "direct":
        from scipy import ndimage

        return ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="constant", truncate=4.0)
    from scipy import fft

    # separable Gaussian as two FFT convolutions with explicit zero padding (same result as
    # mode="constant" up to float32 rounding, O(N log N) instead of O(N * sigma)); each pass runs
    # along the contiguous axis of its (possibly transposed) view
    r = int(4.0 * sigma + 0.5)  # the radius scipy.ndimage uses for truncate=4
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    out = img.astype(np.float32)
    for transpose in (False, True):
        a = out.T if transpose else out
        nfft = fft.next_fast_len(a.shape[1] + 2 * r + 1, real=True)
        full = fft.irfft(fft.rfft(a, nfft, axis=1) * fft.rfft(k, nfft)[None], nfft, axis=1)
        out = np.ascontiguousarray(full[:, r:r + a.shape[1]])
    out = out.T.astype(np.float64)
    return np.maximum(out, 0.0)


def density_map(points_rc: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """float32 density (sums to 1): fixation counts blurred by a Gaussian of `sigma` pixels."""
    idx = np.asarray(points_rc).reshape(-1, 2)
    if len(idx) == 0:
        raise ValueError("density_map: no fixations (an image without fixations has no ground truth)")
    dens = gaussian_blur(fixation_counts(idx, shape), sigma)
    total = dens.sum()
    if not total > 0:  # pragma: no cover - only when sigma is huge relative to float range
        raise ValueError(f"density_map: blurred map is empty (sigma={sigma})")
    return np.ascontiguousarray(dens / total, dtype=np.float32)


def scale_sigma(sigma_px: float, ref_shape: tuple[int, int], to_shape: tuple[int, int]) -> float:
    """Sigma given in pixels of `ref_shape`, expressed in pixels of `to_shape`.

    Scales with the image diagonal, so one degree of visual angle stays one degree whatever the
    aspect ratio of the target (the datasets' sigmas are ~1 degree at their display size).
    """
    return float(sigma_px) * math.hypot(*to_shape) / math.hypot(*ref_shape)
