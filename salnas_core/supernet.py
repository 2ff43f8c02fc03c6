"""The SalNAS weight-sharing supernet (encoder + decoder over salnas_core.nn) and its static subnets.

    net = create_supernet("lite", pretrained=True)
    cfg = net.sample_active_subnet(rng)        # or sample_max_subnet() / sample_min_subnet()
    maps = net(images)                         # (B, 1, H, W) in [0, 1], active subnet
    sub = net.get_active_subnet()              # plain nn.Module, no dynamic code; sub.config == cfg
    save_model("model.pt", sub); sub2 = load_model("model.pt")

Network layout (SalNAS): stem conv (stride 2) -> MBConv stages -> 1x1 head; decoder of five
3x3 conv + BN + Swish steps each followed by x2 bilinear upsampling, concatenating the outputs of
stage 5, 3, 2 and the stem after steps 0..3; then a 3x3 conv + BN + Swish refinement and a
3x3 conv + BN + sigmoid output. Decoder widths follow the sampled encoder widths (see
SpaceSpec.decoder_widths_from). The input is resized so its long side is the config's
`resolution` (short side a multiple of 32); the map is resized back to `out_size` (default:
the input size).
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .nn import static as S
from .nn.dynamic import DynamicConvBnAct, DynamicMBConv
from .nn.postprocess import Postprocess
from .spaces import SpaceSpec, get_space

log = logging.getLogger(__name__)

__all__ = ["SalNASSupernet", "SalNASNet", "create_supernet", "build_subnet", "save_model", "load_model",
           "recalibrate_bn", "count_params", "count_macs"]


def _up2(x: torch.Tensor) -> torch.Tensor:
    # align_corners=True: SalNAS uses nn.UpsamplingBilinear2d
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


class _SaliencyForward(nn.Module):
    """Shared forward: resize to the working size, encode/decode, map back to `out_size`."""

    space: SpaceSpec

    def _resolution(self) -> int:
        raise NotImplementedError

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, out_size: tuple[int, int] | None = None,
                resolution: int | None = None) -> torch.Tensor:
        """images (B, 3, H, W) -> maps (B, 1, *out_size); `resolution` overrides the config's long
        side (predict runs images much smaller than it at a smaller one: serve.predict)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        out_size = tuple(int(s) for s in out_size) if out_size is not None else (h, w)
        work = self.space.working_size(h, w, int(resolution or self._resolution()))
        x = images if (h, w) == work else F.interpolate(images, size=work, mode="bilinear",
                                                        align_corners=False, antialias=True)
        y = self._core(x)
        if tuple(y.shape[-2:]) != out_size:
            y = F.interpolate(y, size=out_size, mode="bilinear", align_corners=False)
        return y


def _widths(space: SpaceSpec) -> list[list[int]]:
    return space.choices()["width"]


def _shortcut_kind(space: SpaceSpec, stage: int, block: int) -> str:
    """EfficientNet ('identity') skips only inside a stage: a first block never gets one, even
    when an elastic width makes its input and output match (the pretrained net has none there)."""
    if space.shortcut == "identity" and block == 0:
        return "none"
    return space.shortcut


# ----------------------------------------------------------------------------------------------
# dynamic supernet
# ----------------------------------------------------------------------------------------------
class SalNASSupernet(_SaliencyForward):
    """Weight-sharing supernet of one search space (see salnas_core.spaces)."""

    def __init__(self, space: SpaceSpec | str):
        super().__init__()
        sp = self.space = get_space(space)
        bn = dict(bn_eps=sp.bn_eps, bn_momentum=sp.bn_momentum)
        widths = _widths(sp)
        self.stem = DynamicConvBnAct(3, max(widths[0]), (3,), 2, act=sp.act, padding=sp.padding, **bn)
        in_w = widths[0]
        self.stages = nn.ModuleList()
        for s, st in enumerate(sp.stages):
            blocks = nn.ModuleList()
            for j in range(max(st.depths)):
                blocks.append(DynamicMBConv(in_w, st.widths, st.kernels, st.expands, st.stride if j == 0 else 1,
                                            act=sp.act, se=st.se, shortcut=_shortcut_kind(sp, s, j),
                                            padding=sp.padding,
                                            kernel_transform=sp.kernel_transform, **bn))
                in_w = list(st.widths)
            self.stages.append(blocks)
        head_max = max(sp.head_channels(w) for w in widths[-1])
        self.head = DynamicConvBnAct(max(widths[-1]), head_max, (1,), act=sp.act, **bn)
        self.up = nn.ModuleList()
        self._seg_starts: list[list[int] | None] = []
        prev = head_max
        for i, src in enumerate(sp.decoder_widths_from):
            skip = max(widths[sp.skip_from[i - 1]]) if i > 0 else 0
            self.up.append(DynamicConvBnAct(prev + skip, max(widths[src]), (3,), act=sp.decoder_act, **bn))
            self._seg_starts.append([0, prev] if i > 0 else None)
            prev = max(widths[src])
        self.refine = DynamicConvBnAct(prev, max(widths[0]), (3,), act=sp.decoder_act, **bn)
        self.out = DynamicConvBnAct(max(widths[0]), 1, (3,), act="sigmoid", **bn)
        self.runtime_depth = [max(st.depths) for st in sp.stages]
        self.active_config: dict[str, Any] = {}
        self.set_active_subnet(sp.max_config())

    # ---- sampling (OFA / AttentiveNAS names) ----------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The active subnet config (a copy)."""
        return copy.deepcopy(self.active_config)

    def sample_max_subnet(self) -> dict[str, Any]:
        return self.set_active_subnet(self.space.max_config())

    def sample_min_subnet(self) -> dict[str, Any]:
        return self.set_active_subnet(self.space.min_config())

    def sample_active_subnet(self, rng: Any = None) -> dict[str, Any]:
        """Activate a uniformly random subnet; `rng`: random.Random, numpy Generator or int seed."""
        return self.set_active_subnet(self.space.sample_config(rng))

    def set_active_subnet(self, config: dict[str, Any]) -> dict[str, Any]:
        """Activate `config` (validated against the space); returns the clean config."""
        cfg = self.space.validate_config(config)
        sp, width = self.space, cfg["width"]
        self.stem.active_out_channels = width[0]
        for s, blocks in enumerate(self.stages):
            self.runtime_depth[s] = cfg["depth"][s]
            for blk in blocks:
                blk.active_out_channels = width[s + 1]
                blk.active_kernel_size = cfg["kernel_size"][s]
                blk.active_expand_ratio = cfg["expand_ratio"][s]
        self.head.active_out_channels = sp.head_channels(width[-1])
        for i, src in enumerate(sp.decoder_widths_from):
            self.up[i].active_out_channels = width[src]
        self.refine.active_out_channels = width[0]
        self.active_config = cfg
        return copy.deepcopy(cfg)

    def _resolution(self) -> int:
        return self.active_config["resolution"][0]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of the active subnet: [stem, stage 1..N, head] (no resizing)."""
        feats = [self.stem(x)]
        for blocks, d in zip(self.stages, self.runtime_depth):
            y = feats[-1]
            for blk in blocks[:d]:
                y = blk(y)
            feats.append(y)
        feats.append(self.head(feats[-1]))
        return feats

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        sp = self.space
        feats = self.encode(x)
        x = feats.pop()
        width = self.active_config["width"]
        for i, step in enumerate(self.up):
            if i == 0:
                x = step(x)
            else:
                skip = feats[sp.skip_from[i - 1]]
                segs = [(0, x.shape[1]), (self._seg_starts[i][1], skip.shape[1])]
                x = step(torch.cat([x, skip], 1), in_segments=segs)
            x = _up2(x)
        assert x.shape[1] == width[sp.decoder_widths_from[-1]]
        return self.out(self.refine(x))

    # ---- extraction ------------------------------------------------------------------------
    def get_active_subnet(self, preserve_weight: bool = True) -> "SalNASNet":
        """The active subnet as a static SalNASNet (same device/dtype/mode); with
        `preserve_weight` its weights are the supernet's slices, so outputs match exactly."""
        net = SalNASNet(self.active_config)
        p = next(self.parameters())
        net = net.to(device=p.device, dtype=p.dtype)
        if preserve_weight:
            self.stem.copy_to(net.stem)
            for s, d in enumerate(self.runtime_depth):
                for j in range(d):
                    self.stages[s][j].copy_to(net.stages[s][j])
            self.head.copy_to(net.head)
            for i, step in enumerate(self.up):
                step.copy_to(net.up[i], self._seg_starts[i])
            self.refine.copy_to(net.refine)
            self.out.copy_to(net.out)
        return net.train(self.training)

    def build_from_config(self, config: dict[str, Any], preserve_weight: bool = True) -> "SalNASNet":
        """Static subnet of `config` with inherited weights, leaving the active subnet unchanged."""
        old = self.active_config
        try:
            self.set_active_subnet(config)
            return self.get_active_subnet(preserve_weight)
        finally:
            self.set_active_subnet(old)


# ----------------------------------------------------------------------------------------------
# static subnet
# ----------------------------------------------------------------------------------------------
class SalNASNet(_SaliencyForward):
    """A static encoder-decoder subnet built from a config alone (no dynamic code)."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        sp = self.space = get_space(config.get("space"))
        cfg = self.config = sp.validate_config(config)
        bn = dict(bn_eps=sp.bn_eps, bn_momentum=sp.bn_momentum)
        width = cfg["width"]
        self.stem = S.ConvBnAct(3, width[0], 3, 2, act=sp.act, padding=sp.padding, **bn)
        in_c = width[0]
        self.stages = nn.ModuleList()
        for s, st in enumerate(sp.stages):
            blocks = nn.ModuleList()
            out_c, k, e = width[s + 1], cfg["kernel_size"][s], cfg["expand_ratio"][s]
            for j in range(cfg["depth"][s]):
                mid = DynamicMBConv.mid_channels(in_c, e)
                blocks.append(S.MBConv(in_c, out_c, mid, k, st.stride if j == 0 else 1, sp.act, st.se,
                                       _shortcut_kind(sp, s, j), padding=sp.padding, **bn))
                in_c = out_c
            self.stages.append(blocks)
        head = sp.head_channels(width[-1])
        self.head = S.ConvBnAct(in_c, head, 1, act=sp.act, **bn)
        self.up = nn.ModuleList()
        prev = head
        for i, src in enumerate(sp.decoder_widths_from):
            splits = (prev, width[sp.skip_from[i - 1]]) if i > 0 else (prev,)
            self.up.append(S.ConvBnAct(sum(splits), width[src], 3, act=sp.decoder_act, in_splits=splits, **bn))
            prev = width[src]
        self.refine = S.ConvBnAct(prev, width[0], 3, act=sp.decoder_act, **bn)
        self.out = S.ConvBnAct(width[0], 1, 3, act="sigmoid", **bn)
        self.postprocess: Postprocess | None = None  # blur + centre prior, fitted after training

    def set_postprocess(self, post: Postprocess | dict[str, Any] | None) -> "SalNASNet":
        """Attach (or with None remove) the fitted blur + centre prior (nn.postprocess)."""
        self.postprocess = Postprocess(**post) if isinstance(post, dict) else post
        return self

    def _resolution(self) -> int:
        return self.config["resolution"][0]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features: [stem, stage 1..N, head] (no resizing)."""
        feats = [self.stem(x)]
        for blocks in self.stages:
            y = feats[-1]
            for blk in blocks:
                y = blk(y)
            feats.append(y)
        feats.append(self.head(feats[-1]))
        return feats

    def _core(self, x: torch.Tensor) -> torch.Tensor:
        sp = self.space
        feats = self.encode(x)
        x = feats.pop()
        for i, step in enumerate(self.up):
            if i > 0:
                x = torch.cat([x, feats[sp.skip_from[i - 1]]], 1)
            x = _up2(step(x))
        y = self.out(self.refine(x))
        return y if self.postprocess is None else self.postprocess(y)


# ----------------------------------------------------------------------------------------------
# factories, persistence, BN recalibration, costs
# ----------------------------------------------------------------------------------------------
def create_supernet(name: str = "lite", pretrained: bool = True) -> SalNASSupernet:
    """Build the supernet of a registered space; `pretrained` loads the space's ImageNet weights
    where it has any (`lite`: EfficientNet-Lite0), else logs that it starts from scratch."""
    space = get_space(name)
    net = SalNASSupernet(space)
    if pretrained:
        if space.pretrained_loader is None:
            log.info("space %r has no pretrained weights; starting from random init", space.name)
        else:
            space.pretrained_loader(net)
    return net


def build_subnet(config: dict[str, Any], pretrained: bool = False) -> SalNASNet:
    """Static subnet from a JSON config. `pretrained=True` inherits the space's pretrained
    weights (through a pretrained supernet); otherwise weights are freshly initialised."""
    if pretrained:
        return create_supernet(config.get("space", "lite"), pretrained=True).build_from_config(config)
    return SalNASNet(config)


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """One file {"config", "state_dict", "meta"}, written atomically."""
    from .utils.io import torch_save_atomic

    if isinstance(model, SalNASSupernet):
        raise TypeError("save_model expects a static subnet; call supernet.get_active_subnet() first")
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} has no .config; build it with build_subnet(config)")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = dict(meta or {})
    post = getattr(model, "postprocess", None)
    if post is not None:
        meta["postprocess"] = post.as_dict()
    else:
        meta.pop("postprocess", None)
    return torch_save_atomic({"config": copy.deepcopy(model.config), "state_dict": state, "meta": meta}, path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SalNASNet:
    """Load a save_model file (weights_only=True) into a static subnet, in eval mode;
    `model.meta` holds the saved meta."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file whatever went wrong
        raise ValueError(f"{path}: not a readable model file ({e})") from e
    if not isinstance(blob, dict) or not {"config", "state_dict"} <= set(blob):
        raise ValueError(f"{path}: expected a dict with 'config' and 'state_dict' (written by save_model)")
    try:
        model = SalNASNet(blob["config"])
    except ValueError as e:
        raise ValueError(f"{path}: bad config: {e}") from e
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the config: {e}") from e
    model.meta = blob.get("meta", {})
    if model.meta.get("postprocess"):
        try:
            model.set_postprocess(dict(model.meta["postprocess"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: bad postprocess in meta: {e}") from e
    return model.eval()


def _images(batch: Any) -> torch.Tensor:
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    return batch


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, n_batches: int = 50) -> nn.Module:
    """Re-estimate BatchNorm running statistics of (the active subnet of) `model` on `n_batches`
    batches: statistics reset, then a cumulative average (momentum=None). The model's
    train/eval mode and BN momenta are restored. Batches: dicts with "image", tuples or tensors."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    was_training = model.training
    device = next(model.parameters()).device
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    try:
        for batch in loader:
            if n >= n_batches:
                break
            model(_images(batch).to(device))
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    if n == 0:
        raise ValueError("recalibrate_bn: the loader yielded no batch")
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int] = (288, 384)) -> int:
    """Multiply-accumulates of one forward at batch 1, from torch.utils.flop_counter
    (MACs = FLOPs / 2; convolutions and matmuls only, like most papers' counters)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    p = next(model.parameters())
    x = torch.zeros(1, 3, *input_size, device=p.device, dtype=p.dtype)
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc:
            model(x)
    finally:
        model.train(was_training)
    return int(fc.get_total_flops() // 2)
