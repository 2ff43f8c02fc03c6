"""Training checkpoints: atomic writes, `weights_only` loads, and every RNG state a resume needs.

A checkpoint is one dict (see `docs/INTERFACES.md`, "Training"); RNG states are stored as plain
ints and tensors so that `torch.load(..., weights_only=True)` accepts them.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salnas_core.errors import UserError
from salnas_core.utils.io import atomic_path, load_torch_file, remove_stale_temporaries, torch_save_atomic

log = logging.getLogger(__name__)

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


def previous_path(path: str | Path) -> Path:
    """Where `save_checkpoint` keeps the checkpoint it replaced (`last.pt` -> `last.pt.prev`)."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def clean_run_folder(path: str | Path) -> list[Path]:
    """Remove `*.tmp-<pid>` leftovers of killed writers next to checkpoint `path` and in its run folder.

    A checkpoint lives in `<run>/checkpoints/`; the run folder holds metrics.json and plots/, which
    are written atomically too (utils/io), so a kill can leave their temporaries as well.
    """
    folder = Path(path).parent
    dirs = [folder]
    if folder.name == "checkpoints":
        dirs += [folder.parent, folder.parent / "plots"]
    removed = [p for d in dirs for p in remove_stale_temporaries(d)]
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run: %s", len(removed),
                 ", ".join(str(p) for p in removed[:5]) + (" ..." if len(removed) > 5 else ""))
    return removed


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the checkpoint atomically; the one it replaces is kept as `<name>.prev` (hard link).

    So a latest checkpoint found unreadable later (disk full, a copy cut short) still leaves the
    previous good one for `load_checkpoint`.
    """
    path = Path(path)
    clean_run_folder(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CKPT_FORMAT, **state}, tmp)
        if path.is_file():
            prev = previous_path(path)
            with atomic_path(prev) as ptmp:
                try:
                    os.link(path, ptmp)
                except OSError:  # a filesystem without hard links
                    shutil.copy2(path, ptmp)
    return path


def _read_checkpoint(path: Path, map_location) -> dict[str, Any]:
    ckpt = load_torch_file(path, "training checkpoint", map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: not a SalNAS training checkpoint (format "
                         f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the checkpoint to resume from, cleaning up after an interrupted run first.

    Leftover temporaries are removed. An unreadable `path` is set aside as
    `<name>.corrupt-<time>` with a warning and the previous good checkpoint (`<name>.prev`) is used;
    without one, the error says where the bad file went (a rerun then starts afresh).
    """
    path = Path(path)
    clean_run_folder(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (nothing to resume)")
    try:
        return _read_checkpoint(path, map_location)
    except ValueError as e:
        bad = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, bad)
        prev = previous_path(path)
        if prev.is_file():
            try:
                ckpt = _read_checkpoint(prev, map_location)
            except ValueError as e2:
                log.warning("%s", e2)
            else:
                log.warning("%s; set aside as %s, resuming from the previous checkpoint %s (epoch %s)",
                            e, bad.name, prev.name, ckpt.get("epoch"))
                return ckpt
        raise ValueError(f"{e}; set aside as {bad.name} and no earlier good checkpoint: run again to start "
                         "afresh") from None


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


def _read_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    obj = load_torch_file(path, "supernet file", map_location=map_location)
    if not isinstance(obj, dict) or obj.get("format") != SUPERNET_FORMAT:
        raise UserError(f"{path}: not a SalNAS supernet file (a train-supernet supernet.pt or best.pt)")
    return obj


def load_supernet(path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the supernet saved by `save_supernet` (space from the file, weights loaded)."""
    from salnas_core.supernet import create_supernet

    obj = _read_supernet(path, map_location)
    model = create_supernet(obj["space"], pretrained=False)
    model.load_state_dict(obj["state_dict"])
    model.meta = obj.get("meta", {})
    set_resolutions(model, model.meta.get("resolutions"))
    return model


def init_from_supernet(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Start `model` from the weights of a trained supernet file (`save_supernet`) of the same space
    and shapes: the authors' fine-tuning of their SALICON supernet on each other dataset. Returns
    the file's meta. A file of another space or with other tensors is a one-line UserError."""
    obj = _read_supernet(path)
    space = getattr(model.space, "name", None)
    if obj.get("space") != space:
        raise UserError(f"{path}: a supernet of space {obj.get('space')!r}, but this run trains {space!r} "
                        f"(--set space={obj.get('space')})")
    own, src = model.state_dict(), obj["state_dict"]
    problems = [f"missing {k}" for k in own if k not in src] + [f"unexpected {k}" for k in src if k not in own]
    problems += [f"{k} {tuple(src[k].shape)} (expected {tuple(v.shape)})" for k, v in own.items()
                 if k in src and tuple(src[k].shape) != tuple(v.shape)]
    if problems:
        raise UserError(f"{path}: its tensors do not match a {space!r} supernet: {len(problems)} differences "
                        f"(first: {'; '.join(problems[:3])})")
    model.load_state_dict(src)
    meta = dict(obj.get("meta") or {})
    log.info("starting from supernet %s (space %s, trained %s epochs)", path, space, meta.get("epoch"))
    return meta
