"""`salnas` command line: argument parsing only; the work lives in salnas_core.steps and friends.

Pipeline steps get their options from their definition in salnas_core.steps.registry and run as
`<module>.run(**options)`; a step module may define `summarize(result) -> str | None` for what is
printed (default: the result as JSON). Other commands are modules exposing
`add_arguments(parser)` and `run_cli(args) -> int | None`. Modules are imported only when their
command runs, so `salnas --help` is fast.

One error policy: a user mistake (salnas_core.errors.UserError, a missing file) is one line on
stderr and exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError
from salnas_core.steps.registry import STEPS, get_step
from salnas_core.utils.logs import setup_logging, show_progress

# other commands: name -> (module, one-line help); a module that is not installed is left out.
# Packages above salnas_core add theirs through the entry-point group below (pipelines/ adds
# `salnas pipeline`), so salnas_core never imports them.
ENTRY_POINTS = "salnas.commands"
COMMANDS: dict[str, tuple[str, str]] = {
    "k8s": ("salnas_core.tracking.k8s", "distributed training on Kubernetes"),
    "predict": ("salnas_core.serve.predict", "saliency maps for your own images"),
    "export": ("salnas_core.serve.export", "export a model to ONNX or TorchScript"),
    "report": ("salnas_core.serve.report", "one HTML page from evaluate/search/efficiency outputs"),
    "main": ("salnas_core.main_job", "run the whole pipeline on this machine (the README's main job)"),
    "dvc-stages": ("salnas_core.steps.dvc_stages", "write (or --check) dvc.yaml from the step registry"),
}
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is not installed
        return False


def commands() -> dict[str, tuple[str, str]]:
    """COMMANDS plus the installed `salnas.commands` entry points (name -> module; help from its docstring)."""
    from importlib.metadata import entry_points

    found = dict(COMMANDS)
    for ep in entry_points(group=ENTRY_POINTS):
        found.setdefault(ep.name, (ep.value, ""))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salnas", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for defn in STEPS:
        help_ = defn.description
        p = sub.add_parser(defn.name, help=help_, description=help_)
        p.set_defaults(_step=defn.name)
        defn.add_arguments(p)
    for name, (module, help_) in commands().items():
        if not _available(module):
            continue
        mod = importlib.import_module(module)
        help_ = help_ or (mod.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        mod.add_arguments(p)
    return parser


def step_options(defn, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `run()` from parsed options: what was not given is left out (so
    run() takes params.yaml's value), --set becomes `overrides`, input paths must exist."""
    from salnas_core.utils.params import parse_set

    opts = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "verbose")
            and v is not None}
    for a in defn.inputs:
        for flag, _ in a.flags:
            dest = flag.lstrip("-").replace("-", "_")
            for path in (opts.get(dest) if isinstance(opts.get(dest), list) else [opts.get(dest)]):
                if path is not None and "://" not in str(path) and not Path(path).exists():
                    raise UserError(f"{path}: not found (given to {flag}; make it with the step that writes "
                                    f"it, or fix the path)")
    for p in defn.params:  # an input folder given as a parameter (ingest --source)
        if p.name == "source" and opts.get("source") and "://" not in opts["source"] \
                and not Path(opts["source"]).exists():
            raise UserError(f"{opts['source']}: not found (given to --source)")
    if "overrides" in opts:
        opts["overrides"] = parse_set(opts["overrides"]) or None
        if opts["overrides"] is None:
            del opts["overrides"]
    if defn.progress:  # a bar only on a terminal: no carriage returns in dvc/Kubeflow logs
        opts["progress"] = show_progress(opts.get("progress", True))
    for o in defn.out_params:
        opts.pop(o.name, None)
    return opts


def run_step(defn, args: argparse.Namespace) -> int:
    from salnas_core.utils.io import atomic_write_text

    module = importlib.import_module(defn.module)
    result = module.run(**step_options(defn, args))
    for o in defn.out_params:  # KFP output parameters: the value as JSON text in the given file
        path = getattr(args, o.name, None)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(result[o.name]))
    summarize = getattr(module, "summarize", None)
    text = summarize(result) if summarize else json.dumps(result, indent=1, default=str)
    if text:  # not print(): kfp.local may have swapped builtins.print for an indenting one
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if not show_progress():  # MLflow's artifact bars too: no carriage returns in dvc / Kubeflow logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    name = args.command
    try:
        if getattr(args, "_step", None):
            return run_step(get_step(args._step), args)
        if not getattr(args, "_module", None):
            parser.print_help()
            return 2
        return int(importlib.import_module(args._module).run_cli(args) or 0)
    except USER_ERRORS as e:
        msg = str(e) if not isinstance(e, OSError) or not e.filename else f"{e.filename}: {e.strerror}"
        print(f"salnas {name}: error: {msg}", file=sys.stderr)
        if os.environ.get("SALNAS_DEBUG"):
            raise
        return 2
    except KeyboardInterrupt:
        print(f"salnas {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
