"""`salnas` command line: argument parsing only; the work lives in salnas_core.steps and friends.

Each subcommand is a module exposing `add_arguments(parser)` and `run_cli(args) -> int | None`.
Modules are imported only when their subcommand runs, so `salnas --help` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("salnas_core.steps.ingest", "read, validate and preprocess a saliency dataset"),
    "train-supernet": ("salnas_core.steps.train_supernet", "train the weight-sharing supernet (sandwich rule + Self-KD)"),
    "search": ("salnas_core.steps.search", "evolutionary search of subnets under cost limits"),
    "distill": ("salnas_core.steps.distill", "fine-tune chosen subnets with Self-KD"),
    "evaluate": ("salnas_core.steps.evaluate", "metrics tables and efficiency report"),
    "register": ("salnas_core.steps.register", "register the best model in MLflow (champion gate)"),
    "pipeline": ("salnas_core.pipeline_cli", "compile / run-local / submit the Kubeflow pipeline"),
    "k8s": ("salnas_core.tracking.k8s", "distributed training on Kubernetes (PyTorchJob)"),
    "predict": ("salnas_core.serve.predict", "saliency maps for your own images"),
    "export": ("salnas_core.serve.export", "export a model to ONNX or TorchScript"),
    "report": ("salnas_core.serve.report", "one HTML page from evaluate/search/efficiency outputs"),
    "main": ("salnas_core.main_job", "run the whole pipeline on this machine (the README's main job)"),
}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if not _available(module):
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        rc = importlib.import_module(args._module).run_cli(args)
    except (FileNotFoundError, ValueError) as e:  # a user mistake in a file: one line naming it
        if os.environ.get("SALNAS_DEBUG"):
            raise
        print(f"salnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
