"""Saliency metrics on single 2-D maps, as the MIT/Tuebingen benchmark's Matlab code_forMetrics
computes them (Bylinskii et al., TPAMI 2018), in numpy float64.

Each function mirrors one Matlab file (CC.m, KLdiv.m, similarity.m, NSS.m, AUC_Judd.m,
AUC_Borji.m, AUC_shuffled.m, InfoGain.m). Where the Matlab code yields NaN from a 0/0
normalisation of a constant map, these functions return the value of an uninformative
prediction instead (documented per function and in docs/metrics.md). Random sampling uses
numpy's PCG64 generator with an explicit seed, so results are reproducible (Matlab's random
stream is not reproduced bit for bit). The samplers here are shared with the batched classes,
which therefore reproduce these values exactly.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EPS", "cc", "kld", "sim", "nss", "auc_judd", "auc_borji", "sauc", "info_gain",
    "matlab_colon", "jitter_noise", "borji_sample_indices", "shuffled_sample_indices",
]

# Matlab's `eps` (2^-52). pysaliency's MIT_KLDiv uses the rounded 2.2204e-16.
EPS: float = float(np.finfo(np.float64).eps)


# ----------------------------------------------------------------------------- input checks
def _as_map(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D map, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name}: empty map")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{na} has shape {a.shape} but {nb} has shape {b.shape}: resize the prediction to the "
            "ground truth first (the MIT code uses imresize, see docs/metrics.md)")


def _as_fixations(x, name: str, shape: tuple[int, ...]) -> np.ndarray:
    f = _as_map(x, name)
    if f.shape != shape:
        raise ValueError(f"{name} has shape {f.shape} but the saliency map has shape {shape}")
    if (f < 0).any():
        raise ValueError(f"{name}: a fixation map must be non-negative (1 at fixated pixels)")
    return f > 0


def _std1(a: np.ndarray) -> float:
    """Matlab std(a(:)): N-1 normalisation; std of a single value is 0 in Matlab."""
    return float(a.std(ddof=1)) if a.size > 1 else 0.0


def _constant(a: np.ndarray) -> bool:
    """A map with max == min (tested exactly, not via a std that rounding can make ~1e-17)."""
    return bool(a.max() == a.min())


def _minmax(a: np.ndarray) -> np.ndarray | None:
    """(a - min) / (max - min) as in the MIT code; None for a constant map (Matlab: all NaN)."""
    if _constant(a):
        return None
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo)


def _trapz(x: np.ndarray, y: np.ndarray) -> float:
    """Matlab trapz(x, y) along the last axis."""
    return (np.diff(x, axis=-1) * (y[..., 1:] + y[..., :-1]) / 2.0).sum(axis=-1)


# ----------------------------------------------------------------------------- distribution metrics
def cc(saliency_map, density) -> float:
    """Pearson linear correlation coefficient (CC.m: standardise with std (N-1), then corr2).

    MIT returns NaN when either map is constant; we return 0.0 (a constant map is uncorrelated
    with anything), as pysaliency does when only the prediction is constant.
    """
    s = _as_map(saliency_map, "saliency_map")
    d = _as_map(density, "density")
    _same_shape(s, d, "saliency_map", "density")
    if _constant(s) or _constant(d):
        return 0.0
    ss, sd = _std1(s), _std1(d)
    a = (s - s.mean()) / ss
    b = (d - d.mean()) / sd
    a = a - a.mean()  # corr2 re-centres
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def kld(saliency_map, density) -> float:
    """KL divergence of the prediction from the ground truth (KLdiv.m):
    sum(D .* log(eps + D ./ (S + eps))) with both maps sum-normalised (an all-zero map stays zero).

    Negative values raise ValueError: MIT would return a complex number (log of a negative).
    """
    s = _as_map(saliency_map, "saliency_map")
    d = _as_map(density, "density")
    _same_shape(s, d, "saliency_map", "density")
    for a, n in ((s, "saliency_map"), (d, "density")):
        if (a < 0).any():
            raise ValueError(f"kld: {n} has negative values (min {a.min():.4g}); KLD needs "
                             "non-negative maps (the MIT code would return a complex number)")
    if s.any():
        s = s / s.sum()
    if d.any():
        d = d / d.sum()
    return float((d * np.log(EPS + d / (s + EPS))).sum())


def _sim_normalise(a: np.ndarray) -> np.ndarray:
    if not a.any():
        return a  # MIT: "zero map will remain a zero map"
    m = _minmax(a)
    if m is None:  # constant non-zero map: MIT gives NaN; we use the uniform distribution
        return np.full_like(a, 1.0 / a.size)
    return m / m.sum()


def sim(saliency_map, density) -> float:
    """Similarity / histogram intersection (similarity.m): min-max normalise each map, then
    sum-normalise, then sum(min(S, D)). An all-zero map stays zero (score 0); a constant
    non-zero map (MIT: NaN) is taken as the uniform distribution.
    """
    s = _as_map(saliency_map, "saliency_map")
    d = _as_map(density, "density")
    _same_shape(s, d, "saliency_map", "density")
    return float(np.minimum(_sim_normalise(s), _sim_normalise(d)).sum())


# ----------------------------------------------------------------------------- fixation metrics
def nss(saliency_map, fixations) -> float:
    """Normalised scanpath saliency (NSS.m): standardise with std (N-1), mean at fixated pixels.

    No fixations: NaN (as MIT). Constant map: 0.0 (MIT: NaN).
    """
    s = _as_map(saliency_map, "saliency_map")
    f = _as_fixations(fixations, "fixations", s.shape)
    if not f.any():
        return float("nan")
    if _constant(s):
        return 0.0
    z = (s - s.mean()) / _std1(s)
    return float(z[f].mean())


def jitter_noise(shape: tuple[int, int], seed: int) -> np.ndarray:
    """The AUC-Judd jitter, rand(size)/10000000 in Matlab, from numpy's generator."""
    return np.random.default_rng(seed).random(shape) / 10000000


def auc_judd(saliency_map, fixations, jitter: bool = False, seed: int = 0) -> float:
    """AUC-Judd (AUC_Judd.m): thresholds are the (min-max normalised) saliency values at the
    fixated pixels sorted descending; at the i-th threshold tp = i/Nfix and
    fp = (#pixels >= thr - i) / (Npixels - Nfix), with (0,0) and (1,1) added; trapz.

    Ties among fixated values are kept as separate points (i counts fixations, not distinct
    values) exactly as MIT does. `jitter=True` adds rand/1e7 before normalising (MIT's default;
    ours is off, as in the issue's API). No fixations: NaN; all pixels fixated: NaN (no
    negatives); constant map: 0.5 (MIT: NaN).
    """
    s = _as_map(saliency_map, "saliency_map")
    f = _as_fixations(fixations, "fixations", s.shape)
    if not f.any():
        return float("nan")
    if jitter:
        s = s + jitter_noise(s.shape, seed)
    s = _minmax(s)
    if s is None:
        return 0.5
    S = s.ravel()
    sth = S[f.ravel()]
    n_fix, n_pix = sth.size, S.size
    if n_fix == n_pix:
        return float("nan")
    thr = np.sort(sth)[::-1]
    above = n_pix - np.searchsorted(np.sort(S), thr, side="left")  # sum(S >= thr)
    i = np.arange(1, n_fix + 1, dtype=np.float64)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(_trapz(fp, tp))


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """Matlab's a:d:b for d > 0, element for element (MathWorks' colonop): the first half is
    a + k*d, the second half c - k*d from the end point c, the middle (a + c)/2."""
    a, d, b = float(a), float(d), float(b)
    if not d > 0:
        raise ValueError(f"step must be positive, got {d}")
    if b < a:
        return np.zeros(0)
    tol = 2.0 * EPS * max(abs(a), abs(b))
    if a == math.floor(a) and d == 1.0:
        n = math.floor(b) - a
    elif a == math.floor(a) and d == math.floor(d):
        q = math.floor(a / d)
        r = a - q * d
        n = math.floor((b - r) / d) - q
    else:
        x = (b - a) / d
        n = math.floor(x) + (1 if x - math.floor(x) >= 0.5 else 0)  # Matlab round, x >= 0
        if a + n * d - b > tol:
            n -= 1
    n = int(n)
    c = a + n * d
    if c - b > -tol:
        c = b
    v = np.zeros(n + 1)
    k = np.arange(0, n // 2 + 1, dtype=np.float64)
    ki = k.astype(int)
    v[ki] = a + k * d
    v[n - ki] = c - k * d
    if n % 2 == 0:
        v[n // 2] = (a + c) / 2
    return v


def _step_auc(sth: np.ndarray, randfix: np.ndarray, step: float, n_neg: int) -> np.ndarray:
    """AUC per split for Borji/shuffled: randfix is (n_splits, n); thresholds
    fliplr(0:step:max([Sth; curfix])) per split."""
    out = np.empty(randfix.shape[0])
    n_fix = sth.size
    top = sth.max()
    for k, cur in enumerate(randfix):
        b = max(top, cur.max())
        thr = matlab_colon(0.0, step, b)[::-1]
        tp = (sth[None, :] >= thr[:, None]).sum(1) / n_fix
        fp = (cur[None, :] >= thr[:, None]).sum(1) / n_neg
        out[k] = _trapz(np.concatenate([[0.0], fp, [1.0]]), np.concatenate([[0.0], tp, [1.0]]))
    return out


def borji_sample_indices(n_pixels: int, n_fix: int, n_splits: int, seed: int) -> np.ndarray:
    """randi([1 Npixels], [Nfix, Nsplits]) as (n_splits, n_fix) 0-based flat indices."""
    return np.random.default_rng(seed).integers(0, n_pixels, size=(n_splits, n_fix))


def shuffled_sample_draws(n_other: int, k: int, n_splits: int, seed: int) -> np.ndarray:
    """Swap targets of a partial Fisher-Yates shuffle, one row per split: entry i is uniform in
    [i, n_other), as i + floor(u * (n_other - i)) from `random((n_splits, k))` (clamped below
    n_other; the bias of a float draw is ~2^-53)."""
    i = np.arange(k)
    span = n_other - i
    u = np.random.default_rng(seed).random((n_splits, k))
    return i + np.minimum((u * span).astype(np.int64), span - 1)


def shuffled_sample_indices(other_flat: np.ndarray, n_fix: int, n_splits: int, seed: int) -> np.ndarray:
    """Per split, the first min(Nfix, L) entries of a random permutation of the other images'
    fixated pixels (Matlab: ind(randperm(L)) then 1:Nfixations_oth), i.e. a uniform draw without
    replacement: (n_splits, min(n_fix, L)) flat indices into the map. The permutation is a
    partial Fisher-Yates shuffle (k swaps, k random numbers per split, not L)."""
    L = other_flat.size
    k = min(n_fix, L)
    if k == 0:
        return np.zeros((n_splits, 0), dtype=np.int64)
    j = shuffled_sample_draws(L, k, n_splits, seed)
    perm = np.tile(np.arange(L), (n_splits, 1))
    rows = np.arange(n_splits)
    for i in range(k):                      # swap position i with j[:, i], all splits at once
        ji = j[:, i]
        held = perm[:, i].copy()
        perm[:, i] = perm[rows, ji]
        perm[rows, ji] = held
    return other_flat[perm[:, :k]]


def auc_borji(saliency_map, fixations, n_splits: int = 100, step: float = 0.1, seed: int = 0) -> float:
    """AUC-Borji (AUC_Borji.m): per split, as many uniformly random pixels (with replacement) as
    fixations are negatives; thresholds fliplr(0:step:max) built as Matlab's colon builds them;
    mean AUC over splits. No fixations: NaN; constant map: 0.5 (MIT: NaN)."""
    s = _as_map(saliency_map, "saliency_map")
    f = _as_fixations(fixations, "fixations", s.shape)
    if not f.any():
        return float("nan")
    s = _minmax(s)
    if s is None:
        return 0.5
    S = s.ravel()
    sth = S[f.ravel()]
    idx = borji_sample_indices(S.size, sth.size, n_splits, seed)
    return float(_step_auc(sth, S[idx], step, sth.size).mean())


def sauc(saliency_map, fixations, other_fixations, n_splits: int = 100, step: float = 0.1,
         seed: int = 0) -> float:
    """Shuffled AUC (AUC_shuffled.m): negatives are the prediction's values at fixated pixels of
    other images (`other_fixations`, a binary map, e.g. the union of 10 other images), per split
    min(Nfix, L) of them drawn without replacement. No fixations or no other fixations: NaN;
    constant map: 0.5 (MIT: NaN)."""
    s = _as_map(saliency_map, "saliency_map")
    f = _as_fixations(fixations, "fixations", s.shape)
    o = _as_fixations(other_fixations, "other_fixations", s.shape)
    if not f.any() or not o.any():
        return float("nan")
    s = _minmax(s)
    if s is None:
        return 0.5
    S = s.ravel()
    sth = S[f.ravel()]
    idx = shuffled_sample_indices(np.flatnonzero(o.ravel()), sth.size, n_splits, seed)
    return float(_step_auc(sth, S[idx], step, idx.shape[1]).mean())


def _ig_distribution(a: np.ndarray) -> np.ndarray:
    m = _minmax(a)
    if m is None:  # MIT: NaN; a constant map predicts the uniform distribution
        return np.full_like(a, 1.0 / a.size)
    return m / m.sum()


def info_gain(saliency_map, fixations, baseline) -> float:
    """Information gain over a baseline in bits per fixation (InfoGain.m): both maps min-max
    normalised and sum-normalised, mean(log2(eps + P) - log2(eps + B)) at fixated pixels.
    No fixations: NaN; a constant map (MIT: NaN) counts as the uniform distribution."""
    s = _as_map(saliency_map, "saliency_map")
    f = _as_fixations(fixations, "fixations", s.shape)
    b = _as_map(baseline, "baseline")
    _same_shape(s, b, "saliency_map", "baseline")
    if not f.any():
        return float("nan")
    p, q = _ig_distribution(s), _ig_distribution(b)
    return float((np.log2(EPS + p[f]) - np.log2(EPS + q[f])).mean())
