"""Training checkpoints: atomic writes, `weights_only` loads, and every RNG state a resume needs.

A checkpoint is one dict (see `docs/INTERFACES.md`, "Training"); RNG states are stored as plain
ints and tensors so that `torch.load(..., weights_only=True)` accepts them.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salnas_core.utils.io import torch_save_atomic

CKPT_FORMAT = "salnas-train-ckpt/1"
SUPERNET_FORMAT = "salnas-supernet/1"


def get_rng_state(loader_generator: torch.Generator | None = None,
                  arch_rng: random.Random | None = None) -> dict[str, Any]:
    """Python, numpy, torch (CPU and CUDA), the loader's generator and the subnet sampler."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    if arch_rng is not None:
        state["arch"] = arch_rng.getstate()
    return state


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None,
                  arch_rng: random.Random | None = None) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])
    if arch_rng is not None and "arch" in state:
        arch_rng.setstate(_as_tuple(state["arch"]))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return torch_save_atomic({"format": CKPT_FORMAT, **state}, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (nothing to resume)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated or foreign file: say which and why
        raise ValueError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a SalNAS training checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    return ckpt


def set_resolutions(model: torch.nn.Module, resolutions: list[int] | tuple[int, ...] | None) -> torch.nn.Module:
    """Restrict the supernet's elastic input resolution (long side) to a subset of its space's.

    Weight shapes do not depend on the resolution, so this only changes which sizes the subnets
    train at: the CPU presets use the space's smallest (lite: 256, i.e. 192x256) instead of the
    paper's up to 288x384. A subset keeps every sampled config valid in the registered space (static
    subnets, search, distill). Saved in the supernet file's meta; `load_supernet` re-applies it.
    """
    import dataclasses

    if not resolutions:
        return model
    res = tuple(sorted(int(r) for r in resolutions))
    allowed = set(model.space.resolutions)
    if not res or not set(res) <= allowed:
        raise ValueError(f"resolutions {list(res)} must be a subset of space {model.space.name!r}'s "
                         f"{sorted(allowed)}")
    model.space = dataclasses.replace(model.space, resolutions=res)
    model.sample_max_subnet()
    return model


def save_supernet(path: str | Path, model: torch.nn.Module, space: str, meta: dict | None = None) -> Path:
    """The supernet file that `search` reads: `{"format", "space", "state_dict", "meta"}`."""
    # contiguous: a channels_last-trained supernet gives the same file as an NCHW one
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return torch_save_atomic({"format": SUPERNET_FORMAT, "space": space, "state_dict": sd,
                              "meta": dict(meta or {})}, path)


def load_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the supernet saved by `save_supernet` (space from the file, weights loaded)."""
    from salnas_core.supernet import create_supernet

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: supernet file not found")
    obj = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != SUPERNET_FORMAT:
        raise ValueError(f"{path}: not a SalNAS supernet file")
    model = create_supernet(obj["space"], pretrained=False)
    model.load_state_dict(obj["state_dict"])
    model.meta = obj.get("meta", {})
    set_resolutions(model, model.meta.get("resolutions"))
    return model
