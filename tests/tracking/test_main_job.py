"""The main job's pieces: params.yaml edits, dvc.yaml templates, raw snapshots; `scripts/services`."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from salnas_core import main_job as mj

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

PARAMS = """\
# top comment
train_supernet:
  space: lite
  preset: cpu             # keep me
  presets:
    tiny:
      preset: nested      # deeper keys are not touched
data:
  dataset: osie
  ingest_args: {}
"""


def test_set_params_edits_only_the_named_lines(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    done = mj.set_params(p, {("train_supernet", "preset"): "tiny", ("data", "ingest_args"): {"limit": 24},
                             ("data", "dataset"): "osie"})
    assert done == ["train_supernet.preset: cpu -> tiny", 'data.ingest_args: {} -> {"limit": 24}']
    text = p.read_text()
    assert "  preset: tiny             # keep me\n" in text and "      preset: nested" in text
    assert text.startswith("# top comment\n")
    import yaml
    assert yaml.safe_load(text)["data"] == {"dataset": "osie", "ingest_args": {"limit": 24}}
    assert mj.set_params(p, {("train_supernet", "preset"): "tiny"}) == []  # no change, no rewrite
    with pytest.raises(ValueError, match="no key 'missing'"):
        mj.set_params(p, {("data", "missing"): 1})
    with pytest.raises(ValueError, match="no top-level section 'nope'"):
        mj.set_params(p, {("nope", "x"): 1})


def test_stage_commands_match_what_dvc_runs(tmp_path):
    """Without DVC the main job runs dvc.yaml's commands with DVC's templating (dict unpacking too)."""
    import shutil

    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / f, tmp_path / f)
    mj.set_params(tmp_path / "params.yaml", {("data", "ingest_args"): {"limit": 24}, ("search", "preset"): "tiny"})
    cmds = dict(mj.stage_commands(tmp_path))
    assert list(cmds) == ["ingest", "train_supernet", "search", "distill", "evaluate", "register"]
    assert cmds["ingest"].startswith("salnas ingest --source data/raw/osie --format shared_json")
    assert cmds["ingest"].endswith("--limit 24")
    assert "--preset tiny" in cmds["search"] and "${" not in " ".join(cmds.values())
    with pytest.raises(KeyError, match=r"\$\{a.b\}"):
        mj.resolve_templates("x ${a.b}", {"a": {}})


@pytest.mark.skipif(not (SHARED / "osie").is_dir(), reason="../shared/data/osie is not beside the repository")
def test_snapshot_is_whole_and_deterministic(tmp_path):
    a = mj.snapshot_shared(SHARED / "osie", tmp_path / "a" / "osie", limit=5)
    b = mj.snapshot_shared(SHARED / "osie", tmp_path / "b" / "osie", limit=5)
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert a["images"] == b["images"] == 5 and len([f for f in files if f.endswith(".jpg")]) == 5
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    meta = json.loads((tmp_path / "a" / "osie" / "fixations.json").read_text())
    assert meta["n_images"] == 5 and [e["file"] for e in meta["images"]] == sorted(e["file"] for e in meta["images"])
    whole = mj.snapshot_shared(SHARED / "osie", tmp_path / "a" / "osie")  # replaces, never merges
    assert whole["images"] == 700
    assert (tmp_path / "a" / "osie" / "fixations.json").read_bytes() == (SHARED / "osie" / "fixations.json").read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["osie"]  # no temp folders left


def test_missing_shared_data_means_synthetic(tmp_path):
    assert mj.shared_source(tmp_path / "repo", "osie") is None
    info = mj.snapshot_synthetic(tmp_path / "raw" / "synthetic", 3)
    meta = json.loads((tmp_path / "raw" / "synthetic" / "fixations.json").read_text())
    assert info["synthetic"] and meta.get("synthetic") and len(meta["images"]) == 3


@pytest.fixture
def started_services(local_services, tmp_path):
    """The session's `services start` result; when the session reuses servers started outside it
    (CI: scripts/services start), a fresh pair started the same way for this test."""
    if local_services is not None:
        yield local_services
        return
    state = tmp_path / "svc"
    cmd = [sys.executable, "-m", "salnas_core.tracking.services"]
    start = subprocess.run([*cmd, "start", "--dir", str(state)], capture_output=True, text=True, timeout=600)
    try:
        assert start.returncode == 0, start.stderr
        env = dict(ln[len("export "):].split("=", 1) for ln in (state / "env").read_text().splitlines())
        yield {"env": env, "output": start.stdout + start.stderr, "state": state}
    finally:
        subprocess.run([*cmd, "stop", "--dir", str(state)], capture_output=True, text=True, timeout=120)


def test_services_start_keeps_secrets_out_of_output(started_services):
    """Servers started by `services start`: the env file is private, the output holds no secret."""
    env, out, state = started_services["env"], started_services["output"], started_services["state"]
    assert stat.S_IMODE((state / "env").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "s3.json").stat().st_mode) == 0o600
    assert env["AWS_SECRET_ACCESS_KEY"] not in out and env["AWS_ACCESS_KEY_ID"] not in out
    assert f"export SALNAS_S3_ENDPOINT={env['SALNAS_S3_ENDPOINT']}" in out
    assert f"export MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']}" in out
    from salnas_core.tracking import storage

    client = storage.s3_client(endpoint=env["AWS_ENDPOINT_URL"], access_key=env["AWS_ACCESS_KEY_ID"],
                               secret_key=env["AWS_SECRET_ACCESS_KEY"])
    assert {"dvc", "mlflow"} <= {b["Name"] for b in client.list_buckets()["Buckets"]}
    import urllib.request
    with urllib.request.urlopen(env["MLFLOW_TRACKING_URI"] + "/health", timeout=10) as r:
        assert r.status == 200
    # a second start on the same state folder refuses instead of orphaning the running servers
    again = subprocess.run([sys.executable, "-m", "salnas_core.tracking.services", "start", "--dir", str(state)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already running" in again.stderr


def test_stop_pids_ends_process_groups():
    from salnas_core.tracking import services

    procs = [subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300"], start_new_session=True) for _ in range(2)]
    services.stop_pids([(p.pid, p) for p in procs], timeout=10)
    assert all(p.poll() is not None for p in procs)
    for p in procs:  # the group's children went too (zombies waiting for init do not count)
        assert services._gone(p.pid, p)
