"""Service fixtures: real S3 (SeaweedFS) and MLflow servers on loopback.

Started once per session through the same command CI and humans use
(`python -m salnas_core.tracking.services start`, i.e. `scripts/services start`), and stopped with
`... stop` at the end. Reused instead when `scripts/services start` already runs them
(`SALNAS_S3_ENDPOINT`, `SALNAS_MLFLOW_URI` and the AWS_* credentials in the environment).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from salnas_core.tracking import services

_SERVICES = [sys.executable, "-m", "salnas_core.tracking.services"]


@pytest.fixture(scope="session")
def local_services(tmp_path_factory):
    """{"env", "output" (what `services start` printed), "state"}; None when reusing running services."""
    if os.environ.get("SALNAS_S3_ENDPOINT"):
        yield None
        return
    state = tmp_path_factory.mktemp("services")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    start = subprocess.run([*_SERVICES, "start", "--dir", str(state)], capture_output=True, text=True, env=env,
                           timeout=600)
    try:
        if start.returncode != 0:
            pytest.fail(f"services start failed:\n{start.stdout}\n{start.stderr}")
        exported = dict(line[len("export "):].split("=", 1)
                        for line in (state / "env").read_text().splitlines() if line.startswith("export "))
        yield {"env": exported, "output": start.stdout + start.stderr, "state": state,
               "pids": json.loads((state / "state.json").read_text())}
    finally:
        subprocess.run([*_SERVICES, "stop", "--dir", str(state)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def s3_server(local_services):
    """A real S3 endpoint with buckets `dvc` and `mlflow`; the AWS_* environment points at it."""
    if local_services is None:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (key and secret):
            pytest.fail("SALNAS_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not: "
                        "source .services/env")
        svc = services.S3Service(os.environ["SALNAS_S3_ENDPOINT"], key, secret)
    else:
        e = local_services["env"]
        svc = services.S3Service(e["SALNAS_S3_ENDPOINT"], e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"],
                                 local_services["pids"]["s3_pid"])
    saved = {k: os.environ.get(k) for k in svc.env()}
    os.environ.update(svc.env())
    try:
        yield svc
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def mlflow_server(s3_server, local_services):
    """A real `mlflow server` (sqlite store, artifacts proxied to s3://mlflow/artifacts)."""
    if local_services is None:
        uri = os.environ.get("SALNAS_MLFLOW_URI")
        if not uri:
            pytest.fail("SALNAS_S3_ENDPOINT is set but SALNAS_MLFLOW_URI is not: source .services/env")
        return services.MlflowService(uri)
    return services.MlflowService(local_services["env"]["SALNAS_MLFLOW_URI"], local_services["pids"]["mlflow_pid"])


@pytest.fixture
def mlflow_tracking(mlflow_server, monkeypatch):
    """MLFLOW_TRACKING_URI -> the real server, and a fresh experiment name per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("SALNAS_PARENT_RUN_ID", raising=False)
    # mlflow.set_tracking_uri() from an earlier test outlives it and beats the env var: point the
    # process-wide client settings at the server too
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.uri)
    mlflow.set_registry_uri(mlflow_server.uri)
    yield mlflow_server.uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture
def s3_prefix(s3_server):
    """A fresh s3://dvc/<uuid> prefix for one test."""
    return f"s3://dvc/test-{uuid.uuid4().hex[:12]}"
