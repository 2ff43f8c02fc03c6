"""Batched saliency metrics in torch (CPU or GPU, float64) and torchmetrics classes that
accumulate the mean over images across batches.

Every `*_batch` function returns one value per image equal to the functional (numpy) version
in salnas_core.metrics.functional up to float64 summation order (tests check 1e-12): same
normalisations, same degenerate-map rules, and the same random samples (the numpy samplers
are shared, seeded per image with `seed`, exactly as one functional call per image).

Images where a metric is undefined (no fixations; for sAUC no other fixations) give NaN per
image and are left out of the class means (their count is not incremented).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from .functional import (EPS, borji_sample_indices, jitter_noise, shuffled_sample_indices)

__all__ = [
    "cc_batch", "kld_batch", "sim_batch", "nss_batch", "auc_judd_batch", "auc_borji_batch",
    "sauc_batch", "ig_batch", "CC", "KLD", "SIM", "NSS", "AUCJudd", "AUCBorji", "SAUC",
    "InfoGain", "METRIC_CLASSES", "SaliencyMetrics", "DEFAULT_NAMES", "ALL_NAMES",
    "shuffled_other_fixations",
]

_DT = torch.float64


# ----------------------------------------------------------------------------- inputs
def _to_bhw(x: torch.Tensor, name: str, device: torch.device | None = None) -> torch.Tensor:
    """(B,1,H,W) | (B,H,W) | (H,W) -> (B,H,W) float64, finite."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected (B, 1, H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() == 2:
        x = x[None]
    elif x.dim() != 3:
        raise ValueError(f"{name}: expected (B, 1, H, W), (B, H, W) or (H, W), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name}: empty tensor {tuple(x.shape)}")
    x = x.to(device=device, dtype=_DT)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def _check_same(a: torch.Tensor, b: torch.Tensor, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} has shape {tuple(a.shape)} but {nb} has shape {tuple(b.shape)} "
                         "(as (B, H, W)); pass resize=True to resize predictions to the ground truth")


def _fix(f: torch.Tensor, name: str) -> torch.Tensor:
    if (f < 0).any():
        raise ValueError(f"{name}: a fixation map must be non-negative (1 at fixated pixels)")
    return f > 0


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _const(x: torch.Tensor) -> torch.Tensor:
    """(B,N) -> (B,) True where max == min."""
    return x.amax(-1) == x.amin(-1)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """(x - min)/(max - min) per row; constant rows become 0 (callers handle them)."""
    lo = x.amin(-1, keepdim=True)
    rng = x.amax(-1, keepdim=True) - lo
    return (x - lo) / torch.where(rng == 0, torch.ones_like(rng), rng)


def _std1(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] < 2:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return x.std(-1, unbiased=True)


def _trapz(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1]) / 2.0).sum(-1)


# ----------------------------------------------------------------------------- per-image values
def cc_batch(pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """CC per image (functional.cc): 0 where either map is constant."""
    s, d = _flat(pred), _flat(density)
    const = _const(s) | _const(d)
    one = torch.ones((), dtype=_DT, device=s.device)
    a = (s - s.mean(-1, keepdim=True)) / torch.where(const, one, _std1(s))[:, None]
    b = (d - d.mean(-1, keepdim=True)) / torch.where(const, one, _std1(d))[:, None]
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = torch.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    r = (a * b).sum(-1) / torch.where(const, one, den)
    return torch.where(const, torch.zeros_like(r), r)


def kld_batch(pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """KLD per image (functional.kld); negative values raise ValueError."""
    s, d = _flat(pred), _flat(density)
    for x, n in ((s, "pred"), (d, "density")):
        if (x < 0).any():
            raise ValueError(f"kld: {n} has negative values (min {x.min().item():.4g}); KLD needs "
                             "non-negative maps (the MIT code would return a complex number)")

    def norm(x: torch.Tensor) -> torch.Tensor:
        t = x.sum(-1, keepdim=True)
        return x / torch.where(t == 0, torch.ones_like(t), t)

    s, d = norm(s), norm(d)
    return (d * torch.log(EPS + d / (s + EPS))).sum(-1)


def _sim_norm(x: torch.Tensor) -> torch.Tensor:
    zero = ~(x != 0).any(-1, keepdim=True)
    const = _const(x)[:, None] & ~zero
    m = _minmax(x)
    t = m.sum(-1, keepdim=True)
    m = m / torch.where(t == 0, torch.ones_like(t), t)
    m = torch.where(const, torch.full_like(m, 1.0 / x.shape[-1]), m)
    return torch.where(zero, torch.zeros_like(m), m)


def sim_batch(pred: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
    """SIM per image (functional.sim)."""
    return torch.minimum(_sim_norm(_flat(pred)), _sim_norm(_flat(density))).sum(-1)


def nss_batch(pred: torch.Tensor, fixations: torch.Tensor) -> torch.Tensor:
    """NSS per image (functional.nss): NaN without fixations, 0 for a constant map."""
    s, f = _flat(pred), _flat(_fix(fixations, "fixations")).to(_DT)
    nf = f.sum(-1)
    const = _const(s)
    std = torch.where(const, torch.ones_like(nf), _std1(s))
    z = (s - s.mean(-1, keepdim=True)) / std[:, None]
    v = (z * f).sum(-1) / nf.clamp_min(1)
    v = torch.where(const, torch.zeros_like(v), v)
    return torch.where(nf == 0, torch.full_like(v, float("nan")), v)


def _fixated_desc(S: torch.Tensor, Fb: torch.Tensor, k: int) -> torch.Tensor:
    """(B,N) values at fixated pixels, sorted descending, padded with -inf to k columns."""
    vals = torch.where(Fb, S, torch.full_like(S, float("-inf")))
    return torch.topk(vals, k, dim=-1, largest=True, sorted=True).values


def auc_judd_batch(pred: torch.Tensor, fixations: torch.Tensor, jitter: bool = False,
                   seed: int = 0) -> torch.Tensor:
    """AUC-Judd per image (functional.auc_judd), counting sum(S >= thr) for all thresholds at
    once by bucketing every pixel among the sorted fixation thresholds."""
    s = pred
    if jitter:
        noise = torch.as_tensor(jitter_noise(tuple(s.shape[-2:]), seed), dtype=_DT, device=s.device)
        s = s + noise
    S = _flat(s)
    Fb = _flat(_fix(fixations, "fixations"))
    B, N = S.shape
    nf = Fb.sum(-1)
    const = _const(S)
    S = _minmax(S)
    K = max(int(nf.max().item()), 1)
    thr_desc = _fixated_desc(S, Fb, K)                       # (B,K), -inf padded at the end
    thr_asc = thr_desc.flip(-1).contiguous()
    pos = torch.searchsorted(thr_asc, S.contiguous(), right=True)  # number of thresholds <= s
    counts = torch.zeros(B, K + 1, dtype=torch.int64, device=S.device)
    counts.scatter_add_(1, pos, torch.ones_like(pos))
    # pixels with S >= thr_asc[k] are those with pos > k: suffix sums of counts
    above_asc = counts.flip(-1).cumsum(-1).flip(-1)[:, 1:]
    above = above_asc.flip(-1).to(_DT)                       # aligned with thr_desc
    i = torch.arange(1, K + 1, dtype=_DT, device=S.device)[None]
    nfd = nf.to(_DT)[:, None]
    valid = i <= nfd
    neg = (N - nfd).clamp_min(1)
    tp = torch.where(valid, i / nfd.clamp_min(1), torch.ones_like(above))
    fp = torch.where(valid, (above - i) / neg, torch.ones_like(above))
    z, o = torch.zeros(B, 1, dtype=_DT, device=S.device), torch.ones(B, 1, dtype=_DT, device=S.device)
    auc = _trapz(torch.cat([z, fp, o], -1), torch.cat([z, tp, o], -1))
    auc = torch.where(const, torch.full_like(auc, 0.5), auc)
    nan = torch.full_like(auc, float("nan"))
    return torch.where((nf == 0) | (nf == N), nan, auc)


def _colon_desc(b: torch.Tensor, step: float) -> torch.Tensor:
    """fliplr(0:step:b) for every entry of b (>= 0) exactly as functional.matlab_colon builds
    it, as a (..., K) tensor padded at the front with +inf."""
    d = float(step)
    tol = 2.0 * EPS * b                                      # 2*eps*max(|a|,|b|) with a = 0
    if d == np.floor(d):
        n = torch.floor(b) if d == 1.0 else torch.floor(b / d)
    else:
        x = b / d
        n = torch.floor(x) + ((x - torch.floor(x)) >= 0.5).to(_DT)
        n = n - ((0.0 + n * d - b) > tol).to(_DT)
    c = 0.0 + n * d
    c = torch.where(c - b > -tol, b, c)
    K = int(n.max().item()) + 1
    j = torch.arange(K, dtype=_DT, device=b.device)
    n_, c_ = n[..., None], c[..., None]
    v = torch.where(2 * j < n_, 0.0 + j * d, c_ - (n_ - j) * d)
    v = torch.where(2 * j == n_, (0.0 + c_) / 2, v)
    v = torch.where(j > n_, torch.full_like(v, float("inf")), v)
    return v.flip(-1)


def _count_ge(sorted_asc: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """Number of entries >= thr in each row of sorted_asc (-inf padding never counts)."""
    return sorted_asc.shape[-1] - torch.searchsorted(sorted_asc, thr, right=False)


def _step_auc_batch(sth_desc: torch.Tensor, nf: torch.Tensor, randfix: torch.Tensor,
                    n_neg: torch.Tensor, step: float) -> torch.Tensor:
    """sth_desc (B,K) -inf padded; randfix (B,S,M) -inf padded; n_neg (B,). -> (B,S) AUC."""
    B, Sp, M = randfix.shape
    bmax = torch.maximum(sth_desc[:, :1].expand(B, Sp), randfix.amax(-1))
    bmax = torch.where(torch.isfinite(bmax), bmax, torch.zeros_like(bmax))  # undefined rows
    thr = _colon_desc(bmax, step)                             # (B,S,T)
    T = thr.shape[-1]
    sth_asc = sth_desc.flip(-1).contiguous()
    tp = _count_ge(sth_asc, thr.reshape(B, Sp * T).contiguous()).reshape(B, Sp, T)
    rf = torch.sort(randfix, dim=-1).values.reshape(B * Sp, M)
    fp = _count_ge(rf, thr.reshape(B * Sp, T).contiguous()).reshape(B, Sp, T)
    tp = tp.to(_DT) / nf.to(_DT).clamp_min(1)[:, None, None]
    fp = fp.to(_DT) / n_neg.to(_DT).clamp_min(1)[:, None, None]
    z = torch.zeros(B, Sp, 1, dtype=_DT, device=thr.device)
    o = torch.ones_like(z)
    return _trapz(torch.cat([z, fp, o], -1), torch.cat([z, tp, o], -1))


def _sampled_auc(pred: torch.Tensor, fixations: torch.Tensor, sampler: Callable,
                 other: torch.Tensor | None, step: float) -> torch.Tensor:
    S = _flat(pred)
    Fb = _flat(_fix(fixations, "fixations"))
    B, N = S.shape
    nf = Fb.sum(-1)
    const = _const(S)
    S = _minmax(S)
    K = max(int(nf.max().item()), 1)
    sth = _fixated_desc(S, Fb, K)
    nf_cpu = nf.cpu().numpy()
    other_cpu = None if other is None else _flat(other).cpu().numpy()
    idx_rows, n_neg = [], []
    for b in range(B):
        idx = sampler(int(nf_cpu[b]), None if other_cpu is None else np.flatnonzero(other_cpu[b]))
        idx_rows.append(idx)
        n_neg.append(idx.shape[1])
    Sp = idx_rows[0].shape[0]
    M = max(max(n_neg), 1)
    idx_t = torch.zeros(B, Sp, M, dtype=torch.int64)
    mask = torch.zeros(B, Sp, M, dtype=torch.bool)
    for b, idx in enumerate(idx_rows):
        idx_t[b, :, : idx.shape[1]] = torch.from_numpy(idx)
        mask[b, :, : idx.shape[1]] = True
    idx_t, mask = idx_t.to(S.device), mask.to(S.device)
    randfix = torch.gather(S, 1, idx_t.reshape(B, -1)).reshape(B, Sp, M)
    randfix = torch.where(mask, randfix, torch.full_like(randfix, float("-inf")))
    n_neg_t = torch.as_tensor(n_neg, device=S.device)
    auc = _step_auc_batch(sth, nf, randfix, n_neg_t, step).mean(-1)
    auc = torch.where(const, torch.full_like(auc, 0.5), auc)
    undefined = (nf == 0) | (n_neg_t == 0)
    return torch.where(undefined, torch.full_like(auc, float("nan")), auc)


def auc_borji_batch(pred: torch.Tensor, fixations: torch.Tensor, n_splits: int = 100,
                    step: float = 0.1, seed: int = 0) -> torch.Tensor:
    """AUC-Borji per image (functional.auc_borji, same samples)."""
    N = pred.shape[-1] * pred.shape[-2]

    def sampler(n_fix: int, _other) -> np.ndarray:
        if n_fix == 0:
            return np.zeros((n_splits, 0), dtype=np.int64)
        return borji_sample_indices(N, n_fix, n_splits, seed)

    return _sampled_auc(pred, fixations, sampler, None, step)


def sauc_batch(pred: torch.Tensor, fixations: torch.Tensor, other_fixations: torch.Tensor,
               n_splits: int = 100, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Shuffled AUC per image (functional.sauc, same samples)."""
    other = _fix(other_fixations, "other_fixations")

    def sampler(n_fix: int, other_flat: np.ndarray) -> np.ndarray:
        if n_fix == 0 or other_flat.size == 0:
            return np.zeros((n_splits, 0), dtype=np.int64)
        return shuffled_sample_indices(other_flat, n_fix, n_splits, seed)

    return _sampled_auc(pred, fixations, sampler, other, step)


def _ig_dist(x: torch.Tensor) -> torch.Tensor:
    const = _const(x)[:, None]
    m = _minmax(x)
    t = m.sum(-1, keepdim=True)
    m = m / torch.where(t == 0, torch.ones_like(t), t)
    return torch.where(const, torch.full_like(m, 1.0 / x.shape[-1]), m)


def ig_batch(pred: torch.Tensor, fixations: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    """Information gain (bits/fixation) per image (functional.info_gain)."""
    p, q = _ig_dist(_flat(pred)), _ig_dist(_flat(baseline))
    f = _flat(_fix(fixations, "fixations")).to(_DT)
    nf = f.sum(-1)
    v = ((torch.log2(EPS + p) - torch.log2(EPS + q)) * f).sum(-1) / nf.clamp_min(1)
    return torch.where(nf == 0, torch.full_like(v, float("nan")), v)


# ----------------------------------------------------------------------------- registry
# name -> (function, inputs it needs besides pred, options it takes)
_SPECS: dict[str, tuple[Callable, tuple[str, ...], tuple[str, ...]]] = {
    "cc": (cc_batch, ("density",), ()),
    "kld": (kld_batch, ("density",), ()),
    "nss": (nss_batch, ("fixations",), ()),
    "sim": (sim_batch, ("density",), ()),
    "auc_judd": (auc_judd_batch, ("fixations",), ("jitter", "seed")),
    "auc_borji": (auc_borji_batch, ("fixations",), ("n_splits", "step", "seed")),
    "sauc": (sauc_batch, ("fixations", "other_fixations"), ("n_splits", "step", "seed")),
    "ig": (ig_batch, ("fixations", "baseline"), ()),
}
ALL_NAMES: tuple[str, ...] = tuple(_SPECS)
DEFAULT_NAMES: tuple[str, ...] = ("cc", "kld", "nss", "sim", "auc_judd")


def _prepare(pred: torch.Tensor, resize: bool, **targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Bring every input to (B,H,W) float64 on pred's device; check or fix shapes."""
    device = pred.device if torch.is_tensor(pred) else None
    p = _to_bhw(pred, "pred", device)
    out: dict[str, torch.Tensor] = {}
    ref = None
    for name, t in targets.items():
        if t is None:
            continue
        t = _to_bhw(t, name, device)
        if name == "baseline" and t.shape[0] == 1 and p.shape[0] > 1:
            t = t.expand(p.shape[0], -1, -1)
        out[name] = t
        ref = t if ref is None else ref
    for name, t in out.items():
        _check_same(t, ref, name, next(iter(out)))
    if ref is not None and p.shape != ref.shape:
        if resize and p.shape[0] == ref.shape[0]:
            # not MIT-exact: Matlab's imresize is bicubic with its own kernel (docs/metrics.md)
            p = F.interpolate(p[:, None], size=tuple(ref.shape[-2:]), mode="bilinear",
                              align_corners=False, antialias=True)[:, 0]
        else:
            _check_same(p, ref, "pred", next(iter(out)))
    out["pred"] = p
    return out


def compute_batch(name: str, pred: torch.Tensor, resize: bool = False, **kwargs) -> torch.Tensor:
    """Per-image values of one metric by name (kwargs: the inputs it needs and its options)."""
    fn, needs, opts = _SPECS[name]
    missing = [n for n in needs if kwargs.get(n) is None]
    if missing:
        raise ValueError(f"metric {name!r} needs {', '.join(missing)}")
    x = _prepare(pred, resize, **{n: kwargs[n] for n in needs})
    return fn(x["pred"], *[x[n] for n in needs], **{o: kwargs[o] for o in opts if o in kwargs})


# ----------------------------------------------------------------------------- torchmetrics
class _MeanOverImages(Metric):
    """Mean over images of one saliency metric, accumulated across batches (NaN images skipped)."""

    full_state_update = False
    name: str = ""

    def __init__(self, resize: bool = False, **kwargs) -> None:
        opts = {k: kwargs.pop(k) for k in list(kwargs) if k in _SPECS[self.name][2]}
        super().__init__(**kwargs)
        self.resize, self.opts = resize, opts
        self.add_state("total", default=torch.tensor(0.0, dtype=_DT), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=_DT), dist_reduce_fx="sum")

    def _add(self, values: torch.Tensor) -> None:
        ok = ~torch.isnan(values)
        self.total += values[ok].sum().to(self.total.device)
        self.count += ok.sum().to(self.count.device, _DT)

    def compute(self) -> torch.Tensor:
        return self.total / self.count if self.count > 0 else torch.tensor(float("nan"), dtype=_DT)


def _make_class(cls_name: str, metric: str, higher: bool, doc: str) -> type:
    needs = _SPECS[metric][1]

    def update(self, pred: torch.Tensor, *args: torch.Tensor) -> None:
        if len(args) != len(needs):
            raise TypeError(f"{cls_name}.update(pred, {', '.join(needs)})")
        self._add(compute_batch(metric, pred, self.resize, **dict(zip(needs, args)), **self.opts))

    update.__doc__ = f"update(pred, {', '.join(needs)}): add one batch of images."
    return type(cls_name, (_MeanOverImages,), {
        "name": metric, "higher_is_better": higher, "is_differentiable": False,
        "update": update, "__doc__": doc})


CC = _make_class("CC", "cc", True, "Mean CC over images (MIT CC.m).")
KLD = _make_class("KLD", "kld", False, "Mean KL divergence over images (MIT KLdiv.m).")
NSS = _make_class("NSS", "nss", True, "Mean NSS over images (MIT NSS.m).")
SIM = _make_class("SIM", "sim", True, "Mean SIM over images (MIT similarity.m).")
AUCJudd = _make_class("AUCJudd", "auc_judd", True,
                      "Mean AUC-Judd over images (MIT AUC_Judd.m); options jitter, seed.")
AUCBorji = _make_class("AUCBorji", "auc_borji", True,
                       "Mean AUC-Borji over images (MIT AUC_Borji.m); options n_splits, step, seed.")
SAUC = _make_class("SAUC", "sauc", True,
                   "Mean shuffled AUC over images (MIT AUC_shuffled.m); options n_splits, step, seed.")
InfoGain = _make_class("InfoGain", "ig", True, "Mean information gain over images (MIT InfoGain.m).")

METRIC_CLASSES: dict[str, type] = {"cc": CC, "kld": KLD, "nss": NSS, "sim": SIM,
                                   "auc_judd": AUCJudd, "auc_borji": AUCBorji, "sauc": SAUC,
                                   "ig": InfoGain}


class SaliencyMetrics(Metric):
    """Several saliency metrics at once, each the mean over images across batches.

    names: any of cc, kld, nss, sim, auc_judd, auc_borji, sauc, ig (default: cc, kld, nss, sim,
    auc_judd). sauc needs `other_fixations`, ig needs `baseline` in update(). Options: jitter and
    seed (AUC-Judd), n_splits, step, seed (Borji, sAUC), resize (bilinearly resize predictions
    whose size differs from the ground truth instead of raising).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, names: Sequence[str] = DEFAULT_NAMES, n_splits: int = 100, step: float = 0.1,
                 seed: int = 0, jitter: bool = False, resize: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        unknown = [n for n in names if n not in _SPECS]
        if unknown or not names:
            raise ValueError(f"unknown metric names {unknown}; choose from {ALL_NAMES}")
        self.names = tuple(dict.fromkeys(names))
        self.resize = resize
        self.opts = {"n_splits": n_splits, "step": step, "seed": seed, "jitter": jitter}
        for n in self.names:
            self.add_state(f"{n}_total", default=torch.tensor(0.0, dtype=_DT), dist_reduce_fx="sum")
            self.add_state(f"{n}_count", default=torch.tensor(0.0, dtype=_DT), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, density: torch.Tensor | None = None,
               fixations: torch.Tensor | None = None, other_fixations: torch.Tensor | None = None,
               baseline: torch.Tensor | None = None) -> None:
        x = _prepare(pred, self.resize, density=density, fixations=fixations,
                     other_fixations=other_fixations, baseline=baseline)
        for n in self.names:
            fn, needs, opts = _SPECS[n]
            missing = [k for k in needs if k not in x]
            if missing:
                raise ValueError(f"SaliencyMetrics: metric {n!r} needs {', '.join(missing)} in update()")
            v = fn(x["pred"], *[x[k] for k in needs], **{o: self.opts[o] for o in opts})
            ok = ~torch.isnan(v)
            total, count = getattr(self, f"{n}_total"), getattr(self, f"{n}_count")
            setattr(self, f"{n}_total", total + v[ok].sum().to(total.device))
            setattr(self, f"{n}_count", count + ok.sum().to(count.device, _DT))

    def compute(self) -> dict[str, float]:
        out = {}
        for n in self.names:
            c = getattr(self, f"{n}_count")
            out[n] = float(getattr(self, f"{n}_total") / c) if c > 0 else float("nan")
        return out


def shuffled_other_fixations(fixations: torch.Tensor, n_other: int = 10, seed: int = 0) -> torch.Tensor:
    """For sAUC within one batch: per image the union of the fixation maps of up to `n_other`
    other images of the batch, drawn at random (Borji uses 10 other images). Same shape out."""
    f = _to_bhw(fixations, "fixations", fixations.device) > 0
    B = f.shape[0]
    if B < 2:
        raise ValueError("shuffled_other_fixations needs at least 2 images in the batch")
    rng = np.random.default_rng(seed)
    out = torch.zeros_like(f)
    for b in range(B):
        others = rng.permutation([i for i in range(B) if i != b])[:n_other]
        out[b] = f[torch.as_tensor(others, device=f.device)].any(0)
    out = out.to(fixations.dtype if fixations.is_floating_point() else torch.float32)
    return out[:, None] if fixations.dim() == 4 else out
