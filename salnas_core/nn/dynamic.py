"""Dynamic (elastic) layers of the weight-sharing supernet, after Once-for-All / AttentiveNAS.

Every layer holds the weights of its largest shape and runs a smaller one by slicing:
output channels and input channels by prefix, the kernel by centre crop (optionally through
the OFA kernel transformation matrices). Input channels follow the incoming tensor; output
channels, kernel size and expand ratio are `active_*` attributes set by the supernet.
`copy_to(static)` fills the static twin (salnas_core.nn.static) with the active slices.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import static as S
from .layers import PADDINGS, build_act, conv_padding, make_divisible


def _contiguous(segments: Sequence[tuple[int, int]]) -> bool:
    """True when the segments tile [0, n) in order (then a prefix slice does the job)."""
    pos = 0
    for start, n in segments:
        if start != pos:
            return False
        pos += n
    return True


class DynamicConv2d(nn.Module):
    """Conv with elastic kernel (centre crop, or OFA transform matrices) and elastic in/out channels.

    `depthwise=True` makes it a depthwise conv whose channel count follows the input.
    `in_segments` at call time picks input channels from several blocks of the max weight
    (used by decoder convs whose input is a concatenation of two elastic tensors)."""

    def __init__(self, max_in: int, max_out: int, kernel_sizes: Sequence[int] = (3,), stride: int = 1,
                 depthwise: bool = False, padding: str = "symmetric", kernel_transform: bool = False):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if depthwise and max_in != max_out:
            raise ValueError("a depthwise conv needs max_in == max_out")
        self.kernel_sizes = sorted(set(int(k) for k in kernel_sizes))
        self.max_in, self.max_out, self.stride = max_in, max_out, stride
        self.depthwise, self.padding = depthwise, padding
        kmax = self.kernel_sizes[-1]
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in, kmax, kmax))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.kernel_transform = kernel_transform and len(self.kernel_sizes) > 1
        if self.kernel_transform:
            # OFA: a (k_small^2 x k_small^2) matrix per step down, initialised to the identity (= crop)
            for big, small in zip(self.kernel_sizes[1:], self.kernel_sizes[:-1]):
                self.register_parameter(f"t{big}to{small}", nn.Parameter(torch.eye(small * small)))
        self.active_kernel_size = kmax
        self.active_out_channels = max_out

    def _kernel(self, w: torch.Tensor, k: int) -> torch.Tensor:
        kmax = w.shape[-1]
        if k == kmax:
            return w
        if k not in self.kernel_sizes:
            raise ValueError(f"kernel size {k} not in {self.kernel_sizes}")
        if not self.kernel_transform:
            s = (kmax - k) // 2
            return w[:, :, s:s + k, s:s + k]
        for big, small in zip(reversed(self.kernel_sizes[1:]), reversed(self.kernel_sizes[:-1])):
            if big <= k:
                break
            s = (big - small) // 2
            c = w[:, :, s:s + small, s:s + small].reshape(-1, small * small)
            w = F.linear(c, getattr(self, f"t{big}to{small}")).reshape(w.shape[0], w.shape[1], small, small)
        return w

    def active_weight(self, in_channels: int, out_channels: int | None = None, kernel_size: int | None = None,
                      in_segments: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        """The weight slice of the active shape: (out, in or 1, k, k)."""
        k = self.active_kernel_size if kernel_size is None else kernel_size
        out = in_channels if self.depthwise else (self.active_out_channels if out_channels is None else out_channels)
        if self.depthwise or not (in_segments and len(in_segments) > 1 and not _contiguous(in_segments)):
            # a prefix; the max shape takes the parameter itself: no slice view, so no full-size
            # zero-filled gradient buffer in backward and no re-layout of a strided view in oneDNN
            full = out == self.max_out and (self.depthwise or in_channels == self.max_in)
            w = self.weight if full else self.weight[:out] if self.depthwise else self.weight[:out, :in_channels]
        else:
            w = torch.cat([self.weight[:out, s:s + n] for s, n in in_segments], 1)
        return self._kernel(w, k)

    def forward(self, x: torch.Tensor, in_segments: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        c = x.shape[1]
        w = self.active_weight(c, in_segments=in_segments)
        x, pad = conv_padding(x, w.shape[-1], self.stride, self.padding)
        return F.conv2d(x, w, None, self.stride, pad, 1, c if self.depthwise else 1)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its max-size parameters and running statistics
    (the sliced statistics are updated in place, so recalibration works per subnet)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or not self.track_running_stats
        track = self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if track else None,
            self.running_var[:c] if track else None,
            self.weight[:c] if self.affine else None,
            self.bias[:c] if self.affine else None,
            use_batch, factor, self.eps,
        )

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        c = bn.num_features
        with torch.no_grad():
            if self.affine:
                bn.weight.copy_(self.weight[:c])
                bn.bias.copy_(self.bias[:c])
            if self.track_running_stats:
                bn.running_mean.copy_(self.running_mean[:c])
                bn.running_var.copy_(self.running_var[:c])
                bn.num_batches_tracked.copy_(self.num_batches_tracked)


class DynamicConvBnAct(nn.Module):
    """DynamicConv2d + DynamicBatchNorm2d + activation; the unit every elastic layer is made of."""

    def __init__(self, max_in: int, max_out: int, kernel_sizes: Sequence[int] = (3,), stride: int = 1,
                 depthwise: bool = False, act: str | None = "swish", bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1, padding: str = "symmetric", kernel_transform: bool = False):
        super().__init__()
        self.act_name = act
        self.conv = DynamicConv2d(max_in, max_out, kernel_sizes, stride, depthwise, padding, kernel_transform)
        self.bn = DynamicBatchNorm2d(max_out, eps=bn_eps, momentum=bn_momentum)
        self.act = build_act(act)

    @property
    def active_out_channels(self) -> int:
        return self.conv.active_out_channels

    @active_out_channels.setter
    def active_out_channels(self, c: int) -> None:
        if not 0 < c <= self.conv.max_out:
            raise ValueError(f"{c} output channels out of range 1..{self.conv.max_out}")
        self.conv.active_out_channels = int(c)

    def forward(self, x: torch.Tensor, in_segments: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        return self.act(self.bn(self.conv(x, in_segments)))

    def copy_to(self, m: S.ConvBnAct, in_segment_starts: Sequence[int] | None = None) -> None:
        """Copy the active slices into static `m` (its shapes say which slices)."""
        segs = None
        if in_segment_starts is not None:
            segs = list(zip(in_segment_starts, m.in_splits))
        w = self.conv.active_weight(m.in_channels, m.out_channels, m.conv.kernel_size[0], segs)
        with torch.no_grad():
            m.conv.weight.copy_(w)
        self.bn.copy_to(m.bn)


class DynamicSE(nn.Module):
    """Squeeze-excite whose width follows the input; middle width make_divisible(C // 4, 8)."""

    def __init__(self, max_channels: int, reduction: int = 4, divisor: int = 8):
        super().__init__()
        self.reduction, self.divisor = reduction, divisor
        mid = make_divisible(max_channels // reduction, divisor)
        self.reduce = nn.Conv2d(max_channels, mid, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, max_channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mid = make_divisible(c // self.reduction, self.divisor)
        y = x.mean((2, 3), keepdim=True)
        y = self.act(F.conv2d(y, self.reduce.weight[:mid, :c], self.reduce.bias[:mid]))
        y = self.gate(F.conv2d(y, self.expand.weight[:c, :mid], self.expand.bias[:c]))
        return x * y

    def copy_to(self, m: S.SqueezeExcite) -> None:
        mid, c = m.reduce.weight.shape[:2]
        with torch.no_grad():
            m.reduce.weight.copy_(self.reduce.weight[:mid, :c])
            m.reduce.bias.copy_(self.reduce.bias[:mid])
            m.expand.weight.copy_(self.expand.weight[:c, :mid])
            m.expand.bias.copy_(self.expand.bias[:c])


class DynamicShortcut(nn.Module):
    """Elastic residual path of AttentiveNAS: identity when shapes match, else 2x2 average
    pool (stride 2) and a 1x1 projection sliced to the active in/out channels."""

    def __init__(self, max_in: int, max_out: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.conv = DynamicConv2d(max_in, max_out, (1,))

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        c = x.shape[1]
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, padding=0 if x.shape[-1] % 2 == 0 else 1)
        if c != out_channels:
            self.conv.active_out_channels = out_channels
            x = self.conv(x)
        return x

    def copy_to(self, m: S.Shortcut) -> None:
        if m.conv is not None:
            o, i = m.conv.weight.shape[:2]
            with torch.no_grad():
                m.conv.weight.copy_(self.conv.weight[:o, :i])


class DynamicMBConv(nn.Module):
    """Elastic inverted residual block: kernel size, expand ratio and output width are active
    attributes; input width follows the incoming tensor. Middle width is
    make_divisible(round(in * expand), 8), as AttentiveNAS."""

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int], kernel_sizes: Sequence[int],
                 expand_ratios: Sequence[int], stride: int, act: str = "swish", se: bool = False,
                 shortcut: str = "projection", bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 padding: str = "symmetric", kernel_transform: bool = False):
        super().__init__()
        self.in_widths, self.out_widths = sorted(set(in_widths)), sorted(set(out_widths))
        self.kernel_sizes, self.expand_ratios = sorted(set(kernel_sizes)), sorted(set(expand_ratios))
        self.stride, self.act_name, self.use_se, self.shortcut_kind = stride, act, se, shortcut
        self.bn_eps, self.bn_momentum, self.padding = bn_eps, bn_momentum, padding
        max_in, max_out = self.in_widths[-1], self.out_widths[-1]
        max_mid = self.mid_channels(max_in, self.expand_ratios[-1])
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.expand = (DynamicConvBnAct(max_in, max_mid, (1,), act=act, **bn)
                       if self.expand_ratios[-1] != 1 else None)
        self.dw = DynamicConvBnAct(max_mid, max_mid, self.kernel_sizes, stride, depthwise=True, act=act,
                                   padding=padding, kernel_transform=kernel_transform, **bn)
        self.se = DynamicSE(max_mid) if se else None
        self.project = DynamicConvBnAct(max_mid, max_out, (1,), act=None, **bn)
        # a projection is built only where some subnet can use it (AttentiveNAS builds one for every
        # block, most of them never used: see docs/search_spaces.md)
        needs_proj = stride > 1 or self.in_widths != self.out_widths or len(self.out_widths) > 1
        self.shortcut = (DynamicShortcut(max_in, max_out, stride)
                         if shortcut == "projection" and needs_proj else None)
        if shortcut not in ("projection", "identity", "none"):
            raise ValueError(f"unknown shortcut kind {shortcut!r}")
        self.active_kernel_size = self.kernel_sizes[-1]
        self.active_expand_ratio = self.expand_ratios[-1]
        self.active_out_channels = max_out

    @staticmethod
    def mid_channels(in_channels: int, expand_ratio: float) -> int:
        return in_channels if expand_ratio == 1 else make_divisible(round(in_channels * expand_ratio), 8)

    def _residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c, out = x.shape[1], y.shape[1]
        if self.shortcut_kind == "projection":
            if self.shortcut is None:  # in == out and stride 1 for every subnet
                return y + x
            return y + self.shortcut(x, out)
        if self.shortcut_kind == "identity" and self.stride == 1 and c == out:
            return y + x
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mid = self.mid_channels(c, self.active_expand_ratio)
        if self.expand is not None:
            self.expand.active_out_channels = mid
            y = self.expand(x)
        else:
            y = x
        self.dw.conv.active_kernel_size = self.active_kernel_size
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        self.project.active_out_channels = self.active_out_channels
        y = self.project(y)
        return self._residual(x, y)

    def copy_to(self, m: S.MBConv) -> None:
        if self.expand is not None:
            self.expand.copy_to(m.expand)
        self.dw.copy_to(m.dw)
        if self.se is not None:
            self.se.copy_to(m.se)
        self.project.copy_to(m.project)
        if self.shortcut is not None and isinstance(m.shortcut, S.Shortcut):
            self.shortcut.copy_to(m.shortcut)
