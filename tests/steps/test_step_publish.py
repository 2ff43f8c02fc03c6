"""Step `publish`: the evaluation as KFP Metrics and the HTML report (what the Kubeflow UI shows)."""
from __future__ import annotations

import os

from components import factory


def test_publish_logs_the_evaluation_as_kfp_metrics_and_writes_the_html_report(tmp_path, monkeypatch):
    """The lightweight `publish` step: the CLI writes {name: value} and the page; the runtime logs
    each value on the Metrics artifact (what the Kubeflow UI shows) and exports the run id."""
    from kfp import dsl

    from components.runtime import run_step
    from salnas_core import artifacts

    ev = tmp_path / "evaluation"
    row = {"model": "M", "dataset": "osie", "split": "val", "blur": False, "cross": False, "cc": 0.7, "kld": 0.9,
           "nss": 1.8, "sim": 0.6, "auc_judd": 0.85, "score": 1.2}
    artifacts.write_evaluation(ev, {"rows": [row, {**row, "dataset": "nus", "cross": True}]})
    metrics = dsl.Metrics(uri="", name="metrics")
    metrics.path = str(tmp_path / "out" / "metrics")  # what the KFP executor hands out
    report = dsl.HTML(uri="", name="report")
    report.path = str(tmp_path / "out" / "report")
    monkeypatch.delenv(factory.RUN_ID_ENV, raising=False)
    run_step("publish", evaluation=str(ev), metrics=metrics, report=report, kfp_run_id="run-42")
    assert os.environ[factory.RUN_ID_ENV] == "run-42"
    monkeypatch.delenv(factory.RUN_ID_ENV)
    assert metrics.metadata["M/osie/val/cc"] == 0.7 and metrics.metadata["M/osie/val/score"] == 1.2
    assert not any(k.startswith("M/nus") for k in metrics.metadata)  # cross-dataset rows are not the table
    page = open(report.path, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and "Saliency metrics" in page
