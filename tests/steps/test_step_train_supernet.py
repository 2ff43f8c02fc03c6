"""Step `train-supernet` through its door: --epochs and --set win over params.yaml, and the run
folder holds what `dvc metrics` and `dvc plots` read."""
from __future__ import annotations

import csv
import json

import pytest

from salnas_core import cli

pytestmark = pytest.mark.timeout(900)


def test_cli_trains_what_it_is_told(tiny_ingested, tmp_path, capsys):
    out = tmp_path / "sn"
    rc = cli.main(["train-supernet", "--data", str(tiny_ingested), "--out", str(out), "--preset", "tiny",
                   "--epochs", "1", "--set", "n_random=1"])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0 and printed["epochs"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert all(isinstance(v, float) for v in summary["max"].values()) and "cc" in summary["max"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["params"]["n_random"] == 1 and metrics["params"]["epochs"] == 1
    rows = list(csv.DictReader((out / "plots" / "train.csv").open()))
    assert len(rows) == 1 and {"epoch", "max_score", "min_score", "train_loss"} <= set(rows[0])
