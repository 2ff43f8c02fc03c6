"""The whole pipeline through kfp.local (lightweight components in this interpreter) on the tiny
preset, tracking to a real MLflow server with artifacts on the real S3 server: a model version
with the alias `champion` exists and predicts saliency maps. A second run reuses the cached
tasks and the gate keeps the champion (same score: no registration)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def source(shared_data_dir, request):
    """The real OSIE data in ../shared/data, else the generated dataset."""
    osie = shared_data_dir / "osie"
    return str(osie) if (osie / "fixations.json").exists() else str(request.getfixturevalue("synthetic_source"))


@pytest.mark.slow
def test_kfp_local_pipeline_ends_with_a_champion_that_predicts(mlflow_tracking, source, tmp_path):
    from mlflow import MlflowClient

    from pipelines.cli import run_local
    from salnas_core.tracking import mlflow_utils as mu

    name = f"kfp-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    kw = dict(source=source, preset="tiny", limit=24, budgets=["XL", "L"], model_name=name,
              pipeline_root=str(tmp_path / "root"), cache=True)
    res = run_local(**kw)

    gate, reg = res["gate"], res["registered"]
    assert gate is not None and gate["beats_champion"] is True and gate["champion_version"] is None
    assert gate["candidate"] in {v["variant"] for v in gate["variants"]} and "XL" in {v["variant"] for v in gate["variants"]}
    assert gate["candidate_score"] == min(v["score"] for v in gate["variants"])
    assert reg is not None and (reg["name"], reg["alias"], reg["variant"]) == (name, "champion", gate["candidate"])
    assert reg["score"] == pytest.approx(gate["candidate_score"])

    client = MlflowClient()
    mv = client.get_model_version_by_alias(name, "champion")
    assert int(mv.version) == reg["version"]
    # one parent run for the pipeline, the steps' runs nested under it
    children = client.search_runs([client.get_run(res["parent_run_id"]).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{res['parent_run_id']}'")
    steps = {r.data.tags.get("salnas.step") or r.info.run_name for r in children}
    assert "register" in steps, steps
    # every step run carries the (kfp.local) run id, as on a cluster
    kfp_ids = {r.data.tags.get(mu.TAG_KFP_RUN) for r in children}
    assert len(kfp_ids) == 1 and None not in kfp_ids, kfp_ids
    # publish: each branch's evaluation as KFP Metrics and the report as HTML
    run_dir = Path(res["run_dir"])
    metrics = [json.loads(p.read_text()) for p in run_dir.glob("**/publish*/metrics")]
    assert len(metrics) == 2 and all(any(k.endswith("/cc") for k in m) for m in metrics), metrics
    pages = [p.read_text() for p in run_dir.glob("**/publish*/report")]
    assert len(pages) == 2 and all(p.startswith("<!DOCTYPE html>") for p in pages)

    model = mu.load_champion(name)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 75, 100, 3), dtype=np.uint8)
    maps = np.asarray(model.predict(images))
    assert maps.shape == (2, 75, 100)
    assert np.isfinite(maps).all() and (maps >= 0).all() and maps.reshape(2, -1).std(axis=1).min() > 0

    # Rerun: every step up to the gate comes from kfp.local's cache; the same candidate ties the
    # champion, so the If branch is skipped and nothing new is registered.
    again = run_local(**kw)
    assert again["gate"]["beats_champion"] is False
    assert again["gate"]["champion_version"] == reg["version"] and again["registered"] is None
    assert [int(v.version) for v in client.search_model_versions(f"name = '{name}'")] == [reg["version"]]
