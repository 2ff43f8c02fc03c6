"""Service fixtures: real S3 (SeaweedFS) and MLflow servers on loopback.

Started once per session by salnas_core.tracking.services (the launcher `scripts/services` uses too);
reused instead when `scripts/services start` already runs them (`SALNAS_S3_ENDPOINT`,
`SALNAS_MLFLOW_URI` and the AWS_* credentials in the environment).
"""
from __future__ import annotations

import os
import uuid

import pytest

from salnas_core.tracking import services


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint with buckets `dvc` and `mlflow`; the AWS_* environment points at it."""
    if os.environ.get("SALNAS_S3_ENDPOINT"):
        ep = os.environ["SALNAS_S3_ENDPOINT"]
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (key and secret):
            pytest.fail("SALNAS_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not: "
                        "source .services/env")
        svc = services.S3Service(ep, key, secret)
        started = False
    else:
        svc = services.start_s3(tmp_path_factory.mktemp("s3"))
        started = True
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
        if started:
            services.stop_pid(svc.pid, svc.proc)


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """A real `mlflow server` (sqlite store, artifacts proxied to s3://mlflow/artifacts)."""
    if os.environ.get("SALNAS_MLFLOW_URI"):
        yield services.MlflowService(os.environ["SALNAS_MLFLOW_URI"])
        return
    svc = services.start_mlflow(tmp_path_factory.mktemp("mlflow"), s3_server)
    try:
        yield svc
    finally:
        services.stop_pid(svc.pid, svc.proc)


@pytest.fixture
def mlflow_tracking(mlflow_server, monkeypatch):
    """MLFLOW_TRACKING_URI -> the real server, and a fresh experiment name per test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"test-{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("SALNAS_PARENT_RUN_ID", raising=False)
    return mlflow_server.uri


@pytest.fixture
def s3_prefix(s3_server):
    """A fresh s3://dvc/<uuid> prefix for one test."""
    return f"s3://dvc/test-{uuid.uuid4().hex[:12]}"
