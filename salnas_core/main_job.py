"""`salnas main`: the whole SalNAS pipeline on this machine, through DVC (the README's main job).

It only drives DVC through DVC's own interface and never edits a tracked file:
- `salnas main` (the `cpu` preset = params.yaml as committed) runs `dvc repro`;
- `salnas main --preset tiny|paper`, `--dataset`, `--limit` run `dvc exp run -S key=value ...` with
  the preset's keys (salnas_core/steps/presets.yaml): DVC applies them to params.yaml, records the
  experiment (`dvc exp show`), and the values that ran are the ones it shows.
- Without the shared eye-tracking data (`../shared/data/<dataset>`) it says so loudly and runs on a
  generated dataset (`-S data.dataset=synthetic`).
- `--no-dvc` runs the same steps in order in this process, with the same paths and values.
The stages are children of one parent MLflow run (embedded default: ./mlflow.db).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

PRESETS = ("cpu", "tiny", "paper")


def _say(msg: str) -> None:
    print(f"[salnas main] {msg}", flush=True)


def _env(root: Path) -> dict[str, str]:
    """Subprocess env: the venv's `salnas`/`dvc` on PATH, the embedded MLflow store unless one is set."""
    env = os.environ.copy()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def dvc_command() -> str | None:
    cand = Path(sys.executable).parent / "dvc"
    return str(cand) if cand.exists() else shutil.which("dvc")


def _run(cmd: list[str], root: Path, env: dict[str, str]) -> None:
    import shlex

    _say("$ " + shlex.join(cmd))
    rc = subprocess.run(cmd, cwd=root, env=env).returncode
    if rc != 0:
        raise RuntimeError(f"`{shlex.join(cmd)}` failed with exit code {rc} (in {root})")


def _git_identity(root: Path) -> None:
    """`dvc exp run` commits the experiment to a git ref: it needs a git identity. Set a local one
    (this repository only) when none is configured, and say so."""
    have = subprocess.run(["git", "config", "user.email"], cwd=root, capture_output=True, text=True).stdout.strip()
    if not have:
        subprocess.run(["git", "config", "user.email", "salnas-main@localhost"], cwd=root, check=True)
        subprocess.run(["git", "config", "user.name", "salnas main"], cwd=root, check=True)
        _say("no git identity configured: set user.name/user.email for this repository (dvc exp run records "
             "experiments as git refs)")


def settings(preset: str, dataset: str | None, limit: int | None, params: dict[str, Any],
             extra: list[str] | None = None) -> list[str]:
    """The `-S key=value` settings this main job needs on top of params.yaml (empty: plain repro).

    `extra`: the user's own `SECTION.KEY=VALUE` settings (checked like presets), applied last."""
    import yaml

    from salnas_core.steps.snapshot import SHARED_DATASETS, SYNTHETIC, shared_root, shared_source
    from salnas_core.utils.params import check_keys, flatten, parse_set, preset_overlay

    overlay = preset_overlay(preset) if preset != "cpu" else {}
    for section, values in overlay.items():
        check_keys(section, params.get(section) or {}, values, f"preset {preset!r}")
    sets = {f"{s}.{k}": v for s, values in overlay.items() for k, v in flatten(values)}
    want = dataset or params["data"]["dataset"]
    if want in SHARED_DATASETS and shared_source(want) is not None:
        _say(f"data: real eye-tracking data from {shared_source(want)}")
    elif want in SHARED_DATASETS:
        _say(f"{shared_root() / want} not found: GENERATING a synthetic dataset (objects with fixations drawn from a "
             f"known density) instead of real eye-tracking data")
        want = SYNTHETIC
    if want != params["data"]["dataset"]:
        sets["data.dataset"] = want
    if limit is not None:
        sets["ingest.limit"] = limit
    user = parse_set(extra)
    for section, values in user.items():
        if section not in params or not isinstance(values, dict):
            raise UserError(f"--set {section}: expected SECTION.KEY=VALUE with a params.yaml section "
                            f"({', '.join(params)})")
        check_keys(section, params[section], values, "--set")
        sets.update({f"{section}.{k}": v for k, v in flatten(values)})
    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in sets.items()]


def run_in_process(root: Path, sets: list[str]) -> dict[str, float]:
    """The DVC stages' commands, in order, in this process (no DVC): same paths, same values."""
    from salnas_core import cli
    from salnas_core.steps.dvc_stages import STAGES, stage_argv
    from salnas_core.steps.registry import get_step
    from salnas_core.utils.params import load_params, parse_set

    params = load_params(root / "params.yaml")
    over = parse_set(sets)
    timings = {}
    for name in STAGES:
        argv = stage_argv(name)[1:]
        for section in ("data",):  # DVC's ${data.*} templates, from the same values
            values = {**params.get(section, {}), **over.get(section, {})}
            argv = [a.replace("${data.dataset}", str(values["dataset"])).replace("${data.format}", str(values["format"]))
                    for a in argv]
        section = get_step(name).section
        for k, v in (over.get(section) or {}).items():
            import json

            argv += ["--set", f"{k}={json.dumps(v)}"]
        t = time.perf_counter()
        _say("$ salnas " + " ".join(argv))
        rc = cli.main(argv)
        if rc:
            raise RuntimeError(f"salnas {name} failed with exit code {rc}")
        timings[name] = time.perf_counter() - t
    return timings


def run(*, preset: str = "cpu", dataset: str | None = None, use_dvc: bool = True, push: str | None = None,
        limit: int | None = None, name: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The main job in the working directory; returns registered.json's content plus timings."""
    t0 = time.perf_counter()
    from salnas_core.utils.root import work_root

    root = work_root()
    if not (root / "dvc.yaml").is_file() or not (root / "params.yaml").is_file():
        raise UserError(f"{root}: not a SalNAS project folder (dvc.yaml and params.yaml expected); cd into the "
                        f"repository")
    from salnas_core.utils.params import load_params

    params = load_params(root / "params.yaml")
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml"], cwd=root,
                             capture_output=True).returncode == 1
    if changed:
        _say("params.yaml differs from the committed one (an earlier `dvc exp run`, or your edits): its values run; "
             "`git checkout params.yaml` restores the defaults")
    sets = settings(preset, dataset, limit, params, overrides)
    env = _env(root)
    dvc = dvc_command() if use_dvc else None
    if use_dvc and (dvc is None or not (root / ".dvc").is_dir()):
        _say("DVC not available here: running the steps in order without it")
        dvc = None

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from salnas_core.tracking import mlflow_utils as mu

    timings: dict[str, float] = {}
    with mu.start_run("salnas-main", pipeline=True,
                      params={"preset": preset, "settings": " ".join(sets) or "params.yaml", "dvc": bool(dvc)}) as parent:
        if parent is not None:
            env[mu.PARENT_ENV] = parent.info.run_id
            os.environ[mu.PARENT_ENV] = parent.info.run_id
        t = time.perf_counter()
        if dvc and sets:
            _git_identity(root)
            cmd = [dvc, "exp", "run"] + (["-n", name] if name else [])
            for s in sets:
                cmd += ["-S", s]
            _run(cmd, root, env)
            timings["dvc exp run"] = time.perf_counter() - t
        elif dvc:
            _run([dvc, "repro"], root, env)
            timings["dvc repro"] = time.perf_counter() - t
        else:
            timings.update(run_in_process(root, sets))
        if dvc and push:
            from salnas_core.tracking.storage import run_dvc  # bounded retries + a total deadline

            _say(f"$ {dvc} push -r {push}")
            run_dvc([dvc, "push", "-r", push], root, env)
        from salnas_core import artifacts

        reg_file = root / "runs" / "register" / artifacts.REGISTRATION
        reg = artifacts.read_registration(reg_file)
        if parent is not None:
            import mlflow

            mlflow.log_metrics({"wall_s": time.perf_counter() - t0, "champion_version": float(reg["version"])})
            mlflow.log_artifact(str(reg_file))
            if (root / "dvc.lock").exists():
                mlflow.log_artifact(str(root / "dvc.lock"))

    total = time.perf_counter() - t0
    uri = env["MLFLOW_TRACKING_URI"].split("@")[-1]
    if reg.get("alias"):
        _say(f"champion: {reg['champion_uri']} = {reg['name']} version {reg['version']} "
             f"(variant {reg['variant']}, validation selection score {reg['score']:.4f}) in {uri}")
    else:
        _say(f"registered {reg['name']} version {reg['version']} (score {reg['score']:.4f}); "
             f"the champion stays version {reg.get('previous_champion')} ({reg['reason']}) in {uri}")
    # predict's default is the `salnas` champion: name any other model (the tiny preset's salnas-tiny)
    from salnas_core.tracking import mlflow_utils as mu

    model = "" if reg["name"] == mu.DEFAULT_MODEL_NAME else f" --model models:/{reg['name']}@{mu.CHAMPION}"
    _say(f"use it: salnas predict IMAGES{model} --out predictions/   (MLFLOW_TRACKING_URI={uri})")
    _say(f"done in {total / 60:.1f} min (preset {preset})")
    return {**reg, "wall_s": total, "timings": timings, "preset": preset, "settings": sets}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=PRESETS,
                        help="cpu (default: params.yaml as it is, `dvc repro`) | tiny (tests) | paper (GPU): "
                             "a preset is applied with `dvc exp run -S ...`")
    parser.add_argument("--dataset", default=None, choices=("osie", "nus_scene", "synthetic"),
                        help="raw data (default: params data.dataset); generated when the shared data is absent")
    parser.add_argument("--limit", type=int, default=None, help="ingest only the first N images (-S ingest.limit=N)")
    parser.add_argument("--name", default=None, help="experiment name (dvc exp run -n)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="one more setting for this run (dvc exp run -S), e.g. train_supernet.epochs=5")
    parser.add_argument("--no-dvc", dest="use_dvc", action="store_false",
                        help="run the steps in order in this process without DVC")
    parser.add_argument("--push", default=None, metavar="REMOTE", help="`dvc push -r REMOTE` afterwards (e.g. s3)")


def run_cli(args: argparse.Namespace) -> int:  # logging: set up by salnas_core.cli
    run(preset=args.preset, dataset=args.dataset, use_dvc=args.use_dvc, push=args.push, limit=args.limit,
        name=args.name, overrides=args.overrides)
    return 0
