"""What a search space is: config tables (one StageSpec per MBConv stage) and the subnet configs
they allow.

A subnet config is plain JSON: lists of ints plus the space name, e.g.
    {"space": "salnas", "resolution": [384], "width": [24, 24, 32, 40, 72, 128, 216, 224],
     "depth": [2, 5, 6, 6, 8, 8, 2], "kernel_size": [5, ...], "expand_ratio": [1, 6, ...]}
`width` is [stem, stage 1..N]; `depth`, `kernel_size`, `expand_ratio` are per stage (one kernel
size and one expand ratio for all blocks of a stage, as AttentiveNAS); `resolution` is the long
side the network works at (the input is resized to it, the output mapped back).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

CONFIG_KEYS = ("resolution", "width", "depth", "kernel_size", "expand_ratio")


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: the choices for its width, depth, kernel and expand ratio."""

    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    stride: int
    se: bool = False


@dataclass(frozen=True)
class SpaceSpec:
    """A named search space: encoder table, head, decoder wiring and numerics.

    Decoder (SalNAS): `decoder_widths_from[i]` names the entry of `width` (0 = stem, s = stage s)
    whose active value is the output width of up-step i; `skip_from[i]` names the tensor
    concatenated after up-step i (the output of that stage, 0 = stem)."""

    name: str
    description: str
    normalization: str
    stem_widths: tuple[int, ...]
    stages: tuple[StageSpec, ...]
    resolutions: tuple[int, ...]
    act: str = "swish"
    decoder_act: str = "swish"
    head_expand: int | None = 6           # head width = head_expand * last stage width ...
    head_width: int | None = None         # ... or a fixed width (EfficientNet's 1280)
    shortcut: str = "projection"          # "projection" (AttentiveNAS) or "identity" (EfficientNet)
    padding: str = "symmetric"            # "symmetric" (PyTorch) or "same" (TensorFlow)
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    kernel_transform: bool = False        # OFA kernel transformation matrices
    skip_from: tuple[int, ...] = (5, 3, 2, 0)
    decoder_widths_from: tuple[int, ...] = (5, 3, 2, 1, 0)
    pretrained_loader: Callable[[Any], None] | None = field(default=None, compare=False)

    # ---- choices -------------------------------------------------------------------------
    def choices(self) -> dict[str, list[list[int]]]:
        """Per key, per position, the allowed values."""
        return {
            "resolution": [sorted(self.resolutions)],
            "width": [sorted(self.stem_widths)] + [sorted(s.widths) for s in self.stages],
            "depth": [sorted(s.depths) for s in self.stages],
            "kernel_size": [sorted(s.kernels) for s in self.stages],
            "expand_ratio": [sorted(s.expands) for s in self.stages],
        }

    def _pick(self, pick: Callable[[list[int]], int]) -> dict[str, Any]:
        cfg: dict[str, Any] = {"space": self.name}
        for key, per_pos in self.choices().items():
            cfg[key] = [int(pick(c)) for c in per_pos]
        return cfg

    def max_config(self) -> dict[str, Any]:
        return self._pick(max)

    def min_config(self) -> dict[str, Any]:
        return self._pick(min)

    def sample_config(self, rng: random.Random | Any | int | None = None) -> dict[str, Any]:
        """A uniformly random config. `rng`: random.Random, numpy Generator, int seed or None."""
        if rng is None or isinstance(rng, int):
            rng = random.Random(rng)
        if isinstance(rng, random.Random):
            return self._pick(rng.choice)
        return self._pick(lambda c: c[int(rng.integers(len(c)))])  # numpy Generator

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check `config` against the tables; return a clean copy (ints, this space's name).
        Raises ValueError naming the offending key and position."""
        if not isinstance(config, dict):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        space = config.get("space", self.name)
        if space != self.name:
            raise ValueError(f"config is for space {space!r}, not {self.name!r}")
        out: dict[str, Any] = {"space": self.name}
        for key, per_pos in self.choices().items():
            if key not in config:
                raise ValueError(f"config for space {self.name!r} misses key {key!r}")
            vals = config[key]
            if isinstance(vals, int):
                vals = [vals]
            if not isinstance(vals, Sequence) or len(vals) != len(per_pos):
                raise ValueError(f"config[{key!r}] must be a list of {len(per_pos)} ints, got {vals!r}")
            for i, (v, allowed) in enumerate(zip(vals, per_pos)):
                if isinstance(v, bool) or int(v) != v or int(v) not in allowed:
                    raise ValueError(f"config[{key!r}][{i}] = {v!r} not allowed in space {self.name!r} "
                                     f"(choices {allowed})")
            out[key] = [int(v) for v in vals]
        unknown = set(config) - set(CONFIG_KEYS) - {"space"}
        if unknown:
            raise ValueError(f"config has unknown keys {sorted(unknown)}")
        return out

    def head_channels(self, last_width: int) -> int:
        return self.head_width if self.head_width is not None else self.head_expand * last_width

    def working_size(self, height: int, width: int, resolution: int) -> tuple[int, int]:
        """The (H, W) the network runs at: long side = resolution, short side scaled with the
        aspect ratio and rounded to a multiple of 32 (the encoder's total stride)."""
        long_, short = max(height, width), min(height, width)
        s = max(32, int(round(resolution * short / long_ / 32)) * 32)
        return (s, resolution) if width >= height else (resolution, s)
