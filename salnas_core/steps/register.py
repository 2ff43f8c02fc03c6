"""`salnas register`: register the best evaluated variant in MLflow; the champion gate moves the alias.

Reads the evaluate step's metrics (one row per model, with the selection score: lower is better),
picks the variant with the lowest validation score among the distilled models, registers its
model.pt (idempotent: same file, same version) with its architecture config, metrics, data version
(DVC hash of the raw snapshot + ingest manifest version) and git commit, then moves `champion` to it
only if it beats the current champion. Writes OUT/registered.json.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

def data_version(data: str | os.PathLike | None, repo: str | os.PathLike | None = None) -> str:
    """`dvc:<md5 of the raw snapshot (dvc.lock, stage snapshot)>` and `manifest:<ingest version>`,
    what is known."""
    import yaml

    from salnas_core.utils.io import read_json

    parts = []
    from salnas_core.utils.root import work_root

    lock = work_root(repo) / "dvc.lock"
    if lock.exists():
        snap = ((yaml.safe_load(lock.read_text()) or {}).get("stages") or {}).get("snapshot") or {}
        outs = snap.get("outs") or []
        if outs and outs[0].get("md5"):
            parts.append(f"dvc:{outs[0]['md5']}")
    if data:
        root = Path(data)
        mans = [root / "manifest.json"] if (root / "manifest.json").exists() else sorted(root.glob("*/manifest.json"))
        for man in mans:
            m = read_json(man)
            parts.append(f"manifest:{m.get('dataset', man.parent.name)}@{str(m.get('version', '?'))[:16]}")
    return ";".join(parts) or "unknown"


def _arch(model_path: Path) -> tuple[dict, dict]:
    from salnas_core.utils.io import load_torch_file

    blob = load_torch_file(model_path, "model file")
    if not isinstance(blob, dict) or "config" not in blob:
        raise UserError(f"{model_path}: not a save_model file (no 'config')")
    return dict(blob["config"]), dict(blob.get("meta") or {})


def run(evaluate: str | os.PathLike, models: str | os.PathLike, out: str | os.PathLike, *,
        data: str | os.PathLike | None = None, name: str | None = None, params_path: str | None = None,
        preset: str | None = None, overrides: dict | None = None,
        repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """Register the best variant and apply the champion gate; returns what registered.json holds."""
    from salnas_core import artifacts
    from salnas_core.serve import pyfunc_model
    from salnas_core.tracking import mlflow_utils as mu
    from salnas_core.utils.models import variant_models
    from salnas_core.utils.params import step_params

    params = step_params("register", preset, params_path, overrides)
    name = name or params.get("model_name") or mu.DEFAULT_MODEL_NAME
    models = Path(models)
    found = variant_models(models)
    variants = sorted(found)
    if not variants:
        raise FileNotFoundError(f"{models}: no distilled models (<variant>/model.pt)")
    metrics_file = Path(evaluate) / artifacts.EVALUATION
    held = artifacts.holdout_scores(models, variants)  # chooses the variant; validation only reports
    variant, row = artifacts.best_variant(artifacts.evaluation_rows(evaluate), variants, str(metrics_file), held)
    model_path = found[variant]
    config, meta = _arch(model_path)
    metrics = {k: float(v) for k, v in row.items()
               if k not in ("score", "n", "blur", "cross") and isinstance(v, (int, float))}
    score = float(row["score"])
    version = data_version(data, repo)
    cost = efficiency_of(evaluate, variant)
    entry = entry_tags(variant, row, cost, metrics)
    log.info("register: %s (chosen on %s; score %.4f on %s) from %s", variant,
             f"the holdout, {held[variant]:.4f}" if variant in held else row.get("split", "?"), score,
             row.get("split", "?"), model_path)
    with mu.start_run("register", params={"model_name": name, "variant": variant, "evaluate": str(evaluate)}) as r:
        if r is None:
            raise RuntimeError("register: tracking is off (SALNAS_TRACKING); the registry needs MLflow")
        reg = mu.register_model(model_path, python_model=pyfunc_model.__file__, model_config=pyfunc_model.MODEL_CONFIG,
                                name=name, score=score, metrics=metrics, data_version=version,
                                arch_config=config,
                                extra_tags=entry, description=entry_description(name, variant, score, row, cost,
                                                                                 metrics, version))
        score = reg.get("score", score)  # an already registered file keeps its recorded score
        gate = mu.promote_if_better(name, reg["version"])
        import mlflow

        if reg["created"]:  # the evaluation as one page, beside the registered version's run
            import tempfile

            from salnas_core.serve import report

            with tempfile.TemporaryDirectory(prefix="salnas-report-") as tmp:
                page = Path(tmp) / "report.html"
                report.run(evaluate, None, page, title=f"{name} version {reg['version']} ({variant})")
                mlflow.log_artifact(str(page))

        mlflow.set_tags({"salnas.registered_version": str(reg["version"]),
                         "salnas.gate": "promoted" if gate["promoted"] else "kept"})
    champion = mu.get_champion(name)
    summary = {
        "name": name, "version": reg["version"], "uri": reg["uri"], "variant": variant, "score": score,
        "alias": mu.CHAMPION if champion is not None and int(champion.version) == reg["version"] else None,
        "promoted": gate["promoted"], "reason": gate["reason"], "previous_champion": gate["previous"],
        "previous_score": gate["previous_score"], "created": reg["created"], "data_version": version,
        "source_sha256": reg["source_sha256"], "tracking_uri": mu.tracking_uri().split("@")[-1],
        "champion_uri": f"models:/{name}@{mu.CHAMPION}", "meta": meta, "note": reg.get("note"),
    }
    artifacts.write_registration(out, summary)
    log.info("register: %s version %s; %s", name, reg["version"], gate["reason"])
    return summary


def efficiency_of(evaluate: str | os.PathLike, variant: str) -> dict[str, Any]:
    """The variant's CPU row of evaluate's efficiency.json (GMACs, params, latency, the machine), if any."""
    from salnas_core.utils.io import read_json

    f = Path(evaluate) / "efficiency.json"
    if not f.is_file():
        return {}
    rows = [r for r in (read_json(f).get("rows") or []) if r.get("model") == variant]
    return next((r for r in rows if r.get("device") == "cpu"), rows[0] if rows else {})


def entry_tags(variant: str, row: dict[str, Any], cost: dict[str, Any], metrics: dict[str, float]) -> dict[str, str]:
    """The registry entry's tags a person reads in the MLflow UI: variant, protocol, costs, metrics."""
    from salnas_core import artifacts
    from salnas_core.tracking import mlflow_utils as mu

    tags = {"salnas.variant": variant, "salnas.dataset": str(row.get("dataset", "")),
            "salnas.split": str(row.get("split", "")), mu.TAG_PROTOCOL: artifacts.protocol(row)}
    for key, tag in (("gmacs", "salnas.gmacs"), ("mparams", "salnas.mparams"), ("latency_ms_b1", "salnas.latency_ms_b1"),
                     ("latency_ms_b1_onnx", "salnas.latency_ms_b1_onnx"), ("deployed_engine", "salnas.deployed_engine"),
                     ("latency_ms_b1_search", "salnas.latency_ms_search"),
                     ("latency_engine_search", "salnas.latency_engine_search"), ("device_name", "salnas.latency_machine")):
        if cost.get(key) is not None:
            tags[tag] = f"{cost[key]:.4g}" if isinstance(cost[key], float) else str(cost[key])
    for k in ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig"):
        if k in metrics:
            tags[f"salnas.val_{k}"] = f"{metrics[k]:.4f}"
    if os.environ.get("SALNAS_KFP_RUN_ID"):
        tags["salnas.kfp_run_id"] = os.environ["SALNAS_KFP_RUN_ID"]
    return tags


def entry_description(name: str, variant: str, score: float, row: dict[str, Any], cost: dict[str, Any],
                      metrics: dict[str, float], data_version: str) -> str:
    """A few lines of Markdown for the version's description in the registry."""
    from salnas_core import artifacts

    m = ", ".join(f"{k.upper().replace('_', '-')} {metrics[k]:.3f}" for k in ("cc", "kld", "nss", "sim", "auc_judd")
                  if k in metrics)
    lines = [f"**{name}: variant {variant}** (SalNAS saliency model; uint8 RGB images of any size in, maps out)",
             f"- held-out metrics ({artifacts.protocol(row)}): {m}; selection score {score:.4f} (lower is better)"]
    if cost:
        lines.append(f"- cost at {'x'.join(map(str, cost.get('input_size') or []))}: {cost.get('gmacs', 0):.3f} GMACs, "
                     f"{cost.get('mparams', 0):.2f} M params; batch-1 latency on "
                     f"{cost.get('device_name') or cost.get('device')}: {_ms(cost.get('latency_ms_b1'))} eager, "
                     f"{_ms(cost.get('latency_ms_b1_onnx'))} ONNX Runtime (the `{cost.get('deployed_engine', 'auto')}` "
                     f"form predict runs), {_ms(cost.get('latency_ms_b1_search'))} predicted by the search's table "
                     f"({cost.get('latency_engine_search', '-')})")
    lines.append(f"- data {data_version}")
    return "\n".join(lines)


def _ms(v: Any) -> str:
    return f"{v:.1f} ms" if isinstance(v, (int, float)) else "-"


def summarize(s: dict[str, Any]) -> str:
    state = "champion" if s["alias"] else "not champion"
    return (f"registered {s['name']} version {s['version']} ({s['variant']}, score {s['score']:.4f}): {state}; "
            f"{s['reason']}")
