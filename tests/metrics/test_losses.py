"""Training losses: values match the MIT metrics, gradients exist and are finite everywhere."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from salnas_core import metrics as M
from salnas_core.metrics import losses as L

from conftest import random_fixations, smooth_map


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    p = np.stack([smooth_map(rng, (24, 32)) for _ in range(3)])
    d = np.stack([smooth_map(rng, (24, 32)) for _ in range(3)]); d /= d.sum((1, 2), keepdims=True)
    f = np.stack([random_fixations(rng, (24, 32), 15) for _ in range(3)])
    return p, d, f


def T(x, **kw):
    return torch.tensor(np.asarray(x))[:, None].to(**kw) if kw else torch.tensor(np.asarray(x))[:, None]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-5)])
def test_loss_values_match_metrics(batch, dtype, tol):
    p, d, f = batch
    P, D, F = T(p, dtype=dtype), T(d, dtype=dtype), T(f, dtype=dtype)
    n = len(p)
    kld = np.mean([M.kld(p[i], d[i]) for i in range(n)])
    cc = np.mean([M.cc(p[i], d[i]) for i in range(n)])
    nss = [M.nss(p[i], f[i]) for i in range(n)]
    sim = np.mean([M.sim(p[i], d[i]) for i in range(n)])
    assert L.kld_loss(P, D).item() == pytest.approx(kld, rel=tol, abs=tol / 10)
    assert L.cc_loss(P, D).item() == pytest.approx(1 - cc, rel=tol, abs=tol / 10)
    assert L.nss_loss(P, F).item() == pytest.approx(np.mean(1 - 1 / (1 + np.exp(-np.array(nss)))),
                                                    rel=tol, abs=tol / 10)
    assert L.sim_loss(P, D).item() == pytest.approx(1 - sim, rel=tol, abs=tol / 10)
    assert L.kld_loss(P, D, reduction="none").shape == (n,)
    total = L.SalNASLoss(w_kld=0.5, w_cc=2.0, w_nss=3.0)(P, D, F).item()
    assert total == pytest.approx(0.5 * L.kld_loss(P, D).item() + 2.0 * L.cc_loss(P, D).item()
                                  + 3.0 * L.nss_loss(P, F).item(), rel=1e-6)
    with_sim = L.SalNASLoss(w_sim=1.0)(P, D, F).item()
    assert with_sim == pytest.approx(L.SalNASLoss()(P, D, F).item() + L.sim_loss(P, D).item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["zero", "constant", "saturated", "random", "half"])
@pytest.mark.parametrize("loss", ["kld", "cc", "nss", "sim", "salnas"])
def test_no_nan_values_or_gradients(batch, kind, loss):
    p, d, f = batch
    D, F = T(d, dtype=torch.float32), T(f, dtype=torch.float32)
    base = {"zero": torch.zeros(3, 1, 24, 32), "constant": torch.full((3, 1, 24, 32), 0.5),
            "saturated": torch.sigmoid(torch.full((3, 1, 24, 32), 120.0)),
            "random": torch.rand(3, 1, 24, 32), "half": torch.rand(3, 1, 24, 32).half()}[kind]
    x = base.clone().requires_grad_(True)
    fn = {"kld": lambda: L.kld_loss(x, D), "cc": lambda: L.cc_loss(x, D),
          "nss": lambda: L.nss_loss(x, F), "sim": lambda: L.sim_loss(x, D),
          "salnas": lambda: L.SalNASLoss(w_sim=1.0)(x, D, F)}[loss]
    v = fn()
    v.backward()
    assert torch.isfinite(v) and x.grad is not None and torch.isfinite(x.grad).all()
    if kind in ("constant", "saturated") and loss == "cc":
        assert v.item() == pytest.approx(1.0)        # CC of a constant map is 0
    if kind in ("constant", "saturated") and loss == "nss":
        assert v.item() == pytest.approx(0.5)        # 1 - sigmoid(0)


def test_no_nan_through_a_network_from_all_zero_logits(batch):
    """The nets end in a sigmoid: gradients reach the weights finite even at a constant output."""
    p, d, f = batch
    D, F = T(d, dtype=torch.float32), T(f, dtype=torch.float32)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    torch.nn.init.zeros_(conv.weight); torch.nn.init.zeros_(conv.bias)
    loss = L.SalNASLoss()(torch.sigmoid(conv(torch.rand(3, 1, 24, 32))), D, F)
    loss.backward()
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_gradcheck(batch, name):
    p, d, f = batch
    x = T(p[:2, :6, :7], dtype=torch.float64).requires_grad_(True)
    tgt = T(d[:2, :6, :7] if name != "nss" else f[:2, :6, :7], dtype=torch.float64)
    if name == "nss":
        tgt[:, :, 0, 0] = 1
    assert torch.autograd.gradcheck(lambda y: L.LOSSES[name](y, tgt), (x,), eps=1e-7, atol=1e-5)


def test_optimising_the_loss_fits_the_density(batch):
    p, d, f = batch
    D, F = T(d, dtype=torch.float32), T(f, dtype=torch.float32)
    logits = torch.zeros(3, 1, 24, 32, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    crit = L.SalNASLoss()
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = crit(torch.sigmoid(logits), D, F)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    pred = torch.sigmoid(logits).detach().double().numpy()[:, 0]
    assert loss.item() < first - 0.5
    # from a constant start (CC 0) to a close fit of each density
    assert min(M.cc(pred[i], d[i]) for i in range(3)) > 0.7


def test_shape_errors():
    with pytest.raises(ValueError, match="resize"):
        L.kld_loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        L.cc_loss(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="reduction"):
        L.cc_loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), reduction="max")
