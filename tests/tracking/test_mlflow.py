"""MLflow runs, registry, champion gate and the register step, against a real MLflow server
(sqlite store, artifacts proxied to the real S3 server)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from salnas_core.tracking import mlflow_utils as mu
from salnas_core.tracking import storage


def test_pipeline_run_with_step_children_in_and_out_of_process(mlflow_tracking):
    from mlflow import MlflowClient

    with mu.start_run("pipeline", pipeline=True, params={"preset": "tiny", "a": {"b": [1, 2]}}) as parent:
        pid = parent.info.run_id
        assert os.environ[mu.PARENT_ENV] == pid
        with mu.start_run("train_supernet") as child:
            log = mu.mlflow_logger(child)
            for step in range(3):
                log({"loss": 1.0 / (step + 1), "lr": 0.1, "note": "skipped"}, step)
        # a step in another process (dvc repro, kfp) finds its parent through the environment
        code = ("from salnas_core.tracking import mlflow_utils as mu\n"
                "with mu.start_run('search') as r:\n    mu.mlflow_logger(r)({'score': 2.5}, 0)\n"
                "    print('RUN', r.info.run_id)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
        assert out.returncode == 0, out.stderr
        sub_id = next(ln.split()[1] for ln in out.stdout.splitlines() if ln.startswith("RUN "))
    assert mu.PARENT_ENV not in os.environ
    client = MlflowClient()
    runs = {r.info.run_id: r for r in client.search_runs([parent.info.experiment_id])}
    assert set(runs) == {pid, child.info.run_id, sub_id}
    for rid, step in ((child.info.run_id, "train_supernet"), (sub_id, "search")):
        assert runs[rid].data.tags["mlflow.parentRunId"] == pid
        assert runs[rid].data.tags["salnas.step"] == step
        assert runs[rid].info.status == "FINISHED"
    assert runs[pid].data.params == {"preset": "tiny", "a.b": "[1, 2]"}
    hist = client.get_metric_history(child.info.run_id, "loss")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(0, 1.0), (1, 0.5), (2, round(1 / 3, 6))]
    assert "note" not in runs[child.info.run_id].data.metrics


def test_failed_step_is_marked_failed(mlflow_tracking):
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError):
        with mu.start_run("distill") as r:
            raise RuntimeError("boom")
    assert MlflowClient().get_run(r.info.run_id).info.status == "FAILED"


def test_tracking_off_gives_no_run(monkeypatch):
    monkeypatch.setenv("SALNAS_TRACKING", "off")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # would fail if contacted
    with mu.start_run("evaluate") as r:
        assert r is None
        mu.mlflow_logger(r)({"x": 1.0}, 0)


def test_registry_gate_idempotence_and_pyfunc(mlflow_tracking, model_files, s3_server):
    from mlflow import MlflowClient
    from mlflow.models import Model

    from salnas_core.serve import pyfunc_model
    from salnas_core.serve.predict import Predictor

    name = f"salnas-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    client = MlflowClient()
    cfg = {"space": "lite", "depth": [1]}
    first = mu.register_model(model_files[0], python_model=pyfunc_model.__file__, name=name, score=2.0, metrics={"cc": 0.5, "kld": 1.1},
                              data_version="dvc:abc;manifest:osie@123", arch_config=cfg, git_commit_id="c0ffee")
    assert first["created"] and first["version"] == 1
    again = mu.register_model(model_files[0], python_model=pyfunc_model.__file__, name=name, score=2.0, data_version="other")
    assert (again["created"], again["version"]) == (False, 1)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    mv = client.get_model_version(name, "1")
    assert mv.tags["salnas.data_version"] == "dvc:abc;manifest:osie@123"
    assert mv.tags["salnas.git_commit"] == "c0ffee"
    assert json.loads(mv.tags["salnas.arch_config"]) == cfg
    assert json.loads(mv.tags["salnas.metrics"]) == {"cc": 0.5, "kld": 1.1}
    assert float(mv.tags[mu.TAG_SCORE]) == 2.0
    info = Model.load(f"models:/{name}/1")
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, -1, -1, 3]
    assert info.metadata["arch_config"] == cfg and info.metadata["git_commit"] == "c0ffee"
    assert info.saved_input_example_info is not None

    # the gate: the first version becomes champion, a worse one does not, a better one does
    assert mu.get_champion(name) is None
    assert mu.promote_if_better(name, 1)["promoted"]
    worse = mu.register_model(model_files[1], python_model=pyfunc_model.__file__, name=name, score=2.5, data_version="d")
    g = mu.promote_if_better(name, worse["version"])
    assert not g["promoted"] and g["previous"] == 1 and int(mu.get_champion(name).version) == 1
    client.set_model_version_tag(name, str(worse["version"]), mu.TAG_SCORE, "1.5")  # re-scored, now better
    g = mu.promote_if_better(name, worse["version"])
    assert g["promoted"] and int(mu.get_champion(name).version) == worse["version"]
    assert not mu.promote_if_better(name, 1)["promoted"]  # 2.0 no longer beats 1.5

    # pyfunc: any image size in, same-size maps out, equal to running the model file directly
    model = mu.load_champion(name)
    direct = Predictor(str(model_files[1]), device="cpu")
    for h, w in ((97, 131), (300, 200)):
        imgs = np.random.default_rng(h).integers(0, 256, size=(2, h, w, 3), dtype=np.uint8)
        maps = model.predict(imgs)
        assert maps.shape == (2, h, w) and maps.dtype == np.float32 and (maps >= 0).all()
        np.testing.assert_allclose(maps, np.stack(direct.predict_arrays(list(imgs))), rtol=1e-5, atol=1e-6)
    # the artifacts live on the S3 server behind the tracking server
    keys = [o["key"] for o in storage.list_prefix("s3://mlflow/artifacts")]
    assert sum(k.endswith("model.pt") for k in keys) >= 2


_ROW = {"dataset": "osie", "split": "val", "blur": False, "cross": False}


@pytest.mark.parametrize("metrics,err", [
    ({"rows": []}, "no finite selection score"),
    ({"rows": [{**_ROW, "model": "S", "score": float("nan")}]}, "no finite selection score"),
    ({"rows": [{**_ROW, "model": "X", "score": 1.0}]}, "no finite selection score"),
    ([{**_ROW, "model": "S", "score": 1.0}], "not an evaluation"),           # one shape, no guessing
    ({"rows": [{"model": "S", "score": 1.0}]}, "row 0 lacks dataset, split, blur, cross"),
])
def test_best_variant_rejects_unusable_metrics(metrics, err, tmp_path):
    from salnas_core import artifacts
    from salnas_core.utils.io import atomic_write_json

    atomic_write_json(tmp_path / "metrics.json", metrics)
    with pytest.raises(ValueError, match=err):
        artifacts.best_variant(artifacts.evaluation_rows(tmp_path), ["S"], "runs/evaluate/metrics.json")


def test_one_champion_rule():
    """The gate step and promote_if_better decide with this one function: strictly lower wins."""
    from salnas_core.tracking.mlflow_utils import beats_champion

    assert beats_champion(1.0, None) is True          # no champion yet
    assert beats_champion(1.0, 1.5) is True
    assert beats_champion(1.5, 1.5) is False          # a tie keeps the champion
    assert beats_champion(2.0, 1.5) is False


def test_git_commit_is_dirty_for_code_not_for_the_running_dvc_lock(tmp_path, monkeypatch):
    """The main job's own `dvc repro` rewrites dvc.lock: the registered commit stays clean."""
    import subprocess

    from salnas_core.tracking.mlflow_utils import git_commit

    monkeypatch.delenv("SALNAS_GIT_COMMIT", raising=False)
    for f in ("a.py", "dvc.lock"):
        (tmp_path / f).write_text("x\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "dvc.lock").write_text("y\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("y\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_the_champion_rule_compares_scores_under_one_protocol(mlflow_tracking, model_files, tmp_path):
    """A better score measured on 4 images does not take the alias from a champion scored on 100;
    the same protocol does. The tiny preset registers under its own name anyway."""
    import shutil

    from salnas_core import artifacts
    from salnas_core.serve import pyfunc_model
    from salnas_core.tracking import mlflow_utils as mu
    from salnas_core.utils.params import preset_overlay

    name = f"fair-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    row = {"dataset": "osie", "split": "val", "blur": False, "cross": False}
    main, smoke = artifacts.protocol({**row, "n": 100}), artifacts.protocol({**row, "n": 4})
    assert main == "osie/val/n=100/original-size/blur=off" and main != smoke
    third = tmp_path / "m2" / "model.pt"
    third.parent.mkdir()
    shutil.copy(model_files[1], third)
    with open(third, "ab") as f:  # other bytes, same model: a third version
        f.write(b"\0")

    def register(path, score, proto):
        reg = mu.register_model(path, python_model=pyfunc_model.__file__, name=name, score=score,
                                extra_tags={mu.TAG_PROTOCOL: proto})
        return reg, mu.promote_if_better(name, reg["version"])

    champ, gate = register(model_files[0], 2.0, main)
    assert gate["promoted"]
    other, gate = register(model_files[1], 1.0, smoke)
    assert not gate["promoted"] and "another protocol" in gate["reason"] and smoke in gate["reason"]
    assert mu.get_champion(name).version == str(champ["version"])
    assert not mu.beats_champion(1.0, 2.0, smoke, main) and mu.beats_champion(1.0, 2.0, main, main)
    same, gate = register(third, 1.5, main)
    assert gate["promoted"] and mu.get_champion(name).version == str(same["version"])
    assert preset_overlay("tiny")["register"]["model_name"] != "salnas"


def test_the_holdout_chooses_the_variant_and_validation_only_reports(tmp_path):
    """No selection on validation: distill's holdout scores choose the variant to register; its
    validation row is what is reported. Runs without holdout scores fall back to validation."""
    from salnas_core import artifacts
    from salnas_core.utils.io import atomic_write_json

    rows = [{**_ROW, "model": "XL", "score": 1.0}, {**_ROW, "model": "M", "score": 1.2},
            {**_ROW, "model": "M", "score": 0.5, "blur": True}, {**_ROW, "model": "XL", "score": 0.1, "cross": True}]
    atomic_write_json(tmp_path / "XL" / "metrics.json", {"score_split": "holdout", "with": {"score": 1.7},
                                                         "postprocess": {"holdout_score_with": 1.6}})
    atomic_write_json(tmp_path / "M" / "metrics.json", {"score_split": "holdout", "with": {"score": 1.4},
                                                        "postprocess": None})
    held = artifacts.holdout_scores(tmp_path, ["XL", "M", "S"])
    assert held == {"XL": 1.6, "M": 1.4}  # post-processed score where fitted; S has no summary
    variant, row = artifacts.best_variant(rows, ["XL", "M"], "m.json", held)
    assert variant == "M" and row["score"] == 1.2 and not row["blur"] and not row["cross"]
    assert artifacts.best_variant(rows, ["XL", "M"], "m.json")[0] == "XL"          # before the holdout
    assert artifacts.best_variant(rows, ["XL", "M"], "m.json", {"M": 1.4})[0] == "XL"  # partial: validation decides
