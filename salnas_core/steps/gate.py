"""`salnas gate`: the pipeline's champion gate. Picks the best evaluated variant over the per-budget
branches and compares it with the registry's champion by the one champion rule
(`salnas_core.tracking.mlflow_utils.beats_champion`, the rule `register` promotes by).
A pipeline step; `salnas pipeline gate` is the same command."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run(models: list[str], evaluations: list[str], out: str, model_name: str | None = None) -> dict[str, Any]:
    """Pick the best evaluated variant over the per-budget branches and compare its validation
    selection score (lower is better) with the registered champion's.

    `models[i]` is a distill output (holds <variant>/model.pt) and `evaluations[i]` the evaluate
    output for it (metrics.json). Writes OUT/<variant>/ (the model folder), OUT/metrics.json and
    OUT/gate.json, so `salnas register --models OUT --evaluate OUT` registers exactly this one.
    The gate never moves the alias: `register` does, by the same rule.
    """
    from salnas_core.steps.register import pick_best
    from salnas_core.tracking import mlflow_utils as mu
    from salnas_core.utils.io import atomic_dir, atomic_write_json, read_json
    from salnas_core.utils.models import variant_models

    if len(models) != len(evaluations) or not models:
        raise ValueError(f"gate: need one evaluation per model, got {len(models)} models and "
                         f"{len(evaluations)} evaluations")
    best: tuple[float, str, Path, dict, dict] | None = None
    seen = []
    for m, e in zip(models, evaluations):
        m, e = Path(m), Path(e)
        variants = sorted(variant_models(m))
        if not variants:
            raise FileNotFoundError(f"{m}: no distilled model (<variant>/model.pt)")
        metrics = read_json(e / "metrics.json")
        variant, row = pick_best(metrics, variants, str(e / "metrics.json"))
        score = float(row["score"])
        seen.append({"variant": variant, "score": score, "split": row.get("split")})
        if best is None or score < best[0]:
            best = (score, variant, m, row, metrics)
    assert best is not None
    score, variant, model_dir, row, metrics = best

    name = model_name or mu.DEFAULT_MODEL_NAME
    champ = mu.get_champion(name)
    champ_score = mu.version_score(name, champ.version) if champ is not None else None
    beats = mu.beats_champion(score, champ_score)
    decision = {"candidate": variant, "candidate_score": score, "split": row.get("split"),
                "champion_version": int(champ.version) if champ is not None else None,
                "champion_score": champ_score, "beats_champion": beats,
                "model_name": name, "variants": seen}
    with atomic_dir(out) as tmp:
        shutil.copytree(model_dir / variant, tmp / variant)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "gate.json", decision)
    log.info("gate: %s (score %.4f) %s the champion (%s)", variant, score,
             "beats" if beats else "does not beat",
             "none yet" if champ is None else f"v{champ.version}, {champ_score:.4f}")
    return decision


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, help="distill outputs, one per budget")
    parser.add_argument("--evaluations", nargs="+", required=True, help="evaluate outputs, same order")
    parser.add_argument("--out", required=True, help="candidate folder for `salnas register`")
    parser.add_argument("--model-name", default=None)
    parser.add_argument("--beats-out", default=None, help="file to write true/false into (a KFP output)")
    parser.add_argument("--score-out", default=None, help="file to write the candidate's score into")


def run_cli(args: argparse.Namespace) -> int:
    from salnas_core.utils.io import atomic_write_text
    from salnas_core.utils.logs import setup_logging

    setup_logging()
    try:
        d = run(args.models, args.evaluations, args.out, args.model_name)
    except (FileNotFoundError, ValueError) as e:
        print(f"salnas gate: {e}", file=sys.stderr)
        return 1
    if args.beats_out:
        atomic_write_text(args.beats_out, json.dumps(d["beats_champion"]))
    if args.score_out:
        atomic_write_text(args.score_out, json.dumps(d["candidate_score"]))
    print(json.dumps(d, indent=1))
    return 0
