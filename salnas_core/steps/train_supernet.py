"""Step `salnas train-supernet`: train the weight-sharing supernet (sandwich rule + Self-KD).

Reads params.yaml `train_supernet` (a preset merged over the defaults), an ingested dataset, and
writes to the run folder (docs/INTERFACES.md): `supernet.pt` (final weights), `best.pt` (the epoch
with the best max-subnet selection score), `checkpoints/last.pt` (resume state), `metrics.json`,
`plots/train.csv` (DVC plots) and `plots/train.png`. Under torchrun every process runs this; rank 0
writes and logs. MLflow is used through `salnas_core.tracking.mlflow_utils` when that is importable;
otherwise (or with `tracking: none`) metrics go to `log.jsonl` in the run folder only.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

STEP = "train_supernet"
# keys of the params section that configure the step itself; the rest is salnas_core.train.TrainConfig
STEP_KEYS = ("space", "preset", "pretrained", "init", "init_supernet", "input_size", "resolutions", "threads",
             "train_limit", "augment", "device", "tracking")
# `init: KIND:PATH` starts the encoder from another project's checkpoint; the loaders by KIND
INIT_KINDS = ("alphanet",)


def parse_init(value: Any) -> tuple[str, Path] | None:
    """params `train_supernet.init` ("alphanet:PATH", or null) -> (kind, path)."""
    if not value:
        return None
    kind, sep, path = str(value).partition(":")
    if not sep or not path or kind not in INIT_KINDS:
        raise UserError(f"train_supernet.init: expected KIND:PATH with KIND one of {', '.join(INIT_KINDS)} "
                        f"(e.g. alphanet:alphanet_pretrained.pth.tar), got {value!r}")
    return kind, Path(path)


def resolve_params(preset: str | None = None, epochs: int | None = None, self_kd: bool | None = None,
                   space: str | None = None, overrides: dict | None = None,
                   params_path: str | Path | None = None, init: list[str] | tuple[str, str] | None = None,
                   init_supernet: str | Path | None = None) -> dict[str, Any]:
    from salnas_core.utils.params import step_params

    over = dict(overrides or {})
    if init:  # --init KIND PATH
        if len(init) != 2:
            raise UserError(f"--init: expected KIND PATH (e.g. --init alphanet alphanet_pretrained.pth.tar), got {init}")
        over["init"] = f"{init[0]}:{init[1]}"
    if init_supernet:
        over["init_supernet"] = str(init_supernet)
    if epochs is not None:
        over["epochs"] = int(epochs)
    if self_kd is not None:
        over["self_kd"] = bool(self_kd)
    if space is not None:
        over["space"] = space
    return step_params(STEP, preset, params_path, over)


def split_params(p: dict[str, Any]):
    from salnas_core.train.trainer import TrainConfig

    step = {k: p[k] for k in STEP_KEYS if k in p}
    return step, TrainConfig.from_dict({k: v for k, v in p.items() if k not in STEP_KEYS})


class JsonlLogger:
    """Appends `{"step", "time", **metrics}` lines; the record that exists whatever the tracking."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")


def dvc_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers `dvc metrics show/diff` print: best epoch and score, the final max/min subnets."""
    final = summary.get("final") or {}
    out: dict[str, Any] = {"epochs": summary.get("epochs"), "best_epoch": summary.get("best_epoch"),
                           "best_score": summary.get("best_score")}
    for sub in ("max", "min"):
        out[sub] = {k: v for k, v in (final.get(sub) or {}).items() if isinstance(v, (int, float))}
    return out


def write_plots(history: list[dict[str, Any]], plots_dir: Path) -> None:
    """plots/train.csv (one row per epoch, for `dvc plots`) and plots/train.png."""
    from salnas_core.utils.io import atomic_path, atomic_write_text

    if not history:
        return
    keys = list(history[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in keys})
    atomic_write_text(plots_dir / "train.csv", buf.getvalue())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for k in ("train_loss", "train_max", "train_min"):
        if k in history[0]:
            axes[0].plot(ep, [r[k] for r in history], marker="o", label=k[6:])
    axes[0].set_title("training loss (sandwich subnets)")
    for sub in ("max", "min"):
        axes[1].plot(ep, [r[f"{sub}_score"] for r in history], marker="o", label=sub)
        axes[2].plot(ep, [r[f"{sub}_cc"] for r in history], marker="o", label=f"{sub} CC")
        axes[2].plot(ep, [r[f"{sub}_auc_judd"] for r in history], marker="s", ls="--", label=f"{sub} AUC-Judd")
    axes[1].set_title("holdout selection score (lower is better)")
    axes[2].set_title("val CC / AUC-Judd")
    for a in axes:
        a.set_xlabel("epoch")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(plots_dir / "train.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def build_datasets(root: Path, step: dict[str, Any], normalization: str, seed: int):
    import torch
    from torch.utils.data import Subset

    from salnas_core.data.dataset import SaliencyDataset

    size = tuple(step["input_size"]) if step.get("input_size") else None
    train = SaliencyDataset(root, "train", normalization=normalization, augment=bool(step.get("augment", True)), size=size)
    calib = SaliencyDataset(root, "train", normalization=normalization, augment=False, size=size)
    # the best epoch (and the Self-KD teacher's updates) is chosen on the holdout slice of the training
    # split (ingest.holdout), never on val: val is left to the final evaluation
    try:
        val = SaliencyDataset(root, "holdout", normalization=normalization, augment=False, size=size)
    except ValueError as e:
        raise UserError(str(e)) from e
    limit = step.get("train_limit")
    if limit and limit < len(train):
        # a fixed random subset, the same for every process and every resume
        idx = sorted(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:limit].tolist())
        train, calib = Subset(train, idx), Subset(calib, idx)
    return train, calib, val


def run(data: str | Path, out: str | Path, preset: str | None = None, epochs: int | None = None,
        self_kd: bool | None = None, resume: bool = False, space: str | None = None,
        overrides: dict | None = None, params_path: str | Path | None = None, force: bool = False,
        logger: Callable | None = None, progress: bool = True, init: list[str] | None = None,
        init_supernet: str | Path | None = None) -> dict[str, Any]:
    """Train the supernet on the ingested dataset at `data`; write the run folder `out`.

    `init` (KIND PATH) / params `init: KIND:PATH`: the encoder starts from that checkpoint (alphanet:
    an AlphaNet ImageNet supernet, `salnas` space). `init_supernet` / params `init_supernet: PATH`:
    every weight starts from a supernet this step trained before (fine-tuning on another dataset)."""
    import torch

    from salnas_core.utils.hashing import sha256_file
    from salnas_core.utils.io import read_json

    out = Path(out)
    p = resolve_params(preset, epochs, self_kd, space, overrides, params_path, init, init_supernet)
    step, cfg = split_params(p)
    starts = {"init": parse_init(p.get("init")), "init_supernet": p.get("init_supernet")}
    if starts["init"] and starts["init_supernet"]:
        raise UserError("train_supernet: give init (an encoder checkpoint) or init_supernet (a whole supernet), "
                        "not both")
    start_file = starts["init"][1] if starts["init"] else starts["init_supernet"]
    if start_file and not Path(start_file).is_file():
        raise UserError(f"{start_file}: not found (given as train_supernet.{'init' if starts['init'] else 'init_supernet'})")
    from ._nas_common import find_dataset, params_hash

    root = find_dataset(data)
    manifest = read_json(root / "manifest.json")
    if p.get("select_blur") is None:  # the dataset's protocol decides (data.protocols): authors -> blurred
        cfg.select_blur = manifest.get("protocol") == "authors"
    # the starting weights' content, not only their path, decides whether a finished run is reusable
    phash = params_hash({"params": p, "data": manifest.get("version"),
                         **({"start": sha256_file(start_file)} if start_file else {})})

    metrics_path = out / "metrics.json"
    if not force and not resume and metrics_path.exists() and (out / "supernet.pt").exists():
        done = read_json(metrics_path)
        if done.get("params_hash") == phash:
            log.info("%s: already complete for these params and data (use --force to retrain)", out)
            return {**done, "out": str(out)}

    device = step.get("device") or "auto"
    threads_before = torch.get_num_threads()
    if step.get("threads"):
        torch.set_num_threads(int(step["threads"]))
    try:
        return _train(root, out, p, step, cfg, manifest, phash, device, resume, logger, progress)
    finally:
        torch.set_num_threads(threads_before)
        from salnas_core.train import distributed as dist_utils

        dist_utils.destroy()  # the process group _train joined (torchrun); a no-op otherwise


def _train(root: Path, out: Path, p: dict, step: dict, cfg, manifest: dict, phash: str, device: str,
           resume: bool, logger: Callable | None, progress: bool = True) -> dict[str, Any]:
    import torch

    from salnas_core.supernet import create_supernet
    from salnas_core.train import distributed as dist_utils
    from salnas_core.train.checkpoint import save_supernet, set_resolutions
    from salnas_core.train.trainer import SupernetTrainer
    from salnas_core.utils.io import atomic_write_json

    metrics_path = out / "metrics.json"
    dist_utils.init_from_env(None if device == "auto" else torch.device(device))
    is_main = dist_utils.is_main()
    torch.manual_seed(cfg.seed)
    init, init_supernet = parse_init(step.get("init")), step.get("init_supernet")
    # ImageNet weights only where nothing else gives the starting point
    model = create_supernet(step.get("space", "lite"),
                            pretrained=bool(step.get("pretrained", True)) and not init and not init_supernet)
    if init:
        from salnas_core.spaces.salnas import load_alphanet

        load_alphanet(model, init[1])
    if init_supernet:
        from salnas_core.train.checkpoint import init_from_supernet

        init_from_supernet(model, init_supernet)
    set_resolutions(model, step.get("resolutions"))
    space_name = model.space.name
    train_set, calib_set, val_set = build_datasets(root, step, model.space.normalization, cfg.seed)
    if is_main:
        log.info("train-supernet: space %s, %d train / %d holdout (selection) images from %s, preset %s, "
                 "%d epochs, Self-KD %s, %d process(es)", space_name, len(train_set), len(val_set), root,
                 p.get("preset"), cfg.epochs, "on" if cfg.self_kd else "off", dist_utils.world_size())

    jsonl = JsonlLogger(out / "log.jsonl")
    kind = step.get("tracking", "mlflow") if is_main else "none"
    run_params = {**p, "data": str(root), "data_version": manifest.get("version"),
                  "world_size": dist_utils.world_size()}
    from ._nas_common import tracking

    with tracking("train-supernet", run_params, enabled=kind == "mlflow", run_name=f"train-supernet-{space_name}",
                  also=jsonl) as (mlog, log_artifact):
        def log_all(metrics: dict[str, float], step_: int | None = None) -> None:
            mlog(metrics, step_)
            if logger is not None:
                logger(metrics, step_)

        trainer = SupernetTrainer(model, train_set, val_set, cfg, out_dir=out, calib_set=calib_set,
                                  logger=log_all, device=None if device == "auto" else device, space=space_name)
        trainer.progress = progress  # the epoch bar (only on a terminal when run from the CLI)
        summary = trainer.fit(resume=resume)
        if is_main:
            meta = {"epoch": trainer.epoch, "resolutions": list(model.space.resolutions), "self_kd": cfg.self_kd,
                    "init": step.get("init"), "init_supernet": step.get("init_supernet"),
                    "params_hash": phash, "data_version": manifest.get("version"), "final": summary["final"]}
            save_supernet(out / "supernet.pt", trainer.model, space_name, meta)
            write_plots(trainer.history, out / "plots")
            summary.update({"params_hash": phash, "preset": p.get("preset"), "data": str(root),
                            "data_version": manifest.get("version"), "params": p, "history": trainer.history})
            atomic_write_json(metrics_path, summary)
            atomic_write_json(out / "summary.json", dvc_summary(summary))  # `dvc metrics show`
            log_all({"best_score": summary["best_score"] if summary["best_score"] is not None else float("nan")},
                    trainer.epoch)
            for f in (out / "best.pt", metrics_path, out / "plots" / "train.png"):
                if f.exists():
                    log_artifact(f)
    dist_utils.barrier()
    return {**summary, "out": str(out)}


def summarize(summary: dict[str, Any]) -> str | None:
    """What `salnas train-supernet` prints (rank 0 only under torchrun)."""
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 prints
        return None
    fin = summary.get("final", {})
    return json.dumps({"out": summary.get("out"), "epochs": summary.get("epochs"), "best_epoch": summary.get("best_epoch"),
                       "best_score": summary.get("best_score"), "max": fin.get("max"), "min": fin.get("min")}, indent=1)
