"""On a Kubeflow cluster every step is its own pod: their MLflow runs find one parent run per
Kubeflow run by the tag `salnas.kfp_run_id` (the first step creates it)."""
from __future__ import annotations

import pytest

from salnas_core.tracking import mlflow_utils as mu


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SALNAS_TRACKING", "on")
    monkeypatch.delenv(mu.PARENT_ENV, raising=False)
    monkeypatch.delenv(mu.KFP_RUN_ENV, raising=False)
    mu.configure()  # the mlflow client is global: point it at this store before any MlflowClient()
    return tmp_path


def test_steps_of_one_kubeflow_run_nest_under_one_parent(store, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv(mu.KFP_RUN_ENV, "0f1e2d3c-run-a")
    ids = []
    for step in ("ingest", "train-supernet", "search"):  # separate pods: no active run, no PARENT_ENV
        with mu.start_run(step) as run:
            ids.append(run.info.run_id)
    client = MlflowClient()
    runs = [client.get_run(i) for i in ids]
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    assert len(parents) == 1 and None not in parents
    parent = client.get_run(parents.pop())
    assert parent.data.tags[mu.TAG_KFP_RUN] == "0f1e2d3c-run-a" and parent.data.tags["salnas.kind"] == "pipeline"
    assert parent.info.status == "FINISHED"  # a grouping run, never left RUNNING
    assert all(r.data.tags[mu.TAG_KFP_RUN] == "0f1e2d3c-run-a" for r in runs)
    # another Kubeflow run gets its own parent
    monkeypatch.setenv(mu.KFP_RUN_ENV, "run-b")
    with mu.start_run("ingest") as other:
        pass
    assert client.get_run(other.info.run_id).data.tags["mlflow.parentRunId"] != parent.info.run_id


def test_two_parents_created_in_a_race_converge_on_the_oldest(store, monkeypatch):
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = mu.experiment_id()
    early = client.create_run(exp, tags={"salnas.kind": "pipeline", mu.TAG_KFP_RUN: "race"}).info.run_id
    assert mu.kfp_parent_run("race") == early  # found by tag
    # a parallel step whose first search did not see `early` yet creates its own parent, then
    # finds both: it keeps the oldest and deletes its own
    real = MlflowClient.search_runs
    calls = []

    def late_view(self, *a, **kw):
        calls.append(1)
        return [] if len(calls) == 1 else real(self, *a, **kw)

    monkeypatch.setattr(MlflowClient, "search_runs", late_view)
    assert mu.kfp_parent_run("race") == early
    monkeypatch.setattr(MlflowClient, "search_runs", real)
    live = client.search_runs([exp], filter_string=f"tags.`{mu.TAG_KFP_RUN}` = 'race'")
    assert [r.info.run_id for r in live] == [early]


def test_run_local_parent_still_wins(store, monkeypatch):
    """kfp.local: the pipeline's own parent run (SALNAS_PARENT_RUN_ID) is used; the id is a tag."""
    from mlflow import MlflowClient

    monkeypatch.setenv(mu.KFP_RUN_ENV, "local-run")
    with mu.start_run("pipeline-kfp-local", pipeline=True) as parent:
        with mu.start_run("ingest") as child:
            pass
    tags = MlflowClient().get_run(child.info.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id and tags[mu.TAG_KFP_RUN] == "local-run"
