"""`salnas gate`: the pipeline's champion gate. Picks the best evaluated variant over the per-budget
branches and compares it with the registry's champion by the one champion rule
(`salnas_core.tracking.mlflow_utils.beats_champion`, the rule `register` promotes by).
A pipeline step (the Kubeflow pipeline's; the DVC stages register directly)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)


def run(models: list[str], evaluations: list[str], out: str, model_name: str | None = None, *,
        params_path: str | None = None, preset: str | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Pick the best evaluated variant over the per-budget branches and compare its validation
    selection score (lower is better) with the registered champion's.

    `models[i]` is a distill output (holds <variant>/model.pt) and `evaluations[i]` the evaluate
    output for it (metrics.json). Writes OUT/<variant>/ (the model folder), OUT/metrics.json and
    OUT/gate.json, so `salnas register --models OUT --evaluate OUT` registers exactly this one.
    The gate never moves the alias: `register` does, by the same rule.
    """
    from salnas_core import artifacts
    from salnas_core.tracking import mlflow_utils as mu
    from salnas_core.utils.io import atomic_dir, atomic_write_json
    from salnas_core.utils.models import variant_models
    from salnas_core.utils.params import step_params

    model_name = model_name or step_params("register", preset, params_path, overrides).get("model_name")
    if len(models) != len(evaluations) or not models:
        raise UserError(f"gate: need one evaluation per model, got {len(models)} models and "
                         f"{len(evaluations)} evaluations")
    best: tuple[float, str, Path, dict, dict] | None = None
    seen = []
    for m, e in zip(models, evaluations):
        m, e = Path(m), Path(e)
        variants = sorted(variant_models(m))
        if not variants:
            raise FileNotFoundError(f"{m}: no distilled model (<variant>/model.pt)")
        metrics = artifacts.read_evaluation(e)
        held = artifacts.holdout_scores(m, variants)  # chooses; the validation score only reports
        variant, row = artifacts.best_variant(metrics["rows"], variants, str(e / artifacts.EVALUATION), held)
        score = float(row["score"])
        seen.append({"variant": variant, "score": score, "holdout_score": held.get(variant), "split": row.get("split"),
                     "protocol": artifacts.protocol(row)})
        key = held.get(variant, score)
        if best is None or key < best[0]:
            best = (key, variant, m, row, metrics)
    assert best is not None
    _, variant, model_dir, row, metrics = best
    score = float(row["score"])

    name = model_name or mu.DEFAULT_MODEL_NAME
    champ = mu.get_champion(name)
    champ_score = mu.version_score(name, champ.version) if champ is not None else None
    champ_protocol = mu.version_protocol(name, champ.version) if champ is not None else None
    beats = mu.beats_champion(score, champ_score, artifacts.protocol(row), champ_protocol)
    decision = {"candidate": variant, "candidate_score": score, "split": row.get("split"),
                "champion_version": int(champ.version) if champ is not None else None,
                "champion_score": champ_score, "beats_champion": beats, "protocol": artifacts.protocol(row),
                "champion_protocol": champ_protocol,
                "model_name": name, "variants": seen}
    with atomic_dir(out) as tmp:
        shutil.copytree(model_dir / variant, tmp / variant)
        artifacts.write_evaluation(tmp, metrics)
        atomic_write_json(tmp / "gate.json", decision)
    log.info("gate: %s (score %.4f) %s the champion (%s)", variant, score,
             "beats" if beats else "does not beat",
             "none yet" if champ is None else f"v{champ.version}, {champ_score:.4f}")
    return decision


def summarize(decision: dict[str, Any]) -> str:
    return json.dumps(decision, indent=1)
