"""`salnas register`: register the best evaluated variant in MLflow; the champion gate moves the alias.

Reads the evaluate step's metrics (one row per model, with the selection score: lower is better),
picks the variant with the lowest validation score among the distilled models, registers its
model.pt (idempotent: same file, same version) with its architecture config, metrics, data version
(DVC hash of the raw snapshot + ingest manifest version) and git commit, then moves `champion` to it
only if it beats the current champion. Writes OUT/registered.json.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPLIT_PREFERENCE = ("val", "test")


def _rows(obj: Any) -> list[dict[str, Any]]:
    """Metric rows from evaluate's metrics.json: a list of rows, {"rows": [...]}, or {model: metrics}."""
    if isinstance(obj, list):
        return [r for r in obj if isinstance(r, dict)]
    if isinstance(obj, dict):
        for key in ("rows", "table", "results"):
            if isinstance(obj.get(key), list):
                return _rows(obj[key])
        out = []
        for name, m in obj.items():
            if isinstance(m, dict) and "score" in m:
                out.append({"model": name, **m})
            elif isinstance(m, dict):  # {dataset: {model: metrics}}
                out.extend({"dataset": name, **r} for r in _rows(m) if "model" in r)
        return out
    return []


def pick_best(metrics: Any, variants: list[str], source: str = "metrics.json") -> tuple[str, dict[str, Any]]:
    """The variant with the lowest selection score on the validation split (unblurred, own dataset)."""
    rows = [r for r in _rows(metrics) if r.get("model") in variants and not r.get("cross")
            and isinstance(r.get("score"), (int, float)) and math.isfinite(r["score"])]
    if not rows:
        raise ValueError(f"{source}: no finite selection score for any of the distilled variants {variants}")
    splits = {r.get("split") for r in rows}
    split = next((s for s in SPLIT_PREFERENCE if s in splits), None)
    if split is not None:
        rows = [r for r in rows if r.get("split") == split]
    unblurred = [r for r in rows if not r.get("blur")]
    rows = unblurred or rows
    best = min(rows, key=lambda r: float(r["score"]))
    return str(best["model"]), best


def data_version(data: str | os.PathLike | None, repo: str | os.PathLike = ".") -> str:
    """`dvc:<md5 of the raw snapshot in data.dvc>` and `manifest:<ingest version>`, what is known."""
    import yaml

    from salnas_core.utils.io import read_json

    parts = []
    dvc_file = Path(repo) / "data.dvc"
    if dvc_file.exists():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
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
        raise ValueError(f"{model_path}: not a save_model file (no 'config')")
    return dict(blob["config"]), dict(blob.get("meta") or {})


def run(evaluate: str | os.PathLike, models: str | os.PathLike, out: str | os.PathLike, *,
        data: str | os.PathLike | None = None, name: str | None = None, params_path: str | None = None,
        repo: str | os.PathLike = ".") -> dict[str, Any]:
    """Register the best variant and apply the champion gate; returns what registered.json holds."""
    from salnas_core.tracking import mlflow_utils as mu
    from salnas_core.utils.io import atomic_write_json, read_json
    from salnas_core.utils.params import step_params

    params = step_params("register", path=params_path)
    name = name or params.get("model_name") or mu.DEFAULT_MODEL_NAME
    models = Path(models)
    variants = sorted(p.parent.name for p in models.glob("*/model.pt"))
    if not variants:
        raise FileNotFoundError(f"{models}: no distilled models (<variant>/model.pt)")
    metrics_file = Path(evaluate) / "metrics.json"
    variant, row = pick_best(read_json(metrics_file), variants, str(metrics_file))
    model_path = models / variant / "model.pt"
    config, meta = _arch(model_path)
    metrics = {k: float(v) for k, v in row.items()
               if k not in ("score", "n", "blur", "cross") and isinstance(v, (int, float))}
    score = float(row["score"])
    version = data_version(data, repo)
    log.info("register: %s (score %.4f on %s) from %s", variant, score, row.get("split", "?"), model_path)
    with mu.start_run("register", params={"model_name": name, "variant": variant, "evaluate": str(evaluate)}) as r:
        if r is None:
            raise RuntimeError("register: tracking is off (SALNAS_TRACKING); the registry needs MLflow")
        reg = mu.register_model(model_path, name=name, score=score, metrics=metrics, data_version=version,
                                arch_config=config,
                                extra_tags={"salnas.variant": variant, "salnas.dataset": str(row.get("dataset", "")),
                                            "salnas.split": str(row.get("split", ""))})
        score = reg.get("score", score)  # an already registered file keeps its recorded score
        gate = mu.promote_if_better(name, reg["version"])
        import mlflow

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
    atomic_write_json(Path(out) / "registered.json", summary)
    log.info("register: %s version %s; %s", name, reg["version"], gate["reason"])
    return summary


def add_arguments(parser) -> None:
    parser.add_argument("--evaluate", default="runs/evaluate", help="evaluate step output (metrics.json)")
    parser.add_argument("--models", default="runs/distill", help="distilled models: <variant>/model.pt")
    parser.add_argument("--out", default="runs/register", help="writes registered.json here")
    parser.add_argument("--data", default=None, help="ingested dataset (its manifest version is recorded)")
    parser.add_argument("--name", default=None, help="registered model name (default: params register.model_name)")
    parser.add_argument("--params", default=None, help="params.yaml to read (default: the repository's)")


def run_cli(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = run(args.evaluate, args.models, args.out, data=args.data, name=args.name, params_path=args.params)
    state = "champion" if s["alias"] else "not champion"
    print(f"registered {s['name']} version {s['version']} ({s['variant']}, score {s['score']:.4f}): {state}; "
          f"{s['reason']}")
    return 0
