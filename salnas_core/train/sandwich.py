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


class MaxSubnetRegularisation:
    """Dropout before the output head and drop-connect (stochastic depth) on identity residuals,
    added to a supernet through hooks, as AttentiveNAS's `set_dropout_rate(dropout, drop_connect)`
    does inside its blocks (the SalNAS code calls it with 0.2, 0.2 for the max subnet only).

    Active only while the module is in training mode and the rates are non-zero; a supernet that
    has its own `set_dropout_rate` is driven through that instead.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.dropout = 0.0
        self.drop_connect = 0.0
        self.handles = []
        if hasattr(model, "set_dropout_rate"):
            return
        head = getattr(model, "out", None)
        if isinstance(head, nn.Module):
            self.handles.append(head.register_forward_pre_hook(self._dropout_hook))
        for m in model.modules():
            if hasattr(m, "shortcut_kind") and hasattr(m, "active_out_channels"):  # an MBConv block
                self.handles.append(m.register_forward_hook(self._drop_connect_hook))

    def set(self, dropout: float, drop_connect: float) -> None:
        if not (0.0 <= dropout < 1.0 and 0.0 <= drop_connect < 1.0):
            raise ValueError(f"dropout and drop_connect must be in [0, 1), got {dropout}, {drop_connect}")
        if hasattr(self.model, "set_dropout_rate"):
            self.model.set_dropout_rate(dropout, drop_connect)
        self.dropout, self.drop_connect = float(dropout), float(drop_connect)

    def _dropout_hook(self, module: nn.Module, args: tuple):
        if self.dropout > 0 and module.training:
            return (dropout_nchw(args[0], self.dropout),) + tuple(args[1:])
        return None

    def _drop_connect_hook(self, module: nn.Module, args: tuple, out: torch.Tensor):
        x = args[0]
        if self.drop_connect <= 0 or not module.training or x.shape != out.shape:
            return None
        # only a pure identity residual (out = branch + x) can be split without recomputation
        identity = (module.shortcut_kind == "projection" and getattr(module, "shortcut", None) is None) or \
            (module.shortcut_kind == "identity" and getattr(module, "stride", 1) == 1)
        if not identity:
            return None
        keep = 1.0 - self.drop_connect
        mask = torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))
        return x + (out - x) * (mask / keep)

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
