"""Registry of search spaces (one file per space). `lite` is the default."""
from __future__ import annotations

from salnas_core.errors import UserError

from .base import CONFIG_KEYS, SpaceSpec, StageSpec
from .lite import LITE, LITE2_SPACE
from .salnas import SALNAS

SPACES: dict[str, SpaceSpec] = {}
DEFAULT_SPACE = "lite"


def register_space(spec: SpaceSpec) -> SpaceSpec:
    if spec.name in SPACES:
        raise ValueError(f"space {spec.name!r} is already registered")
    SPACES[spec.name] = spec
    return spec


def get_space(name: str | SpaceSpec | None = None) -> SpaceSpec:
    if isinstance(name, SpaceSpec):
        return name
    name = name or DEFAULT_SPACE
    try:
        return SPACES[name]
    except KeyError:
        raise UserError(f"unknown search space {name!r}; known: {sorted(SPACES)}") from None


def list_spaces() -> list[str]:
    return sorted(SPACES)


register_space(LITE)
register_space(LITE2_SPACE)
register_space(SALNAS)

__all__ = ["SPACES", "DEFAULT_SPACE", "CONFIG_KEYS", "SpaceSpec", "StageSpec", "get_space", "list_spaces",
           "register_space"]
