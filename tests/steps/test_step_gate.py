"""The pipeline's champion gate against a real MLflow server: best branch vs the registered champion."""
from __future__ import annotations

import json
import os

import pytest

from salnas_core import cli
from salnas_core.steps.gate import run as gate
from salnas_core.utils.io import atomic_write_json


@pytest.fixture(scope="module")
def model_file():
    """Real static subnets (the smallest of the lite space) in save_model format, distinct weights
    per call (the registry dedups identical files)."""
    import torch

    from salnas_core.supernet import create_supernet, save_model

    torch.manual_seed(0)
    sn = create_supernet("lite", pretrained=False)
    sn.sample_min_subnet()
    net = sn.get_active_subnet()
    counter = iter(range(1000))

    def make(dest):
        i = next(counter)
        with torch.no_grad():
            next(net.parameters()).add_(0.01 * (i + 1))
        return save_model(dest, net)

    return make


def _branch(root, variant: str, score: float, model_file, tag: str = ""):
    """One ParallelFor branch's outputs: distill folder (<variant>/model.pt) and evaluate folder."""
    m = root / f"distill-{variant}{tag}"
    model_file(m / variant / "model.pt")
    e = root / f"evaluate-{variant}{tag}"
    atomic_write_json(e / "metrics.json", {"rows": [
        {"dataset": "osie", "split": "val", "model": "centre_bias", "blur": False, "cross": False, "score": 0.5},
        {"dataset": "osie", "split": "val", "model": variant, "blur": False, "cross": False, "cc": 0.5, "score": score},
    ]})
    return str(m), str(e)


def test_gate_picks_the_best_branch_and_compares_with_the_champion(mlflow_tracking, model_file, tmp_path):
    from salnas_core.steps import register
    from salnas_core.tracking import mlflow_utils as mu

    name = f"gate-{os.environ['MLFLOW_EXPERIMENT_NAME']}"
    (ms, es), (mm, em) = _branch(tmp_path, "S", 1.9, model_file), _branch(tmp_path, "M", 2.4, model_file)

    # No champion yet: the best branch (S, lower score) passes, its folder is what register reads.
    d = gate([mm, ms], [em, es], str(tmp_path / "cand1"), model_name=name)
    assert (d["candidate"], d["candidate_score"], d["beats_champion"], d["champion_version"]) == ("S", 1.9, True, None)
    assert (tmp_path / "cand1" / "S" / "model.pt").read_bytes() == (tmp_path / "distill-S" / "S" / "model.pt").read_bytes()
    assert json.loads((tmp_path / "cand1" / "gate.json").read_text())["candidate"] == "S"
    reg = register.run(tmp_path / "cand1", tmp_path / "cand1", tmp_path / "reg1", name=name)
    assert (reg["variant"], reg["alias"]) == ("S", "champion")

    # Worse and tied candidates do not beat the champion (lower is better; a tie keeps it) ...
    for score, tag in ((2.0, "w"), (1.9, "t")):
        m, e = _branch(tmp_path, "L", score, model_file, tag)
        d = gate([m], [e], str(tmp_path / f"cand-{tag}"), model_name=name)
        assert d["beats_champion"] is False and d["champion_version"] == reg["version"]
        assert d["champion_score"] == pytest.approx(1.9)

    # ... a better one does, through the CLI with KFP-style output files.
    m, e = _branch(tmp_path, "XL", 1.5, model_file)
    beats, score = tmp_path / "out" / "beats", tmp_path / "out" / "score"
    rc = cli.main(["gate", "--models", m, "--evaluations", e, "--out", str(tmp_path / "cand3"),
                   "--model-name", name, "--beats-out", str(beats), "--score-out", str(score)])
    assert rc == 0
    assert json.loads(beats.read_text()) is True and json.loads(score.read_text()) == 1.5
    assert mu.get_champion(name).version == str(reg["version"])  # the gate itself never moves the alias


def test_gate_refuses_mismatched_or_empty_inputs(tmp_path, capsys):
    with pytest.raises(ValueError, match="one evaluation per model"):
        gate([str(tmp_path)], [], str(tmp_path / "c"))
    (tmp_path / "e").mkdir()
    rc = cli.main(["gate", "--models", str(tmp_path / "e"), "--evaluations", str(tmp_path / "e"),
                   "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "no distilled model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
