"""The pipeline in real containers: kfp.local's DockerRunner runs every step in the project image
that `bash scripts/image build` made from this checkout (CI builds it and sets SALNAS_TEST_IMAGE),
artifacts flow between containers through the pipeline root, the steps reach the MLflow and S3
servers on loopback, and the tiny preset scores exactly as the subprocess runner does (training is
deterministic)."""
from __future__ import annotations

import os

import pytest

IMAGE = os.environ.get("SALNAS_TEST_IMAGE")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800),
              pytest.mark.skipif(not IMAGE, reason="no project image: set SALNAS_TEST_IMAGE (CI builds one with "
                                                   "`bash scripts/image build`)")]


def test_the_pipeline_in_containers_scores_as_in_this_process(mlflow_tracking, shared_data_dir, synthetic_source,
                                                               tmp_path):
    from mlflow import MlflowClient

    from pipelines.cli import run_local

    osie = shared_data_dir / "osie"
    source = str(osie) if (osie / "fixations.json").exists() else str(synthetic_source)
    name = f"docker-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    kw = dict(source=source, preset="tiny", limit=24, budgets=["XL"])
    boxed = run_local(**kw, model_name=name, pipeline_root=str(tmp_path / "docker"), runner="docker", image=IMAGE)
    here = run_local(**kw, model_name=name + "-here", pipeline_root=str(tmp_path / "here"), runner="subprocess")
    for res in (boxed, here):
        assert res["gate"] is not None and res["registered"] is not None
    # the same validation scores in the image as in this interpreter
    assert [(v["variant"], round(v["score"], 6)) for v in boxed["gate"]["variants"]] == \
           [(v["variant"], round(v["score"], 6)) for v in here["gate"]["variants"]]
    assert boxed["registered"]["alias"] == "champion"
    # the containers' MLflow runs nest under the pipeline run's parent, as this process's do
    client = MlflowClient()
    exp = client.get_run(boxed["parent_run_id"]).info.experiment_id
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{boxed['parent_run_id']}'")
    assert {"register"} <= {r.data.tags.get("salnas.step") or r.info.run_name for r in children}
