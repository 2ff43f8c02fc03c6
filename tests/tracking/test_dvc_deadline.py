"""Issue 16, finding 7 (DVC): `dvc push` against a dead or hanging S3 endpoint ends with a clear error.

Before: botocore's legacy retries under s3fs's own 5 retries kept `dvc push` going for minutes.
Now `storage.run_dvc` runs it with botocore's standard mode (SALNAS_S3_ATTEMPTS attempts), the
remote's connect/read timeouts from .dvc/config, and a total deadline (SALNAS_DVC_DEADLINE).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from salnas_core.tracking import storage

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _repo(tmp_path: Path, endpoint: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    dvc = str(VENV_BIN / "dvc")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "data.txt").write_text("payload\n")
    subprocess.run([dvc, "add", "-q", "data.txt"], cwd=repo, check=True, env=env)
    # the committed remote settings (url, timeouts), pointed at the test endpoint
    cfg = (REPO / ".dvc" / "config").read_text().replace("remote = local", "remote = s3")
    (repo / ".dvc" / "config").write_text(cfg)
    subprocess.run([dvc, "remote", "modify", "--local", "s3", "endpointurl", endpoint], cwd=repo, check=True,
                   env=env)
    return repo


def test_committed_s3_remote_has_timeouts():
    cfg = (REPO / ".dvc" / "config").read_text()
    assert "connect_timeout = 5" in cfg and "read_timeout = 30" in cfg


def test_dvc_push_to_a_dead_endpoint_fails_with_its_exit_code(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    repo = _repo(tmp_path, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(RuntimeError, match="dvc push -q -r s3` failed with exit code"):
        storage.run_dvc([str(VENV_BIN / "dvc"), "push", "-q", "-r", "s3"], repo, deadline_s=300)


def test_dvc_push_to_a_hanging_endpoint_stops_at_the_deadline(tmp_path, monkeypatch):
    """An endpoint that accepts connections and never answers (a stopped server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)  # connections complete in the kernel; nothing ever reads or answers
    try:
        repo = _repo(tmp_path, f"http://127.0.0.1:{srv.getsockname()[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
        monkeypatch.setenv("SALNAS_DVC_DEADLINE", "8")
        with pytest.raises(TimeoutError, match=r"did not finish within 8 s \(SALNAS_DVC_DEADLINE\)"):
            storage.run_dvc([str(VENV_BIN / "dvc"), "push", "-q", "-r", "s3"], repo)
    finally:
        srv.close()


def test_dvc_env_bounds_botocore_retries(monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "2")
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    env = storage.dvc_remote_env()
    assert env["AWS_RETRY_MODE"] == "standard" and env["AWS_MAX_ATTEMPTS"] == "2"
