"""`salnas report`: one self-contained HTML page of a pipeline's results.

Reads what evaluate and search wrote (runs/evaluate/metrics.json, efficiency.json;
runs/search/pareto.json, pareto.png, variants.json), optionally an ingested dataset and the
distilled variants to show sample images with predicted and human maps side by side. Every
picture is inlined as a base64 PNG, so the page can be mailed or attached to an MLflow run.
A missing input folder is an error; a missing file inside one becomes a visible note on the page.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score")
METRIC_LABELS = {"cc": "CC", "kld": "KLD", "nss": "NSS", "sim": "SIM", "auc_judd": "AUC-Judd",
                 "sauc": "sAUC", "ig": "IG", "score": "score"}
LOWER_IS_BETTER = {"kld", "score"}
EFFICIENCY_COLUMNS = (
    ("model", "model", None), ("device", "device", None), ("mparams", "params (M)", None),
    ("gmacs", "GMACs", None), ("size_mb_fp32", "MB fp32", None), ("size_mb_fp16", "MB fp16", None),
    ("latency_ms_b1", "latency b1 (ms)", "low"), ("throughput_ips_b32", "img/s b32", "high"),
    ("peak_mem_mb", "peak mem (MB)", "low"), ("energy_j_per_1000", "J / 1000 img", "low"),
    ("co2_g_per_1000", "gCO2e / 1000 img", "low"))


class ReportInputError(FileNotFoundError):
    """An input folder of the report is missing; the message says which and what writes it."""


# ----------------------------------------------------------------------------- inputs

def _read(path: Path, notes: list[str], what: str) -> Any:
    from salnas_core.utils.io import read_json

    if not path.exists():
        notes.append(f"{path} is missing ({what}).")
        log.warning("%s is missing (%s)", path, what)
        return None
    try:
        return read_json(path)
    except ValueError as e:
        notes.append(str(e))
        log.warning("%s", e)
        return None


def _evaluation_rows(ev: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Evaluate's metric rows; a missing or malformed file becomes a note in the report."""
    from salnas_core import artifacts
    from salnas_core.errors import UserError

    if not (ev / artifacts.EVALUATION).is_file():
        notes.append(f"{ev / artifacts.EVALUATION} is missing (per-dataset metrics, written by `salnas evaluate`).")
        return []
    try:
        return artifacts.evaluation_rows(ev)
    except UserError as e:
        notes.append(str(e))
        return []


def efficiency_rows(data: Any) -> list[dict[str, Any]]:
    if data is None:
        return []
    if isinstance(data, dict):
        for key in ("rows", "efficiency", "models"):
            if isinstance(data.get(key), list):
                return [r for r in data[key] if isinstance(r, dict)]
        return [{"model": k, **v} for k, v in data.items() if isinstance(v, dict)]
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def pareto_points(data: Any) -> dict[str, list[dict[str, Any]]]:
    """{cost key: front} from pareto.json (a list, or fronts keyed by cost, or under 'front')."""
    if data is None:
        return {}
    if isinstance(data, list):
        return {"front": [c for c in data if isinstance(c, dict)]}
    if isinstance(data, dict):
        out = {k: [c for c in v if isinstance(c, dict)] for k, v in data.items()
               if isinstance(v, list) and v and isinstance(v[0], dict)}
        for k, v in data.items():
            if isinstance(v, dict):
                out.update({f"{k}/{kk}": vv for kk, vv in pareto_points(v).items()})
        return out
    return {}


# ----------------------------------------------------------------------------- pictures

def png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_data_uri(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as img:
        return png_data_uri(np.asarray(img.convert("RGB")))


def heat(m: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """A map as a colour picture, stretched min..max (display only: saliency is relative)."""
    import matplotlib

    m = np.asarray(m, dtype=np.float64)
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    return (matplotlib.colormaps[cmap](m)[..., :3] * 255).round().astype(np.uint8)


def thumb(rgb: np.ndarray, width: int = 256) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb).resize((width, max(1, round(h * width / w))), Image.Resampling.BILINEAR)
    return np.asarray(img)


# ----------------------------------------------------------------------------- html pieces

def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return html.escape(str(v))


def _eff_num(v: Any) -> str:
    """Efficiency figures: three significant digits, thousands as integers."""
    if isinstance(v, (float, np.floating)) and not isinstance(v, bool) and not math.isnan(v):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:#.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return _num(v)


def _best(rows: Sequence[dict], key: str, lower: bool) -> float | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    if not vals:
        return None
    return min(vals) if lower else max(vals)


def metrics_html(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("dataset", "?"), r.get("split"), r.get("blur")), []).append(r)
    parts = []
    for (ds, split, blur), rs in groups.items():
        cols = [c for c in METRIC_COLUMNS if any(c in r for r in rs)]
        bits = [f"{split} split" if split else None, f"n = {rs[0]['n']}" if rs[0].get("n") else None,
                None if blur is None else f"blur {'on' if blur else 'off'}"]
        caption = f"{html.escape(str(ds))} <span class='dim'>({', '.join(b for b in bits if b)})</span>"
        best = {c: _best(rs, c, c in LOWER_IS_BETTER) for c in cols}
        head = "".join(f"<th>{METRIC_LABELS[c]} {'↓' if c in LOWER_IS_BETTER else '↑'}</th>" for c in cols)
        body = []
        for r in rs:
            model = html.escape(str(r.get("model", "?")))
            tags = []
            if r.get("cross"):
                tags.append(f"trained on {html.escape(str(r.get('trained_on')))}")
            if r.get("model") == "centre_bias":
                tags.append("baseline")
            tag = "".join(f" <span class='tag'>{t}</span>" for t in tags)
            cells = "".join(
                f"<td class='{'best' if best[c] is not None and r.get(c) == best[c] else ''}'>{_num(r.get(c))}</td>" for c in cols)
            body.append(f"<tr><td class='name'>{model}{tag}</td>{cells}</tr>")
        parts.append(f"<div class='scroll'><table class='metrics'><caption>{caption}</caption><thead><tr><th>model</th>"
                     f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    return "\n".join(parts)


def efficiency_html(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in EFFICIENCY_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    net_rows = [r for r in rows if r.get("model") != "centre_bias"]
    best = {k: _best(net_rows, k, d == "low") for k, _, d in cols if d}
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in cols)
    body = []
    for r in rows:
        cells = []
        for k, _, d in cols:
            cls = "best" if d and best.get(k) is not None and r.get(k) == best[k] else ""
            cells.append(f"<td class='{cls}{' name' if k == 'model' else ''}'>{_eff_num(r.get(k))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    notes = sorted({f"energy: {r['energy_method']}" for r in rows if r.get("energy_method")}
                   | {f"{r['device']}: {r['device_name']}" for r in rows if r.get("device_name")})
    size = next((r["input_size"] for r in rows if r.get("input_size")), None)
    foot = (f"<p class='dim'>Input {size[0]}×{size[1]} for every model. " if size else "<p class='dim'>") + \
        "; ".join(html.escape(n) for n in notes) + "</p>"
    return (f"<div class='scroll'><table class='efficiency'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
            f"</tbody></table></div>{foot}")


def pareto_table_html(fronts: dict[str, list[dict]], variants: dict[str, Any] | None) -> str:
    parts = []
    if variants:
        rows = []
        for name, v in variants.items():
            if not isinstance(v, dict):
                continue
            rows.append(f"<tr><td class='name'>{html.escape(name)}</td><td>{_num(v.get('score'))}</td>"
                        f"<td>{_num((v.get('macs') or 0) / 1e9 if v.get('macs') is not None else None)}</td>"
                        f"<td>{_num((v.get('params') or 0) / 1e6 if v.get('params') is not None else None)}</td>"
                        f"<td>{_num(v.get('latency_ms'))}</td></tr>")
        parts.append("<table class='variants'><caption>chosen variants</caption><thead><tr><th>variant</th>"
                     "<th>score ↓</th><th>GMACs</th><th>params (M)</th><th>latency (ms)</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    labels = {"front_macs": "MACs", "front_latency_ms": "latency", "macs": "MACs", "latency_ms": "latency"}
    for key, front in fronts.items():
        parts.append(f"<p class='dim'>Pareto front of score against {html.escape(labels.get(key, key))}: "
                     f"{len(front)} subnets, score "
                     f"{_num(min(c.get('score', float('nan')) for c in front))}–"
                     f"{_num(max(c.get('score', float('nan')) for c in front))}.</p>")
    return "\n".join(parts)


CSS = """
:root { --fg:#1d2330; --dim:#6b7280; --line:#e5e7eb; --accent:#b4233c; --bg:#f7f7f9; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
header { background: #1d2330; color: #fff; padding: 22px 40px; }
header h1 { margin: 0; font-size: 24px; font-weight: 600; }
header p { margin: 4px 0 0; color: #c9ced8; font-size: 13px; }
main { max-width: 1240px; margin: 0 auto; padding: 10px 40px 40px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 24px;
          margin: 22px 0; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
h2 { font-size: 18px; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0 18px; font-variant-numeric: tabular-nums; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding: 4px 0 6px; }
th, td { padding: 5px 12px; text-align: right; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; background: #f3f4f6; white-space: normal; vertical-align: bottom; }
table.efficiency th { max-width: 7.5em; }
td.name, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafb; }
td.best { font-weight: 700; color: var(--accent); }
.tag { font-size: 11px; background: #eef2ff; color: #3730a3; border-radius: 4px; padding: 1px 5px; margin-left: 4px; }
.dim { color: var(--dim); font-size: 13px; }
.note { background: #fff7e6; border: 1px solid #f5d48a; border-radius: 6px; padding: 8px 12px; margin: 6px 0; }
.scroll { overflow-x: auto; }
img.plot { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
.sample { display: flex; gap: 10px; flex-wrap: wrap; margin: 0 0 16px; }
figure { margin: 0; text-align: center; }
figure img { display: block; width: 220px; border-radius: 4px; border: 1px solid var(--line); }
figcaption { font-size: 12px; color: var(--dim); margin-top: 3px; }
"""


def _section(title: str, body: str, notes: Sequence[str] = ()) -> str:
    note_html = "".join(f"<div class='note'>{html.escape(n)}</div>" for n in notes)
    return f"<section><h2>{html.escape(title)}</h2>{note_html}{body}</section>"


# ----------------------------------------------------------------------------- samples

def discover_models(search_dir: Path | None) -> dict[str, Path]:
    """Distilled variants next to the search folder: <runs>/distill/<name>/model.pt."""
    if search_dir is None:
        return {}
    from salnas_core.utils.models import variant_models

    return variant_models(search_dir.parent / "distill")


def samples_html(data: Path, models: dict[str, Any], n: int, notes: list[str], device: str = "auto") -> str:
    from salnas_core.data.dataset import load_original_ground_truth
    from salnas_core.evaluate.tables import dataset_dirs, eval_split
    from salnas_core.serve.images import load_image
    from salnas_core.serve.predict import Predictor
    from salnas_core.utils.io import read_json

    predictors = {}
    for name, spec in models.items():
        try:
            predictors[name] = Predictor(spec, device=device)
        except (FileNotFoundError, ValueError) as e:
            notes.append(f"model {name}: {e}")
    if not predictors:
        notes.append("no models to predict with: give --models NAME=PATH or run `salnas distill` "
                      "(the report looks for <runs>/distill/*/model.pt).")
    parts = []
    for root in dataset_dirs(data):
        man = read_json(root / "manifest.json")
        split = eval_split(man)
        items = [it for it in man["items"] if it["split"] == split][:n]
        parts.append(f"<h3>{html.escape(str(man.get('dataset', root.name)))} <span class='dim'>({split} split)</span></h3>")
        for it in items:
            rgb = load_image(root / it["image"])
            _, density = load_original_ground_truth(root, it)
            density = np.asarray(density, dtype=np.float64).squeeze()
            figs = [("image", thumb(rgb)), ("human", thumb(heat(density)))]
            for name, pred in predictors.items():
                figs.append((name, thumb(heat(pred.predict_arrays([rgb])[0]))))
            parts.append("<div class='sample'>" + "".join(
                f"<figure><img alt='{html.escape(cap)} {html.escape(str(it['id']))}' src='{png_data_uri(img)}'>"
                f"<figcaption>{html.escape(cap)}</figcaption></figure>" for cap, img in figs) + "</div>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the command

def run(evaluate: str | os.PathLike | None, search: str | os.PathLike | None, out: str | os.PathLike,
        data: str | os.PathLike | None = None, models: dict[str, Any] | None = None, n_samples: int = 3,
        device: str = "auto", title: str = "SalNAS report") -> dict[str, Any]:
    """Write the report to `out`; returns {path, sections, notes}."""
    from salnas_core.utils.io import atomic_write_text

    ev = Path(evaluate) if evaluate else None
    se = Path(search) if search else None
    for p, step in ((ev, "salnas evaluate"), (se, "salnas search"), (Path(data) if data else None, "salnas ingest")):
        if p is not None and not p.is_dir():
            raise ReportInputError(f"{p}: folder not found (it is written by `{step}`)")
    if ev is None and se is None:
        raise UserError("nothing to report: give --evaluate and/or --search")

    sections, counts = [], {}
    if ev is not None:
        notes: list[str] = []
        rows = _evaluation_rows(ev, notes)
        counts["metric_rows"] = len(rows)
        sections.append(_section("Saliency metrics per dataset",
                                 metrics_html(rows) + "<p class='dim'>Best value per column in red; ↑ higher is better, "
                                 "↓ lower is better. Predictions resized to the original image size, MIT benchmark "
                                 "definitions.</p>" if rows else "", notes))
    if se is not None:
        notes = []
        fronts = pareto_points(_read(se / "pareto.json", notes, "the Pareto front, written by `salnas search`"))
        variants = _read(se / "variants.json", [], "")
        png = se / "pareto.png"
        img = ""
        if png.exists():
            img = f"<img class='plot' alt='Pareto plot' src='{file_data_uri(png)}'>"
        else:
            notes.append(f"{png} is missing (the Pareto plot, written by `salnas search`).")
        counts["pareto_points"] = sum(len(v) for v in fronts.values())
        sections.append(_section("Architecture search: Pareto front", img + pareto_table_html(fronts, variants), notes))
    if ev is not None:
        notes = []
        eff = efficiency_rows(_read(ev / "efficiency.json", notes, "the efficiency report, written by `salnas evaluate`"))
        counts["efficiency_rows"] = len(eff)
        sections.append(_section("Efficiency", efficiency_html(eff) if eff else "", notes))
    if data is not None:
        notes = []
        models = dict(models) if models else {k: str(v) for k, v in discover_models(se).items()}
        body = samples_html(Path(data), models, n_samples, notes, device=device)
        counts["sample_models"] = len(models)
        sections.append(_section("Samples: image, human density, predictions", body, notes))

    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sources = ", ".join(html.escape(str(p)) for p in (ev, se, data) if p)
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1><p>generated {stamp} from {sources}</p></header>"
            f"<main>{''.join(sections)}</main></body></html>\n")
    atomic_write_text(out, page)
    return {"path": str(out), "sections": len(sections), **counts}


def default_sample_data(evaluate: str | os.PathLike | None) -> str | None:
    """The dataset evaluate scored (its metrics.json lists them), else ./data/ingested; None if neither."""
    import json

    cands: list[str] = []
    if evaluate and (Path(evaluate) / "metrics.json").is_file():
        try:
            cands += list(json.loads((Path(evaluate) / "metrics.json").read_text()).get("datasets") or [])
        except (ValueError, AttributeError):
            pass
    cands.append("data/ingested")
    return next((c for c in cands if Path(c).is_dir()), None)


def _models_arg(values: Sequence[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        out[name if sep else Path(v).parent.name or v] = path if sep else v
    return out


def add_arguments(parser: Any) -> None:
    parser.add_argument("--evaluate", default="runs/evaluate", help="evaluate output folder (metrics.json, efficiency.json)")
    parser.add_argument("--search", default="runs/search", help="search output folder (pareto.json, pareto.png, variants.json)")
    parser.add_argument("--data", default=None, help="ingested dataset folder for sample images (default: the one "
                                                      "evaluate scored, from its metrics.json, else data/ingested)")
    parser.add_argument("--no-samples", dest="samples_on", action="store_false",
                        help="no sample images (metrics, Pareto front and efficiency only)")
    parser.add_argument("--models", nargs="*", default=None, metavar="NAME=MODEL",
                        help="models for the samples (default: <search>/../distill/*/model.pt)")
    parser.add_argument("--samples", type=int, default=3, help="sample images per dataset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="report.html")


def run_cli(args: Any) -> int:
    import sys

    data = args.data
    if data is None and args.samples_on:
        data = default_sample_data(args.evaluate)
    try:
        s = run(args.evaluate, args.search, args.out, data=data, models=_models_arg(args.models),
                n_samples=args.samples, device=args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"salnas report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {s['path']} ({s['sections']} sections)")
    return 0
