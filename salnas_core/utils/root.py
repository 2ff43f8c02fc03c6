"""The working root: where a run keeps its stores and caches (params.yaml, mlflow.db, mlartifacts/,
runs/, .cache/).

One rule, for every command: an explicit argument, else $SALNAS_ROOT, else the current working
directory. Never the folder the package was installed from: a second checkout using the same
environment must not write into the first one's registry, and a wheel install has no checkout.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "SALNAS_ROOT"


def work_root(explicit: str | os.PathLike | None = None) -> Path:
    """explicit > $SALNAS_ROOT > the current working directory (absolute)."""
    chosen = explicit if explicit not in (None, "") else (os.environ.get(ROOT_ENV) or None)
    return Path(chosen).expanduser().resolve() if chosen is not None else Path.cwd().resolve()
