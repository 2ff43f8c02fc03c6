"""Hand-derived cases for each MIT code_forMetrics convention, and the edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from salnas_core import metrics as M
from salnas_core.metrics.functional import (EPS, borji_sample_indices, jitter_noise, matlab_colon,
                                            shuffled_sample_indices)

from conftest import random_fixations, smooth_map


def test_eps_is_matlab_eps():
    assert EPS == 2.0 ** -52


# ------------------------------------------------------------------ Matlab colon (thresholds)
def test_colon_matches_documented_matlab_results():
    # 0:0.1:0.3 ends exactly at 0.3 in Matlab; repeated addition / arange do not
    assert matlab_colon(0, 0.1, 0.3)[-1] == 0.3
    assert np.arange(0, 0.31, 0.1)[-1] != 0.3
    v = matlab_colon(0, 0.1, 1)
    assert len(v) == 11 and v[-1] == 1.0 and v[5] == 0.5
    assert v[7] == 1 - 3 * 0.1 and v[7] != 7 * 0.1       # second half counts down from the end
    assert v[3] == 3 * 0.1                                # first half counts up from the start
    # -1:0.01:1 is 201 numbers symmetric about zero (MathWorks' colonop documentation)
    w = matlab_colon(-1, 0.01, 1)
    assert len(w) == 201 and w[100] == 0.0 and np.array_equal(w, -w[::-1])
    # 1-eps : eps/4 : 1+eps = [1-eps 1-eps 1-eps/2 1 1 1 1 1+eps 1+eps] (colonop documentation)
    e = matlab_colon(1 - EPS, EPS / 4, 1 + EPS)
    assert list(e) == [1 - EPS, 1 - EPS, 1 - EPS / 2, 1, 1, 1, 1, 1 + EPS, 1 + EPS]
    # end point below the last step: 0:0.1:0.95 stops at 0.9; integer steps take Matlab's integer path
    assert len(matlab_colon(0, 0.1, 0.95)) == 10 and matlab_colon(0, 0.1, 0.95)[-1] == 0.9
    assert list(matlab_colon(0, 1, 3.5)) == [0, 1, 2, 3]
    assert list(matlab_colon(0, 2, 7)) == [0, 2, 4, 6]
    assert list(matlab_colon(0, 0.1, 0)) == [0.0]


# ------------------------------------------------------------------ CC
def test_cc_hand_value():
    s = np.array([[1.0, 2.0], [3.0, 4.0]])
    d = np.array([[1.0, 2.0], [3.0, 5.0]])
    # deviations (-1.5,-.5,.5,1.5) and (-1.75,-.75,.25,2.25): r = 6.5 / sqrt(5 * 8.75)
    assert M.cc(s, d) == pytest.approx(6.5 / math.sqrt(5 * 8.75), abs=1e-15)
    assert M.cc(s, -d) == pytest.approx(-6.5 / math.sqrt(5 * 8.75), abs=1e-15)


def test_cc_constant_map_is_zero_not_nan():
    d = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert M.cc(np.full((2, 2), 0.1), d) == 0.0      # MIT: NaN
    assert M.cc(d, np.zeros((2, 2))) == 0.0
    assert M.cc(np.ones((1, 1)), np.ones((1, 1))) == 0.0  # 1x1: Matlab std of a scalar is 0


# ------------------------------------------------------------------ KLD
def test_kld_hand_value_uses_sum_normalisation_and_eps():
    s = np.ones((2, 2)) * 7.0                      # -> 0.25 everywhere after sum-normalisation
    d = np.array([[3.0, 0.0], [0.0, 0.0]])        # -> 1 at one pixel
    assert M.kld(s, d) == math.log(EPS + 1.0 / (0.25 + EPS))


def test_kld_zero_prediction_stays_zero_as_in_mit():
    d = np.array([[1.0, 3.0], [0.0, 0.0]])
    expect = 0.25 * math.log(EPS + 0.25 / EPS) + 0.75 * math.log(EPS + 0.75 / EPS)
    assert M.kld(np.zeros((2, 2)), d) == pytest.approx(expect, rel=1e-15)
    assert M.kld(d, d) == pytest.approx(0.0, abs=1e-14)


def test_kld_negative_values_raise():
    with pytest.raises(ValueError, match="negative"):
        M.kld(np.array([[1.0, -0.5]]), np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="density has negative"):
        M.kld(np.array([[1.0, 0.5]]), np.array([[1.0, -1.0]]))


# ------------------------------------------------------------------ SIM
def test_sim_min_max_then_sum_normalise():
    s = np.array([[11.0, 12.0, 13.0, 14.0]])   # min-max -> [0,1/3,2/3,1] -> /2
    d = np.array([[4.0, 3.0, 2.0, 1.0]])       # -> [1/2,1/3,1/6,0]
    assert M.sim(s, d) == pytest.approx(1 / 3, abs=1e-15)
    assert M.sim(d, d) == pytest.approx(1.0, abs=1e-15)


def test_sim_zero_and_constant_maps():
    d = np.array([[4.0, 3.0, 2.0, 1.0]])
    assert M.sim(np.zeros((1, 4)), d) == 0.0                               # MIT: zero stays zero
    assert M.sim(np.full((1, 4), 5.0), d) == pytest.approx(0.25 + 0.25 + 1 / 6 + 0)  # uniform


# ------------------------------------------------------------------ NSS
def test_nss_uses_n_minus_1_std():
    s = np.array([[0.0, 0.0], [0.0, 4.0]])     # mean 1, std(N-1) = sqrt(12/3) = 2
    f = np.array([[0, 0], [0, 1]])
    assert M.nss(s, f) == 1.5                  # (4-1)/2; with the N std it would be 3/sqrt(3)
    f2 = np.array([[1, 0], [0, 1]])
    assert M.nss(s, f2) == pytest.approx((1.5 + -0.5) / 2)


def test_nss_edge_cases():
    s = np.array([[0.0, 0.0], [0.0, 4.0]])
    assert math.isnan(M.nss(s, np.zeros((2, 2))))           # no fixations: NaN as MIT
    assert M.nss(np.full((2, 2), 3.0), np.eye(2)) == 0.0     # constant: 0 (MIT NaN)
    assert M.nss(np.ones((1, 1)), np.ones((1, 1))) == 0.0
    with pytest.raises(ValueError, match="fixations has shape"):
        M.nss(s, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        M.nss(s, -np.eye(2))


# ------------------------------------------------------------------ AUC-Judd
def test_auc_judd_hand_value_interpolates_to_one_one():
    s = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])  # -> [0, .25, .5, .75, 1]
    f = np.array([[0, 0, 1, 0, 1]])
    # points (0,0) (0,.5) (1/3,1) (1,1): MIT's curve, not the pairwise AUC 5/6
    assert M.auc_judd(s, f) == pytest.approx(11 / 12, abs=1e-15)


def test_auc_judd_mit_tie_handling():
    s = np.array([[0.0, 1.0, 1.0, 1.0, 0.5]])
    f = np.array([[0, 1, 1, 0, 0]])
    # thresholds [1, 1]: i=1 -> (2/3, .5); i=2 -> (1/3, 1): trapz = 7/12 (tie-grouped ROC: 5/6)
    assert M.auc_judd(s, f) == pytest.approx(7 / 12, abs=1e-15)


def test_auc_judd_jitter_is_seeded_noise_before_normalising():
    s = np.array([[0.0, 1.0, 1.0, 1.0, 0.5]])
    f = np.array([[0, 1, 1, 0, 0]])
    j = M.auc_judd(s, f, jitter=True, seed=3)
    assert j == M.auc_judd(s + jitter_noise(s.shape, 3), f)
    assert j != pytest.approx(7 / 12)
    assert np.all(jitter_noise((4, 5), 0) < 1e-7) and np.all(jitter_noise((4, 5), 0) >= 0)


def test_auc_judd_edge_cases():
    assert math.isnan(M.auc_judd(np.eye(3), np.zeros((3, 3))))   # no fixations
    assert math.isnan(M.auc_judd(np.eye(2), np.ones((2, 2))))    # no non-fixated pixel
    assert M.auc_judd(np.full((3, 3), 2.0), np.eye(3)) == 0.5     # constant (MIT NaN)
    s = np.arange(12.0).reshape(3, 4)
    f = np.zeros((3, 4)); f[2, 3] = 1                              # single fixation on the max
    assert M.auc_judd(s, f) == pytest.approx(1.0)                  # (0,0) (0,1) (1,1)
    f = np.zeros((3, 4)); f[0, 0] = 1                              # single fixation on the min
    assert M.auc_judd(s, f) == pytest.approx(0.5)                  # (0,0) (1,1) (1,1)


# ------------------------------------------------------------------ Borji / shuffled AUC
def _matlab_step_auc(S, sth, randfix, step, n_neg):
    """Line-by-line transliteration of the split loop of AUC_Borji.m / AUC_shuffled.m."""
    aucs = []
    for curfix in randfix:
        allthreshes = matlab_colon(0, step, max(np.concatenate([sth, curfix])))[::-1]
        tp = np.zeros(len(allthreshes) + 2); fp = np.zeros(len(allthreshes) + 2)
        tp[-1] = 1; fp[-1] = 1
        for i, thresh in enumerate(allthreshes):
            tp[i + 1] = np.sum(sth >= thresh) / len(sth)
            fp[i + 1] = np.sum(curfix >= thresh) / n_neg
        aucs.append(sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(tp) - 1)))
    return float(np.mean(aucs))


def test_auc_borji_equals_matlab_loop_on_quantised_map():
    rng = np.random.default_rng(0)
    # values on the 0.1 grid: thresholds built with arange (0.7000000000000001) would miss ties
    s = np.round(rng.random((20, 30)) * 10) / 10
    s[0, 0], s[0, 1] = 0.0, 1.0
    f = random_fixations(rng, s.shape, 40)
    S, F = s.ravel(), f.ravel() > 0
    sth = S[F]
    idx = borji_sample_indices(S.size, sth.size, 100, 0)
    want = _matlab_step_auc(S, sth, S[idx], 0.1, sth.size)
    assert M.auc_borji(s, f) == pytest.approx(want, abs=1e-14)
    # and the thresholds matter: with arange-built thresholds the value changes
    arange_thr = np.arange(0, 1.0001, 0.1)
    assert any(t not in matlab_colon(0, 0.1, 1) for t in arange_thr)


def test_sauc_equals_matlab_loop_and_hand_extremes():
    rng = np.random.default_rng(1)
    s = smooth_map(rng, (30, 40))
    f = random_fixations(rng, s.shape, 25)
    o = random_fixations(rng, s.shape, 15)                  # fewer others than fixations
    S = (s.ravel() - s.min()) / (s.max() - s.min())
    sth = S[f.ravel() > 0]
    idx = shuffled_sample_indices(np.flatnonzero(o.ravel()), sth.size, 100, 0)
    assert idx.shape == (100, 15) and len(set(idx[0])) == 15  # without replacement, min(Nfix, L)
    want = _matlab_step_auc(S, sth, S[idx], 0.1, 15)
    assert M.sauc(s, f, o) == pytest.approx(want, abs=1e-14)
    # fixations on the maximum, other images' fixations on the minimum: AUC 1; swapped: 0
    m = np.zeros((4, 4)); m[0, :2] = 1.0
    fx = np.zeros((4, 4)); fx[0, :2] = 1
    ot = np.zeros((4, 4)); ot[3, :] = 1
    assert M.sauc(m, fx, ot) == 1.0
    assert M.sauc(m, ot, fx) == 0.0


def test_sampled_auc_edge_cases():
    s = np.arange(16.0).reshape(4, 4)
    f = np.eye(4)
    assert math.isnan(M.auc_borji(s, np.zeros((4, 4))))
    assert math.isnan(M.sauc(s, f, np.zeros((4, 4))))
    assert M.auc_borji(np.ones((4, 4)), f) == 0.5
    assert M.sauc(np.ones((4, 4)), f, f) == 0.5
    assert M.auc_borji(s, f, seed=1) == M.auc_borji(s, f, seed=1)
    assert M.auc_borji(s, f, seed=1) != M.auc_borji(s, f, seed=2)


# ------------------------------------------------------------------ information gain
def test_info_gain_hand_value():
    s = np.array([[0.0, 1.0, 2.0, 3.0]])       # -> [0, 1/6, 1/3, 1/2]
    b = np.array([[3.0, 2.0, 1.0, 0.0]])       # -> [1/2, 1/3, 1/6, 0]
    f = np.array([[0, 0, 0, 1]])
    assert M.info_gain(s, f, b) == math.log2(EPS + 0.5) - math.log2(EPS)   # ~ 51 bits
    f2 = np.array([[0, 1, 1, 0]])
    want = ((math.log2(EPS + 1 / 6) - math.log2(EPS + 1 / 3))
            + (math.log2(EPS + 1 / 3) - math.log2(EPS + 1 / 6))) / 2
    assert M.info_gain(s, f2, b) == pytest.approx(want, abs=1e-15)
    assert M.info_gain(s, f2, s) == 0.0
    assert M.info_gain(np.ones((1, 4)), f2, np.full((1, 4), 3.0)) == 0.0   # both uniform
    assert math.isnan(M.info_gain(s, np.zeros((1, 4)), b))


# ------------------------------------------------------------------ shared edge cases
DIST = {"cc": M.cc, "kld": M.kld, "sim": M.sim}
FIX = {"nss": M.nss, "auc_judd": M.auc_judd, "auc_borji": M.auc_borji}


@pytest.mark.parametrize("name", [*DIST, *FIX, "sauc", "info_gain"])
def test_unnormalised_0_255_maps_give_the_same_value(name):
    rng = np.random.default_rng(5)
    s = smooth_map(rng, (30, 40)); s = (s - s.min()) / (s.max() - s.min())
    d = smooth_map(rng, (30, 40)); f = random_fixations(rng, s.shape, 20)
    o = random_fixations(rng, s.shape, 30)
    s255 = np.round(s * 255).astype(np.uint8)
    sq = s255 / 255.0
    call = {
        "sauc": lambda x: M.sauc(x, f, o), "info_gain": lambda x: M.info_gain(x, f, d),
        **{k: (lambda x, fn=fn: fn(x, d)) for k, fn in DIST.items()},
        **{k: (lambda x, fn=fn: fn(x, f)) for k, fn in FIX.items()},
    }[name]
    assert call(s255) == pytest.approx(call(sq), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", ["cc", "sim", "nss", "auc_judd", "auc_borji", "sauc", "info_gain"])
def test_shift_invariant_metrics_accept_negative_maps(name):
    rng = np.random.default_rng(6)
    s = smooth_map(rng, (20, 30)); d = smooth_map(rng, (20, 30))
    f = random_fixations(rng, s.shape, 10); o = random_fixations(rng, s.shape, 20)
    fn = {"cc": lambda x: M.cc(x, d), "sim": lambda x: M.sim(x, d), "nss": lambda x: M.nss(x, f),
          "auc_judd": lambda x: M.auc_judd(x, f), "auc_borji": lambda x: M.auc_borji(x, f),
          "sauc": lambda x: M.sauc(x, f, o), "info_gain": lambda x: M.info_gain(x, f, d)}[name]
    assert fn(s - 10.0) == pytest.approx(fn(s), abs=1e-9)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        M.cc(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        M.cc(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        M.sim(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="baseline"):
        M.info_gain(np.ones((2, 2)), np.eye(2), np.ones((3, 3)))


def test_selection_score():
    m = {"cc": 0.5, "kld": 1.0, "nss": 0.0, "sim": 0.25, "auc_judd": 0.75, "ig": 3.0}
    assert M.selection_score(m) == pytest.approx(0.5 + 1.0 + 0.5 + 0.75 + 0.25)
    better = dict(m, cc=0.9)
    assert M.selection_score(better) < M.selection_score(m)
    assert M.selection_score(dict(m, nss=-800.0)) == pytest.approx(3.5)  # no overflow
    with pytest.raises(KeyError, match="auc_judd"):
        M.selection_score({"cc": 1, "kld": 0, "nss": 1, "sim": 1})
