"""Issue 16, finding 8: the registry under concurrent use, and a re-registration with a new score.

Against the real MLflow server (sqlite store, artifacts on the real S3 server).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from salnas_core.tracking import mlflow_utils as mu

_REGISTER = """
import json, os, sys, time
from pathlib import Path
from salnas_core.tracking import mlflow_utils as mu
go = Path(sys.argv[3])
while not go.exists():  # both processes start registering at the same moment
    time.sleep(0.01)
from salnas_core.serve import pyfunc_model
r = mu.register_model(sys.argv[1], python_model=pyfunc_model.__file__, name=sys.argv[2], score=1.5)
print(json.dumps({"version": r["version"], "created": r["created"]}))
"""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    from salnas_core.supernet import create_supernet, save_model

    torch.manual_seed(1)
    sn = create_supernet("lite", pretrained=False)
    sn.sample_min_subnet()
    return save_model(tmp_path_factory.mktemp("m") / "model.pt", sn.get_active_subnet())


def test_two_registrations_at_once_give_one_version(mlflow_tracking, model_file, tmp_path):
    from mlflow import MlflowClient

    name = f"salnas-{os.environ['MLFLOW_EXPERIMENT_NAME']}-race"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTER, str(model_file), name, str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(3)  # let both import mlflow and reach the barrier (not a timing assertion)
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    versions = MlflowClient().search_model_versions(f"name = '{name}'")
    from salnas_core.utils.hashing import sha256_file

    sha = sha256_file(model_file)
    assert len([v for v in versions if v.tags.get(mu.TAG_HASH) == sha]) == 1, [v.version for v in versions]
    assert outs[0]["version"] == outs[1]["version"] == int(versions[0].version)


def test_reregistration_with_a_new_score_says_it_kept_the_old_one(mlflow_tracking, model_file, tmp_path,
                                                                  monkeypatch, capsys):
    from salnas_core.steps import register

    shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)  # the step reads params.yaml from the working root
    (tmp_path / "distill" / "S").mkdir(parents=True)
    shutil.copy(model_file, tmp_path / "distill" / "S" / "model.pt")
    name = f"salnas-{os.environ['MLFLOW_EXPERIMENT_NAME']}-rescore"

    def evaluate(score):
        (tmp_path / "evaluate").mkdir(exist_ok=True)
        (tmp_path / "evaluate" / "metrics.json").write_text(json.dumps(
            {"rows": [{"dataset": "osie", "split": "val", "model": "S", "blur": False, "cross": False,
                       "score": score}]}))
        return register.run(tmp_path / "evaluate", tmp_path / "distill", tmp_path / "reg", name=name)

    first = evaluate(1.9)
    assert first["created"] and first["score"] == 1.9 and first["note"] is None
    again = evaluate(1.3)  # the same file evaluated again, with another score
    assert (again["version"], again["created"]) == (first["version"], False)
    assert again["score"] == 1.9  # what the registry holds, printed and written alike
    assert "score 1.3 was not applied" in again["note"]
    on_disk = json.loads((tmp_path / "reg" / "registered.json").read_text())
    assert on_disk["score"] == 1.9 and on_disk["note"] == again["note"]
    assert mu.version_score(name, first["version"]) == 1.9
