"""`salnas`: the search space of the SalNAS paper (AttentiveNAS MobileNetV3-style encoder,
Swish everywhere, SE in mb3/mb5/mb6/mb7, 1x1 expansion to 6x the mb7 width, input long side
256 or 384). `load_alphanet` starts its encoder from an AlphaNet ImageNet supernet checkpoint, as
the authors do (docs/training.md)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .base import SpaceSpec, StageSpec

log = logging.getLogger(__name__)

SALNAS = SpaceSpec(
    name="salnas",
    description="SalNAS paper space (AttentiveNAS-style MBConv encoder + SalNAS decoder)",
    normalization="imagenet",
    stem_widths=(16, 24),
    stages=(
        #         name   widths                 depths               kernels  expands    s  SE
        StageSpec("mb1", (16, 24), (1, 2), (3, 5), (1,), 1, False),
        StageSpec("mb2", (24, 32), (3, 4, 5), (3, 5), (4, 5, 6), 2, False),
        StageSpec("mb3", (32, 40), (3, 4, 5, 6), (3, 5), (4, 5, 6), 2, True),
        StageSpec("mb4", (64, 72), (3, 4, 5, 6), (3, 5), (4, 5, 6), 2, False),
        StageSpec("mb5", (112, 120, 128), (3, 4, 5, 6, 7, 8), (3, 5), (4, 5, 6), 1, True),
        StageSpec("mb6", (192, 200, 208, 216), (3, 4, 5, 6, 7, 8), (3, 5), (6,), 2, True),
        StageSpec("mb7", (216, 224), (1, 2), (3, 5), (6,), 1, True),
    ),
    resolutions=(256, 384),
    act="swish",
    decoder_act="swish",
    head_expand=6,
    shortcut="projection",
    padding="symmetric",
    bn_eps=1e-5,
)


def attentivenas_unused_shortcut_params(config: dict) -> int:
    """Parameters of the 1x1 shortcut convs that AttentiveNAS's static model builds in every block
    but never runs (identity residuals). The paper's counts (20.98 M / 6.35 M) include them; our
    static subnets do not build them. Used to reproduce the paper's numbers."""
    cfg = SALNAS.validate_config(config)
    w, n = cfg["width"], 0
    for s, st in enumerate(SALNAS.stages):
        for j in range(cfg["depth"][s]):
            cin, stride = (w[s], st.stride) if j == 0 else (w[s + 1], 1)
            if stride == 1 and cin == w[s + 1]:
                n += cin * w[s + 1]
    return n


# ----------------------------------------------------------------------------------------------
# AlphaNet ImageNet supernet -> the `salnas` encoder (the authors' `resume:` initialisation)
# ----------------------------------------------------------------------------------------------
# AttentiveNAS/AlphaNet name their supernet's encoder `first_conv`, `blocks.<i>` (numbered across
# stages, every block of the maximum depth) and `last_conv.final_expand_layer`; a conv + BN unit
# is `conv.conv.weight` + `bn.bn.*`, an MBConv block `mobile_inverted_conv.{inverted_bottleneck,
# depth_conv, point_linear}` (SE under `depth_conv.se.fc`) and `shortcut.conv.conv.weight`.
# Left out on both sides: the decoder (`decode_*` there, `up`/`refine`/`out` here), BN counters
# (`num_batches_tracked`) and AttentiveNAS's `bn_tracking` copies; the ImageNet classifier and
# `feature_mix_layer` of the checkpoint have no counterpart and are ignored.
ALPHANET_BLOCK_PARTS = {
    "expand": "mobile_inverted_conv.inverted_bottleneck",
    "dw": "mobile_inverted_conv.depth_conv",
    "se": "mobile_inverted_conv.depth_conv.se.fc",
    "project": "mobile_inverted_conv.point_linear",
    "shortcut": "shortcut",
}


def _alphanet_unit(rest: str) -> str:
    """`conv.weight` -> `conv.conv.weight`, `bn.<x>` -> `bn.bn.<x>` (AttentiveNAS wraps both)."""
    head, _, leaf = rest.partition(".")
    return f"{head}.{head}.{leaf}" if head in ("conv", "bn") else rest


def alphanet_key_map(supernet: Any) -> dict[str, str]:
    """{supernet encoder key: AlphaNet checkpoint key} for every encoder tensor of `supernet`
    except BN counters; decoder keys are not in it."""
    import re

    offsets, n = [], 0
    for blocks in supernet.stages:
        offsets.append(n)
        n += len(blocks)
    out: dict[str, str] = {}
    for key in supernet.state_dict():
        if key.endswith("num_batches_tracked"):
            continue
        m = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            s, j, part, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            if part not in ALPHANET_BLOCK_PARTS:
                raise KeyError(f"supernet key {key}: no AlphaNet counterpart for block part {part!r}")
            leaf = rest if part == "se" else _alphanet_unit(rest)
            out[key] = f"blocks.{offsets[s] + j}.{ALPHANET_BLOCK_PARTS[part]}.{leaf}"
        elif key.startswith("stem."):
            out[key] = "first_conv." + _alphanet_unit(key[len("stem."):])
        elif key.startswith("head."):
            out[key] = "last_conv.final_expand_layer." + _alphanet_unit(key[len("head."):])
    return out


def load_alphanet(supernet: Any, path: str | Path) -> int:
    """Copy the encoder of an AlphaNet (AttentiveNAS) ImageNet supernet checkpoint into a `salnas`
    supernet, as the authors' `train_salnas.py` does through `resume:`; returns the tensors copied.

    The file: `{"state_dict": {...}}` (AttentiveNAS/AlphaNet `save_checkpoint`) or a bare state
    dict, keys with or without DDP's `module.` prefix, read with `weights_only=True`. Any encoder
    tensor missing from it or of another shape is a UserError naming the file and the first few."""
    import torch

    from salnas_core.errors import UserError
    from salnas_core.utils.io import load_torch_file

    path = Path(path)
    if getattr(supernet.space, "name", None) != SALNAS.name:
        raise UserError(f"{path}: an AlphaNet checkpoint initialises the `salnas` space only, "
                        f"not {supernet.space.name!r} (--set space=salnas)")
    if not path.is_file():
        raise UserError(f"{path}: AlphaNet checkpoint not found")
    blob = load_torch_file(path, "AlphaNet checkpoint")
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not an AlphaNet checkpoint (expected {{'state_dict': {{name: tensor}}}})")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = supernet.state_dict()
    mapping = alphanet_key_map(supernet)
    missing = [src for src in mapping.values() if src not in state]
    shapes = [f"{src} {tuple(state[src].shape)} (expected {tuple(own[dst].shape)})"
              for dst, src in mapping.items() if src in state and state[src].shape != own[dst].shape]
    if missing or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} encoder keys missing (first: {', '.join(missing[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (first: {'; '.join(shapes[:3])})")
        raise UserError(f"{path}: not an AlphaNet supernet matching the `salnas` space: {'; '.join(parts)}")
    supernet.load_state_dict({dst: state[src] for dst, src in mapping.items()}, strict=False)
    ignored = len(state) - len(mapping)
    log.info("loaded %d AlphaNet encoder tensors from %s (%d checkpoint tensors not used: decoder, "
             "classifier, BN counters)", len(mapping), path, ignored)
    return len(mapping)
