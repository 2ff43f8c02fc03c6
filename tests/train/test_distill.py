"""Self-KD distillation of a static subnet: teacher = average of the best k checkpoints, target mixing,
a real fine-tuning run on tiny real data, resume."""
import copy

import pytest
import torch
from torch import nn

from salnas_core.train.distill import DistillConfig, TopKTeacher, average_states, distill
from salnas_core.train.self_kd import mix_target


class TinySal(nn.Module):
    """A small conv saliency net (sigmoid output), fast enough for tests."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x):
        return torch.sigmoid(self.body(x))


def _with_value(model: nn.Module, v: float) -> nn.Module:
    m = copy.deepcopy(model)
    with torch.no_grad():
        for t in list(m.parameters()) + [b for b in m.buffers() if torch.is_floating_point(b)]:
            t.fill_(v)
    return m


def test_teacher_is_average_of_best_k():
    base = TinySal()
    t = TopKTeacher(base, k=2, alpha=0.5)
    assert not t.ready
    assert t.offer(3.0, 1, _with_value(base, 1.0))
    assert t.offer(2.0, 2, _with_value(base, 3.0))
    # worse than both kept ones: rejected, the teacher does not move
    assert not t.offer(5.0, 3, _with_value(base, 100.0))
    w = t.module.body[0].weight
    assert torch.allclose(w, torch.full_like(w, 2.0))  # mean of 1 and 3
    # better than the worst kept (3.0): replaces it -> mean of 3 and 7
    assert t.offer(1.0, 4, _with_value(base, 7.0))
    assert [e["epoch"] for e in t.entries] == [4, 2]
    assert torch.allclose(t.module.body[0].weight, torch.full_like(w, 5.0))
    rm = t.module.body[1].running_mean
    assert torch.allclose(rm, torch.full_like(rm, 5.0))  # buffers averaged too
    # integer buffers are copied from the best, not averaged
    assert t.module.body[1].num_batches_tracked.dtype == torch.long
    state = t.state_dict()
    t2 = TopKTeacher(base, k=1)
    t2.load_state_dict(state)
    assert torch.allclose(t2.module.body[0].weight, t.module.body[0].weight) and t2.k == 2


def test_average_states_and_errors():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    avg = average_states([a, b])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0])) and int(avg["n"]) == 3
    with pytest.raises(ValueError):
        average_states([])
    with pytest.raises(ValueError):
        TopKTeacher(TinySal(), k=0)


def test_target_mixes_ground_truth_and_teacher_map():
    torch.manual_seed(0)
    base = TinySal().eval()
    t = TopKTeacher(base, k=3, alpha=0.3)
    x = torch.randn(2, 3, 16, 24)
    dens = torch.rand(2, 1, 16, 24)
    dens = dens / dens.sum(dim=(-2, -1), keepdim=True)
    assert torch.equal(t.target(x, dens), dens)  # no checkpoint yet: the ground truth itself
    t.offer(1.0, 0, base)
    with torch.no_grad():
        tm = base(x)
    expected = 0.3 * dens + 0.7 * tm / tm.sum(dim=(-2, -1), keepdim=True)
    got = t.target(x, dens)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(dim=(-2, -1)), torch.ones(2, 1), atol=1e-5)
    assert torch.allclose(got, mix_target(dens, tm, 0.3), atol=1e-6)


def _loaders(root):
    from salnas_core.data.dataset import make_loader

    train = make_loader(root, "train", 4, "imagenet", shuffle=True, limit=8, size=(32, 48), seed=0, drop_last=True)
    val = make_loader(root, "val", 4, "imagenet", shuffle=False, limit=4, size=(32, 48))
    return train, val


def test_distill_runs_improves_and_resumes(tiny_ingested, tmp_path):
    train, val = _loaders(tiny_ingested)
    torch.manual_seed(0)
    model = TinySal()
    cfg = DistillConfig(epochs=2, lr=0.05, top_k=2, self_kd=True, seed=1)
    logged = []
    res = distill(copy.deepcopy(model), train, val, cfg, tmp_path / "a", log=lambda m, s=None: logged.append(s),
                  progress=False)
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert res["initial"]["score"] == hist[0]["score"]
    # the result is never worse on validation than the starting network (best checkpoint or soup)
    assert res["final"]["score"] <= res["initial"]["score"] + 1e-9
    assert len(res["teacher_epochs"]) == 2
    assert (tmp_path / "a" / "last.pt").exists() and logged[0] == 0
    # kill after epoch 1 and resume: same final weights as the uninterrupted run
    cfg2 = DistillConfig(**{**cfg.__dict__, "epochs": 1})
    distill(copy.deepcopy(model), train, val, cfg2, tmp_path / "b", progress=False)
    res_b = distill(copy.deepcopy(model), train, val, cfg, tmp_path / "b", resume=True, progress=False)
    assert [h["epoch"] for h in res_b["history"]] == [0, 1, 2]
    for (k, va), vb in zip(res["model"].state_dict().items(), res_b["model"].state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
