"""Self-KD distillation of a static subnet: the paper's teacher (running mean of every new best, from
the second epoch) and the top-k variant, target mixing, real fine-tuning runs on tiny real data, resume."""
import copy

import pytest
import torch
from torch import nn

from salnas_core.train.distill import DistillConfig, PaperTeacher, TopKTeacher, average_states, distill
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
    sel = make_loader(root, "holdout", 4, "imagenet", shuffle=False, limit=4, size=(32, 48))
    return train, sel


def test_distill_top_k_runs_improves_and_resumes(tiny_ingested, tmp_path):
    train, val = _loaders(tiny_ingested)
    torch.manual_seed(0)
    model = TinySal()
    cfg = DistillConfig(epochs=2, lr=0.05, teacher="top_k", top_k=2, self_kd=True, seed=1)
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


def test_paper_teacher_is_the_running_mean_of_new_bests_from_the_second_epoch():
    base = TinySal()
    t = PaperTeacher(base, alpha=0.5)
    x, dens = torch.randn(2, 3, 16, 24), torch.full((2, 1, 16, 24), 1.0 / (16 * 24))
    assert not t.offer(0.5, 0, _with_value(base, 9.0))  # the extracted subnet: not a teacher snapshot
    assert not t.ready and torch.equal(t.target(x, dens), dens)
    assert t.best["epoch"] == 0  # ... but the best checkpoint so far
    assert t.offer(3.0, 1, _with_value(base, 1.0))      # the first fine-tuning epoch is a new best
    assert not t.offer(4.0, 2, _with_value(base, 100.0))
    assert t.offer(3.0, 3, _with_value(base, 3.0))      # ties count, as in the supernet training
    assert t.offer(2.0, 4, _with_value(base, 8.0))
    w = t.module.body[0].weight
    assert torch.allclose(w, torch.full_like(w, 4.0))   # (1 + 3 + 8) / 3
    rm = t.module.body[1].running_mean
    assert torch.allclose(rm, torch.full_like(rm, 4.0))
    assert t.epochs == [1, 3, 4] and t.best["epoch"] == 0 and t.ready
    assert not torch.equal(t.target(x, dens), dens)
    t2 = PaperTeacher(base)
    t2.load_state_dict(t.state_dict())
    assert torch.allclose(t2.module.body[0].weight, w) and t2.epochs == [1, 3, 4]
    with pytest.raises(ValueError, match="teacher"):
        DistillConfig(teacher="top3")


def test_distill_paper_teacher_absent_in_epoch_one_then_mean_of_bests(tiny_ingested, tmp_path, monkeypatch):
    """A real run: every epoch-1 target is the ground truth; later targets come from a teacher whose
    weights are the mean of the fine-tuning epochs that tied or beat the best so far."""
    train, sel = _loaders(tiny_ingested)
    seen, offered = [], []
    orig_target, orig_offer = PaperTeacher.target, PaperTeacher.offer

    def target(self, images, density):
        out = orig_target(self, images, density)
        seen.append((len(offered), torch.equal(out, density)))
        return out

    def offer(self, score, epoch, model):
        offered.append((epoch, score, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return orig_offer(self, score, epoch, model)

    monkeypatch.setattr(PaperTeacher, "target", target)
    monkeypatch.setattr(PaperTeacher, "offer", offer)
    torch.manual_seed(0)
    cfg = DistillConfig(epochs=3, lr=0.05, self_kd=True, seed=1)
    assert cfg.teacher == "paper"  # the default
    res = distill(TinySal(), train, sel, cfg, tmp_path / "p", progress=False)
    assert res["teacher"] == "paper" and "paper" in res["teacher_label"]
    # offered[0] is epoch 0 (before training); epoch 1 trains between the 1st and 2nd offer
    assert {gt for n, gt in seen if n == 1} == {True}
    assert {gt for n, gt in seen if n >= 2} == {False}
    best, bests = None, []
    for epoch, score, state in offered[1:]:
        if best is None or score <= best:
            best, bests = score, bests + [(epoch, state)]
    assert res["teacher_epochs"] == [e for e, _ in bests] and res["teacher_epochs"][0] == 1
    teacher = torch.load(tmp_path / "p" / "last.pt", weights_only=True)["teacher"]["kd"]["state_dict"]
    for k, v in teacher.items():
        if torch.is_floating_point(v):
            assert torch.allclose(v, torch.stack([s[k] for _, s in bests]).mean(0), atol=1e-6), k
    # the result: the best single checkpoint by the holdout score, epoch 0 included
    scores = {e: s for e, s, _ in offered}
    assert res["chosen"] == f"epoch {min(scores, key=lambda e: (scores[e], e))}"
    assert res["final"]["score"] == min(scores.values())
