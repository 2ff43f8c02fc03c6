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


def set_regularisation(model: nn.Module, dropout: float, drop_connect: float) -> None:
    """Set the supernet's dropout and drop-connect rates (a no-op if it has neither)."""
    if hasattr(model, "set_dropout_rate"):
        model.set_dropout_rate(dropout, drop_connect)
        return
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = dropout
        if hasattr(m, "drop_connect_rate"):
            m.drop_connect_rate = drop_connect


def sandwich_backward(model: nn.Module, configs: list[tuple[str, dict]], images: torch.Tensor,
                      target: torch.Tensor, fixations: torch.Tensor,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                      cfg: SandwichConfig, scale: float = 1.0,
                      backward: Callable[[torch.Tensor], None] | None = None,
                      autocast: Callable[[], Any] | None = None) -> dict[str, float]:
    """Forward and backward every subnet of `configs` on one (micro-)batch, accumulating gradients.

    `target` is the KLD/CC target (ground truth or Self-KD mix), `fixations` the real fixations for
    NSS. Each loss is multiplied by `scale` (1 / micro-batches) before its backward pass; `backward`
    defaults to `loss.backward()` (the trainer passes the AMP scaler's). Returns unscaled losses.
    """
    backward = backward or (lambda loss: loss.backward())
    autocast = autocast or contextlib.nullcontext
    out_size = tuple(target.shape[-2:])
    losses: dict[str, float] = {}
    try:
        for name, config in configs:
            model.set_active_subnet(config)
            if name == "max":
                set_regularisation(model, cfg.dropout, cfg.drop_connect)
            else:
                set_regularisation(model, 0.0, 0.0)
            with autocast():
                pred = model(images, out_size=out_size)
            loss = loss_fn(pred.float(), target, fixations)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"sandwich step: {name} subnet loss is {loss.item()} (config {config})")
            backward(loss * scale)
            losses[name] = float(loss.detach())
    finally:
        set_regularisation(model, 0.0, 0.0)
    return losses


@contextlib.contextmanager
def active_subnet(model: nn.Module, config: dict) -> Iterator[nn.Module]:
    """Activate `config` for the block's duration (validation, teacher), then restore max."""
    model.set_active_subnet(config)
    try:
        yield model
    finally:
        model.sample_max_subnet()
