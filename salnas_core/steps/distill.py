"""`salnas distill`: fine-tune each chosen subnet as a static network with Self-KD.

For each variant of SEARCH_DIR/variants.json (or the one named by --variant, so a pipeline can
distill variants in parallel): extract the subnet from the supernet with its weights, recalibrate
its BN statistics on training images (that network, saved as `extracted.pt`, is the "without
distillation" point), fine-tune it with `salnas_core.train.distill` (teacher `distill.teacher`:
`paper`, the supernet training's Self-KD rule, or `top_k`, the project's variant) on the training
split minus its holdout slice, choose the checkpoint on the holdout slice (`ingest.holdout`; the
validation split is never read here), and with `distill.postprocess` fit the blur + centre prior
(nn.postprocess) on the same holdout slice and save it inside model.pt. Writes
DISTILL_DIR/<variant>/{model.pt, extracted.pt, metrics.json, plots/, checkpoints/last.pt};
metrics.json reports the holdout metrics without and with the step, and the fitted post-processing
with its holdout score with and without. `--resume` continues a killed run from its checkpoint; a
finished variant is skipped unless --force.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)


def _plots(history: list[dict[str, Any]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from salnas_core.utils.io import atomic_path, atomic_write_text

    keys = ["epoch", "score", "cc", "kld", "nss", "sim", "auc_judd", "train_loss"]
    lines = [",".join(keys)] + [",".join("" if h.get(k) is None else f"{h[k]}" for k in keys) for h in history]
    atomic_write_text(out / "distill.csv", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([h["epoch"] for h in history], [h["score"] for h in history], "o-", label="holdout selection score")
    tl = [(h["epoch"], h["train_loss"]) for h in history if h.get("train_loss") is not None]
    if tl:
        ax.plot(*zip(*tl), "s--", label="train loss")
    ax.set_xlabel("epoch (0 = extracted subnet, BN recalibrated)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "distill.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def distill_variant(name: str, variant: dict[str, Any], supernet_path: Path, root: Path, out: Path,
                    p: dict[str, Any], resume: bool, force: bool, device: str, progress: bool,
                    mlog: Any, sig: str) -> dict[str, Any]:
    import torch

    from salnas_core.data.dataset import load_manifest, make_loader
    from salnas_core.supernet import count_macs, count_params, recalibrate_bn, save_model
    from salnas_core.train.checkpoint import load_supernet
    from salnas_core.train.distill import DistillConfig, distill, teacher_label
    from salnas_core.utils.io import atomic_write_json, read_json

    vdir = out / name
    if not force and (vdir / "metrics.json").exists() and (vdir / "model.pt").exists():
        done = read_json(vdir / "metrics.json")
        if done.get("signature") == sig:
            log.info("%s: already distilled for these params", vdir)
            return done
    t0 = time.perf_counter()
    manifest = load_manifest(root)
    net = load_supernet(supernet_path)
    norm = net.space.normalization
    size = tuple(p["input_size"]) if p.get("input_size") else tuple(manifest["working_size"])
    seed = int(p["seed"])
    torch.manual_seed(seed)
    model = net.build_from_config(variant["config"], preserve_weight=True).to(device)
    del net
    calib = make_loader(root, "train", int(p["batch_size"]), norm, shuffle=False, limit=int(p["bn_images"]), size=size)
    train = make_loader(root, "train", int(p["batch_size"]), norm, augment=bool(p["augment"]), shuffle=True,
                        limit=p.get("train_limit"), size=size, seed=seed, drop_last=True)
    # checkpoint choice, teacher updates and the post-processing fit: the holdout slice, never val
    sel = make_loader(root, "holdout", int(p["holdout_batch_size"]), norm, shuffle=False,
                      limit=p.get("holdout_limit"), size=size)
    recalibrate_bn(model, calib, len(calib))
    model.eval()
    meta = {"variant": name, "dataset": manifest.get("dataset"), "data": str(root),
            "data_version": manifest.get("version"), "input_size": list(size), "normalization": norm,
            "supernet": str(supernet_path)}
    vdir.mkdir(parents=True, exist_ok=True)
    extracted = copy.deepcopy(model)  # the "without distillation" point; distill fine-tunes `model` in place
    try:
        cfg = DistillConfig(**{k: p[k] for k in DistillConfig.__dataclass_fields__ if k in p})
    except ValueError as e:
        raise UserError(f"params distill: {e}") from e
    label = teacher_label(cfg)
    log.info("%s: distilling, teacher %s", name, label)

    def vlog(metrics: dict[str, float], step: int | None = None) -> None:
        mlog({f"{name}/{k}": v for k, v in metrics.items()}, step)

    res = distill(model, train, sel, cfg, vdir / "checkpoints", device=device, log=vlog, resume=resume,
                  progress=progress)
    model = res["model"]
    macs, params = count_macs(model, (288, 384)), count_params(model)
    if res["chosen"] == "epoch 0":  # the extracted subnet itself: fine-tuning did not help here
        log.info("%s: distill skipped: no fine-tuning epoch beat the extracted subnet on the holdout "
                 "(score %.4f); model.pt is the extracted subnet", name, res["initial"]["score"])
    post = fit_variant_postprocess(model, root, sel, device) if p.get("postprocess") else None
    # the same post-processing on both: evaluate's extracted row then measures distillation only
    extracted.set_postprocess(model.postprocess.as_dict() if model.postprocess is not None else None)
    save_model(vdir / "extracted.pt", extracted, {**meta, "distilled": False})
    save_model(vdir / "model.pt", model, {**meta, "distilled": True, "self_kd": cfg.self_kd, "teacher": label,
                                          "selection_split": "holdout", "holdout_score": res["final"]["score"],
                                          "chosen": res["chosen"]})
    _plots(res["history"], vdir / "plots", f"{name}: Self-KD {'on, teacher ' + cfg.teacher if cfg.self_kd else 'off'}")
    summary = {"signature": sig, "variant": name, "config": variant["config"], "self_kd": cfg.self_kd,
               "teacher": cfg.teacher if cfg.self_kd else None, "teacher_label": label, "score_split": "holdout",
               "without": res["initial"], "with": res["final"], "chosen": res["chosen"],
               "improvement": res["initial"]["score"] - res["final"]["score"],
               "teacher_epochs": res["teacher_epochs"], "soup": res["soup"], "history": res["history"],
               "postprocess": post,
               "params": params, "macs": macs, "input_size": list(size), "distill": cfg.__dict__,
               "train_images": len(train.dataset), "holdout_images": len(sel.dataset),
               "seconds": time.perf_counter() - t0}
    atomic_write_json(vdir / "metrics.json", summary)  # last: marks the variant complete
    mlog({f"{name}/score_without": res["initial"]["score"], f"{name}/score_with": res["final"]["score"]}, None)
    return summary


def fit_variant_postprocess(model: Any, root: Path, sel: Any, device: str) -> dict[str, Any]:
    """Fit the blur + centre prior (evaluate.postprocess) on the holdout slice and attach it to
    `model`; the centre prior's spread is the training split's fixations'. Returns what
    metrics.json records: the fitted values and the holdout score with and without."""
    from salnas_core.evaluate.baselines import CenterBias
    from salnas_core.evaluate.postprocess import fit_postprocess

    centre = CenterBias.fit_dataset(root, "train")
    fit = fit_postprocess(model, sel, (centre.sigma_y, centre.sigma_x), device=device)
    fitted = {k: fit[k] for k in ("blur_px", "centre_weight", "centre_sigma", "centre_power")}
    model.set_postprocess(fitted)
    log.info("postprocess on %d holdout images: %s, score %.4f (without %.4f)", fit["n_images"], fitted,
             fit["score"], fit["score_without"])
    return {**fitted, "fitted_on": "holdout", "n_images": fit["n_images"],
            "holdout_score_with": fit["score"], "holdout_score_without": fit["score_without"]}


def copy_twin(twin: str, name: str, out: Path, twin_summary: dict[str, Any]) -> dict[str, Any]:
    """Variant `name` has the same subnet and settings as `twin`: the same distillation would
    repeat; copy twin's folder with the models' meta and metrics.json renamed (one folder swap)."""
    from salnas_core.supernet import load_model, save_model
    from salnas_core.utils.io import atomic_dir, atomic_write_json

    with atomic_dir(out / name) as tmp:
        shutil.copytree(out / twin, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
        for f in ("extracted.pt", "model.pt"):
            m = load_model(tmp / f)
            save_model(tmp / f, m, {**m.meta, "variant": name, "same_as": twin})
        summary = {**twin_summary, "variant": name, "same_as": twin, "seconds": 0.0}
        atomic_write_json(tmp / "metrics.json", summary)
    log.info("%s: same subnet as %s, copied its distilled model", out / name, twin)
    return summary


def run(variants: str | Path, supernet: str | Path, data: str | Path, out: str | Path,
        variant: str | None = None, preset: str | None = None, self_kd: bool | None = None,
        resume: bool = False, force: bool = False, overrides: dict | None = None,
        params_path: str | Path | None = None, device: str = "auto", progress: bool = True,
        track: bool = True) -> dict[str, Any]:
    """Distill one or all variants; returns {variant: metrics summary}."""
    from salnas_core.utils.params import step_params

    from ._nas_common import file_sha256, find_dataset, params_hash, supernet_file, tracking

    from salnas_core.serve.predict import pick_device

    device = str(pick_device(device))  # auto: cuda when this machine has it (a GPU node), else cpu
    p = step_params("distill", preset, params_path, overrides)
    if self_kd is not None:
        p["self_kd"] = bool(self_kd)
    from salnas_core import artifacts

    vpath = artifacts._file(variants, artifacts.VARIANTS)
    table = artifacts.read_variants(vpath)
    names = [variant] if variant else list(table)
    for n in names:
        if n not in table:
            raise UserError(f"{vpath}: no variant {n!r} (have: {', '.join(table)})")
    sn = supernet_file(supernet)
    root = find_dataset(data)
    out = Path(out)
    results = {}
    sn_hash = file_sha256(sn)
    with tracking("distill" + (f"-{variant}" if variant else ""), {**p, "variants": names, "supernet": str(sn),
                                                                   "data": str(root)}, enabled=track) as (mlog, art):
        by_sig: dict[str, str] = {}
        for n in names:
            sig = params_hash(p, table[n]["config"], sn_hash, str(root))
            if sig in by_sig:   # same subnet as a variant distilled above (search's same_as): copy it
                results[n] = copy_twin(by_sig[sig], n, out, results[by_sig[sig]])
            else:
                results[n] = distill_variant(n, table[n], sn, root, out, p, resume, force, device, progress,
                                             mlog, sig)
                by_sig[sig] = n
            art(out / n / "metrics.json")
            art(out / n / "plots")
        combined_plot_table(out)
    return results


def combined_plot_table(out: Path) -> None:
    """OUT/plots/distill.csv: every variant's holdout-score curve in one table (`dvc plots`)."""
    from salnas_core.utils.io import atomic_write_text

    rows = ["variant,epoch,score"]
    for f in sorted(out.glob("*/plots/distill.csv")):
        lines = f.read_text().splitlines()
        head = lines[0].split(",")
        for line in lines[1:]:
            cells = dict(zip(head, line.split(",")))
            rows.append(f"{f.parent.parent.name},{cells.get('epoch', '')},{cells.get('score', '')}")
    atomic_write_text(out / "plots" / "distill.csv", "\n".join(rows) + "\n")


def summarize(res: dict[str, Any]) -> str:
    return json.dumps({k: {"teacher": v.get("teacher_label"), "holdout_score_without": v["without"]["score"],
                           "holdout_score_with": v["with"]["score"], "chosen": v["chosen"],
                           "postprocess": v.get("postprocess") and {kk: v["postprocess"][kk] for kk in
                                                                   ("blur_px", "centre_weight", "centre_power")}}
                       for k, v in res.items()}, indent=1)
