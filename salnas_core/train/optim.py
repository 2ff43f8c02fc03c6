"""Optimiser and schedule of the SalNAS supernet training (the authors' `train_salnas.py`)."""
from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only; none on BN affine parameters and biases.

    Every 0-d/1-d parameter is a BN scale/shift or a bias in these networks, so shape decides (the
    authors match names, which breaks as soon as a module is renamed).
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": float(weight_decay), "group_name": "weight"},
            {"params": no_decay, "weight_decay": 0.0, "group_name": "bn_bias"}]


def build_optimizer(model: nn.Module, lr: float = 0.1, momentum: float = 0.9, nesterov: bool = True,
                    weight_decay: float = 1e-5) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov)


def build_scheduler(optimizer: torch.optim.Optimizer, t0: int = 10, t_mult: int = 1,
                    eta_min: float = 0.0) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    """Cosine annealing with warm restarts, stepped once per epoch (T0 in epochs)."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=t0, T_mult=t_mult, eta_min=eta_min)
