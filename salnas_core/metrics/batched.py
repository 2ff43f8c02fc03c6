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

import contextlib
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
# On CPU, fused numba kernels (_cpu.py) compute the whole suite in three passes per map
# (5-10x faster than one torch op per statistic); the torch code below is the GPU path and the
# fallback without numba. Tests run both on CPU by switching this off.
try:
    from . import _cpu
except ImportError:  # pragma: no cover - numba is a dependency; keep the torch path working
    _cpu = None
CPU_KERNELS = _cpu is not None
# AUC-Judd counts on CPU with numpy buckets (_count_ge_bucketed; torch's CPU sort/searchsorted
# are 3-10x slower); the torch path (used on GPU) is tested on CPU by switching this off.
NUMPY_COUNTS_ON_CPU = True


# ----------------------------------------------------------------------------- inputs
def _to_bhw(x: torch.Tensor, name: str, device: torch.device | None = None,
            dtype: torch.dtype = _DT) -> torch.Tensor:
    """(B,1,H,W) | (B,H,W) | (H,W) -> (B,H,W) on `device`, as `dtype`."""
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
    return x.to(device=device, dtype=dtype)


def _check_same(a: torch.Tensor, b: torch.Tensor, na: str, nb: str, broadcast: bool = False) -> None:
    """Same (B, H, W); with broadcast, `a` may also have batch size 1 (a shared baseline)."""
    if a.shape[-2:] != b.shape[-2:] or (a.shape[0] != b.shape[0] and not (broadcast and a.shape[0] == 1)):
        raise ValueError(f"{na} has shape {tuple(a.shape)} but {nb} has shape {tuple(b.shape)} "
                         "(as (B, H, W)); pass resize=True to resize predictions to the ground truth")


def _trapz(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x[..., 1:] - x[..., :-1]) * (y[..., 1:] + y[..., :-1]) / 2.0).sum(-1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise sum(a*b) without a (B,N) temporary."""
    return torch.bmm(a[:, None, :], b[:, :, None])[:, 0, 0]


class _BaselineDict(dict):
    """Cache dict whose "baseline*" entries are kept in a longer-lived shared dict."""

    def __init__(self, shared: dict[str, object]) -> None:
        super().__init__()
        self.shared = shared

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str) and key.startswith("baseline"):
            return key in self.shared
        return super().__contains__(key)

    def __getitem__(self, key: str) -> object:
        return self.shared[key] if key.startswith("baseline") else super().__getitem__(key)

    def __setitem__(self, key: str, value: object) -> None:
        if key.startswith("baseline"):
            self.shared[key] = value
        else:
            super().__setitem__(key, value)


class _Maps:
    """One batch of flattened maps with the statistics several metrics share, each computed at
    most once (a pass over B x H x W float64 values is the unit of cost here)."""

    def __init__(self, x: dict[str, torch.Tensor], shared: dict[str, object] | None = None,
                 defer: bool = False) -> None:
        self.x = x
        self.defer = defer
        self._c: dict[str, object] = {}
        # statistics of a baseline shared by every image (batch size 1) live in `shared`, so
        # they are computed once per baseline rather than once per chunk or batch
        if shared is not None and "baseline" in x and x["baseline"].shape[0] == 1:
            self._c = _BaselineDict(shared)

    def _get(self, key: str, fn: Callable[[], object]):
        if key not in self._c:
            self._c[key] = fn()
        return self._c[key]

    # ---- raw maps, float64 (B,N); fixation maps bool (B,N)
    def map(self, name: str) -> torch.Tensor:
        def make() -> torch.Tensor:
            if name not in self.x:
                raise ValueError(f"metric needs {name}")
            t = self.x[name]
            t = t.reshape(t.shape[0], -1).to(_DT)
            lo, hi = t.amin(-1), t.amax(-1)  # 10x faster than torch.aminmax(dim) on CPU
            if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
                raise ValueError(f"{name}: contains NaN or infinite values")
            self._c[name + ".min"], self._c[name + ".max"] = lo, hi
            return t
        return self._get(name, make)

    def fix(self, name: str = "fixations") -> torch.Tensor:
        def make() -> torch.Tensor:
            if name not in self.x:
                raise ValueError(f"metric needs {name}")
            t = self.x[name].reshape(self.x[name].shape[0], -1)
            if (t.amin(-1) < 0).any():
                raise ValueError(f"{name}: a fixation map must be non-negative (1 at fixated pixels)")
            return t > 0
        return self._get(name + ".bool", make)

    def lo(self, name: str) -> torch.Tensor:
        self.map(name)
        return self._c[name + ".min"]

    def hi(self, name: str) -> torch.Tensor:
        self.map(name)
        return self._c[name + ".max"]

    def const(self, name: str) -> torch.Tensor:
        return self.hi(name) == self.lo(name)

    def zero(self, name: str) -> torch.Tensor:
        return (self.hi(name) == 0) & (self.lo(name) == 0)

    def nfix(self) -> torch.Tensor:
        return self._get("nfix", lambda: self.fix().sum(-1))

    def sum(self, name: str) -> torch.Tensor:
        return self._get(name + ".sum", lambda: self.map(name).sum(-1))

    def mean(self, name: str) -> torch.Tensor:
        return self._get(name + ".mean", lambda: self.map(name).mean(-1))

    def centred(self, name: str) -> torch.Tensor:
        return self._get(name + ".c", lambda: self.map(name) - self.mean(name)[:, None])

    def css(self, name: str) -> torch.Tensor:
        """Sum of squared deviations."""
        return self._get(name + ".css", lambda: _dot(self.centred(name), self.centred(name)))

    def minmax(self, name: str) -> torch.Tensor:
        """(x - min)/(max - min) as MIT; constant rows give 0 (callers override them)."""
        def make() -> torch.Tensor:
            lo, hi = self.lo(name)[:, None], self.hi(name)[:, None]
            rng = hi - lo
            return (self.map(name) - lo) / torch.where(rng == 0, torch.ones_like(rng), rng)
        return self._get(name + ".mm", make)

    def mm_sum(self, name: str) -> torch.Tensor:
        return self._get(name + ".mmsum", lambda: self.minmax(name).sum(-1))

    def fixated(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat indices of the fixated pixels, (B,K) padded with 0, their validity mask, and
        the min-max normalised prediction there (-inf where padded); K = largest count."""
        def make():
            F = self.fix()
            B = F.shape[0]
            if F.device.type == "cpu":                         # numpy's is ~10x faster on CPU
                r, c = np.nonzero(F.numpy())
                nz = torch.stack([torch.from_numpy(r), torch.from_numpy(c)], 1)
            else:
                nz = F.nonzero()                               # row-major: rows ascending
            nf = self.nfix()
            k = max(int(nf.max().item()), 1)
            start = torch.cumsum(nf, 0) - nf
            col = torch.arange(nz.shape[0], device=F.device) - start[nz[:, 0]]
            idx = torch.zeros(B, k, dtype=torch.int64, device=F.device)
            idx[nz[:, 0], col] = nz[:, 1]
            valid = torch.arange(k, device=F.device)[None] < nf[:, None]
            vals = torch.gather(self.minmax("pred"), 1, idx)
            vals = torch.where(valid, vals, torch.full_like(vals, float("-inf")))
            return idx, valid, vals
        return self._get("fixated", make)

    def fixated_desc(self) -> torch.Tensor:
        """Min-max normalised prediction at fixated pixels sorted descending, -inf padded."""
        return self._get("fixdesc", lambda: torch.sort(self.fixated()[2], dim=-1, descending=True).values)


def _nan_where(mask: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, torch.full_like(v, float("nan")), v)


# ----------------------------------------------------------------------------- per-image values
def _cc(m: _Maps) -> torch.Tensor:
    # MIT standardises each map then applies corr2; both reduce to this Pearson r
    const = m.const("pred") | m.const("density")
    den = torch.sqrt(m.css("pred") * m.css("density"))
    r = _dot(m.centred("pred"), m.centred("density")) / torch.where(const, torch.ones_like(den), den)
    return torch.where(const, torch.zeros_like(r), r)


def _kld(m: _Maps) -> torch.Tensor:
    for n in ("pred", "density"):
        if (m.lo(n) < 0).any():
            raise ValueError(f"kld: {n} has negative values (min {m.lo(n).min().item():.4g}); KLD "
                             "needs non-negative maps (the MIT code would return a complex number)")

    def safe(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t == 0, torch.ones_like(t), t)[:, None]

    pd = m.map("density") / safe(m.sum("density"))
    t = torch.div(m.map("pred"), safe(m.sum("pred"))).add_(EPS)
    t = torch.div(pd, t, out=t).add_(EPS).log_()      # in place: two (B,N) temporaries in all
    return _dot(pd, t)


def _sim(m: _Maps) -> torch.Tensor:
    a, b = m.minmax("pred"), m.minmax("density")
    sa, sb = m.mm_sum("pred"), m.mm_sum("density")
    one = torch.ones_like(sa)
    sa_, sb_ = torch.where(sa == 0, one, sa), torch.where(sb == 0, one, sb)
    # sum(min(a/sa, b/sb)) = sum(min(a, b*sa/sb)) / sa, one pass instead of two normalisations
    v = torch.minimum(a, b * (sa_ / sb_)[:, None]).sum(-1) / sa_
    N = a.shape[-1]
    # degenerate rows (rare): a constant non-zero map is uniform, an all-zero map stays zero
    for r in ((m.const("pred") | m.const("density")).nonzero().flatten().tolist()):
        def dist(name: str, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if bool(m.const(name)[r]):
                return x.new_full((N,), 0.0 if bool(m.zero(name)[r]) else 1.0 / N)
            return x[r] / s[r]
        v[r] = torch.minimum(dist("pred", a, sa_), dist("density", b, sb_)).sum()
    return v


def _nss(m: _Maps) -> torch.Tensor:
    idx, valid, _ = m.fixated()
    nf = m.nfix().to(_DT)
    N = m.map("pred").shape[-1]
    const = m.const("pred")
    std = torch.sqrt(m.css("pred") / max(N - 1, 1))
    at_fix = torch.where(valid, torch.gather(m.map("pred"), 1, idx), torch.zeros((), dtype=_DT,
                         device=idx.device)).sum(-1) / nf.clamp_min(1)
    v = (at_fix - m.mean("pred")) / torch.where(const, torch.ones_like(std), std)
    return _nan_where(nf == 0, torch.where(const, torch.zeros_like(v), v))


_BINS = 1 << 16


def _count_ge_bucketed(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Exact #(s >= t_k) for values in [0, 1], without sorting all of s: bucket every value by
    floor(x * 2^16) (exact scaling, so bucket order agrees with value order), count whole
    buckets above each threshold's bucket, and compare exactly only the values that share a
    bucket with some threshold."""
    q = (s * _BINS).astype(np.int64)
    ge = np.zeros(_BINS + 2, dtype=np.int64)
    ge[:-1] = np.cumsum(np.bincount(q, minlength=_BINS + 1)[::-1])[::-1]   # ge[j] = #(q >= j)
    qt = (t * _BINS).astype(np.int64)
    shared = np.zeros(_BINS + 1, dtype=bool)
    shared[qt] = True
    v = np.sort(s[shared[q]])                                # values in threshold buckets
    qv = (v * _BINS).astype(np.int64)                         # non-decreasing with v
    in_bucket_ge = np.searchsorted(qv, qt + 1, side="left") - np.searchsorted(v, t, side="left")
    return ge[qt + 1] + in_bucket_ge


def _auc_judd(m: _Maps) -> torch.Tensor:
    """Counts sum(S >= thr) for all thresholds at once by bucketing every pixel among the
    sorted fixated values (searchsorted), then MIT's tp/fp and trapz."""
    S = m.minmax("pred")
    B, N = S.shape
    nf = m.nfix()
    thr_desc = m.fixated_desc()
    K = thr_desc.shape[-1]
    if S.device.type == "cpu" and NUMPY_COUNTS_ON_CPU:
        S_np, t_np, nf_np = S.numpy(), thr_desc.numpy(), nf.cpu().numpy()
        above = np.zeros((B, K))
        for b in range(B):
            k = int(nf_np[b])
            if k:
                above[b, :k] = _count_ge_bucketed(S_np[b], t_np[b, :k])
        above = torch.from_numpy(above)
    else:
        pos = torch.searchsorted(thr_desc.flip(-1).contiguous(), S, right=True)  # thresholds <= s
        counts = torch.zeros(B, K + 1, dtype=torch.int64, device=S.device)
        counts.scatter_add_(1, pos, torch.ones_like(pos))
        # pixels with S >= thr_asc[k] are those with pos > k: suffix sums of the counts
        above = counts.flip(-1).cumsum(-1)[:, :K].to(_DT)    # aligned with thr_desc
    i = torch.arange(1, K + 1, dtype=_DT, device=S.device)[None]
    nfd = nf.to(_DT)[:, None]
    valid = i <= nfd
    tp = torch.where(valid, i / nfd.clamp_min(1), torch.ones_like(above))
    fp = torch.where(valid, (above - i) / (N - nfd).clamp_min(1), torch.ones_like(above))
    z = torch.zeros(B, 1, dtype=_DT, device=S.device)
    auc = _trapz(torch.cat([z, fp, z + 1], -1), torch.cat([z, tp, z + 1], -1))
    auc = torch.where(m.const("pred"), torch.full_like(auc, 0.5), auc)
    return _nan_where((nf == 0) | (nf == N), auc)


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
    fp = (randfix[:, :, None, :] >= thr[..., None]).sum(-1)  # (B,S,T): T <= 1/step + 1
    tp = tp.to(_DT) / nf.to(_DT).clamp_min(1)[:, None, None]
    fp = fp.to(_DT) / n_neg.to(_DT).clamp_min(1)[:, None, None]
    z = torch.zeros(B, Sp, 1, dtype=_DT, device=thr.device)
    return _trapz(torch.cat([z, fp, z + 1], -1), torch.cat([z, tp, z + 1], -1))


def _sampled_auc(m: _Maps, sampler: Callable, other: torch.Tensor | None, step: float) -> torch.Tensor:
    S = m.minmax("pred")
    B, N = S.shape
    nf = m.nfix()
    sth = m.fixated_desc()
    nf_cpu = nf.cpu().numpy()
    other_cpu = None if other is None else other.cpu().numpy()
    idx_rows = [sampler(int(nf_cpu[b]), None if other_cpu is None else np.flatnonzero(other_cpu[b]))
                for b in range(B)]
    n_neg = [idx.shape[1] for idx in idx_rows]
    Sp, M = idx_rows[0].shape[0], max(max(n_neg), 1)
    idx_t = torch.zeros(B, Sp, M, dtype=torch.int64)
    mask = torch.zeros(B, Sp, M, dtype=torch.bool)
    for b, idx in enumerate(idx_rows):
        idx_t[b, :, : idx.shape[1]] = torch.from_numpy(idx)
        mask[b, :, : idx.shape[1]] = True
    idx_t, mask = idx_t.to(S.device), mask.to(S.device)
    randfix = torch.gather(S, 1, idx_t.reshape(B, -1)).reshape(B, Sp, M)
    randfix = torch.where(mask, randfix, torch.full_like(randfix, float("-inf")))
    part = {"sth": sth, "nf": nf, "randfix": randfix, "n_neg": torch.as_tensor(n_neg, device=S.device),
            "const": m.const("pred"), "step": step}
    # CPU chunks defer the threshold sweep, done once for the whole batch in _evaluate (it is
    # many small ops: per image it would cost more than the per-pixel work)
    return _Pending(part) if m.defer else _finish_sampled([part])


class _Pending:
    """Sampled values of one chunk, waiting for the batched threshold sweep."""

    def __init__(self, part: dict) -> None:
        self.part = part


def _finish_sampled(parts: list[dict]) -> torch.Tensor:
    K = max(p["sth"].shape[1] for p in parts)
    M = max(p["randfix"].shape[2] for p in parts)
    pad = lambda t, n: F.pad(t, (0, n - t.shape[-1]), value=float("-inf"))  # noqa: E731
    sth = torch.cat([pad(p["sth"], K) for p in parts])
    randfix = torch.cat([pad(p["randfix"], M) for p in parts])
    nf, n_neg, const = (torch.cat([p[k] for p in parts]) for k in ("nf", "n_neg", "const"))
    auc = _step_auc_batch(sth, nf, randfix, n_neg, parts[0]["step"]).mean(-1)
    auc = torch.where(const, torch.full_like(auc, 0.5), auc)
    return _nan_where((nf == 0) | (n_neg == 0), auc)


def _auc_borji(m: _Maps, n_splits: int = 100, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    N = m.map("pred").shape[-1]

    def sampler(n_fix: int, _other) -> np.ndarray:
        if n_fix == 0:
            return np.zeros((n_splits, 0), dtype=np.int64)
        return borji_sample_indices(N, n_fix, n_splits, seed)

    return _sampled_auc(m, sampler, None, step)


def _sauc(m: _Maps, n_splits: int = 100, step: float = 0.1, seed: int = 0) -> torch.Tensor:
    def sampler(n_fix: int, other_flat: np.ndarray) -> np.ndarray:
        if n_fix == 0 or other_flat.size == 0:
            return np.zeros((n_splits, 0), dtype=np.int64)
        return shuffled_sample_indices(other_flat, n_fix, n_splits, seed)

    return _sampled_auc(m, sampler, m.fix("other_fixations"), step)


def _ig(m: _Maps) -> torch.Tensor:
    """Only the fixated pixels enter: gather them."""
    idx, valid, vals = m.fixated()
    nf = m.nfix()
    N = m.map("pred").shape[-1]

    def dist(name: str, v: torch.Tensor) -> torch.Tensor:
        p = v / m.mm_sum(name).clamp_min(EPS)[:, None]
        return torch.where(m.const(name)[:, None], torch.full_like(p, 1.0 / N), p)

    p = dist("pred", torch.where(valid, vals, torch.zeros_like(vals)))
    base = m.minmax("baseline")
    q = dist("baseline", torch.gather(base.expand(idx.shape[0], -1), 1, idx))
    terms = torch.where(valid, torch.log2(EPS + p) - torch.log2(EPS + q), torch.zeros_like(p))
    return _nan_where(nf == 0, terms.sum(-1) / nf.clamp_min(1).to(_DT))


def _public(name: str, doc: str) -> Callable:
    def f(pred: torch.Tensor, *args: torch.Tensor, chunk: int | None = None, **opts) -> torch.Tensor:
        need = _SPECS[name][1]
        if len(args) != len(need):
            raise TypeError(f"{name}_batch(pred, {', '.join(need)})")
        x = _prepare(pred, False, **dict(zip(need, args)))
        return _evaluate([name], x, opts, chunk)[name]
    f.__doc__ = doc
    return f




# ----------------------------------------------------------------------------- registry
def _auc_judd_opts(m: _Maps, jitter: bool = False, seed: int = 0) -> torch.Tensor:
    if not jitter:
        return _auc_judd(m)
    # MIT adds rand/1e7 before normalising; same noise as functional.jitter_noise
    p = m.x["pred"]
    noise = torch.as_tensor(jitter_noise(tuple(p.shape[-2:]), seed), dtype=_DT, device=p.device)
    return _auc_judd(_Maps({"pred": p + noise, "fixations": m.x["fixations"]}))


# name -> (function of _Maps, inputs it needs besides pred, options it takes)
_SPECS: dict[str, tuple[Callable, tuple[str, ...], tuple[str, ...]]] = {
    "cc": (_cc, ("density",), ()),
    "kld": (_kld, ("density",), ()),
    "nss": (_nss, ("fixations",), ()),
    "sim": (_sim, ("density",), ()),
    "auc_judd": (_auc_judd_opts, ("fixations",), ("jitter", "seed")),
    "auc_borji": (_auc_borji, ("fixations",), ("n_splits", "step", "seed")),
    "sauc": (_sauc, ("fixations", "other_fixations"), ("n_splits", "step", "seed")),
    "ig": (_ig, ("fixations", "baseline"), ()),
}
ALL_NAMES: tuple[str, ...] = tuple(_SPECS)
DEFAULT_NAMES: tuple[str, ...] = ("cc", "kld", "nss", "sim", "auc_judd")
_FIXATION_INPUTS = ("fixations", "other_fixations")


def _keep_dtype(t) -> torch.dtype:
    """Inputs keep their dtype until a chunk is converted to float64 (cache-sized passes);
    half precision is widened right away, non-tensors become float64."""
    if not torch.is_tensor(t):
        return _DT
    return t.dtype if t.dtype in (torch.float32, torch.float64, torch.bool, torch.uint8,
                                  torch.int32, torch.int64) else _DT


def _chunks(B: int, device: torch.device, chunk: int | None) -> list[slice]:
    """CPU: one image at a time by default (a 480x640 float64 map fits in cache, a batch does
    not: 2-4x faster); GPU: the whole batch."""
    if chunk is None:
        chunk = 1 if device.type == "cpu" else B
    chunk = max(int(chunk), 1)
    return [slice(i, i + chunk) for i in range(0, B, chunk)]


@contextlib.contextmanager
def _cpu_threads(n: int | None, device: torch.device):
    """Run CPU metric code with n torch intra-op threads (restored afterwards). The per-image
    ops are small; on the busy 2-core CI machine 2 threads made the suite 13x slower than 1
    (bench/RESULTS.md)."""
    if n is None or device.type != "cpu" or torch.get_num_threads() == n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _evaluate(names: Sequence[str], x: dict[str, torch.Tensor], opts: dict, chunk: int | None,
              shared: dict[str, object] | None = None, threads: int | None = 1) -> dict[str, torch.Tensor]:
    """Per-image values (B,) of each named metric, chunk by chunk."""
    with _cpu_threads(threads, x["pred"].device):
        return _evaluate_chunks(names, x, opts, chunk, shared, threads or 1)


def _evaluate_chunks(names: Sequence[str], x: dict[str, torch.Tensor], opts: dict, chunk: int | None,
                     shared: dict[str, object] | None, workers: int = 1) -> dict[str, torch.Tensor]:
    for n in names:
        missing = [k for k in _SPECS[n][1] if k not in x]
        if missing:
            raise ValueError(f"metric {n!r} needs {', '.join(missing)}")
    shared = {} if shared is None else shared
    p = x["pred"]
    if p.device.type == "cpu" and CPU_KERNELS and chunk is None:
        return _cpu.evaluate(names, x, opts, shared, workers)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    slices = _chunks(p.shape[0], p.device, chunk)
    for sl in slices:
        part = {k: (v if k == "baseline" and v.shape[0] == 1 else v[sl]) for k, v in x.items()}
        maps = _Maps(part, shared, defer=len(slices) > 1)
        for n in names:
            fn, _, fopts = _SPECS[n]
            out[n].append(fn(maps, **{o: opts[o] for o in fopts if o in opts}))
    return {n: (_finish_sampled([r.part for r in v]) if isinstance(v[0], _Pending) else torch.cat(v))
            for n, v in out.items()}


def _prepare(pred: torch.Tensor, resize: bool, **targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Bring every input to (B,H,W) on pred's device (maps float64, fixation maps as given);
    check shapes (a baseline may have batch size 1), or resize predictions if asked."""
    device = pred.device if torch.is_tensor(pred) else None
    p = _to_bhw(pred, "pred", device, dtype=_keep_dtype(pred))
    out: dict[str, torch.Tensor] = {}
    for name, t in targets.items():
        if t is None:
            continue
        out[name] = _to_bhw(t, name, device, dtype=_keep_dtype(t))
    ref_name = next((n for n in out if n != "baseline"), None)
    if ref_name is not None:
        ref = out[ref_name]
        for name, t in out.items():
            _check_same(t, ref, name, ref_name, broadcast=name == "baseline")
        if p.shape != ref.shape:
            if resize and p.shape[0] == ref.shape[0]:
                # not MIT-exact: Matlab's imresize is bicubic with its own kernel (docs/metrics.md)
                p = F.interpolate(p[:, None].to(_DT), size=tuple(ref.shape[-2:]), mode="bilinear",
                                  align_corners=False, antialias=True)[:, 0]
            else:
                raise ValueError(f"pred has shape {tuple(p.shape)} but {ref_name} has shape "
                                 f"{tuple(ref.shape)} (as (B, H, W)); pass resize=True to resize "
                                 "predictions to the ground truth")
    if "baseline" in out:
        _check_same(out["baseline"], p, "baseline", "pred", broadcast=True)
    out["pred"] = p
    return out


def compute_batch(name: str, pred: torch.Tensor, resize: bool = False, **kwargs) -> torch.Tensor:
    """Per-image values (B,) of one metric by name; kwargs: the inputs it needs (density,
    fixations, other_fixations, baseline) and its options (jitter, seed, n_splits, step)."""
    if name not in _SPECS:
        raise ValueError(f"unknown metric {name!r}; choose from {ALL_NAMES}")
    needs = _SPECS[name][1]
    missing = [n for n in needs if kwargs.get(n) is None]
    if missing:
        raise ValueError(f"metric {name!r} needs {', '.join(missing)}")
    x = _prepare(pred, resize, **{n: kwargs[n] for n in needs})
    return _evaluate([name], x, kwargs, kwargs.get("chunk"))[name]


cc_batch = _public("cc", "CC per image (functional.cc): 0 where a map is constant.")
kld_batch = _public("kld", "KLD per image (functional.kld); negative values raise.")
sim_batch = _public("sim", "SIM per image (functional.sim).")
nss_batch = _public("nss", "NSS per image (functional.nss).")
auc_judd_batch = _public("auc_judd", "AUC-Judd per image (functional.auc_judd).")
auc_borji_batch = _public("auc_borji", "AUC-Borji per image, same samples.")
sauc_batch = _public("sauc", "Shuffled AUC per image, same samples.")
ig_batch = _public("ig", "Information gain (bits/fixation) per image.")


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
    whose size differs from the ground truth instead of raising), chunk (None, the default:
    fused numba kernels on CPU (_cpu.py), the whole batch at once on GPU; an int: images per
    pass of the torch ops, also on CPU), threads (CPU threads, default 1: with the numba
    kernels, maps of a batch evaluated at once; with torch ops, intra-op threads, restored
    after; None: torch's setting, one map at a time).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, names: Sequence[str] = DEFAULT_NAMES, n_splits: int = 100, step: float = 0.1,
                 seed: int = 0, jitter: bool = False, resize: bool = False, chunk: int | None = None,
                 threads: int | None = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.chunk, self.threads = chunk, threads
        self._bl_key, self._bl_stats = None, {}
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
        try:
            values = _evaluate(self.names, x, self.opts, self.chunk, self._baseline_stats(baseline),
                               self.threads)
        except ValueError as e:
            raise ValueError(f"SaliencyMetrics: {e} in update()") from None
        for n, v in values.items():
            ok = ~torch.isnan(v)
            total, count = getattr(self, f"{n}_total"), getattr(self, f"{n}_count")
            setattr(self, f"{n}_total", total + v[ok].sum().to(total.device))
            setattr(self, f"{n}_count", count + ok.sum().to(count.device, _DT))

    def _baseline_stats(self, baseline: torch.Tensor | None) -> dict[str, object]:
        """Statistics of a fixed baseline map are kept across updates (same tensor, unchanged)."""
        if not torch.is_tensor(baseline):
            return {}
        key = (baseline.data_ptr(), baseline._version, tuple(baseline.shape), baseline.device, baseline.dtype)
        if self._bl_key != key:
            self._bl_key, self._bl_stats = key, {}
        return self._bl_stats

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
