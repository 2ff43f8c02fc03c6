"""The layer rules of docs/ARCHITECTURE.md, enforced in the test suite (so in CI).

- import-linter contracts ([tool.importlinter] in pyproject.toml), run through `lint-imports`;
- what import-linter cannot express: no package imports another package's private helpers
  (`from salnas_core.search.latency import _prepare`, `salnas_core.steps._common` from serve);
- stores, caches and params.yaml are found from the working root (salnas_core.utils.root), never
  from the installed package's folder (`Path(__file__).parents[...]`).
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "salnas_core"


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports not found: pip install -e '.[test]' (import-linter)")
    return [exe, "--config", str(REPO / "pyproject.toml"), "--no-cache"]


def test_import_linter_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(_lint_imports(), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "broken" not in r.stdout.lower().split("contracts:")[-1].replace("0 broken", "")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _package_of(module: str) -> str:
    """salnas_core.<first level> (a subpackage, or a top-level module such as supernet)."""
    return ".".join(module.split(".")[:2])


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def test_no_package_imports_another_packages_private_helpers():
    mods = _modules()
    bad = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.ImportFrom):
                src = _resolve(mod, path.name == "__init__.py", node)
                targets = [(src, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            for src, name in targets:
                if not src.startswith("salnas_core.") or _package_of(src) == _package_of(mod):
                    continue
                private_module = any(part.startswith("_") and not part.startswith("__") for part in src.split("."))
                full = f"{src}.{name}" if name else src
                private_name = (name is not None and name.startswith("_") and full not in mods)
                private_submodule = name is not None and full in mods and name.startswith("_")
                if private_module or private_name or private_submodule:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {full}")
    assert not bad, "private helpers used across packages (make them public one floor down):\n" + "\n".join(bad)


# the package's own data files are the one legitimate use of its location
_FILE_OK = {
    "salnas_core/spaces/lite.py": "ImageNet weights shipped inside an installed package",
    "salnas_core/evaluate/efficiency.py": "the peak-memory probe imports salnas_core from where it is installed",
}


def test_no_store_or_cache_is_found_from_the_package_folder():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(REPO))
        text = path.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r"__file__", line) and re.search(r"parents?\b|\.parent", line) and rel not in _FILE_OK:
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert not bad, ("use salnas_core.utils.root.work_root() (argument > $SALNAS_ROOT > cwd) for stores, "
                     "caches and params.yaml:\n" + "\n".join(bad))


def test_work_root_rule(tmp_path, monkeypatch):
    from salnas_core.tracking.mlflow_utils import tracking_uri
    from salnas_core.utils.params import default_params_path
    from salnas_core.utils.root import work_root

    monkeypatch.delenv("SALNAS_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert work_root() == tmp_path.resolve()
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert default_params_path() == tmp_path.resolve() / "params.yaml"
    other = tmp_path / "other"
    monkeypatch.setenv("SALNAS_ROOT", str(other))
    assert work_root() == other.resolve() and work_root(tmp_path / "x") == (tmp_path / "x").resolve()
    assert tracking_uri() == f"sqlite:///{other.resolve() / 'mlflow.db'}"
