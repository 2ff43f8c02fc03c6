"""`salnas main`: the whole SalNAS pipeline on this machine, with embedded defaults (the README's main job).

1. Picks the data: `<repo>/../shared/data/<dataset>` (real eye-tracking data) when it is there, else a
   generated synthetic dataset (and says so).
2. Writes the raw source snapshot `data/raw/<dataset>` (the files ingest reads) and records it in DVC
   (`data.dvc`, `dvc commit`): its hash is the data version the registry records.
3. Opens the parent MLflow run (embedded default: `sqlite:///<repo>/mlflow.db`) and runs `dvc repro`
   (ingest, train_supernet, search, distill, evaluate, register); each stage is a child run.
   Without DVC (`--no-dvc`, or no `dvc` command) the same stage commands run in order from dvc.yaml.
4. Prints where the champion is: `models:/salnas@champion`, which `salnas predict` uses by default.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from salnas_core.utils.io import replace_dir

log = logging.getLogger(__name__)

PACKAGE_REPO = Path(__file__).resolve().parents[1]
PRESET_SECTIONS = ("train_supernet", "search", "distill", "evaluate")
# images ingest takes per preset (the first N by id; splits still over the whole dataset): None = all
INGEST_LIMIT = {"tiny": 24, "cpu": None, "paper": None}
SYNTHETIC_IMAGES = {"tiny": 24, "cpu": 160, "paper": 400}
SHARED_DATASETS = ("osie", "nus_scene")


def _say(msg: str) -> None:
    print(f"[salnas main] {msg}", flush=True)


# ----------------------------------------------------------------------------- data

def shared_source(repo: Path, dataset: str) -> Path | None:
    """`<repo>/../shared/data/<dataset>` when it holds a fixations.json, else None."""
    src = repo.parent / "shared" / "data" / dataset
    return src if (src / "fixations.json").is_file() and (src / "stimuli").is_dir() else None


def snapshot_shared(src: Path, dest: Path, limit: int | None = None) -> dict[str, Any]:
    """Copy the files ingest reads (stimuli, fixations.json, LICENSE) into `dest`, whole or not at all.

    With `limit`, the first `limit` images by file name and their fixations only. The same inputs
    give the same bytes, so the DVC hash (data version) is stable across runs.
    """
    from salnas_core.utils.io import read_json

    meta = read_json(src / "fixations.json")
    images = sorted(meta.get("images") or [], key=lambda e: e["file"])
    if not images:
        raise ValueError(f"{src / 'fixations.json'}: no images listed")
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if limit is not None and limit < len(images):
            images = images[:limit]
            sub = dict(meta, images=images, n_images=len(images),
                       n_fixations=sum(len(s.get("x", [])) for e in images for s in e.get("subjects", [])),
                       subset=f"first {limit} images by file name of {src.name}")
            (tmp / "fixations.json").write_text(json.dumps(sub, separators=(",", ":")))
        else:
            shutil.copyfile(src / "fixations.json", tmp / "fixations.json")
        for e in images:
            target = tmp / e["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / e["file"], target)
        for extra in ("LICENSE", "LICENSE.txt"):
            if (src / extra).is_file():
                shutil.copyfile(src / extra, tmp / extra)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"source": str(src), "images": len(images), "synthetic": False}


def snapshot_synthetic(dest: Path, n_images: int, seed: int = 0) -> dict[str, Any]:
    from salnas_core.data import synthetic

    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        synthetic.generate(tmp, n_images=n_images, seed=seed)
        replace_dir(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"source": f"synthetic.generate(n_images={n_images}, seed={seed})", "images": n_images,
            "synthetic": True}


# ----------------------------------------------------------------------------- params.yaml

def set_params(path: Path, changes: dict[tuple[str, str], Any]) -> list[str]:
    """Set top-level `section: key: value` entries in params.yaml by editing only those lines
    (comments and layout stay). Returns what changed, as "section.key: old -> new"."""
    lines = path.read_text().splitlines(keepends=True)
    done = []
    for (section, key), value in changes.items():
        new = json.dumps(value) if not isinstance(value, str) else value
        start = next((i for i, ln in enumerate(lines) if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", ln)), None)
        if start is None:
            raise ValueError(f"{path}: no top-level section {section!r}")
        for i in range(start + 1, len(lines)):
            if re.match(r"^\S", lines[i]):  # the next section: key missing
                raise ValueError(f"{path}: section {section!r} has no key {key!r}")
            m = re.match(rf"^(\s+{re.escape(key)}:\s*)([^#\n]*?)(\s*(#.*)?)$", lines[i].rstrip("\n"))
            if m and len(m.group(1)) - len(m.group(1).lstrip()) == 2:
                if m.group(2).strip() != new:
                    lines[i] = f"{m.group(1)}{new}{m.group(3)}\n"
                    done.append(f"{section}.{key}: {m.group(2).strip()} -> {new}")
                break
        else:  # the last section, key missing
            raise ValueError(f"{path}: section {section!r} has no key {key!r}")
    if done:
        from salnas_core.utils.io import atomic_write_text

        atomic_write_text(path, "".join(lines))
    return done


def resolve_templates(text: str, params: dict[str, Any]) -> str:
    """dvc.yaml's `${a.b}` substitution, for running the stages without DVC."""
    def sub(m: re.Match) -> str:
        v: Any = params
        for part in m.group(1).split("."):
            if not isinstance(v, dict) or part not in v:
                raise KeyError(f"dvc.yaml: ${{{m.group(1)}}} is not in params.yaml")
            v = v[part]
        return _unpack(v)

    return re.sub(r"\$\{\s*([\w.]+)\s*\}", sub, text)


def _unpack(v: Any) -> str:
    """DVC's dict unpacking in cmd: {limit: 24, fast: true} -> "--limit 24 --fast"."""
    if not isinstance(v, dict):
        return str(v)
    parts = []
    for k, x in v.items():
        if x is True:
            parts.append(f"--{k}")
        elif x is not None and x is not False:
            parts.append(f"--{k} {x}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- running

def _env(repo: Path) -> dict[str, str]:
    """Subprocess env: the venv's `salnas`/`dvc` on PATH, the embedded MLflow store unless one is set."""
    env = os.environ.copy()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def dvc_command() -> str | None:
    cand = Path(sys.executable).parent / "dvc"
    return str(cand) if cand.exists() else shutil.which("dvc")


def _run(cmd: list[str] | str, repo: Path, env: dict[str, str]) -> None:
    shown = cmd if isinstance(cmd, str) else " ".join(cmd)
    _say(f"$ {shown}")
    rc = subprocess.run(cmd, cwd=repo, env=env, shell=isinstance(cmd, str)).returncode
    if rc != 0:
        raise RuntimeError(f"`{shown}` failed with exit code {rc} (in {repo})")


def stage_commands(repo: Path) -> list[tuple[str, str]]:
    """(stage, command) from dvc.yaml in order, templates resolved from params.yaml."""
    import yaml

    from salnas_core.utils.params import load_params

    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    params = load_params(repo / "params.yaml")
    return [(name, resolve_templates(" ".join(str(st["cmd"]).split()), params))
            for name, st in (spec.get("stages") or {}).items()]


def track_raw(repo: Path, dvc: str, env: dict[str, str]) -> str:
    """Record data/raw in data.dvc (hashes + cache); returns its md5 (the data version)."""
    import yaml

    dvc_file = repo / "data.dvc"
    spec = yaml.safe_load(dvc_file.read_text()) if dvc_file.exists() else None
    outs = (spec or {}).get("outs") or []
    if not outs or outs[0].get("path") != "data/raw":
        from salnas_core.utils.io import atomic_write_text

        atomic_write_text(dvc_file, "outs:\n- path: data/raw\n")
    _run([dvc, "commit", "--force", "--quiet", "data.dvc"], repo, env)
    return str(yaml.safe_load(dvc_file.read_text())["outs"][0].get("md5", "?"))


def run(repo: str | os.PathLike | None = None, *, preset: str = "cpu", dataset: str = "osie",
        use_dvc: bool = True, push: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """The main job; returns registered.json's content plus timings."""
    t0 = time.perf_counter()
    repo = Path(repo or (Path.cwd() if (Path.cwd() / "dvc.yaml").exists() else PACKAGE_REPO)).resolve()
    if not (repo / "dvc.yaml").is_file() or not (repo / "params.yaml").is_file():
        raise FileNotFoundError(f"{repo}: not a SalNAS repository (dvc.yaml and params.yaml expected)")
    params_path = repo / "params.yaml"
    from salnas_core.utils.params import load_params

    current = load_params(params_path)

    # 1-2. data: the real eye-tracking data beside the repo, else generated
    src = shared_source(repo, dataset) if dataset in SHARED_DATASETS else None
    raw_root = repo / "data" / "raw"
    raw_root.mkdir(parents=True, exist_ok=True)
    n = limit if limit is not None else INGEST_LIMIT.get(preset)
    if src is not None:
        name = dataset
        _say(f"data: real eye-tracking data from {src}" + (f" (ingesting the first {n} images, preset {preset})"
                                                           if n else ""))
        info = snapshot_shared(src, raw_root / name)
    else:
        n_syn, n = n or SYNTHETIC_IMAGES.get(preset, 160), None
        name = "synthetic"
        _say(f"data: {repo.parent / 'shared' / 'data' / dataset} not found: GENERATING a synthetic dataset "
             f"({n_syn} images with objects and fixations drawn from a known density) instead")
        info = snapshot_synthetic(raw_root / name, n_syn)
    for other in raw_root.iterdir():  # data/raw holds exactly the snapshot the pipeline reads
        if other.name != name:
            shutil.rmtree(other) if other.is_dir() else other.unlink()
    changes = {(s, "preset"): preset for s in PRESET_SECTIONS if (current.get(s) or {}).get("preset") != preset}
    changes[("data", "dataset")] = name
    changes[("data", "ingest_args")] = {"limit": n} if n else {}
    for c in set_params(params_path, changes):
        _say(f"params.yaml: {c}")

    env = _env(repo)
    dvc = dvc_command() if use_dvc else None
    if use_dvc and (dvc is None or not (repo / ".dvc").is_dir()):
        _say("DVC not available here: running the stages of dvc.yaml in order without it")
        dvc = None
    data_version = track_raw(repo, dvc, env) if dvc else "untracked"
    _say(f"data version (DVC md5 of data/raw): {data_version}")

    # 3. the pipeline under one parent MLflow run; stages find it through SALNAS_PARENT_RUN_ID
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    from salnas_core.tracking import mlflow_utils as mu

    timings: dict[str, float] = {}
    with mu.start_run("salnas-main", pipeline=True,
                      params={"preset": preset, "dataset": name, "images": n or info["images"], "source": info["source"],
                              "data_version": data_version, "dvc": bool(dvc)}) as parent:
        env = _env(repo)
        if parent is not None:
            env[mu.PARENT_ENV] = parent.info.run_id
        if dvc:
            t = time.perf_counter()
            _run([dvc, "repro"], repo, env)
            timings["dvc repro"] = time.perf_counter() - t
            if push:
                from salnas_core.tracking.storage import run_dvc  # bounded retries + total deadline

                _say(f"$ {dvc} push -r {push}")
                run_dvc([dvc, "push", "-r", push], repo, env)
        else:
            for stage, cmd in stage_commands(repo):
                t = time.perf_counter()
                _run(cmd, repo, env)
                timings[stage] = time.perf_counter() - t
        reg_file = repo / "runs" / "register" / "registered.json"
        from salnas_core.utils.io import read_json

        reg = read_json(reg_file)
        if parent is not None:
            import mlflow

            mlflow.log_metrics({"wall_s": time.perf_counter() - t0, "champion_version": float(reg["version"])})
            mlflow.log_artifact(str(reg_file))
            if (repo / "dvc.lock").exists():
                mlflow.log_artifact(str(repo / "dvc.lock"))

    # 4. where the champion is
    total = time.perf_counter() - t0
    uri = env["MLFLOW_TRACKING_URI"].split("@")[-1]
    if reg.get("alias"):
        _say(f"champion: {reg['champion_uri']} = {reg['name']} version {reg['version']} "
             f"(variant {reg['variant']}, validation selection score {reg['score']:.4f}) in {uri}")
    else:
        _say(f"registered {reg['name']} version {reg['version']} (score {reg['score']:.4f}); "
             f"the champion stays version {reg.get('previous_champion')} ({reg['reason']}) in {uri}")
    _say(f"use it: salnas predict IMAGES --out predictions/   (MLFLOW_TRACKING_URI={uri})")
    _say(f"done in {total / 60:.1f} min (preset {preset}, {n or info['images']} images of {name})")
    return {**reg, "wall_s": total, "timings": timings, "dataset": name, "preset": preset,
            "data_version": data_version, "synthetic": info["synthetic"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", choices=sorted(INGEST_LIMIT),
                        help="cpu (default: the main job on 2 cores) | tiny (tests) | paper (GPU); written into "
                             "params.yaml's step sections when it differs, so `dvc repro` reruns what changed")
    parser.add_argument("--dataset", default="osie", choices=SHARED_DATASETS,
                        help="which ../shared/data dataset (default osie); generated data when absent")
    parser.add_argument("--limit", type=int, default=None,
                        help="ingest only the first N images (default: all; tiny: 24); synthetic: images generated")
    parser.add_argument("--repo", default=None, help="the SalNAS repository (default: this one)")
    parser.add_argument("--no-dvc", dest="use_dvc", action="store_false",
                        help="run dvc.yaml's stage commands in order without DVC")
    parser.add_argument("--push", default=None, metavar="REMOTE", help="`dvc push -r REMOTE` afterwards (e.g. s3)")


def run_cli(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args.repo, preset=args.preset, dataset=args.dataset, use_dvc=args.use_dvc, push=args.push,
        limit=args.limit)
    return 0
