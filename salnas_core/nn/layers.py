"""Small shared pieces: channel rounding, activations by name, TF-style 'same' padding."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never going below 90% of `v`
    (the MobileNet rule that Once-for-All and AttentiveNAS use for middle widths)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "h_sigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
}


def build_act(name: str | None) -> nn.Module:
    """Activation module by name (`None` -> identity)."""
    if name is None:
        return nn.Identity()
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


PADDINGS = ("symmetric", "same")


def same_pad_amounts(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_padding(x: torch.Tensor, k: int, s: int, padding: str) -> tuple[torch.Tensor, int]:
    """Pad `x` for a k x k conv with stride s. Returns (input, conv padding argument).

    'symmetric' is PyTorch's k//2 on every side (AttentiveNAS); 'same' is TensorFlow's SAME,
    which the EfficientNet-Lite weights were trained with (asymmetric at stride 2)."""
    if padding == "symmetric" or (s == 1 and k % 2 == 1):
        return x, k // 2
    ph = same_pad_amounts(x.shape[-2], k, s)
    pw = same_pad_amounts(x.shape[-1], k, s)
    return F.pad(x, (pw[0], pw[1], ph[0], ph[1])), 0


class Conv2dPad(nn.Conv2d):
    """Static conv with 'symmetric' or TF 'same' padding; no bias unless asked."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False, padding: str = "symmetric"):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self._pad_mode = padding
        # TF 'same' needs the input size only when stride > 1 or the kernel is even
        self._dynamic_pad = padding == "same" and not (stride == 1 and kernel_size % 2 == 1)
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         padding=0 if self._dynamic_pad else kernel_size // 2, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic_pad:
            x, _ = conv_padding(x, self.kernel_size[0], self.stride[0], "same")
        return super().forward(x)
