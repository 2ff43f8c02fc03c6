"""Static twins of the dynamic layers: plain modules with fixed shapes, what an extracted
subnet is made of (no slicing, no elastic attributes)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2dPad, build_act, make_divisible


class ConvBnAct(nn.Module):
    """k x k conv (optionally depthwise) + BatchNorm + activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 depthwise: bool = False, act: str | None = "swish", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, padding: str = "symmetric",
                 in_splits: tuple[int, ...] | None = None):
        super().__init__()
        if depthwise and in_channels != out_channels:
            raise ValueError(f"depthwise conv needs in == out channels, got {in_channels} -> {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        # sizes of the concatenated inputs (decoder skips); kept to copy the right weight slices
        self.in_splits = tuple(in_splits) if in_splits else (in_channels,)
        if sum(self.in_splits) != in_channels:
            raise ValueError(f"in_splits {self.in_splits} do not add up to {in_channels} channels")
        self.conv = Conv2dPad(in_channels, out_channels, kernel_size, stride,
                              groups=in_channels if depthwise else 1, padding=padding)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = build_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-excite as in MobileNetV3/AttentiveNAS: mean pool, 1x1 reduce (make_divisible(C/4, 8)),
    ReLU, 1x1 expand, hard sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4, divisor: int = 8):
        super().__init__()
        mid = make_divisible(channels // reduction, divisor)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(y))))


class Shortcut(nn.Module):
    """Residual path when shapes change: 2x2 average pool for stride 2, 1x1 projection when the
    channel count changes (AttentiveNAS/SalNAS). Built with neither it is the identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, padding=0 if x.shape[-1] % 2 == 0 else 1)
        if self.conv is not None:
            x = self.conv(x)
        return x


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ residual).

    `shortcut`: "projection" (always residual; pool/1x1 when shapes change), "identity"
    (residual only when stride 1 and in == out, as EfficientNet) or "none"."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, kernel_size: int, stride: int,
                 act: str = "swish", se: bool = False, shortcut: str = "projection", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, padding: str = "symmetric"):
        super().__init__()
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.expand = (ConvBnAct(in_channels, mid_channels, 1, act=act, **bn)
                       if mid_channels != in_channels else None)
        self.dw = ConvBnAct(mid_channels, mid_channels, kernel_size, stride, depthwise=True, act=act,
                            padding=padding, **bn)
        self.se = SqueezeExcite(mid_channels) if se else None
        self.project = ConvBnAct(mid_channels, out_channels, 1, act=None, **bn)
        if shortcut == "projection":
            self.shortcut: nn.Module | None = Shortcut(in_channels, out_channels, stride)
        elif shortcut == "identity" and stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut in ("identity", "none"):
            self.shortcut = None
        else:
            raise ValueError(f"unknown shortcut kind {shortcut!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return y if self.shortcut is None else y + self.shortcut(x)
