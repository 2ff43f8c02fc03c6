"""The files steps hand each other: where each lives in a step's folder, and one typed reader and
writer per file. Readers check the one shape the writer writes and name the file when it is not
that shape; nothing guesses among shapes.

| file | written by | read by |
|---|---|---|
| `<search>/variants.json` | search | distill, evaluate, variants, report |
| `<evaluate>/metrics.json` | evaluate | register, gate, report |
| `<distill>/<variant>/metrics.json` | distill | register, gate (the variant's holdout score) |
| `<register>/registered.json` | register | main, the gate of the next run |

The ingested dataset's `manifest.json` has its own home (salnas_core.data.dataset.load_manifest):
the data layer writes it. Lives below steps/ and serve/ because both read these files.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

VARIANTS = "variants.json"
EVALUATION = "metrics.json"
REGISTRATION = "registered.json"
# a metric row of the evaluation (evaluate.tables) always has these keys (and the metrics: cc, kld, ...)
ROW_KEYS = ("dataset", "model", "split", "blur", "cross", "score")


def _file(path: str | os.PathLike, name: str) -> Path:
    """`path` itself when it is the file, else `path/name`."""
    p = Path(path)
    return p / name if p.is_dir() or p.suffix != ".json" else p


# ----------------------------------------------------------------------------- variants.json

def read_variants(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{variant name: {config, macs, params, latency_ms, score, ...}} from a search folder or the file."""
    from salnas_core.utils.io import read_json

    f = _file(path, VARIANTS)
    table = read_json(f)
    if not isinstance(table, dict) or not table:
        raise UserError(f"{f}: expected a non-empty mapping of variant name -> {{config, ...}} (written by "
                        f"`salnas search`)")
    for name, v in table.items():
        if not isinstance(v, dict) or not isinstance(v.get("config"), dict):
            raise UserError(f"{f}: variant {name!r} has no 'config'")
    return table


def write_variants(folder: str | os.PathLike, table: dict[str, dict[str, Any]]) -> Path:
    from salnas_core.utils.io import atomic_write_json

    f = Path(folder) / VARIANTS
    atomic_write_json(f, table)
    return f


# ----------------------------------------------------------------------------- metrics.json (evaluate)

def read_evaluation(path: str | os.PathLike) -> dict[str, Any]:
    """Evaluate's summary: {"rows": [metric rows], "datasets", "models", "blur", ...}."""
    from salnas_core.utils.io import read_json

    f = _file(path, EVALUATION)
    data = read_json(f)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{f}: not an evaluation (no 'rows' list; written by `salnas evaluate`)")
    for i, r in enumerate(rows):
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise UserError(f"{f}: row {i} lacks {', '.join(missing)}")
    return data


def evaluation_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    return read_evaluation(path)["rows"]


def write_evaluation(folder: str | os.PathLike, summary: dict[str, Any]) -> Path:
    from salnas_core.utils.io import atomic_write_json

    f = Path(folder) / EVALUATION
    atomic_write_json(f, summary)
    return f


SPLIT_PREFERENCE = ("val", "test")


def best_variant(rows: list[dict[str, Any]], variants: list[str], source: str,
                 selection: dict[str, float] | None = None) -> tuple[str, dict[str, Any]]:
    """The variant to register and its evaluation row (own dataset's held-out split, unblurred).

    With `selection` (variant -> holdout score, `holdout_scores`) covering every evaluated variant,
    the lowest holdout score chooses, so the validation split only reports; without it (runs made
    before the holdout), the lowest validation score does."""
    rows = [r for r in rows if r["model"] in variants and not r["cross"]
            and isinstance(r["score"], (int, float)) and math.isfinite(r["score"])]
    if not rows:
        raise UserError(f"{source}: no finite selection score for any of the variants {variants}")
    splits = {r["split"] for r in rows}
    split = next((s for s in SPLIT_PREFERENCE if s in splits), None)
    if split is not None:
        rows = [r for r in rows if r["split"] == split]
    rows = [r for r in rows if not r["blur"]] or rows
    if selection and all(r["model"] in selection for r in rows):
        best = min(rows, key=lambda r: float(selection[r["model"]]))
    else:
        best = min(rows, key=lambda r: float(r["score"]))
    return str(best["model"]), best


DISTILL_SUMMARY = "metrics.json"


def holdout_scores(models: str | os.PathLike, variants: list[str]) -> dict[str, float]:
    """variant -> its final holdout selection score (post-processing included) from distill's
    `<models>/<variant>/metrics.json`; variants without one (older runs) are left out."""
    from salnas_core.utils.io import read_json

    out: dict[str, float] = {}
    for v in variants:
        f = Path(models) / v / DISTILL_SUMMARY
        if not f.is_file():
            continue
        d = read_json(f)
        post = d.get("postprocess") if isinstance(d, dict) else None
        score = (post or {}).get("holdout_score_with")
        if score is None and isinstance(d, dict) and d.get("score_split") == "holdout":
            score = (d.get("with") or {}).get("score")
        if isinstance(score, (int, float)) and math.isfinite(score):
            out[v] = float(score)
    return out


def protocol(row: dict[str, Any]) -> str:
    """How a row's score was measured, as one comparable string: dataset, held-out split, number of
    images, evaluation size (evaluate scores at each image's original size, MIT benchmark practice)
    and blur. Scores under different protocols are not comparable (a tiny smoke run's 4 images vs the
    main job's 100), so the champion rule compares only within one."""
    n = row.get("n")
    size = "x".join(str(v) for v in row["eval_size"]) if row.get("eval_size") else "original-size"
    # the default (mit) protocol keeps the strings registered before protocols had names
    name = "" if row.get("protocol", "mit") == "mit" else f"protocol={row['protocol']}/"
    return (f"{name}{row['dataset']}/{row['split']}/n={n if n is not None else '?'}/{size}/"
            f"blur={'on' if row['blur'] else 'off'}")


# ----------------------------------------------------------------------------- registered.json

def read_registration(path: str | os.PathLike) -> dict[str, Any]:
    from salnas_core.utils.io import read_json

    f = _file(path, REGISTRATION)
    reg = read_json(f)
    if not isinstance(reg, dict) or not {"name", "version", "score"} <= set(reg):
        raise UserError(f"{f}: not a registration (written by `salnas register`)")
    return reg


def write_registration(folder: str | os.PathLike, summary: dict[str, Any]) -> Path:
    from salnas_core.utils.io import atomic_write_json

    f = Path(folder) / REGISTRATION
    atomic_write_json(f, summary)
    return f
