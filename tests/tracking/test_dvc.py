"""DVC: the repository's own .dvc/config, params.yaml and dvc.yaml, in a throw-away copy of the repo.

- the raw snapshot (stage `snapshot`) is pushed to the real S3 server through the committed `s3`
  remote (endpoint and credentials from the environment only), the cache and workspace copy are
  removed, and `dvc pull` restores the same bytes; a bare `dvc repro` without the shared data
  stops with one line saying what to run;
- `salnas main --preset tiny` runs `dvc exp run -S ...` end to end (seven stages) with MLflow on the
  real server, ends with a `champion` that loads and predicts maps; `dvc exp show` and dvc.lock
  show the values that ran, `dvc metrics show` prints NSS per variant, `dvc exp run -S
  train_supernet.epochs=1` trains one epoch, editing search code marks search changed; the
  outputs survive a push, cache removal and pull.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
VENV_BIN = Path(sys.executable).parent


def _dvc(repo: Path, *args: str, env=None) -> str:
    out = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=repo, capture_output=True, text=True,
                         env=env or os.environ.copy())
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def copy_repo(dest: Path) -> Path:
    """The committed files of this repository (git ls-files) in a fresh git repo: what a clone has."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
                           ).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    # work not yet committed by parallel sessions is not needed: dvc.yaml, params.yaml, .dvc are
    for f in ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/.gitignore", ".dvcignore"):
        shutil.copy2(REPO / f, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"], cwd=dest, check=True)
    return dest


@pytest.fixture
def dvc_env(s3_server, monkeypatch):
    """Environment for dvc subprocesses: the S3 prefix of the `s3` remote made unique per test."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return os.environ


def test_committed_dvc_config():
    cfg = (REPO / ".dvc" / "config").read_text()
    assert "remote = local" in cfg and "url = s3://dvc/" in cfg
    assert "endpointurl" not in cfg and "secret" not in cfg.lower()  # endpoint and keys come from the env
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert list(spec["stages"]) == ["snapshot", "ingest", "train_supernet", "search", "distill", "evaluate",
                                    "register"]
    for name, st in spec["stages"].items():
        assert st["cmd"].startswith(f"salnas {name.replace('_', '-')} "), name
        assert st["params"], name
    assert spec["stages"]["snapshot"]["outs"] == ["data/raw"]


@pytest.mark.skipif(not (SHARED / "osie").is_dir(), reason="../shared/data/osie is not beside the repository")
def _set_params(repo: Path, **sections) -> None:
    """Edit the copy's params.yaml as a user would (values under existing keys)."""
    p = repo / "params.yaml"
    params = yaml.safe_load(p.read_text())
    for section, values in sections.items():
        params[section].update(values)
    p.write_text(yaml.safe_dump(params, sort_keys=False))


def test_raw_snapshot_push_remove_cache_pull(tmp_path, dvc_env):
    repo = copy_repo(tmp_path / "repo")
    prefix = f"s3://dvc/test-{uuid.uuid4().hex[:8]}"
    _dvc(repo, "remote", "modify", "--local", "s3", "url", prefix)
    # a bare `dvc repro` of a fresh clone without the shared data: one line saying what to run
    env = {**os.environ, "SALNAS_SHARED_DATA": str(tmp_path / "no-shared")}
    bare = subprocess.run([str(VENV_BIN / "dvc"), "repro"], cwd=repo, capture_output=True, text=True, env=env)
    assert bare.returncode != 0
    assert "shared eye-tracking data not found; run `salnas main`" in bare.stderr + bare.stdout
    assert "Traceback" not in bare.stderr + bare.stdout
    _set_params(repo, data={"dataset": "synthetic", "synthetic_images": 6})
    _dvc(repo, "repro", "snapshot", env=env)
    before = _tree(repo / "data" / "raw")
    assert len([k for k in before if k.endswith(".png") or k.endswith(".jpg")]) == 6
    md5 = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["snapshot"]["outs"][0]["md5"]
    assert md5.endswith(".dir")
    _dvc(repo, "push", "-r", "s3", "snapshot")
    _dvc(repo, "push", "snapshot")  # the default remote: the embedded local folder
    assert len([p for p in (repo / ".dvc" / "remote-local").rglob("*") if p.is_file()]) == len(before) + 1

    from salnas_core.tracking import storage
    assert len(storage.list_prefix(prefix)) == len(before) + 1  # the files and the .dir listing

    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data" / "raw")
    _dvc(repo, "pull", "-r", "s3", "snapshot")
    assert _tree(repo / "data" / "raw") == before
    assert "snapshot" not in _dvc(repo, "status", "snapshot", env=env)


@pytest.mark.slow
def test_main_job_dvc_repro_end_to_end_push_pull(tmp_path, dvc_env, mlflow_tracking):
    """`salnas main --preset tiny`: dvc repro of the six stages, MLflow on the real server,
    a champion that predicts maps; then the outputs come back from S3 after the cache is removed."""
    from mlflow import MlflowClient

    from salnas_core.tracking import mlflow_utils as mu

    repo = copy_repo(tmp_path / "repo")
    if SHARED.is_dir():  # the real data beside the copy, as beside a clone (a link, not a copy)
        (tmp_path / "shared").symlink_to(SHARED.parent, target_is_directory=True)
    name = f"salnas-{uuid.uuid4().hex[:8]}"
    prefix = f"s3://dvc/test-{uuid.uuid4().hex[:8]}"
    _dvc(repo, "remote", "modify", "--local", "s3", "url", prefix)

    proc = subprocess.run([str(VENV_BIN / "salnas"), "main", "--preset", "tiny", "--set", f"register.model_name={name}"],
                          cwd=repo,
                          capture_output=True, text=True, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert ("real eye-tracking data" if SHARED.is_dir() else "GENERATING a synthetic dataset") in out
    assert f"champion: models:/{name}@champion" in out

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"snapshot", "ingest", "train_supernet", "search", "distill", "evaluate", "register"}
    # the values that ran are the ones DVC shows: the tiny preset's, key by key
    assert lock["stages"]["train_supernet"]["params"]["params.yaml"]["train_supernet"]["epochs"] == 2
    assert json.loads((repo / "runs" / "supernet" / "summary.json").read_text())["epochs"] == 2
    status = _dvc(repo, "status")
    for stage in ("snapshot", "ingest", "train_supernet", "search", "distill", "evaluate"):
        assert f"{stage}:" not in status, status  # only the always-changed register stage may show
    # `dvc metrics show`: NSS (and the rest) per dataset and variant, as numbers
    shown = json.loads(_dvc(repo, "metrics", "show", "--json"))
    scores = next(v for v in shown.values())["data"]["runs/evaluate/scores.json"]["data"]
    (ds,) = scores
    assert {"XL", "M", "centre_bias"} <= set(scores[ds]) and isinstance(scores[ds]["M"]["nss"], float)

    reg = json.loads((repo / "runs" / "register" / "registered.json").read_text())
    data_md5 = lock["stages"]["snapshot"]["outs"][0]["md5"]
    assert reg["alias"] == "champion" and reg["name"] == name
    assert reg["data_version"].startswith(f"dvc:{data_md5};manifest:")

    # MLflow: one parent run, the steps as its children, the champion loads and predicts maps
    client = MlflowClient()
    parent = client.search_runs([mu.experiment_id()], "tags.`salnas.pipeline` = 'salnas-main'")
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = client.search_runs([mu.experiment_id()], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    steps = {r.data.tags.get("salnas.step") for r in children}
    assert {"search", "distill", "evaluate", "register"} <= steps, steps
    model = mu.load_champion(name)
    img = np.random.default_rng(0).integers(0, 256, size=(1, 123, 77, 3), dtype=np.uint8)
    maps = model.predict(img)
    assert maps.shape == (1, 123, 77) and np.isfinite(maps).all() and (maps >= 0).all() and maps.std() > 0

    # the stage outputs pushed to S3 come back after the cache and workspace copies are gone
    # (data.dvc's own round trip: test_raw_snapshot_push_remove_cache_pull)
    # editing the search code marks search (and the stages that import it) changed, not training
    (repo / "salnas_core" / "search" / "pareto.py").write_text((repo / "salnas_core" / "search" / "pareto.py")
                                                                .read_text() + "\n# edited\n")
    status = _dvc(repo, "status")
    assert "search:" in status and "train_supernet:" not in status and "ingest:" not in status, status
    (repo / "salnas_core" / "search" / "pareto.py").write_text((REPO / "salnas_core" / "search" / "pareto.py")
                                                                .read_text())
    # `dvc exp run -S train_supernet.epochs=1`: one epoch is what trains, and what `dvc exp show` says
    typo = subprocess.run([str(VENV_BIN / "dvc"), "exp", "run", "-S", "train_supernet.epoch=1"], cwd=repo,
                          capture_output=True, text=True)
    assert typo.returncode != 0  # DVC refuses a key params.yaml does not have
    _dvc(repo, "exp", "run", "-n", "one-epoch", "-S", "train_supernet.epochs=1")
    assert json.loads((repo / "runs" / "supernet" / "summary.json").read_text())["epochs"] == 1
    exps = json.loads(_dvc(repo, "exp", "show", "--json"))
    ran = [e for e in exps for ex in (e.get("experiments") or []) for r in ex.get("revs", [])
           if r.get("name") == "one-epoch"]
    one = next(r for e in exps for ex in (e.get("experiments") or []) for r in ex.get("revs", [])
               if r.get("name") == "one-epoch")
    params_ran = one["data"]["params"]["params.yaml"]["data"]["train_supernet"]
    assert ran and params_ran["epochs"] == 1

    stages = ["ingest", "train_supernet", "search", "distill", "evaluate"]
    tracked = ["data/ingested", "runs/supernet", "runs/search", "runs/distill", "runs/evaluate"]
    before = {t: _tree(repo / t) for t in tracked}
    assert all(before.values())
    _dvc(repo, "push", "-r", "s3", *stages)
    shutil.rmtree(repo / ".dvc" / "cache")
    for t in tracked:
        shutil.rmtree(repo / t)
    _dvc(repo, "pull", "-r", "s3", *stages)
    assert {t: _tree(repo / t) for t in tracked} == before
