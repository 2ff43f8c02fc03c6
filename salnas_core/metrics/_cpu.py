"""Fused CPU kernels (numba) for the batched metrics: every per-pixel quantity of the suite in
three passes over each map instead of one torch op per statistic.

Each kernel computes, element for element, the same float64 expressions as
salnas_core.metrics.functional (the same min-max map `(x - lo) / (hi - lo)`, the same KLD
ratio, the same Matlab colon thresholds; a few products by a reciprocal instead of divisions,
within an ulp per term), so values differ from the functional ones only by float64 rounding
(sums are vectorised, i.e. reordered into SIMD lanes; tested at 1e-12). Comparisons that
decide counts (AUC-Judd, Borji, sAUC) use exactly the functional min-max values.
Used by batched._evaluate on CPU when numba imports (`batched.CPU_KERNELS`); the torch code
remains the GPU path and the fallback.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch

from .functional import EPS, borji_sample_indices, jitter_noise, shuffled_sample_draws


_BLOCK = 512          # sums: SIMD partial sums of 512 values, then the total (error ~1e-14)
_G = 1 << 16          # AUC-Judd: value buckets for locating a pixel among the thresholds
_jit = nb.njit(cache=True, nogil=True, error_model="numpy")
# sums may be reordered (vectorised): only the summation order changes, never an element's value
_jit_sum = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "nsz"})


# ----------------------------------------------------------------------------- per-pixel passes
@_jit_sum
def _sum(x):
    n, tot = x.size, 0.0
    for s in range(0, n, _BLOCK):
        part = 0.0
        for i in range(s, min(s + _BLOCK, n)):
            part += np.float64(x[i])
        tot += part
    return tot


def _stats(x: np.ndarray) -> tuple[float, float, float, bool]:
    """lo, hi, sum of one map (float64), and whether every value is finite (a NaN or inf makes
    numpy's min or max non-finite)."""
    lo, hi = float(x.min()), float(x.max())
    return lo, hi, _sum(x), math.isfinite(lo) and math.isfinite(hi)


@_jit
def _nonzero(f):
    """Flat indices of f > 0 and whether some value is negative (or NaN)."""
    n = f.size
    cnt, bad = 0, 0
    for i in range(n):                             # branch-free: vectorised
        v = f[i]
        cnt += v > 0
        bad |= not (v >= 0)
    out = np.empty(cnt, np.int64)
    k = 0
    for i in range(n):
        if f[i] > 0:
            out[k] = i
            k += 1
    return out, bad != 0


@_jit_sum
def _pass2(p, d, mp, md, lo_p, rng_p, lo_d, rng_d):
    """Centred sums for CC/NSS and sums of the min-max maps (SIM, IG)."""
    n = p.size
    css_p, css_d, dot, mm_p, mm_d = 0.0, 0.0, 0.0, 0.0, 0.0
    for s in range(0, n, _BLOCK):
        a0, a1, a2, a3, a4 = 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(s, min(s + _BLOCK, n)):
            x = np.float64(p[i])
            y = np.float64(d[i])
            cx = x - mp
            cy = y - md
            a0 += cx * cx
            a1 += cy * cy
            a2 += cx * cy
            a3 += x - lo_p
            a4 += y - lo_d
        css_p += a0
        css_d += a1
        dot += a2
        mm_p += a3
        mm_d += a4
    return css_p, css_d, dot, mm_p / rng_p, mm_d / rng_d


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LG1, _LG2, _LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
_LG4, _LG5 = 2.222219843214978396e-01, 1.818357216161805012e-01
_LG6, _LG7 = 1.531383769920937332e-01, 1.479819860511658591e-01


@_jit
def _log_block(x, out, mb, kb, big):
    """out = log(x) for positive normal finite x: fdlibm's e_log.c (< 1 ulp), written without
    branches so that it vectorises (torch's SIMD log needs a separate pass over the map)."""
    n = x.size
    bits = x.view(np.int64)
    for j in range(n):
        hx = bits[j] >> 32
        k = (hx >> 20) - 1023
        hx &= 0x000fffff
        i = (hx + 0x95f64) & 0x100000
        mb[j] = ((hx | (i ^ 0x3ff00000)) << 32) | (bits[j] & 0xffffffff)   # x or x/2 in [sqrt2/2, sqrt2)
        kb[j] = 0x4330000000000400 + k + (i >> 20)   # the double 2^52 + 1024 + k: no int->float
        big[j] = (hx - 0x6147a) | (0x6b851 - hx)
    m = mb.view(np.float64)
    kf = kb.view(np.float64)
    for j in range(n):
        f = m[j] - 1.0
        s = f / (2.0 + f)
        dk = kf[j] - 4503599627371520.0                   # exact: 2^52 + 1024
        z = s * s
        w = z * z
        t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
        t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
        R = t2 + t1
        hfsq = 0.5 * f * f
        a = dk * _LN2_HI - ((hfsq - (s * (hfsq + R) + dk * _LN2_LO)) - f)
        b = dk * _LN2_HI - ((s * (f - R) - dk * _LN2_LO) - f)
        out[j] = a if big[j] > 0 else b


@_jit
def _kld_fused(p, d, isp, isd):
    """sum(D .* log(eps + D ./ (S + eps))) with D = d * isd, S = p * isp, block by block in
    cache (no map-sized temporary)."""
    n = p.size
    xb = np.empty(_BLOCK)
    lg = np.empty(_BLOCK)
    mb = np.empty(_BLOCK, np.int64)
    kb = np.empty(_BLOCK, np.int64)
    big = np.empty(_BLOCK, np.int64)
    kl = 0.0
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        for i in range(s, e):
            xb[i - s] = EPS + (np.float64(d[i]) * isd) / (np.float64(p[i]) * isp + EPS)
        _log_block(xb[: e - s], lg, mb, kb, big)
        a0, a1, a2, a3 = 0.0, 0.0, 0.0, 0.0
        i = s
        while i + 4 <= e:
            a0 += (np.float64(d[i]) * isd) * lg[i - s]
            a1 += (np.float64(d[i + 1]) * isd) * lg[i + 1 - s]
            a2 += (np.float64(d[i + 2]) * isd) * lg[i + 2 - s]
            a3 += (np.float64(d[i + 3]) * isd) * lg[i + 3 - s]
            i += 4
        while i < e:
            a0 += (np.float64(d[i]) * isd) * lg[i - s]
            i += 1
        kl += (a0 + a1) + (a2 + a3)
    return kl


@_jit_sum
def _sim_sum(p, d, mode_p, lo_p, rng_p, sa, mode_d, lo_d, rng_d, sb):
    """SIM = sum(min(P, D)) with each map's distribution: mode 0 all-zero, 1 uniform (constant
    map), 2 min-max then sum-normalised."""
    n = p.size
    sm = 0.0
    if mode_p == 2 and mode_d == 2:                # the usual case: a branch-free loop
        ca, cb = 1.0 / (rng_p * sa), 1.0 / (rng_d * sb)
        for s in range(0, n, _BLOCK):
            part = 0.0
            for i in range(s, min(s + _BLOCK, n)):
                part += min((np.float64(p[i]) - lo_p) * ca, (np.float64(d[i]) - lo_d) * cb)
            sm += part
        return sm
    un = 1.0 / n
    for i in range(n):
        u = ((np.float64(p[i]) - lo_p) / rng_p) / sa if mode_p == 2 else (un if mode_p == 1 else 0.0)
        v = ((np.float64(d[i]) - lo_d) / rng_d) / sb if mode_d == 2 else (un if mode_d == 1 else 0.0)
        sm += min(u, v)
    return sm


@_jit
def _count_ge(p, lo, rng, t_asc):
    """#(S >= t) for each threshold t of t_asc (sorted ascending, in [0, 1]), S the min-max map.
    Exact: each pixel is located among the thresholds by its bucket floor(S * 2^16) (an exact
    scaling, so bucket order agrees with value order); only pixels in a bucket that holds a
    threshold (<1% here) are compared one by one."""
    K = t_asc.size
    first = np.zeros(_G + 2, np.int32)             # first[g] = #thresholds in buckets < g
    for k in range(K):
        g = min(int(t_asc[k] * _G), _G - 1)
        first[g + 1] += 1
    for g in range(1, _G + 2):
        first[g] += first[g - 1]
    n = p.size
    gb = np.empty(n, np.uint16)                     # bucket < 2^16: half the traffic of int32
    for i in range(n):                              # branch-free: vectorised
        gb[i] = min(np.int32(((np.float64(p[i]) - lo) / rng) * _G), _G - 1)
    # hist[j] = #pixels with j thresholds <= S; 4 interleaved copies, as neighbouring pixels
    # mostly hit the same bin (a chain of dependent increments otherwise)
    hist4 = np.zeros((4, K + 1), np.int64)
    for i in range(n):
        g = gb[i]
        a, b = first[g], first[g + 1]
        if a != b:
            v = (np.float64(p[i]) - lo) / rng       # the exact min-max value, as functional
            while b - a > 8:                       # binary search in a crowded bucket
                m = (a + b) // 2
                if t_asc[m] <= v:
                    a = m + 1
                else:
                    b = m
            while a < b and t_asc[a] <= v:
                a += 1
        hist4[i & 3, a] += 1
    hist = hist4.sum(0)
    above = np.empty(K, np.int64)                  # S >= t_asc[j]  <=>  j+1 thresholds <= S
    acc = 0
    for j in range(K, 0, -1):
        acc += hist[j]
        above[j - 1] = acc
    return above


# ----------------------------------------------------------------------------- sampled AUCs
@_jit
def _colon_desc(b, d):
    """fliplr(0:d:b) exactly as functional.matlab_colon(0, d, b) builds it (b >= 0)."""
    tol = 2.0 * EPS * abs(b)
    if d == 1.0:
        n = np.floor(b)
    elif d == np.floor(d):
        n = np.floor(b / d)
    else:
        x = b / d
        n = np.floor(x) + (1.0 if x - np.floor(x) >= 0.5 else 0.0)
        if 0.0 + n * d - b > tol:
            n -= 1.0
    c = 0.0 + n * d
    if c - b > -tol:
        c = b
    ni = int(n)
    v = np.zeros(ni + 1)
    for k in range(ni // 2 + 1):
        v[k] = 0.0 + k * d
    for k in range(ni // 2 + 1):
        v[ni - k] = c - k * d
    if ni % 2 == 0:
        v[ni // 2] = (0.0 + c) / 2
    return v[::-1]


@_jit
def _step_auc_mean(sth, randfix, step, n_neg):
    """functional._step_auc averaged over splits: per split thresholds fliplr(0:step:max),
    tp = #(sth >= thr)/Nfix, fp = #(negatives >= thr)/n_neg, trapz with (0,0) and (1,1)."""
    S, M = randfix.shape
    nfix = sth.size
    top = sth.max()
    total = 0.0
    for k in range(S):
        cur = randfix[k]
        thr = _colon_desc(max(top, cur.max()), step)
        T = thr.size
        xs = np.empty(T + 2)
        ys = np.empty(T + 2)
        xs[0], ys[0], xs[T + 1], ys[T + 1] = 0.0, 0.0, 1.0, 1.0
        for t in range(T):
            h = thr[t]
            c1 = 0
            for j in range(nfix):
                c1 += sth[j] >= h
            c2 = 0
            for j in range(M):
                c2 += cur[j] >= h
            ys[t + 1] = c1 / nfix
            xs[t + 1] = c2 / n_neg
        auc = 0.0
        for t in range(T + 1):
            auc += (xs[t + 1] - xs[t]) * (ys[t + 1] + ys[t]) / 2.0
        total += auc
    return total / S


@_jit
def _fisher_yates_take(values, draws):
    """values[perm[:k]] per split, perm the partial Fisher-Yates shuffle of range(L) that
    functional.shuffled_sample_indices builds from the same draws (k swaps per split)."""
    S, k = draws.shape
    L = values.size
    perm = np.empty(L, np.int64)
    out = np.empty((S, k))
    for r in range(S):
        for i in range(L):
            perm[i] = i
        for i in range(k):
            j = draws[r, i]
            held = perm[i]
            perm[i] = perm[j]
            perm[j] = held
            out[r, i] = values[perm[i]]
    return out


# ----------------------------------------------------------------------------- driver
def _np(t: torch.Tensor) -> np.ndarray:
    """(B, H, W) tensor -> (B, N) numpy view; bool as uint8, other dtypes than float32/64,
    uint8 and ints as float64 (numba compiles one kernel per dtype)."""
    t = t.reshape(t.shape[0], -1)
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    elif t.dtype not in (torch.float32, torch.float64, torch.uint8, torch.int32, torch.int64):
        t = t.to(torch.float64)
    return np.ascontiguousarray(t.numpy())


def _map_stats(a: np.ndarray, name: str) -> tuple[float, float, float]:
    lo, hi, tot, ok = _stats(a)
    if not ok:
        raise ValueError(f"{name}: contains NaN or infinite values")
    return lo, hi, tot


def _fixated(a: np.ndarray, name: str) -> np.ndarray:
    idx, bad = _nonzero(a)
    if bad:
        raise ValueError(f"{name}: a fixation map must be non-negative (1 at fixated pixels)")
    return idx


def _minmax_at(a: np.ndarray, idx: np.ndarray, lo: float, rng: float) -> np.ndarray:
    return (a[idx].astype(np.float64) - lo) / rng


def _auc_judd(p: np.ndarray, idx: np.ndarray, lo: float, hi: float) -> float:
    n_fix, n_pix = idx.size, p.size
    if n_fix == 0:
        return math.nan
    if hi == lo:
        return 0.5
    if n_fix == n_pix:
        return math.nan
    rng = hi - lo
    t_asc = np.sort(_minmax_at(p, idx, lo, rng))
    above = _count_ge(p, lo, rng, t_asc)[::-1]               # aligned with thresholds desc
    i = np.arange(1, n_fix + 1, dtype=np.float64)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float((np.diff(fp) * (tp[1:] + tp[:-1]) / 2.0).sum())


def evaluate(names, x: dict[str, torch.Tensor], opts: dict, shared: dict,
             workers: int = 1) -> dict[str, torch.Tensor]:
    """Per-image values (B,) of each named metric on CPU (same rules as batched._SPECS);
    `workers` maps at a time in threads."""
    P = _np(x["pred"])
    B, N = P.shape
    need_d = any(n in names for n in ("cc", "kld", "sim"))
    need_f = any(n in names for n in ("nss", "auc_judd", "auc_borji", "sauc", "ig"))
    D = _np(x["density"]) if need_d else None
    Fx = _np(x["fixations"]) if need_f else None
    O = _np(x["other_fixations"]) if "sauc" in names else None
    n_splits, step, seed = opts.get("n_splits", 100), opts.get("step", 0.1), opts.get("seed", 0)
    base = None
    if "ig" in names:
        Bl = _np(x["baseline"])
        if Bl.shape[0] == 1 and "cpu_baseline" in shared:
            base = shared["cpu_baseline"]
        else:
            base = []
            for row in Bl:
                lo, hi, _ = _map_stats(row, "baseline")
                rng = hi - lo if hi != lo else 1.0
                mm = float(_pass2(row, row, 0.0, 0.0, lo, rng, lo, rng)[3])
                base.append((row, lo, hi, rng, mm))
            if Bl.shape[0] == 1:
                shared["cpu_baseline"] = base
    out = {n: np.full(B, np.nan) for n in names}
    def one(b: int) -> None:
        p = P[b]
        lo_p, hi_p, s_p = _map_stats(p, "pred")
        const_p = hi_p == lo_p
        rng_p = 1.0 if const_p else hi_p - lo_p
        if need_d:
            d = D[b]
            lo_d, hi_d, s_d = _map_stats(d, "density")
            const_d = hi_d == lo_d
            rng_d = 1.0 if const_d else hi_d - lo_d
            if "kld" in names:
                for nm, lo in (("pred", lo_p), ("density", lo_d)):
                    if lo < 0:
                        raise ValueError(f"kld: {nm} has negative values (min {lo:.4g}); KLD needs "
                                         "non-negative maps (the MIT code would return a complex number)")
            sp = s_p if s_p != 0 else 1.0
            sd = s_d if s_d != 0 else 1.0
            css_p, css_d, dot, mm_p, mm_d = _pass2(p, d, s_p / N, s_d / N, lo_p, rng_p, lo_d, rng_d)
            mode_p = 2 if not const_p else (0 if hi_p == 0 else 1)
            mode_d = 2 if not const_d else (0 if hi_d == 0 else 1)
            if "cc" in names:
                out["cc"][b] = 0.0 if (const_p or const_d) else dot / math.sqrt(css_p * css_d)
            if "kld" in names:
                # products by 1/sum: each term within an ulp of MIT's divisions
                out["kld"][b] = _kld_fused(p, d, 1.0 / sp, 1.0 / sd)
            if "sim" in names:
                out["sim"][b] = _sim_sum(p, d, mode_p, lo_p, rng_p, mm_p if mm_p != 0 else 1.0,
                                         mode_d, lo_d, rng_d, mm_d if mm_d != 0 else 1.0)
        else:
            css_p, mm_p = None, None
        if not need_f:
            return
        idx = _fixated(Fx[b], "fixations")
        nf = idx.size
        if "nss" in names and nf:
            if const_p:
                out["nss"][b] = 0.0
            else:
                if css_p is None:
                    css_p, _, _, mm_p, _ = _pass2(p, p, s_p / N, s_p / N, lo_p, rng_p, lo_p, rng_p)
                std = math.sqrt(css_p / max(N - 1, 1))
                out["nss"][b] = (p[idx].astype(np.float64).sum() / nf - s_p / N) / std
        if "auc_judd" in names:
            if opts.get("jitter", False):
                pj = p.astype(np.float64) + jitter_noise(tuple(x["pred"].shape[-2:]), opts.get("seed", 0)).ravel()
                lo_j, hi_j, _ = _map_stats(pj, "pred")
                out["auc_judd"][b] = _auc_judd(pj, idx, lo_j, hi_j)
            else:
                out["auc_judd"][b] = _auc_judd(p, idx, lo_p, hi_p)
        sth = None if const_p else _minmax_at(p, idx, lo_p, rng_p)
        if "auc_borji" in names and nf:
            if const_p:
                out["auc_borji"][b] = 0.5
            else:
                ridx = borji_sample_indices(N, nf, n_splits, seed)
                out["auc_borji"][b] = _step_auc_mean(sth, _minmax_at(p, ridx, lo_p, rng_p),
                                                     float(step), float(nf))
        if "sauc" in names and nf:
            oidx = _fixated(O[b], "other_fixations")
            if oidx.size:
                if const_p:
                    out["sauc"][b] = 0.5
                else:
                    k = min(nf, oidx.size)
                    draws = shuffled_sample_draws(oidx.size, k, n_splits, seed)
                    neg = _fisher_yates_take(_minmax_at(p, oidx, lo_p, rng_p), draws)
                    out["sauc"][b] = _step_auc_mean(sth, neg, float(step), float(k))
        if "ig" in names and nf:
            if mm_p is None and not const_p:
                mm_p = _pass2(p, p, 0.0, 0.0, lo_p, rng_p, lo_p, rng_p)[3]
            pv = np.full(nf, 1.0 / N) if const_p else sth / mm_p
            row, lo_b, hi_b, rng_b, mm_b = base[0] if len(base) == 1 else base[b]
            qv = np.full(nf, 1.0 / N) if hi_b == lo_b else _minmax_at(row, idx, lo_b, rng_b) / mm_b
            out["ig"][b] = float((np.log2(EPS + pv) - np.log2(EPS + qv)).sum() / nf)

    if workers > 1 and B > 1:
        # the kernels release the GIL: maps of the batch in parallel, each writing its own index
        with ThreadPoolExecutor(min(workers, B)) as pool:
            for f in [pool.submit(one, b) for b in range(B)]:
                f.result()
    else:
        for b in range(B):
            one(b)
    return {n: torch.from_numpy(v) for n, v in out.items()}
