"""`salnas distill`: fine-tune each chosen subnet as a static network with Self-KD.

For each variant of SEARCH_DIR/variants.json (or the one named by --variant, so a pipeline can
distill variants in parallel): extract the subnet from the supernet with its weights, recalibrate
its BN statistics on training images (that network, saved as `extracted.pt`, is the "without
distillation" point), fine-tune it with `salnas_core.train.distill` and write
DISTILL_DIR/<variant>/{model.pt, extracted.pt, metrics.json, plots/, checkpoints/last.pt}.
metrics.json reports the validation metrics without and with the step. `--resume` continues a
killed run from its checkpoint; a finished variant is skipped unless --force.
"""
from __future__ import annotations

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
    ax.plot([h["epoch"] for h in history], [h["score"] for h in history], "o-", label="val selection score")
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
    from salnas_core.train.distill import DistillConfig, distill
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
    val = make_loader(root, "val", int(p["val_batch_size"]), norm, shuffle=False, limit=p.get("val_limit"), size=size)
    recalibrate_bn(model, calib, len(calib))
    model.eval()
    meta = {"variant": name, "dataset": manifest.get("dataset"), "data": str(root),
            "data_version": manifest.get("version"), "input_size": list(size), "normalization": norm,
            "supernet": str(supernet_path)}
    vdir.mkdir(parents=True, exist_ok=True)
    save_model(vdir / "extracted.pt", model, {**meta, "distilled": False})
    cfg = DistillConfig(**{k: p[k] for k in DistillConfig.__dataclass_fields__ if k in p})

    def vlog(metrics: dict[str, float], step: int | None = None) -> None:
        mlog({f"{name}/{k}": v for k, v in metrics.items()}, step)

    res = distill(model, train, val, cfg, vdir / "checkpoints", device=device, log=vlog, resume=resume,
                  progress=progress)
    model = res["model"]
    macs, params = count_macs(model, (288, 384)), count_params(model)
    save_model(vdir / "model.pt", model, {**meta, "distilled": True, "self_kd": cfg.self_kd,
                                          "val_score": res["final"]["score"], "chosen": res["chosen"]})
    _plots(res["history"], vdir / "plots", f"{name}: Self-KD {'on' if cfg.self_kd else 'off'}")
    summary = {"signature": sig, "variant": name, "config": variant["config"], "self_kd": cfg.self_kd,
               "without": res["initial"], "with": res["final"], "chosen": res["chosen"],
               "improvement": res["initial"]["score"] - res["final"]["score"],
               "teacher_epochs": res["teacher_epochs"], "soup": res["soup"], "history": res["history"],
               "params": params, "macs": macs, "input_size": list(size), "distill": cfg.__dict__,
               "train_images": len(train.dataset), "val_images": len(val.dataset),
               "seconds": time.perf_counter() - t0}
    atomic_write_json(vdir / "metrics.json", summary)  # last: marks the variant complete
    mlog({f"{name}/score_without": res["initial"]["score"], f"{name}/score_with": res["final"]["score"]}, None)
    return summary


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
    """OUT/plots/distill.csv: every variant's validation curve in one table (`dvc plots`)."""
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
    return json.dumps({k: {"score_without": v["without"]["score"], "score_with": v["with"]["score"],
                           "chosen": v["chosen"]} for k, v in res.items()}, indent=1)
