"""Self-KD: target construction and the teacher's update rule (equal-weight average of weights and
buffers, updated when the validation score ties or beats the best)."""
import pytest
import torch
from torch import nn

from salnas_core.train.self_kd import SelfKDTeacher, batch_stat_mode, improved, mix_target


def _density(b=2, h=6, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(b, 1, h, w, generator=g)
    return d / d.sum(dim=(-2, -1), keepdim=True)


def test_mix_target_is_alpha_blend_of_gt_and_normalised_teacher():
    gt = _density()
    teacher = torch.rand(2, 1, 6, 8) * 0.9 + 0.05   # a sigmoid-scale map, not a distribution
    t_norm = teacher / teacher.sum(dim=(-2, -1), keepdim=True)
    out = mix_target(gt, teacher, alpha=0.5)
    torch.testing.assert_close(out, 0.5 * gt + 0.5 * t_norm)
    torch.testing.assert_close(out.sum(dim=(-2, -1)), torch.ones(2, 1))
    # the endpoints: alpha=1 is the ground truth, alpha=0 the (normalised) teacher
    torch.testing.assert_close(mix_target(gt, teacher, 1.0), gt)
    torch.testing.assert_close(mix_target(gt, teacher, 0.0), t_norm)
    # the teacher's scale does not matter, only its shape
    torch.testing.assert_close(mix_target(gt, teacher * 37.0, 0.3), mix_target(gt, teacher, 0.3))


def test_mix_target_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        mix_target(_density(), torch.rand(2, 1, 5, 8))
    with pytest.raises(ValueError, match="alpha"):
        mix_target(_density(), torch.rand(2, 1, 6, 8), alpha=1.5)


def test_mix_target_all_zero_teacher_stays_finite():
    out = mix_target(_density(), torch.zeros(2, 1, 6, 8), 0.5)
    assert torch.isfinite(out).all()


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def _set(net, value, bn_mean):
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
        net.bn.running_mean.fill_(bn_mean)
        net.bn.num_batches_tracked.fill_(int(value))


def test_teacher_is_equal_weight_running_average_of_weights_and_buffers():
    net = _Net()
    teacher = SelfKDTeacher(net)
    assert not teacher.ready
    snapshots = [(1.0, 10.0), (4.0, 40.0), (7.0, -5.0)]
    for i, (v, m) in enumerate(snapshots, 1):
        _set(net, v, m)
        teacher.update(net)
        assert teacher.n_averaged == i
        mean_v = sum(s[0] for s in snapshots[:i]) / i
        mean_m = sum(s[1] for s in snapshots[:i]) / i
        for p in teacher.module.parameters():
            torch.testing.assert_close(p, torch.full_like(p, mean_v))
            assert not p.requires_grad
        torch.testing.assert_close(teacher.module.bn.running_mean, torch.full((4,), mean_m))
        # integer buffers are copied, not averaged
        assert int(teacher.module.bn.num_batches_tracked) == int(v)
    # the teacher is a copy: changing the student does not move it
    _set(net, 100.0, 100.0)
    assert float(teacher.module.conv.weight.flatten()[0]) == pytest.approx(4.0)


def test_teacher_state_round_trip():
    net = _Net()
    t1 = SelfKDTeacher(net, alpha=0.3)
    _set(net, 2.0, 3.0)
    t1.update(net)
    _set(net, 4.0, 5.0)
    t1.update(net)
    t2 = SelfKDTeacher(_Net())
    t2.load_state_dict(t1.state_dict())
    assert t2.n_averaged == 2 and t2.alpha == 0.3
    for a, b in zip(t1.module.state_dict().values(), t2.module.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_update_rule_ties_or_beats_the_best():
    # lower selection score is better; a tie also updates the teacher
    assert improved(1.0, None)
    assert improved(0.9, 1.0)
    assert improved(1.0, 1.0)
    assert not improved(1.0001, 1.0)


def test_batch_stat_mode_uses_batch_statistics_and_leaves_buffers():
    net = _Net()
    net.eval()
    with torch.no_grad():
        net.bn.running_mean.fill_(5.0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 5, 5)
    with batch_stat_mode(net), torch.no_grad():
        y = net(x)
    # batch statistics: every channel of the output has zero mean over the batch
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not net.training and not net.bn.training
