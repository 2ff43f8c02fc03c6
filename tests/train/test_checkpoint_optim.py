"""Checkpoint plumbing (RNG states survive a weights_only round trip; bad files get clear errors)
and the optimiser's parameter groups."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from salnas_core.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from salnas_core.train.optim import build_optimizer, build_scheduler


def _draw(gen, arch):
    return (random.random(), float(np.random.rand()), float(torch.rand(1)),
            float(torch.rand(1, generator=gen)), arch.random())


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    gen, arch = torch.Generator().manual_seed(1), random.Random(2)
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    _draw(gen, arch)  # move every stream off its seed
    save_checkpoint(tmp_path / "c.pt", {"rng": [get_rng_state(gen, arch)]})
    expected = _draw(gen, arch)
    _draw(gen, arch)
    ck = load_checkpoint(tmp_path / "c.pt")
    set_rng_state(ck["rng"][0], gen, arch)
    assert _draw(gen, arch) == expected


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        load_checkpoint(tmp_path / "last.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.pt: not a SalNAS training checkpoint"):
        load_checkpoint(other)


def test_no_weight_decay_on_bn_and_bias_and_paper_optimiser():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1, bias=True))
    opt = build_optimizer(net, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)
    groups = {g["group_name"]: g for g in opt.param_groups}
    decay = {id(p) for p in groups["weight"]["params"]}
    no_decay = {id(p) for p in groups["bn_bias"]["params"]}
    assert decay == {id(net[0].weight), id(net[2].weight)}
    assert no_decay == {id(net[0].bias), id(net[1].weight), id(net[1].bias), id(net[2].bias)}
    assert groups["weight"]["weight_decay"] == 1e-5 and groups["bn_bias"]["weight_decay"] == 0.0
    assert all(g["nesterov"] and g["momentum"] == 0.9 and g["lr"] == 0.1 for g in opt.param_groups)
    # cosine with warm restarts, T0 = 10 epochs: back to the initial lr after 10 scheduler steps
    sched = build_scheduler(opt, t0=10)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05) and lrs[10] == pytest.approx(0.1)
    assert lrs[9] < lrs[1]
