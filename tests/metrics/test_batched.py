"""Batched torch metrics and torchmetrics classes agree with the functional (numpy) API."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from salnas_core import metrics as M
from salnas_core.metrics import batched as Bm

from conftest import random_fixations, smooth_map

FUNCTIONAL = {
    "cc": lambda p, d, f, o, b: M.cc(p, d), "kld": lambda p, d, f, o, b: M.kld(p, d),
    "sim": lambda p, d, f, o, b: M.sim(p, d), "nss": lambda p, d, f, o, b: M.nss(p, f),
    "auc_judd": lambda p, d, f, o, b: M.auc_judd(p, f),
    "auc_borji": lambda p, d, f, o, b: M.auc_borji(p, f),
    "sauc": lambda p, d, f, o, b: M.sauc(p, f, o), "ig": lambda p, d, f, o, b: M.info_gain(p, f, b),
}


def make_batch(seed: int, B: int = 7, shape=(30, 40)):
    """Random smooth maps plus every degenerate row the functional API special-cases."""
    rng = np.random.default_rng(seed)
    p = np.stack([smooth_map(rng, shape) for _ in range(B)])
    p[1] = 0.3                                     # constant
    p[2] = np.round(p[2] / p[2].max() * 4) / 4     # heavy ties, quantised on the 0.1 grid
    p[5] = 0.0                                     # all zero
    d = np.stack([smooth_map(rng, shape) for _ in range(B)]); d /= d.sum((1, 2), keepdims=True)
    f = np.stack([random_fixations(rng, shape, int(n)) for n in rng.integers(1, 40, B)])
    f[3] = 0                                       # no fixations
    f[4] = 0; f[4, 0, 0] = 1                       # a single fixation
    o = np.stack([random_fixations(rng, shape, 25) for _ in range(B)]); o[6] = 0
    b = smooth_map(rng, shape)
    return p, d, f, o, b


def functional_rows(name, p, d, f, o, b):
    return np.array([FUNCTIONAL[name](p[i], d[i], f[i], o[i], b) for i in range(len(p))])


@pytest.fixture(params=["numba", "torch"])
def cpu_path(request, monkeypatch):
    """Both CPU code paths: the fused numba kernels (default) and the torch ops (GPU path)."""
    if request.param == "torch":
        monkeypatch.setattr(Bm, "CPU_KERNELS", False)
    return request.param


@pytest.mark.parametrize("name", Bm.ALL_NAMES)
def test_batch_functions_equal_functional_per_image(name, cpu_path):
    p, d, f, o, b = make_batch(0)
    want = functional_rows(name, p, d, f, o, b)
    t = torch.from_numpy
    got = Bm.compute_batch(name, t(p)[:, None], density=t(d)[:, None], fixations=t(f)[:, None],
                           other_fixations=t(o)[:, None], baseline=t(b)).numpy()
    assert np.array_equal(np.isnan(want), np.isnan(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_auc_judd_torch_counting_path_equals_functional(monkeypatch):
    """The GPU code path (torch searchsorted + scatter_add), run on CPU."""
    monkeypatch.setattr(Bm, "NUMPY_COUNTS_ON_CPU", False)
    p, d, f, o, b = make_batch(8)
    want = functional_rows("auc_judd", p, d, f, o, b)
    got = Bm.auc_judd_batch(torch.from_numpy(p), torch.from_numpy(f)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_auc_judd_jitter_matches_functional():
    p, d, f, o, b = make_batch(1)
    want = [M.auc_judd(p[i], f[i], jitter=True, seed=7) for i in range(len(p))]
    got = Bm.auc_judd_batch(torch.from_numpy(p), torch.from_numpy(f), jitter=True, seed=7)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_colon_vectorised_equals_scalar():
    from salnas_core.metrics.functional import matlab_colon
    rng = np.random.default_rng(0)
    bs = np.concatenate([rng.random(300), np.arange(11) / 10, np.arange(11) * 0.1,
                         1 - np.arange(11) * 0.1, [0.0, 1.0, 0.95, 0.049999, 0.05]])
    for step in (0.1, 0.05, 0.25, 1.0):
        got = Bm._colon_desc(torch.from_numpy(bs), step).numpy()
        for bv, row in zip(bs, got):
            want = matlab_colon(0, step, bv)[::-1]
            assert np.array_equal(row[np.isfinite(row)], want)


def test_saliency_metrics_accumulates_mean_over_batches_and_skips_undefined():
    names = Bm.ALL_NAMES
    m = Bm.SaliencyMetrics(names=names)
    rows = {n: [] for n in names}
    for seed in (2, 3):
        p, d, f, o, b = make_batch(seed)
        t = torch.from_numpy
        m.update(t(p).float()[:, None], t(d).float()[:, None], t(f).float()[:, None],
                 t(o)[:, None], t(b)[None, None])
        for n in names:
            # float32 inputs are what loaders give: the reference sees the same float32 values
            rows[n].extend(functional_rows(n, p.astype(np.float32), d.astype(np.float32), f, o, b))
    out = m.compute()
    assert set(out) == set(names) and all(isinstance(v, float) for v in out.values())
    for n in names:
        assert out[n] == pytest.approx(np.nanmean(rows[n]), rel=1e-10, abs=1e-12), n
    m.reset()
    assert all(math.isnan(v) for v in m.compute().values())


@pytest.mark.parametrize("name", list(Bm.METRIC_CLASSES))
def test_single_metric_classes(name):
    p, d, f, o, b = make_batch(4)
    cls = Bm.METRIC_CLASSES[name]
    needs = {"cc": (d,), "kld": (d,), "sim": (d,), "nss": (f,), "auc_judd": (f,),
             "auc_borji": (f,), "sauc": (f, o), "ig": (f, np.broadcast_to(b, p.shape))}[name]
    metric = cls()
    metric.update(torch.from_numpy(p[:4]), *[torch.from_numpy(np.ascontiguousarray(x[:4])) for x in needs])
    metric.update(torch.from_numpy(p[4:]), *[torch.from_numpy(np.ascontiguousarray(x[4:])) for x in needs])
    want = np.nanmean(functional_rows(name, p, d, f, o, b))
    assert float(metric.compute()) == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_options_reach_the_metric():
    p, d, f, o, b = make_batch(5)
    t = torch.from_numpy
    m = Bm.SaliencyMetrics(names=("auc_borji", "sauc", "auc_judd"), n_splits=7, step=0.2, seed=9,
                           jitter=True)
    m.update(t(p), t(d), t(f), t(o))
    out = m.compute()
    assert out["auc_borji"] == pytest.approx(np.nanmean(
        [M.auc_borji(p[i], f[i], n_splits=7, step=0.2, seed=9) for i in range(len(p))]), rel=1e-12)
    assert out["sauc"] == pytest.approx(np.nanmean(
        [M.sauc(p[i], f[i], o[i], n_splits=7, step=0.2, seed=9) for i in range(len(p))]), rel=1e-12)
    assert out["auc_judd"] == pytest.approx(np.nanmean(
        [M.auc_judd(p[i], f[i], jitter=True, seed=9) for i in range(len(p))]), rel=1e-12)


def test_shape_errors_and_resize_option():
    p = torch.rand(2, 1, 20, 30)
    d = torch.rand(2, 1, 40, 60)
    f = (torch.rand(2, 1, 40, 60) < 0.05).float()
    m = Bm.SaliencyMetrics()
    with pytest.raises(ValueError, match="resize=True"):
        m.update(p, d, f)
    with pytest.raises(ValueError, match="fixations has shape"):
        m.update(torch.rand(2, 1, 40, 60), d, f[:, :, :20])
    with pytest.raises(ValueError, match="needs other_fixations"):
        Bm.SaliencyMetrics(names=("sauc",)).update(d, d, f)
    with pytest.raises(ValueError, match="unknown metric"):
        Bm.SaliencyMetrics(names=("cc", "emd"))
    with pytest.raises(ValueError, match="density has shape"):
        m.update(torch.rand(2, 1, 40, 60), d[:1], f)             # only a baseline may broadcast
    with pytest.raises(TypeError, match="sauc_batch"):
        Bm.sauc_batch(d, f)
    with pytest.raises(ValueError, match="NaN"):
        m.update(torch.full((2, 1, 40, 60), float("nan")), d, f)
    r = Bm.SaliencyMetrics(resize=True)
    r.update(p, d, f)
    up = torch.nn.functional.interpolate(p.double(), size=(40, 60), mode="bilinear",
                                         align_corners=False, antialias=True)
    ref = Bm.SaliencyMetrics()
    ref.update(up, d, f)
    assert r.compute() == ref.compute()


def test_shuffled_other_fixations_is_union_of_other_images():
    f = torch.zeros(4, 1, 5, 5)
    for i in range(4):
        f[i, 0, i, i] = 1
    o = Bm.shuffled_other_fixations(f, n_other=10)
    assert o.shape == f.shape
    for i in range(4):
        assert o[i, 0, i, i] == 0 and o[i].sum() == 3
    assert Bm.shuffled_other_fixations(f, n_other=1).sum() == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_equals_cpu():
    p, d, f, o, b = make_batch(6)
    t = torch.from_numpy
    cpu, gpu = Bm.SaliencyMetrics(names=Bm.ALL_NAMES), Bm.SaliencyMetrics(names=Bm.ALL_NAMES).cuda()
    cpu.update(t(p), t(d), t(f), t(o), t(b))
    gpu.update(t(p).cuda(), t(d).cuda(), t(f).cuda(), t(o).cuda(), t(b).cuda())
    c, g = cpu.compute(), gpu.compute()
    for n in c:
        assert g[n] == pytest.approx(c[n], rel=1e-12, abs=1e-12), n


def test_bucketed_counting_is_exact_on_adversarial_values():
    rng = np.random.default_rng(0)
    base = rng.random(5000)
    # neighbours one ulp apart inside a bucket, bucket edges, ties, both ends of [0, 1]
    edges = np.arange(0, 1 << 16, 997) / (1 << 16)
    s = np.concatenate([base, np.nextafter(base[:500], 2), np.nextafter(base[:500], -1), edges,
                        np.nextafter(edges[1:], -1), [0.0, 0.0, 1.0, 1.0], np.full(300, 0.5)])
    t = np.sort(np.concatenate([rng.choice(s, 150), [0.0, 1.0, 0.5, edges[3]]]))[::-1]
    want = np.array([(s >= x).sum() for x in t])
    assert np.array_equal(Bm._count_ge_bucketed(s, t), want)


def test_numba_counting_is_exact_on_adversarial_values():
    """_cpu._count_ge (bucket 4096 + comparisons) on the same adversarial values, plus a bucket
    crowded with thresholds (its binary-search branch)."""
    from salnas_core.metrics import _cpu
    rng = np.random.default_rng(1)
    base = rng.random(5000)
    edges = np.arange(0, 4096, 37) / 4096
    crowd = 0.3 + rng.random(400) * 1e-5                   # one bucket, many thresholds
    s = np.concatenate([base, np.nextafter(base[:500], 2), np.nextafter(base[:500], -1), edges,
                        np.nextafter(edges[1:], -1), [0.0, 0.0, 1.0, 1.0], np.full(300, 0.5), crowd])
    t = np.sort(np.concatenate([rng.choice(s, 150), crowd[:120], [0.0, 1.0, 0.5, edges[3]]]))
    want = np.array([(s >= x).sum() for x in t])
    assert np.array_equal(_cpu._count_ge(s, 0.0, 1.0, t), want)   # (s - 0) / 1 == s exactly


def test_numba_colon_equals_scalar():
    from salnas_core.metrics import _cpu
    from salnas_core.metrics.functional import matlab_colon
    rng = np.random.default_rng(0)
    bs = np.concatenate([rng.random(300), np.arange(11) / 10, np.arange(11) * 0.1,
                         1 - np.arange(11) * 0.1, [0.0, 1.0, 0.95, 0.049999, 0.05, 3.0]])
    for step in (0.1, 0.05, 0.25, 1.0, 2.0):
        for bv in bs:
            assert np.array_equal(_cpu._colon_desc(bv, step), matlab_colon(0, step, bv)[::-1])


@pytest.mark.parametrize("chunk", [None, 1, 3, 100])   # None: the numba kernels on CPU
def test_chunking_does_not_change_values(chunk):
    p, d, f, o, b = make_batch(9)
    t = torch.from_numpy
    ref = Bm.SaliencyMetrics(names=Bm.ALL_NAMES, chunk=7)   # one chunk: nothing deferred
    ref.update(t(p), t(d), t(f), t(o), t(b))
    m = Bm.SaliencyMetrics(names=Bm.ALL_NAMES, chunk=chunk)
    m.update(t(p), t(d), t(f), t(o), t(b))
    for k, v in ref.compute().items():
        assert m.compute()[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_cpu_threads_are_restored_after_update():
    p, d, f, o, b = make_batch(10)
    torch.set_num_threads(2)          # the autouse fixture restores the session's value
    m = Bm.SaliencyMetrics(threads=1)
    m.update(torch.from_numpy(p), torch.from_numpy(d), torch.from_numpy(f))
    assert torch.get_num_threads() == 2


def test_threads_evaluate_maps_in_parallel_with_the_same_values():
    """threads=2 runs the numba kernels on two maps at once: per-image values equal one thread's
    exactly (each map's arithmetic is unchanged), and a bad map still raises its clear error."""
    p, d, f, o, b = make_batch(13, B=9)
    x = {"pred": torch.from_numpy(p), "density": torch.from_numpy(d), "fixations": torch.from_numpy(f),
         "other_fixations": torch.from_numpy(o), "baseline": torch.from_numpy(b)[None]}
    opts = {"n_splits": 100, "step": 0.1, "seed": 0}
    one = Bm._evaluate(Bm.ALL_NAMES, dict(x), opts, None, None, threads=1)
    two = Bm._evaluate(Bm.ALL_NAMES, dict(x), opts, None, None, threads=2)
    for n in Bm.ALL_NAMES:
        assert torch.equal(one[n].isnan(), two[n].isnan())
        assert torch.equal(one[n].nan_to_num(), two[n].nan_to_num()), n
    bad = d.copy(); bad[7, 2, 2] = np.nan
    m = Bm.SaliencyMetrics(names=("cc",), threads=2)
    with pytest.raises(ValueError, match="density: contains NaN"):
        m.update(torch.from_numpy(p), torch.from_numpy(bad))


def test_full_size_maps_match_functional(cpu_path):
    """At 480x640 (307,200 pixels) summation order matters: a plain running sum of positive
    terms drifts ~1e-12 to 1e-11 relative; the kernels' blocked sums stay at float64 rounding
    (measured <= 3e-15 here, hence the tighter tolerance)."""
    rng = np.random.default_rng(11)
    shape = (480, 640)
    p = np.stack([smooth_map(rng, shape, sigma=20) ** 2 + 1e-5 for _ in range(2)]).astype(np.float32)
    d = np.stack([smooth_map(rng, shape, sigma=24) for _ in range(2)]).astype(np.float32)
    f = np.stack([random_fixations(rng, shape, 200) for _ in range(2)]).astype(np.float32)
    o = np.stack([random_fixations(rng, shape, 1500) for _ in range(2)]).astype(np.float32)
    b = smooth_map(rng, shape, sigma=30).astype(np.float32)
    t = torch.from_numpy
    for name in Bm.ALL_NAMES:
        want = functional_rows(name, p, d, f, o, b)
        got = Bm.compute_batch(name, t(p), density=t(d), fixations=t(f), other_fixations=t(o),
                               baseline=t(b)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14, err_msg=name)


def test_numba_log_within_one_ulp():
    """The branch-free fdlibm log used by the fused KLD kernel, over KLD's whole input range."""
    from salnas_core.metrics import _cpu
    rng = np.random.default_rng(2)
    x = np.concatenate([np.exp(rng.uniform(np.log(2.2e-16), np.log(1e30), 20000)),
                        1 + rng.uniform(-1e-6, 1e-6, 2000),
                        [1.0, 2.0, 0.5, 2.220446049250313e-16, np.sqrt(2), np.nextafter(np.sqrt(2), 0)]])
    out, bufs = np.empty_like(x), [np.empty(x.size, np.int64) for _ in range(3)]
    _cpu._log_block(x, out, *bufs)
    ref = np.array([math.log(v) for v in x])
    assert (np.abs(out - ref) <= np.spacing(np.abs(ref))).all()
    assert out[x == 1.0][0] == 0.0


def test_sauc_negatives_of_the_kernel_equal_the_sampler():
    """The kernel's partial Fisher-Yates picks the same negatives, in the same order, as
    functional.shuffled_sample_indices from the same draws; each split is without replacement
    and k = L gives a whole permutation."""
    from salnas_core.metrics import _cpu
    from salnas_core.metrics.functional import shuffled_sample_draws, shuffled_sample_indices
    other = np.sort(np.random.default_rng(3).choice(5000, 700, replace=False))
    vals = np.arange(5000, dtype=np.float64)                 # value = pixel index
    for k in (1, 200, 700):
        got = _cpu._fisher_yates_take(vals[other], shuffled_sample_draws(other.size, k, 50, 4))
        want = shuffled_sample_indices(other, k, 50, 4)
        assert np.array_equal(got, want.astype(np.float64))
        assert all(len(set(row)) == k for row in want) and np.isin(want, other).all()
    assert np.array_equal(np.sort(want, 1), np.tile(other, (50, 1)))


def test_sauc_sampler_is_uniform():
    """Every other-image pixel is drawn equally often (chi-square over 20,000 splits), and the
    first pick is uniform too: the partial shuffle has no positional bias."""
    from scipy.stats import chisquare

    from salnas_core.metrics.functional import shuffled_sample_indices
    other = np.arange(40)
    idx = shuffled_sample_indices(other, 10, 20000, 7)
    assert chisquare(np.bincount(idx.ravel(), minlength=40)).pvalue > 1e-3
    assert chisquare(np.bincount(idx[:, 0], minlength=40)).pvalue > 1e-3


def test_bad_values_give_clear_errors(cpu_path):
    p, d, f, o, b = make_batch(12)
    t = torch.from_numpy
    neg = p.copy(); neg[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="kld: pred has negative values"):
        Bm.kld_batch(t(neg), t(d))
    nan = d.copy(); nan[2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="density: contains NaN"):
        Bm.cc_batch(t(p), t(nan))
    badf = f.copy(); badf[0, 1, 1] = -1
    with pytest.raises(ValueError, match="fixations: a fixation map must be non-negative"):
        Bm.nss_batch(t(p), t(badf))
