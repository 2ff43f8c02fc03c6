"""Self-KD (SalNAS, arXiv 2407.20062, Sec. 3.3): the supernet distils from an average of itself.

The teacher shares the supernet's architecture; its weights *and buffers* are an equal-weight
running average of the supernet taken at every epoch whose selection score ties or beats the best
so far (torch's `AveragedModel(use_buffers=True)` with the default running mean, as the authors'
`train_salnas.py` does). From the second epoch on, the target for KLD and CC is
`alpha * ground truth + (1 - alpha) * teacher map` (alpha = 0.5); NSS keeps the real fixations.

Choices where the paper is silent (documented in docs/INTERFACES.md, "Training"):
- The teacher map comes from the teacher's *max* subnet, computed once per batch and given to every
  sandwich subnet (the authors' teacher is a copy of the supernet that stays in the configuration it
  was copied in, the max one; the issue asks for one target shared by all subnets).
- The teacher runs with batch statistics in its BN layers (the authors call it in train mode), and
  its buffers are left untouched: the supernet's running statistics are a mixture over all sampled
  subnets, so they would misrepresent the max subnet in eval mode.
- The teacher map is sum-normalised before mixing: the ground-truth density sums to 1 while the
  network's sigmoid map does not, and the authors' loader kept both on the same [0, 1] scale.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import torch
from torch import nn


def mix_target(density: torch.Tensor, teacher_map: torch.Tensor, alpha: float = 0.5,
               eps: float = 1e-12) -> torch.Tensor:
    """`alpha * density + (1 - alpha) * teacher_map / sum(teacher_map)`, per image.

    Both inputs are (B, 1, H, W); `density` sums to 1 per image, so the result does too.
    """
    if density.shape != teacher_map.shape:
        raise ValueError(f"mix_target: density {tuple(density.shape)} and teacher map "
                         f"{tuple(teacher_map.shape)} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"mix_target: alpha must be in [0, 1], got {alpha}")
    t = teacher_map.detach().float().clamp_min(0)
    t = t / t.sum(dim=(-2, -1), keepdim=True).clamp_min(eps)
    return alpha * density.float() + (1.0 - alpha) * t


def _is_bn(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) or (
        "BatchNorm" in type(m).__name__ and hasattr(m, "running_mean"))


@contextlib.contextmanager
def batch_stat_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (no dropout) except BN, which normalises with batch statistics; buffers restored."""
    was_training = model.training
    saved = [b.detach().clone() for b in model.buffers()]
    model.eval()
    for m in model.modules():
        if _is_bn(m):
            m.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for b, s in zip(model.buffers(), saved):
                b.copy_(s)
        model.train(was_training)


class SelfKDTeacher:
    """Equal-weight running average of a supernet's (or a static net's) parameters and buffers.

    `update(model)` after an epoch whose selection score ties or beats the best: the first call
    copies the model, the n-th call moves each tensor by `(model - teacher) / n`. Integer buffers
    (BN's `num_batches_tracked`) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, alpha: float = 0.5):
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.alpha = float(alpha)
        self.n_averaged = 0

    @property
    def ready(self) -> bool:
        """True once the teacher holds at least one snapshot."""
        return self.n_averaged > 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        n = self.n_averaged
        pairs = list(zip(self.module.parameters(), model.parameters())) + \
            list(zip(self.module.buffers(), model.buffers()))
        for t, s in pairs:
            s = s.detach().to(t.device)
            if n == 0 or not torch.is_floating_point(t):
                t.copy_(s)
            else:
                t.add_((s.to(t.dtype) - t) / (n + 1))
        self.n_averaged = n + 1

    @torch.no_grad()
    def predict(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """The teacher's saliency map for `images` (batch-stat BN, no dropout): a supernet's max
        subnet, or the static net itself (the distill step's `paper` teacher)."""
        m = self.module
        if not hasattr(m, "sample_max_subnet"):  # a static net: its map, resized bilinearly
            with batch_stat_mode(m):
                y = m(images)
            if out_size is not None and tuple(y.shape[-2:]) != tuple(out_size):
                y = nn.functional.interpolate(y, size=out_size, mode="bilinear", align_corners=False)
            return y
        m.sample_max_subnet()
        with batch_stat_mode(m):
            return m(images, out_size=out_size) if out_size is not None else m(images)

    def target(self, images: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        """The Self-KD target for KLD and CC (the ground truth itself until the teacher is ready)."""
        if not self.ready:
            return density
        return mix_target(density, self.predict(images, tuple(density.shape[-2:])).float(), self.alpha)

    def to(self, device: torch.device | str) -> "SelfKDTeacher":
        self.module.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"state_dict": self.module.state_dict(), "n_averaged": self.n_averaged, "alpha": self.alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["state_dict"])
        self.n_averaged = int(state["n_averaged"])
        self.alpha = float(state.get("alpha", self.alpha))


def improved(score: float, best: float | None) -> bool:
    """The teacher-update rule: the epoch's score (lower is better) ties or beats the best so far."""
    return best is None or score <= best
