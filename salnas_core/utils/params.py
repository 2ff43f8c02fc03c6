"""params.yaml access: one section per step, presets merged over the section's defaults."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

PARAMS_FILE = "params.yaml"


def default_params_path() -> Path:
    """<working root>/params.yaml: $SALNAS_ROOT, else the current folder (salnas_core.utils.root)."""
    from .root import work_root

    return work_root() / PARAMS_FILE


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    import yaml

    path = Path(path) if path else default_params_path()
    if not path.exists():
        raise FileNotFoundError(f"{path}: params file not found")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of step sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def step_params(step: str, preset: str | None = None, path: str | Path | None = None,
                overrides: dict | None = None) -> dict[str, Any]:
    """The section for `step`, with `presets[preset]` merged over it, then `overrides`."""
    section = dict(load_params(path).get(step) or {})
    presets = section.pop("presets", {}) or {}
    preset = preset or section.get("preset")
    if preset:
        if preset not in presets:
            raise ValueError(f"params: step {step!r} has no preset {preset!r} (have: {sorted(presets)})")
        section = deep_merge(section, presets[preset])
        section["preset"] = preset
    return deep_merge(section, overrides or {})
