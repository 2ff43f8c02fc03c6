"""`salnas publish`: one evaluated variant for the Kubeflow UI. A pipeline step.

Writes the evaluation table as a flat `{name: number}` JSON file (the lightweight component logs
each entry on its KFP `Metrics` output, which the run page shows and compares across runs) and
the `salnas report` page as an `HTML` output (rendered in the run page's Visualization tab).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score")
EFFICIENCY = ("mparams", "gmacs", "latency_ms_b1", "throughput_ips_b32")


def _key(*parts: Any) -> str:
    return "/".join(str(p).replace(" ", "_") for p in parts if p not in (None, ""))


def metrics_table(evaluation: str | os.PathLike) -> dict[str, float]:
    """{model/dataset/split[/blur]/metric: value} of evaluate's rows, plus its efficiency numbers."""
    from salnas_core import artifacts
    from salnas_core.utils.io import read_json

    out: dict[str, float] = {}
    for r in artifacts.evaluation_rows(evaluation):
        if r.get("cross"):
            continue
        for m in METRICS:
            v = r.get(m)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[_key(r.get("model"), r.get("dataset"), r.get("split"), "blur" if r.get("blur") else "", m)] = float(v)
    eff = Path(evaluation) / "efficiency.json"
    if eff.is_file():
        from salnas_core.serve.report import efficiency_rows

        for r in efficiency_rows(read_json(eff)):
            for m in EFFICIENCY:
                v = r.get(m)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    out[_key(r.get("model"), r.get("device"), m)] = float(v)
    return out


def run(evaluation: str, metrics_out: str, report_out: str, search: str | None = None) -> dict[str, Any]:
    from salnas_core.serve import report
    from salnas_core.utils.io import atomic_write_json

    table = metrics_table(evaluation)
    Path(metrics_out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(metrics_out, table)
    Path(report_out).parent.mkdir(parents=True, exist_ok=True)
    page = report.run(evaluation, search, report_out, title="SalNAS evaluation")
    return {"metrics": len(table), "report": page["path"]}
