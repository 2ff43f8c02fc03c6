"""Step `register`: the best evaluated variant into the MLflow registry (a real server), the champion
gate, idempotence, and a readable entry."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def test_register_step_picks_best_and_is_idempotent(mlflow_tracking, model_files, tmp_path, monkeypatch):
    import shutil

    from salnas_core.steps import register
    from salnas_core.utils.io import atomic_write_json

    # the step reads params.yaml from the working root (here: this folder), never from the package's
    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    for variant, src in (("S", model_files[0]), ("M", model_files[1])):
        (tmp_path / "distill" / variant).mkdir(parents=True)
        shutil.copy(src, tmp_path / "distill" / variant / "model.pt")
    rows = [
        {"dataset": "osie", "split": "val", "model": "centre_bias", "blur": False, "cross": False, "score": 0.1},
        {"dataset": "osie", "split": "val", "model": "S", "blur": False, "cross": False, "cc": 0.6, "score": 1.9},
        {"dataset": "osie", "split": "val", "model": "M", "blur": False, "cross": False, "cc": 0.4, "score": 2.4},
        {"dataset": "osie", "split": "val", "model": "M", "blur": True, "cross": False, "cc": 0.7, "score": 1.2},
    ]
    atomic_write_json(tmp_path / "evaluate" / "metrics.json", {"rows": rows})
    ds = tmp_path / "ingested" / "osie"
    atomic_write_json(ds / "manifest.json", {"dataset": "osie", "version": "f" * 64})
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  snapshot:\n    cmd: salnas snapshot --out data/raw\n"
                                       "    outs:\n    - path: data/raw\n      md5: 0123abcd.dir\n")
    atomic_write_json(tmp_path / "evaluate" / "efficiency.json", {"rows": [
        {"model": "S", "device": "cpu", "device_name": "AMD EPYC x2 threads", "gmacs": 0.41, "mparams": 2.65,
         "latency_ms_b1": 28.0, "latency_ms_b1_onnx": 19.0, "deployed_engine": "onnx",
         "latency_ms_b1_search": 18.5, "latency_engine_search": "onnx", "input_size": [288, 384]}]})
    name = f"salnas-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    s = register.run(tmp_path / "evaluate", tmp_path / "distill", tmp_path / "reg", data=ds, name=name)
    assert (s["variant"], s["score"], s["alias"], s["promoted"]) == ("S", 1.9, "champion", True)
    # an entry a person can read: tags and description with the variant, costs, metrics, protocol, run
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, str(s["version"]))
    assert mv.tags["salnas.variant"] == "S" and mv.tags["salnas.gmacs"] == "0.41"
    assert mv.tags["salnas.latency_ms_b1"] == "28" and mv.tags["salnas.latency_machine"] == "AMD EPYC x2 threads"
    assert mv.tags["salnas.latency_ms_b1_onnx"] == "19" and mv.tags["salnas.latency_ms_search"] == "18.5"
    assert mv.tags["salnas.deployed_engine"] == "onnx" and mv.tags["salnas.latency_engine_search"] == "onnx"
    assert "28.0 ms eager, 19.0 ms ONNX Runtime" in mv.description and "18.5 ms predicted" in mv.description
    assert mv.tags["salnas.val_cc"] == "0.6000" and mv.tags["salnas.protocol"] == "osie/val/n=?/original-size/blur=off"
    assert "variant S" in mv.description and "0.410 GMACs" in mv.description and mv.run_id in mv.description
    assert "report.html" in [a.path for a in MlflowClient().list_artifacts(mv.run_id)]
    assert s["data_version"] == f"dvc:0123abcd.dir;manifest:osie@{'f' * 16}"
    on_disk = json.loads((tmp_path / "reg" / "registered.json").read_text())
    assert on_disk["version"] == s["version"] and on_disk["uri"] == f"models:/{name}/{s['version']}"
    again = register.run(tmp_path / "evaluate", tmp_path / "distill", tmp_path / "reg", data=ds, name=name)
    assert (again["version"], again["created"], again["promoted"]) == (s["version"], False, False)
    assert again["alias"] == "champion"


def test_register_step_names_missing_inputs(tmp_path):
    from salnas_core.steps import register

    with pytest.raises(FileNotFoundError, match="no distilled models"):
        register.run(tmp_path / "e", tmp_path / "d", tmp_path / "o")
