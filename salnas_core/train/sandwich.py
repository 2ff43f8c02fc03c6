"""The sandwich rule (Yu & Huang, "Universally Slimmable Networks", ICCV 2019; as in AttentiveNAS
and the SalNAS code): each optimiser step trains the max subnet, N random subnets and the min
subnet on the same batch, summing their gradients. Regularisation (dropout, drop-connect) is applied
to the max subnet only: the small ones underfit rather than overfit.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SandwichConfig:
    """How many random subnets sit between max and min, and the max subnet's regularisation."""

    n_random: int = 2
    dropout: float = 0.0        # before the output head of the max subnet
    drop_connect: float = 0.0   # stochastic depth in the max subnet's residual blocks


def sample_sandwich(model: nn.Module, rng: random.Random, n_random: int = 2) -> list[tuple[str, dict]]:
    """The step's configs, drawn once per optimiser step so every micro-batch and rank agrees.

    Sampling activates a subnet; the caller re-activates each config before its forward pass.
    """
    configs = [("max", model.sample_max_subnet())]
    configs += [(f"random{i}", model.sample_active_subnet(rng)) for i in range(n_random)]
    configs.append(("min", model.sample_min_subnet()))
    return configs


def dropout_nchw(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode `F.dropout` whose mask is drawn in NCHW order whatever `x`'s memory format.

    `F.dropout` fills its mask in memory order, so a channels_last tensor would get another mask
    from the same seed; drawing it contiguous keeps channels_last training on the same random
    stream as NCHW training (the CPU `F.dropout` is exactly this: bernoulli mask / (1 - p) * x)."""
    if x.is_contiguous() or not x.is_floating_point():
        return F.dropout(x, p, training=True)
    noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * noise


def drop_connect_factors(model: nn.Module, last_stages: int = 2) -> dict[str, float]:
    """{block name: idx / n_blocks} for the blocks of the last `last_stages` stages, where idx counts
    every block of the maximum depth across all stages and n_blocks is their number: the share of
    the drop-connect rate each block gets (AttentiveNAS `set_dropout_rate(dropout, drop_connect,
    drop_connect_only_last_two_stages=True)`, called by the SalNAS code for the max subnet)."""
    stages = getattr(model, "stages", None)
    if stages is None:
        return {}
    n_blocks = sum(len(blocks) for blocks in stages)
    out, idx = {}, 0
    for s, blocks in enumerate(stages):
        for j in range(len(blocks)):
            if s >= len(stages) - last_stages:
                out[f"stages.{s}.{j}"] = idx / n_blocks
            idx += 1
    return out


def is_identity_residual(block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether `block`'s output was `branch + x` in this forward: a residual block (not
    shortcut 'none') at stride 1 whose input and output shapes match (AttentiveNAS's shortcut is
    then the identity, its 1x1 projection unused)."""
    return (getattr(block, "shortcut_kind", "none") != "none" and getattr(block, "stride", 1) == 1
            and x.shape == out.shape)


class MaxSubnetRegularisation:
    """Dropout before the output head and drop-connect (stochastic depth) on identity residuals,
    added to a supernet through hooks, as AttentiveNAS's `set_dropout_rate(dropout, drop_connect)`
    does inside its blocks (the SalNAS code calls it with 0.2, 0.2 for the max subnet only):
    block idx of the last two stages drops its branch per sample with rate
    `drop_connect * idx / n_blocks` (drop_connect_factors), wherever its residual is the identity.

    Active only while the module is in training mode and the rates are non-zero; a supernet that
    has its own `set_dropout_rate` is driven through that instead. `applied` holds {block name:
    rate} of the blocks drop-connect ran on since the last `set`.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.dropout = 0.0
        self.drop_connect = 0.0
        self.handles = []
        self.applied: dict[str, float] = {}
        self.factors = drop_connect_factors(model)
        if hasattr(model, "set_dropout_rate"):
            return
        head = getattr(model, "out", None)
        if isinstance(head, nn.Module):
            self.handles.append(head.register_forward_pre_hook(self._dropout_hook))
        for name, m in model.named_modules():
            if self.factors.get(name, 0.0) > 0:  # an MBConv block of the last two stages
                self.handles.append(m.register_forward_hook(self._drop_connect_hook(name, self.factors[name])))

    def set(self, dropout: float, drop_connect: float) -> None:
        if not (0.0 <= dropout < 1.0 and 0.0 <= drop_connect < 1.0):
            raise ValueError(f"dropout and drop_connect must be in [0, 1), got {dropout}, {drop_connect}")
        if hasattr(self.model, "set_dropout_rate"):
            self.model.set_dropout_rate(dropout, drop_connect)
        self.dropout, self.drop_connect = float(dropout), float(drop_connect)
        self.applied = {}

    def _dropout_hook(self, module: nn.Module, args: tuple):
        if self.dropout > 0 and module.training:
            return (dropout_nchw(args[0], self.dropout),) + tuple(args[1:])
        return None

    def _drop_connect_hook(self, name: str, factor: float):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor):
            x = args[0]
            rate = self.drop_connect * factor
            if rate <= 0 or not module.training or not is_identity_residual(module, x, out):
                return None
            self.applied[name] = rate
            keep = 1.0 - rate
            mask = torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))
            return x + (out - x) * (mask / keep)  # out - x: the branch
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def sandwich_backward(model: nn.Module, configs: list[tuple[str, dict]], images: torch.Tensor,
                      target: torch.Tensor, fixations: torch.Tensor,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                      cfg: SandwichConfig, regulariser: MaxSubnetRegularisation | None = None,
                      scale: float = 1.0,
                      backward: Callable[[torch.Tensor], None] | None = None,
                      autocast: Callable[[], Any] | None = None,
                      after_first: Callable[[], None] | None = None) -> dict[str, float]:
    """Forward and backward every subnet of `configs` on one (micro-)batch, accumulating gradients.

    `target` is the KLD/CC target (ground truth or Self-KD mix), `fixations` the real fixations for
    NSS. Each loss is multiplied by `scale` (1 / micro-batches) before its backward pass; `backward`
    defaults to `loss.backward()` (the trainer passes the AMP scaler's). `after_first` is called once
    the first subnet (the max, the only one that draws random numbers) is through its backward pass:
    the trainer starts loading the next batch there. Returns unscaled losses.
    """
    backward = backward or (lambda loss: loss.backward())
    autocast = autocast or contextlib.nullcontext
    out_size = tuple(target.shape[-2:])
    losses: dict[str, float] = {}
    try:
        for name, config in configs:
            model.set_active_subnet(config)
            if regulariser is not None:
                if name == "max":
                    regulariser.set(cfg.dropout, cfg.drop_connect)
                else:
                    regulariser.set(0.0, 0.0)
            with autocast():
                pred = model(images, out_size=out_size)
            loss = loss_fn(pred.float(), target, fixations)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"sandwich step: {name} subnet loss is {loss.item()} (config {config})")
            backward(loss * scale)
            losses[name] = float(loss.detach())
            if after_first is not None:
                after_first()
                after_first = None
    finally:
        if regulariser is not None:
            regulariser.set(0.0, 0.0)
    return losses


@contextlib.contextmanager
def active_subnet(model: nn.Module, config: dict) -> Iterator[nn.Module]:
    """Activate `config` for the block's duration (validation, teacher), then restore max."""
    model.set_active_subnet(config)
    try:
        yield model
    finally:
        model.sample_max_subnet()
