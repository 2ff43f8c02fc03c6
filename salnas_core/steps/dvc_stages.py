"""dvc.yaml, written from the step registry: the DVC door's wiring and nothing else.

Each stage's command is the step's own `salnas <step>` with the workspace paths below; its deps
are the folders it reads plus the code it runs (every salnas_core module the step module imports,
found by reading the imports, so editing `salnas_core/search/` re-runs search and what follows);
its params are its params.yaml section (DVC tracks every key, so `dvc exp run -S step.key=value`
is what runs). `salnas dvc-stages` writes dvc.yaml; `salnas dvc-stages --check` (and a test) say
whether the committed file is current.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

from .registry import get_step

PACKAGE = Path(str(resources.files("salnas_core")))  # the package's own source, to read its imports

# stage -> {run() keyword: workspace path}: where each step reads and writes in the DVC workspace
STAGES: dict[str, dict[str, str]] = {
    "snapshot": {"out": "data/raw"},
    # ingest: every dataset of the snapshot (the training set and data.cross_datasets), each into
    # data/ingested/<name>; training, search and distill read the training set only
    "ingest": {"source": "data/raw", "fmt": "${data.format}", "out": "data/ingested"},
    "train-supernet": {"data": "data/ingested/${data.dataset}", "out": "runs/supernet"},
    "search": {"supernet": "runs/supernet", "data": "data/ingested/${data.dataset}", "out": "runs/search"},
    "distill": {"variants": "runs/search/variants.json", "supernet": "runs/supernet",
                "data": "data/ingested/${data.dataset}", "out": "runs/distill"},
    "evaluate": {"models": "runs/distill", "data": "data/ingested", "search": "runs/search", "out": "runs/evaluate"},
    "register": {"models": "runs/distill", "evaluate": "runs/evaluate", "data": "data/ingested/${data.dataset}",
                 "out": "runs/register"},
}
# files inside stage outputs that `dvc metrics` / `dvc plots` read (written by the steps)
METRICS = ["runs/supernet/summary.json", "runs/evaluate/scores.json"]
PLOTS: list[Any] = [
    {"runs/supernet/plots/train.csv": {"x": "epoch", "y": ["max_score", "min_score", "train_loss"],
                                       "title": "supernet training (max / min subnet holdout score, loss)"}},
    {"runs/search/plots/candidates.csv": {"x": "gmacs", "y": "score", "template": "scatter",
                                          "title": "search candidates: holdout score vs GMACs"}},
    {"runs/search/plots/pareto.csv": {"x": "gmacs", "y": "score", "template": "linear",
                                      "title": "search: Pareto front"}},
    {"runs/distill/plots/distill.csv": {"x": "epoch", "y": "score", "title": "distill: holdout score per variant"}},
    "runs/supernet/plots/train.png",
    "runs/search/pareto.png",
]
HEADER = ("# Generated from salnas_core/steps/registry.py by `salnas dvc-stages`: edit the registry, not this file.\n"
          "# Run with the project's environment on PATH (.venv/bin), or through `salnas main`.\n"
          "# The values that run are params.yaml's; `dvc exp run -S search.population=16` changes one.\n")


def _module_file(name: str) -> Path | None:
    rel = name.split(".")[1:]
    base = PACKAGE.joinpath(*rel) if rel else PACKAGE
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(path: Path, module: str) -> set[str]:
    """salnas_core modules imported anywhere in `path` (function-level imports included)."""
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in found if m == "salnas_core" or m.startswith("salnas_core.")}


def code_deps(module: str) -> list[str]:
    """The code a step runs: the transitive salnas_core imports of `module`, as workspace paths
    (a subpackage as its folder, a top-level module as its file)."""
    seen: set[str] = set()
    todo = [module]
    files: set[Path] = set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        f = _module_file(m)
        if f is None:
            continue
        files.add(f)
        todo += sorted(_imports(f, m) - seen)
    root = PACKAGE.parent
    deps: set[str] = set()
    for f in files:
        rel = f.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue  # salnas_core/__init__.py: package metadata
        if len(rel.parts) > 1 and rel.parts[0] != "steps":
            deps.add(str(Path(f.relative_to(root).parts[0], rel.parts[0])))      # a subpackage folder
        else:
            deps.add(str(f.relative_to(root)))                                   # steps/x.py, supernet.py
    return sorted(deps)


def stage_argv(name: str) -> list[str]:
    """`salnas <step> ...` with the workspace paths of STAGES (templates left for DVC)."""
    defn = get_step(name)
    values = STAGES[name]
    argv = ["salnas", name]
    for a in (*defn.inputs, *defn.outputs):
        for flag, _suffix in a.flags:
            dest = flag.lstrip("-").replace("-", "_")
            if dest in values:
                argv += [flag, values[dest]]
    for p in defn.params:
        if (p.dest or p.name) in values:
            argv += [p.cli_flag, values[p.dest or p.name]]
    return argv + (["--no-progress"] if defn.progress else [])


def stage(name: str) -> dict[str, Any]:
    defn = get_step(name)
    values = STAGES[name]
    ins = [values[a.flag.lstrip("-").replace("-", "_")] for a in defn.inputs if a.flag
           and a.flag.lstrip("-").replace("-", "_") in values]
    ins += [v for k, v in values.items() if k == "source"]
    ins += [values[f.lstrip("-")] for a in defn.inputs for f, _ in a.also if f.lstrip("-") in values]
    outs = [values[a.flag.lstrip("-")] for a in defn.outputs if a.flag]
    ins = [i.split("/variants.json")[0] for i in ins]
    st: dict[str, Any] = {"cmd": " ".join(stage_argv(name))}
    st["deps"] = sorted(dict.fromkeys(ins)) + code_deps(defn.module)
    if defn.section:
        # the data.* keys the command names (not the whole section: a new cross-dataset re-runs
        # snapshot, ingest and evaluate, not training)
        used = dict.fromkeys(re.findall(r"\$\{(data\.[A-Za-z_]+)\}", st["cmd"])) if defn.section != "data" else {}
        st["params"] = [defn.section, *used]
    if name == "register":
        # the registry is state outside the workspace (MLflow): check the gate on every repro;
        # registering the same model again is a no-op (same file hash -> same version)
        st["always_changed"] = True
        st["outs"] = [{o: {"cache": False}} for o in outs]
    else:
        st["outs"] = outs
    return st


def dvc_yaml() -> str:
    import yaml

    doc = {"stages": {name.replace("-", "_"): stage(name) for name in STAGES},
           "metrics": METRICS, "plots": PLOTS}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="dvc.yaml", help="file to write (default ./dvc.yaml)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the registry's")


def run_cli(args: argparse.Namespace) -> int:
    text = dvc_yaml()
    path = Path(args.out)
    if args.check:
        if not path.is_file():
            raise UserError(f"{path}: not found")
        if path.read_text() != text:
            print(f"{path}: out of date with salnas_core/steps/registry.py; run `salnas dvc-stages`", file=sys.stderr)
            return 1
        return 0
    from salnas_core.utils.io import atomic_write_text

    atomic_write_text(path, text)
    print(path)
    return 0
