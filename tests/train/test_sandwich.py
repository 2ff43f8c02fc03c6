"""Sandwich rule: max + N random + min per step, regularisation on the max subnet only."""
import random

import torch

from salnas_core.supernet import create_supernet
from salnas_core.train.checkpoint import set_resolutions
from salnas_core.train.sandwich import MaxSubnetRegularisation, SandwichConfig, sample_sandwich, sandwich_backward


def _net():
    torch.manual_seed(0)
    return set_resolutions(create_supernet("lite", pretrained=False), [256])


def test_sample_sandwich_is_max_randoms_min_and_reproducible():
    net = _net()
    a = sample_sandwich(net, random.Random(7), n_random=3)
    b = sample_sandwich(net, random.Random(7), n_random=3)
    assert [n for n, _ in a] == ["max", "random0", "random1", "random2", "min"]
    assert a == b
    assert a[0][1] == net.space.max_config() and a[-1][1] == net.space.min_config()


def test_regularisation_touches_only_the_max_subnet_in_training():
    net = _net().train()
    reg = MaxSubnetRegularisation(net)
    assert reg.handles, "no dropout/drop-connect hook point found on the supernet"
    x = torch.randn(2, 3, 64, 96)
    net.sample_max_subnet()
    torch.manual_seed(1)
    plain = net(x)
    reg.set(0.5, 0.5)
    torch.manual_seed(1)
    dropped = net(x)
    assert not torch.allclose(plain, dropped)
    net.eval()
    torch.testing.assert_close(net(x), net.eval()(x))  # eval: deterministic, hooks inactive
    # the sandwich switches it on for max only and off afterwards
    net.train()
    seen = []

    def loss_fn(pred, target, fix):
        seen.append(reg.dropout)
        return pred.mean()

    configs = sample_sandwich(net, random.Random(0), 1)
    sandwich_backward(net, configs, x, torch.rand(2, 1, 64, 96), torch.zeros(2, 1, 64, 96), loss_fn,
                      SandwichConfig(1, 0.2, 0.1), regulariser=reg)
    assert seen == [0.2, 0.0, 0.0] and reg.dropout == 0.0 and reg.drop_connect == 0.0
    # gradients were summed over the three subnets
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
