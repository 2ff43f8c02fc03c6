"""Sandwich rule: max + N random + min per step, regularisation on the max subnet only."""
import random

import pytest
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


def _batch(b=2, h=64, w=96, seed=5):
    g = torch.Generator().manual_seed(seed)
    dens = torch.rand(b, 1, h, w, generator=g)
    return {"image": torch.randn(b, 3, h, w, generator=g), "density": dens / dens.sum((-2, -1), keepdim=True),
            "fixations": (torch.rand(b, 1, h, w, generator=g) > 0.99).float()}


def _trainer(tmp_path, pretrained=False, **kw):
    from torch.utils.data import TensorDataset

    from salnas_core.train.trainer import SupernetTrainer, TrainConfig

    torch.set_num_threads(1)
    kw = {"batch_size": 2, "self_kd": True, "seed": 11, **kw}
    dummy = TensorDataset(torch.zeros(kw["batch_size"]))
    cfg = TrainConfig(**kw)
    torch.manual_seed(0)
    net = set_resolutions(create_supernet("lite", pretrained=pretrained), [256])
    return SupernetTrainer(net, dummy, dummy, cfg, out_dir=tmp_path)


def test_sandwich_losses_equal_the_extracted_static_subnets_on_the_same_weights(tmp_path):
    """Each step's per-subnet losses are what the straightforward path gives: the static subnet
    extracted with the step's weights, run on the same batch (no dropout: no random stream)."""
    from salnas_core.metrics.losses import SalNASLoss

    tr = _trainer(tmp_path, dropout=0.0, drop_connect=0.0)
    batch, loss_fn = _batch(), SalNASLoss()
    x = batch["image"].contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        rng = random.Random()
        rng.setstate(tr.arch_rng.getstate())
        configs = sample_sandwich(tr.model, rng, tr.cfg.n_random)
        want = {}
        for name, config in configs:
            sub = tr.model.build_from_config(config).train().to(memory_format=torch.channels_last)
            with torch.no_grad():
                want[name] = float(loss_fn(sub(x, out_size=(64, 96)), batch["density"], batch["fixations"]))
        got = tr.train_step(batch, use_teacher=False)
        for name, loss in want.items():
            assert abs(got[name] - loss) <= 1e-5 * max(1.0, abs(loss)), (name, got, want)


def test_channels_last_training_gives_the_nchw_losses(tmp_path):
    """Same seed, same batches, dropout and drop-connect on, Self-KD teacher from step 3: the
    channels_last trainer (the default) follows the NCHW one within float tolerance.

    From the pretrained encoder, as the main job: from a random init, batch 2 at 64x96 is chaotic
    (BN over a few pixels in the deep stages): there a 1e-7 difference in step 1's losses (any change
    of summation order) grows to 1e-2 by step 3."""
    a = _trainer(tmp_path / "nchw", pretrained=True, channels_last=False, lr=0.035)
    b = _trainer(tmp_path / "cl", pretrained=True, channels_last=True, lr=0.035)
    assert a.cfg.dropout > 0 and a.cfg.drop_connect > 0
    assert b.model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    for step in range(4):
        if step == 2:
            a.teacher.update(a.model), b.teacher.update(b.model)
        batch = _batch(seed=step)
        torch.manual_seed(step)  # the two trainers share torch's global RNG: one stream each step
        la = a.train_step(batch, use_teacher=True)
        torch.manual_seed(step)
        lb = b.train_step(batch, use_teacher=True)
        assert la.keys() == lb.keys()
        for k in la:
            assert abs(la[k] - lb[k]) <= 1e-5 * max(1.0, abs(la[k])), (step, k, la, lb)
    for (n, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=n)


# The authors' drop-connect (AttentiveNAS set_dropout_rate(0.2, 0.2, True) on the max subnet): block
# idx of the last two stages, counted over every block of the maximum depth, gets rate
# 0.2 * idx / n_blocks, and only where its residual is the identity.
EXPECTED_DROP_CONNECT = {
    # 37 blocks (mb1..mb7 max depths 2, 5, 6, 6, 8, 8, 2): mb6 = blocks 27..34, mb7 = 35..36; at the
    # max subnet each stage's first block has no identity (mb6: stride 2; mb7: 216 -> 224 channels)
    "salnas": {**{f"stages.5.{j}": (27 + j) / 37 for j in range(1, 8)}, "stages.6.1": 36 / 37},
    # 16 blocks (depths 1, 2, 2, 3, 3, 4, 1): s6 = blocks 11..14, s7 = 15 (a first block has no skip)
    "lite": {f"stages.5.{j}": (11 + j) / 16 for j in range(1, 4)},
}


def _space_net(space):
    torch.manual_seed(0)
    return set_resolutions(create_supernet(space, pretrained=False), [256]).train()


@pytest.mark.parametrize("space", sorted(EXPECTED_DROP_CONNECT))
def test_drop_connect_goes_to_the_authors_blocks_at_the_authors_rates(space):
    net = _space_net(space)
    reg = MaxSubnetRegularisation(net)
    net.sample_max_subnet()
    reg.set(0.0, 0.2)
    with torch.no_grad():
        net(torch.randn(2, 3, 48, 64))
    want = {k: 0.2 * v for k, v in EXPECTED_DROP_CONNECT[space].items()}
    assert reg.applied.keys() == want.keys()
    assert all(reg.applied[k] == pytest.approx(want[k]) for k in want)
    reg.set(0.0, 0.0)  # the other sandwich subnets: none
    with torch.no_grad():
        net(torch.randn(2, 3, 48, 64))
    assert reg.applied == {}


@pytest.mark.parametrize("space", sorted(EXPECTED_DROP_CONNECT))
def test_drop_connect_drops_whole_samples_in_training_and_never_in_eval(space):
    net = _space_net(space)
    reg = MaxSubnetRegularisation(net)
    net.sample_max_subnet()
    name = max(EXPECTED_DROP_CONNECT[space], key=EXPECTED_DROP_CONNECT[space].get)
    block = net.get_submodule(name)
    c = block.out_widths[-1]
    x = torch.randn(64, c, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = block(x)
        reg.set(0.0, 0.9)
        rate = 0.9 * EXPECTED_DROP_CONNECT[space][name]
        torch.manual_seed(3)
        out = block(x)
        dropped = [torch.allclose(out[i], x[i]) for i in range(len(x))]
        kept = [torch.allclose(out[i], x[i] + (plain[i] - x[i]) / (1 - rate), atol=1e-5) for i in range(len(x))]
        assert all(d != k for d, k in zip(dropped, kept))  # each sample: the branch whole or gone
        assert 0 < sum(kept) < len(x)
        block.eval()
        reg.set(0.0, 0.9)
        eval_out = block(x)
        assert reg.applied == {}
        reg.set(0.0, 0.0)
        torch.testing.assert_close(eval_out, block(x), rtol=0, atol=0)  # eval: never dropped
        assert not torch.equal(eval_out, x)
