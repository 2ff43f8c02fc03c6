"""Our metrics against pysaliency (independent implementation) where conventions agree, and the
documented differences where they do not. Inputs: random smooth maps and real OSIE images."""
from __future__ import annotations

import numpy as np
import pytest

from salnas_core import metrics as M

from conftest import random_fixations, smooth_map


def _cases(osie_maps):
    rng = np.random.default_rng(11)
    synth = []
    for _ in range(3):
        s = smooth_map(rng)
        d = smooth_map(rng); d /= d.sum()
        synth.append((random_fixations(rng, s.shape, 50), d, s))
    return synth + list(osie_maps)


@pytest.fixture(scope="module")
def cases(osie_maps):
    return _cases(osie_maps)


def test_cc_equals_pysaliency(pysal, cases):
    for fix, dens, pred in cases:
        assert M.cc(pred, dens) == pytest.approx(pysal.metrics.CC(pred, dens), abs=1e-13)


def test_kld_equals_pysaliency_mit_kldiv(pysal, cases):
    # same formula; pysaliency's eps is 2.2204e-16 (ours Matlab's 2^-52): no effect here
    for fix, dens, pred in cases:
        assert M.kld(pred, dens) == pytest.approx(pysal.metrics.MIT_KLDiv(pred, dens), rel=1e-9)


def test_kld_differences_from_pysaliency(pysal):
    """Where the eps value shows (prediction 0 where the density is not) and the zero map
    (MIT keeps it zero, pysaliency makes it uniform)."""
    d = np.array([[1.0, 3.0], [0.0, 0.0]])
    s = np.array([[0.0, 1.0], [1.0, 0.0]])
    ours = M.kld(s, d)
    assert ours == pytest.approx(0.25 * np.log(2.0 ** -52 + 0.25 / 2.0 ** -52)
                                 + 0.75 * np.log(2.0 ** -52 + 0.75 / (0.5 + 2.0 ** -52)), rel=1e-15)
    theirs = pysal.metrics.MIT_KLDiv(s, d)
    assert theirs == pytest.approx(0.25 * np.log(2.2204e-16 + 0.25 / 2.2204e-16)
                                   + 0.75 * np.log(2.2204e-16 + 0.75 / (0.5 + 2.2204e-16)), rel=1e-12)
    assert ours != pytest.approx(theirs, rel=1e-9) and ours == pytest.approx(theirs, rel=1e-5)
    zero = np.zeros((2, 2))
    assert pysal.metrics.MIT_KLDiv(zero, d) == pytest.approx(M.kld(np.ones((2, 2)), d), rel=1e-9)
    assert M.kld(zero, d) > 30  # MIT: sum(D log(eps + D/eps))


def test_sim_equals_pysaliency_when_minimum_is_zero_and_differs_otherwise(pysal, cases):
    for fix, dens, pred in cases:
        p0, d0 = pred - pred.min(), dens - dens.min()
        assert M.sim(pred, dens) == pytest.approx(pysal.metrics.SIM(p0, d0), abs=1e-13)
        # pysaliency only sum-normalises: a map with a positive floor scores differently
        assert abs(M.sim(pred, dens) - pysal.metrics.SIM(pred + 0.5 * pred.max(), dens)) > 1e-3


def test_nss_is_pysaliency_rescaled_to_n_minus_1_std(pysal, cases):
    for fix, dens, pred in cases:
        ys, xs = np.nonzero(fix)
        n = pred.size
        theirs = pysal.metrics.NSS(pred, xs, ys).mean()   # std with N, per fixation
        assert M.nss(pred, fix) == pytest.approx(theirs * np.sqrt((n - 1) / n), abs=1e-12)


def test_auc_judd_equals_pysaliency_without_ties(pysal, cases):
    for fix, dens, pred in cases:
        f = fix > 0
        assert len(np.unique(pred[f])) == f.sum()          # no ties at fixations
        theirs = pysal.roc.general_roc(pred[f].astype(float), pred[~f].astype(float), judd=1)[0]
        assert M.auc_judd(pred, fix) == pytest.approx(theirs, abs=1e-12)


def test_auc_judd_differs_from_pysaliency_on_ties(pysal):
    s = np.array([[0.0, 1.0, 1.0, 1.0, 0.5]])
    f = np.array([[0, 1, 1, 0, 0]]) > 0
    theirs = pysal.roc.general_roc(s[f], s[~f], judd=1)[0]
    assert theirs == pytest.approx(5 / 6) and M.auc_judd(s, f) == pytest.approx(7 / 12)


def test_sampled_aucs_converge_to_exact_roc(pysal, cases):
    """With fine thresholds, Borji's random negatives estimate the ROC against all pixels, and
    sAUC's the ROC against the other images' fixated pixels (pysaliency's exact general_roc)."""
    rng = np.random.default_rng(3)
    for fix, dens, pred in cases[:4]:
        f = fix > 0
        p = (pred - pred.min()) / (pred.max() - pred.min())
        exact = pysal.roc.general_roc(p[f], p.ravel(), judd=0)[0]
        assert M.auc_borji(pred, fix, step=0.001) == pytest.approx(exact, abs=0.01)
        other = random_fixations(rng, pred.shape, 400)
        exact_s = pysal.roc.general_roc(p[f], p[other > 0], judd=0)[0]
        assert M.sauc(pred, fix, other, step=0.001) == pytest.approx(exact_s, abs=0.015)


def test_real_data_sanity(osie_maps):
    """An inter-observer model (half the viewers) predicts the rest well above chance."""
    for fix, dens, pred in osie_maps:
        assert M.cc(pred, dens) > 0.5 and M.nss(pred, fix) > 1.0 and M.auc_judd(pred, fix) > 0.75
        assert M.kld(pred, dens) < M.kld(np.ones_like(pred), dens)
        assert M.info_gain(pred, fix, np.ones_like(pred)) > 0
