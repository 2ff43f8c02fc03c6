"""The params file (params.yaml): one section per step, presets as overlays, one `--set` rule.

- The file: `--params FILE`, else `$SALNAS_PARAMS`, else `params.yaml` in the working root
  ($SALNAS_ROOT, else the current directory, like `dvc`; never the package's install location).
- A section holds every key of its step with the value that runs: no hidden defaults.
- A preset (salnas_core/steps/presets.yaml) is an overlay naming only the keys it changes.
- Overrides (`--set a.b=1`, `dvc exp run -S step.a.b=1`): YAML values, dotted keys nest.
Every key of a preset or an override must exist in the section (a typo is refused with the
valid keys listed), except inside the open maps below (named budgets, constraints).
"""
from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

PARAMS_ENV = "SALNAS_PARAMS"
PRESETS_FILE = Path(str(resources.files("salnas_core.steps") / "presets.yaml"))  # package data
# maps whose keys are names the user chooses: any key may be added under them
OPEN_MAPS = {("search", "budgets"), ("search", "constraints")}


def default_params_path() -> Path:
    """$SALNAS_PARAMS, else <working root>/params.yaml ($SALNAS_ROOT, else the current folder)."""
    from .root import work_root

    return Path(os.environ.get(PARAMS_ENV) or work_root() / "params.yaml")


def params_file(path: str | os.PathLike | None = None) -> Path:
    """The params file that exists: `path`, else default_params_path()."""
    p = Path(path) if path else default_params_path()
    if not p.is_file():
        how = "--params" if path else (PARAMS_ENV if os.environ.get(PARAMS_ENV) else "the working directory")
        raise UserError(f"{p.resolve()}: params file not found (from {how}); run in a SalNAS project folder "
                        f"or pass --params FILE")
    return p


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of step sections, got {type(data).__name__}")
    return data


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    return _read_yaml(params_file(path))


def load_presets() -> dict[str, dict[str, Any]]:
    return _read_yaml(PRESETS_FILE)


def preset_names() -> list[str]:
    return sorted(load_presets())


def preset_overlay(name: str) -> dict[str, dict[str, Any]]:
    """{section: overlay} of preset `name`."""
    presets = load_presets()
    if name not in presets:
        raise UserError(f"unknown preset {name!r} (have: {', '.join(sorted(presets))})")
    return presets[name] or {}


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`KEY=VALUE` strings -> a nested dict (YAML values; dotted keys nest: latency.mode=measure)."""
    import yaml

    out: dict[str, Any] = {}
    for it in items or []:
        key, sep, text = it.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects KEY=VALUE, got {it!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--set {it!r}: the value is not valid YAML") from None
        d = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = d.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise UserError(f"--set {it!r}: {p!r} was already given a value")
            d = nxt
        d[parts[-1]] = value
    return out


def check_keys(section: str, base: dict[str, Any], over: dict[str, Any], where: str,
               _path: tuple[str, ...] = ()) -> None:
    """Refuse keys of `over` that `base` (the params section) does not have."""
    for k, v in over.items():
        path = (*_path, str(k))
        if k not in base:
            valid = ", ".join(sorted(map(str, base)))
            name = ".".join(path)
            raise UserError(f"{where}: unknown key {section}.{name} (valid keys here: {valid})")
        if len(path) == 1 and (section, k) in OPEN_MAPS:
            continue  # names chosen by the user (budgets, constraints)
        if isinstance(v, dict) and isinstance(base[k], dict):
            check_keys(section, base[k], v, where, path)


def step_params(step: str, preset: str | None = None, path: str | os.PathLike | None = None,
                overrides: dict | None = None) -> dict[str, Any]:
    """The params section `step`, with preset `preset` merged over it, then `overrides`.

    The result also carries `preset` (the name, or None) so outputs can say what produced them."""
    pfile = params_file(path)
    data = _read_yaml(pfile)
    if not isinstance(data.get(step), dict):
        raise UserError(f"{pfile}: no `{step}:` section (sections: {', '.join(sorted(data))})")
    section = copy.deepcopy(data[step])
    if preset:
        overlay = preset_overlay(preset).get(step) or {}
        check_keys(step, section, overlay, f"preset {preset!r} ({PRESETS_FILE.name})")
        section = deep_merge(section, overlay)
    if overrides:
        check_keys(step, section, overrides, "--set")
        section = deep_merge(section, overrides)
    section["preset"] = preset
    return section


def flatten(overlay: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """{"a": {"b": 1}} -> [("a.b", 1)] (dicts under an open map stay whole values)."""
    out: list[tuple[str, Any]] = []
    for k, v in overlay.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += flatten(v, key + ".")
        else:
            out.append((key, v))
    return out
