"""`salnas evaluate`: metric tables over datasets and variants, and the efficiency report.

Models: every DISTILL_DIR/<variant>/model.pt (distilled) and extracted.pt (the same subnet before
distillation, BN recalibrated), so each variant is reported with and without the step; XL is the
max subnet, FIXED the non-searched network of similar MACs trained the same way. Baseline: the
centre-bias Gaussian. Each --data dataset is scored on its held-out split at the original image
size; a model scored on a dataset it was not trained on is marked cross-dataset, and (params
`evaluate.adapt_postprocess`) scored again with its post-processing refitted on that dataset's
training split. Writes
EVAL_DIR/{metrics.json, metrics.md, efficiency.json, efficiency.md}.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def find_models(models_dir: Path, variant: str | None = None, extracted: bool = True) -> dict[str, dict[str, Any]]:
    """name -> {"path", "variant", "distilled"} for DISTILL_DIR/<variant>/{model,extracted}.pt."""
    from salnas_core.utils.models import MODEL_FILE, variant_models

    if (models_dir / MODEL_FILE).is_file():  # a single variant folder
        dirs = [models_dir]
    else:
        dirs = [p.parent for p in variant_models(models_dir).values()]
    if variant:
        dirs = [d for d in dirs if d.name == variant]
    if not dirs:
        raise FileNotFoundError(f"{models_dir}: no <variant>/model.pt"
                                + (f" for variant {variant!r}" if variant else "") + " (run `salnas distill`)")
    out: dict[str, dict[str, Any]] = {}
    for d in dirs:
        out[d.name] = {"path": d / MODEL_FILE, "variant": d.name, "distilled": True}
        if extracted and (d / "extracted.pt").is_file():
            out[f"{d.name} (extracted)"] = {"path": d / "extracted.pt", "variant": d.name, "distilled": False}
    return out


METRIC_KEYS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score")


def dvc_scores(rows: list[dict[str, Any]], eff_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{dataset: {model: {metric: number}}} for `dvc metrics show/diff` (one number per cell),
    with each model's GMACs and CPU latency at batch 1 from the efficiency report."""
    def key(name: str, blur: bool) -> str:
        k = name.replace(" (extracted)", "_extracted").replace(" ", "_").replace("(", "").replace(")", "")
        return k + ("_blur" if blur else "")

    cost = {}
    for e in eff_rows:
        if e.get("device") in ("cpu", "any"):
            cost[e["model"]] = {k: e[k] for k in ("gmacs", "latency_ms_b1", "latency_ms_b1_onnx")
                                if isinstance(e.get(k), (int, float))}
    out: dict[str, Any] = {}
    for r in rows:
        cell = {k: float(r[k]) for k in METRIC_KEYS if isinstance(r.get(k), (int, float))}
        cell.update(cost.get(r["model"], {}) or cost.get(str(r["model"]).split(" ")[0], {}))
        out.setdefault(str(r["dataset"]), {})[key(str(r["model"]), bool(r.get("blur")))] = cell
    return out


def run(models: str | Path, data: list[str | Path], out: str | Path, search: str | Path | None = None,
        variant: str | None = None, preset: str | None = None, overrides: dict | None = None,
        params_path: str | Path | None = None, device: str = "auto", progress: bool = True,
        efficiency: bool = True, track: bool = True) -> dict[str, Any]:
    import torch

    from salnas_core.evaluate.efficiency import (center_bias_row, count_params_macs, devices_present,
                                                 efficiency_markdown, efficiency_row)
    from salnas_core.evaluate.tables import dataset_dirs, evaluate_dataset, markdown_table
    from salnas_core.supernet import load_model
    from salnas_core.utils.io import atomic_write_json, atomic_write_text
    from salnas_core.utils.params import step_params

    from ._nas_common import tracking

    t0 = time.perf_counter()
    from salnas_core.serve.predict import pick_device

    device = str(pick_device(device))  # auto: cuda when this machine has it (a GPU node), else cpu
    p = step_params("evaluate", preset, params_path, overrides)
    out = Path(out)
    found = find_models(Path(models), variant)
    loaded: dict[str, tuple[Any, str, Any]] = {}
    trained_on: dict[str, str] = {}
    for name, info in found.items():
        m = load_model(info["path"])
        meta = getattr(m, "meta", {}) or {}
        loaded[name] = (m, meta.get("normalization") or m.space.normalization, meta.get("input_size"))
        trained_on[name] = meta.get("dataset") or "?"
    roots = [r for d in data for r in dataset_dirs(d)]
    blur = p.get("blur", [False])
    blur = [bool(b) for b in (blur if isinstance(blur, list) else [blur])]
    from salnas_core import artifacts

    search_info = artifacts.read_variants(search) if search else None
    with tracking("evaluate" + (f"-{variant}" if variant else ""), {**p, "models": list(found),
                                                                    "data": [str(r) for r in roots]},
                  enabled=track) as (mlog, art):
        rows: list[dict[str, Any]] = []
        adapt_images = int(p.get("adapt_postprocess") or 0)
        adapt = [k for k, v in found.items() if v["distilled"]] if adapt_images > 0 else []
        for root in roots:
            rows += evaluate_dataset(loaded, root, blur_options=blur, batch_size=int(p["batch_size"]), device=device,
                                     limit=p.get("limit"), n_other=int(p["n_other"]), seed=int(p["seed"]),
                                     trained_on=trained_on, adapt=adapt, adapt_images=adapt_images,
                                     progress=progress)
        for r in rows:
            v = found.get(r.get("adapted_from") or r["model"], {})
            r["variant"] = v.get("variant")
            r["distilled"] = v.get("distilled")
        md = ["# Evaluation", "", "Metrics at the original image size; ↑ higher is better, ↓ lower is better; "
              "`score` = (1-CC) + KLD + (1-sigmoid(NSS)) + (1-SIM) + (1-AUC-Judd). `(extracted)`: the subnet "
              "before distillation (BN recalibrated). sAUC negatives: fixations of "
              f"{p['n_other']} other images; IG baseline: the centre-bias map. Blur: 11x11 Gaussian, sigma 10.5. "
              "`(pp fitted on <dataset> train)`: a model scored on a dataset it was not trained on, with its blur and centre "
              "prior refitted on that dataset's training split (the benchmark's practice; the network untouched), "
              "as the classical baselines' centre bias is.", "",
              markdown_table(rows)]
        if search_info:
            md += ["## Search", "", "| variant | GMACs | Mparams | latency (ms, search table) | search score |",
                   "|---|---|---|---|---|"]
            for k, v in search_info.items():
                twin = f" (same subnet as {v['same_as']})" if v.get("same_as") else ""
                md.append(f"| {k}{twin} | {v['macs'] / 1e9:.3f} | {v['params'] / 1e6:.2f} | {v['latency_ms']:.1f} "
                          f"| {v['score']:.3f} |")
        out.mkdir(parents=True, exist_ok=True)
        eff_rows: list[dict[str, Any]] = []
        if efficiency:
            e = p["efficiency"]
            size = tuple(p["input_size"])
            devs = devices_present() if e.get("devices", "auto") == "auto" else list(e["devices"])
            for name, info in found.items():
                if not info["distilled"]:
                    continue  # same architecture as model.pt: same costs
                model = loaded[name][0]
                pm = count_params_macs(model, size)
                for dev in devs:
                    log.info("efficiency: %s on %s", name, dev)
                    eff_rows.append(efficiency_row(name, model, info["path"], size, dev,
                                                   int(e["batch_throughput"]), int(e["warmup"]), int(e["repeats"]),
                                                   float(e["cpu_watts_per_core"]), e.get("gpu_watts"),
                                                   float(e["grid_gco2_per_kwh"]), params_macs=pm))
                    searched = (search_info or {}).get(info.get("variant") or "")
                    if searched and "latency_ms" in searched and dev == "cpu":  # the search's prediction beside it
                        eff_rows[-1].update(latency_ms_b1_search=float(searched["latency_ms"]),
                                            latency_engine_search=searched.get("latency_engine", "eager"))
            eff_rows.append(center_bias_row(size))
            atomic_write_json(out / "efficiency.json", {"input_size": list(size), "rows": eff_rows})
            atomic_write_text(out / "efficiency.md", "# Efficiency\n\n" + efficiency_markdown(eff_rows))
        summary = {"rows": rows, "datasets": [str(r) for r in roots], "models": {k: str(v["path"]) for k, v in found.items()},
                   "blur": blur, "search": search_info, "preset": p.get("preset"), "torch": torch.__version__,
                   "seconds": time.perf_counter() - t0}
        atomic_write_text(out / "metrics.md", "\n".join(md) + "\n")
        artifacts.write_evaluation(out, summary)
        atomic_write_json(out / "scores.json", dvc_scores(rows, eff_rows if efficiency else []))
        for r in rows:
            tag = f"{r['dataset']}/{r['model'].replace(' ', '_').replace('(', '').replace(')', '')}{'/blur' if r['blur'] else ''}"
            mlog({f"{tag}/{k}": r[k] for k in ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score")}, None)
        for f in ("metrics.json", "metrics.md", "efficiency.json", "efficiency.md"):
            art(out / f)
    return {**summary, "out": str(out), "efficiency": efficiency}


def summarize(s: dict[str, Any]) -> str:
    out = Path(s["out"])
    text = (out / "metrics.md").read_text()
    if (out / "efficiency.md").exists() and s.get("efficiency", True):
        text += "\n" + (out / "efficiency.md").read_text()
    return text
