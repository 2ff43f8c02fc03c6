"""The main job's pieces: the DVC settings it passes for a preset, the data it picks; `scripts/services`."""
from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from salnas_core import main_job as mj

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"

def _params():
    from salnas_core.utils.params import load_params

    return load_params(REPO / "params.yaml")


def test_settings_are_dvc_set_params_of_the_preset(monkeypatch):
    """`salnas main` passes a preset to `dvc exp run -S`, key by key; cpu is params.yaml as it is."""
    from salnas_core.steps import snapshot
    from salnas_core.utils.params import preset_overlay

    monkeypatch.setenv(snapshot.SHARED_ENV, str(SHARED))
    if not (SHARED / "osie").is_dir():
        pytest.skip("../shared/data/osie is not beside the repository")
    assert mj.settings("cpu", None, None, _params()) == []
    tiny = mj.settings("tiny", None, None, _params())
    assert "train_supernet.epochs=2" in tiny and "ingest.limit=24" in tiny
    assert "search.latency.mode=measure" in tiny and "search.variants=[XL, M]" in tiny
    assert "search.budgets.M.latency_frac=null" in tiny
    assert len(tiny) == sum(len(mj_flat(v)) for v in preset_overlay("tiny").values())
    assert mj.settings("cpu", None, 5, _params(), ["register.model_name=x"]) == ["ingest.limit=5",
                                                                                  "register.model_name=x"]
    with pytest.raises(ValueError, match="unknown key train_supernet.epoch "):
        mj.settings("cpu", None, None, _params(), ["train_supernet.epoch=1"])


def mj_flat(values):
    from salnas_core.utils.params import flatten

    return flatten(values)


def test_missing_shared_data_means_synthetic(tmp_path, monkeypatch, capsys):
    from salnas_core.steps import snapshot

    monkeypatch.setenv(snapshot.SHARED_ENV, str(tmp_path / "nowhere"))
    assert mj.settings("cpu", None, None, _params()) == ["data.dataset=synthetic"]
    assert "GENERATING a synthetic dataset" in capsys.readouterr().out
    assert mj.settings("cpu", "synthetic", None, _params()) == ["data.dataset=synthetic"]


def test_main_outside_a_project_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "salnas_core.cli", "main"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().endswith("not a SalNAS project folder (dvc.yaml and params.yaml "
                                                           "expected); cd into the repository")


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
