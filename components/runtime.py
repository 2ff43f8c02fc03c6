"""What a lightweight component runs: the step's CLI, in-process, with artifact paths.

Imported inside the generated component functions (they run in a fresh process: kfp.local's
SubprocessRunner, or the project image on a cluster), so it must stay importable without kfp.
"""
from __future__ import annotations

import logging
import os
import shlex
from typing import Any

log = logging.getLogger(__name__)


def _path(v: Any) -> str:
    return v.path if hasattr(v, "path") else os.fspath(v)


def step_argv(name: str, values: dict[str, Any]) -> list[str]:
    """The CLI argv (after `salnas`) for a step, from KFP artifacts/values or plain paths."""
    from salnas_core.steps.registry import get_step

    defn = get_step(name)
    resolved = dict(values)
    for a in (*defn.inputs, *defn.outputs):
        if a.name in resolved:
            v = resolved[a.name]
            resolved[a.name] = [_path(x) for x in v] if a.is_list else _path(v)
    return defn.argv(resolved)


def run_step(name: str, **values: Any) -> Any:
    """Run `salnas <step> ...` in this process; raise if it fails (so the task fails). Returns the
    step's `returned` output parameter (read back from the file the CLI wrote), else the argv."""
    import json
    import tempfile

    from salnas_core import cli

    from salnas_core.steps.registry import get_step

    defn = get_step(name)
    run_id = values.pop("kfp_run_id", None)  # components.factory.RUN_ID_INPUT
    if run_id and not str(run_id).startswith("{{"):  # an unresolved placeholder is no id
        os.environ["SALNAS_KFP_RUN_ID"] = str(run_id)  # MLflow runs nest under the Kubeflow run's parent
    ret = defn.returned
    if ret is not None and ret.name not in values:
        values[ret.name] = os.path.join(tempfile.mkdtemp(prefix="salnas-out-"), ret.name)
    argv = step_argv(name, values)
    for a in defn.outputs:  # KFP hands out paths whose parent may not exist yet
        os.makedirs(os.path.dirname(_path(values[a.name])) or ".", exist_ok=True)
    print("+ salnas " + shlex.join(argv), flush=True)
    rc = cli.main(argv)
    if rc:
        raise RuntimeError(f"salnas {defn.name} failed with exit status {rc}: salnas {shlex.join(argv)}")
    for a in defn.outputs:  # lineage shown in the KFP UI / kept by kfp.local
        art = values[a.name]
        if a.kind == "Metrics" and hasattr(art, "log_metric"):
            log_metrics_file(art)
        if hasattr(art, "metadata"):
            art.metadata["salnas_command"] = "salnas " + " ".join(argv[: len(defn.command)])
    if ret is not None:
        with open(values[ret.name], encoding="utf-8") as f:
            return json.load(f)
    return argv


def log_metrics_file(art: Any) -> dict[str, float]:
    """A KFP Metrics output: the step wrote {name: number} JSON at its path; each becomes a metric
    (what the Kubeflow UI shows and compares across runs). Non-numbers are skipped."""
    import json
    import math

    with open(_path(art), encoding="utf-8") as f:
        data = json.load(f)
    logged = {}
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            art.log_metric(k, float(v))
            logged[k] = float(v)
    return logged
