"""Supernet training loop: sandwich rule, Self-KD, validation with BN recalibration, exact resume, DDP.

Takes a supernet, datasets and a logger callable; knows no tracking backend. The same code runs in
one process or under torchrun (one process per device; `distributed.init_from_env` joins the group).

Per epoch: train (one sandwich step per batch), step the LR schedule, validate the max and min
subnets (each extracted, BN-recalibrated on a calibration subset of the *training* split, scored on
the whole validation set with the model-selection score), update best/teacher, write the checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from salnas_core.train import distributed as dist_utils
from salnas_core.train.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, save_supernet, set_rng_state
from salnas_core.train.optim import build_optimizer, build_scheduler
from salnas_core.train.sandwich import MaxSubnetRegularisation, SandwichConfig, sample_sandwich, sandwich_backward
from salnas_core.train.self_kd import SelfKDTeacher, improved

log = logging.getLogger(__name__)

Logger = Callable[[dict[str, float], "int | None"], None]
VAL_METRICS = ("cc", "kld", "nss", "sim", "auc_judd")


@dataclass
class TrainConfig:
    """Everything params.yaml's `train_supernet` section sets (defaults: the paper's)."""

    epochs: int = 20
    batch_size: int = 8            # per process; the global batch is batch_size * world size
    accum_steps: int = 1           # micro-batches per optimiser step (strided split of each batch)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-5
    t0: int = 10
    t_mult: int = 1
    grad_clip_value: float = 1.0
    n_random: int = 2
    dropout: float = 0.2
    drop_connect: float = 0.2
    self_kd: bool = True
    alpha: float = 0.5
    w_kld: float = 1.0
    w_cc: float = 1.0
    w_nss: float = 1.0
    amp: bool = True               # used on CUDA only
    seed: int = 3407
    steps_per_epoch: int | None = None   # cap on optimiser steps per epoch (None: the whole split)
    calib_images: int = 64         # training images used to recalibrate BN before validation
    val_batch_size: int = 8
    val_limit: int | None = None   # None: the whole validation split
    num_workers: int = 0
    log_every: int = 10
    # NHWC weights and activations while training and validating: oneDNN's depthwise and 1x1 convs
    # run 1.5x faster on CPU than in NCHW (bench/RESULTS.md); same losses within float tolerance
    channels_last: bool = True
    # load the next batch in a background thread while the step's random and min subnets compute
    # (started after the max subnet, the step's only draw from torch's RNG: same batches, same stream).
    # Off by default: on 2 shared cores the loader (~3% of a step) found no idle core to hide in
    # (bench/RESULTS.md, "Supernet training epochs"); worth trying where cores are spare
    prefetch: bool = False
    # score validation on blurred predictions (11x11, sigma 10.5), as the SalNAS authors select their
    # best epochs; the train-supernet step turns it on for data ingested under the `authors` protocol
    select_blur: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"train config: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**d)


@dataclass
class EpochResult:
    epoch: int
    lr: float
    train: dict[str, float]
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    improved: bool = False
    images_per_s: float = 0.0

    def flat(self) -> dict[str, float]:
        row: dict[str, float] = {"epoch": self.epoch, "lr": self.lr, "images_per_s": self.images_per_s,
                                 "improved": float(self.improved)}
        row.update({f"train_{k}": v for k, v in self.train.items()})
        for sub, m in self.val.items():
            row.update({f"{sub}_{k}": v for k, v in m.items()})
        return row


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    return torch.device(device)


def _to(batch: dict[str, Any], device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
    return images, batch["density"].to(device, non_blocking=True), batch["fixations"].to(device, non_blocking=True)


class BackgroundFetch:
    """Iterates `iterable`; `start_next()` fetches the next item in a background thread, which the
    next `next()` joins (without that call, `next()` fetches in the caller's thread).

    Same items in the same order as a plain loop, and the same fetches (a loop that breaks early
    still fetched the item it breaks on). Started where the caller draws no more random numbers,
    the data's augmentation draws from torch's global RNG keep their place in the stream."""

    def __init__(self, iterable: Any):
        self._it = iter(iterable)
        self._thread: threading.Thread | None = None
        self._result: tuple[Any, BaseException | None] = (None, None)

    def __iter__(self) -> BackgroundFetch:
        return self

    def _fetch(self) -> None:
        try:
            self._result = (next(self._it), None)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread (StopIteration too)
            self._result = (None, e)

    def start_next(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._fetch, name="salnas-prefetch", daemon=True)
            self._thread.start()

    def __next__(self) -> Any:
        if self._thread is None:
            self._fetch()
        else:
            self._thread.join()
            self._thread = None
        (item, err), self._result = self._result, (None, None)
        if err is not None:
            raise err
        return item

    def close(self) -> None:
        """Wait for a fetch in flight (its item is dropped)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._result = (None, None)


def calibration_subset(dataset: Dataset, n: int, seed: int) -> Dataset:
    """A fixed random subset of the training split for BN recalibration (never the validation one)."""
    n_all = len(dataset)
    if n <= 0 or n >= n_all:
        return dataset
    idx = torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))[:n].tolist()
    return Subset(dataset, sorted(idx))


class SupernetTrainer:
    """Trains a supernet (see `salnas_core.supernet`) with the sandwich rule and Self-KD.

    `model`: the supernet; `train_set`/`val_set`: datasets of dicts (image, density, fixations);
    `calib_set`: training images for BN recalibration (defaults to `train_set`, un-augmented is
    better); `out_dir`: where `checkpoints/last.pt` and `best.pt` go; `logger(metrics, step)`.
    """

    def __init__(self, model: nn.Module, train_set: Dataset, val_set: Dataset, cfg: TrainConfig,
                 out_dir: str | Path, calib_set: Dataset | None = None, logger: Logger | None = None,
                 device: str | torch.device | None = None, space: str | None = None):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.ckpt_path = self.out_dir / "checkpoints" / "last.pt"
        self.best_path = self.out_dir / "best.pt"
        self.logger = logger or (lambda metrics, step=None: None)
        self.device = _resolve_device(device)
        self.space = space or getattr(getattr(model, "space", None), "name", None) or "unknown"
        self.use_amp = bool(cfg.amp) and self.device.type == "cuda"
        if cfg.accum_steps < 1 or cfg.batch_size % cfg.accum_steps:
            raise ValueError(f"train config: batch_size {cfg.batch_size} must be a multiple of accum_steps {cfg.accum_steps}")

        self.rank, self.world = dist_utils.rank(), dist_utils.world_size()
        _seed_all(cfg.seed)  # same seed on every rank: same init, same subnet draws
        self.model = model.to(self.device)
        dist_utils.broadcast_model(self.model)
        # before the teacher's copy, so the teacher runs channels_last too
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.arch_rng = random.Random(cfg.seed)
        self.loader_gen = torch.Generator().manual_seed(cfg.seed + self.rank)

        self.train_set, self.val_set = train_set, val_set
        self.calib_set = calibration_subset(calib_set if calib_set is not None else train_set, cfg.calib_images, cfg.seed)
        self.sampler = DistributedSampler(train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=self.sampler, drop_last=True,
                                       num_workers=cfg.num_workers, generator=self.loader_gen,
                                       pin_memory=self.device.type == "cuda")
        if len(self.train_loader) == 0:
            raise ValueError(f"training split has {len(train_set)} images: fewer than one batch of "
                             f"{cfg.batch_size} x {self.world} processes")
        vset = val_set if cfg.val_limit is None else Subset(val_set, range(min(cfg.val_limit, len(val_set))))
        self.val_loader = DataLoader(vset, batch_size=cfg.val_batch_size, shuffle=False, num_workers=cfg.num_workers)
        self.calib_loader = DataLoader(self.calib_set, batch_size=cfg.val_batch_size, shuffle=False,
                                       num_workers=cfg.num_workers)

        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, cfg.t0, cfg.t_mult)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.teacher = SelfKDTeacher(self.model, cfg.alpha) if cfg.self_kd else None
        self.loss_fn = self._build_loss()
        self.sandwich = SandwichConfig(cfg.n_random, cfg.dropout, cfg.drop_connect)
        # after the teacher's copy: the teacher runs without dropout and needs no hooks
        self.regulariser = MaxSubnetRegularisation(self.model)

        self.epoch = 0                      # epochs completed
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.global_step = 0

    def _build_loss(self) -> Callable:
        from salnas_core.metrics.losses import SalNASLoss

        return SalNASLoss(w_kld=self.cfg.w_kld, w_cc=self.cfg.w_cc, w_nss=self.cfg.w_nss)

    # ---------------------------------------------------------------- one optimiser step
    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def train_step(self, batch: dict[str, Any], use_teacher: bool,
                   after_max: Callable[[], None] | None = None) -> dict[str, float]:
        """One sandwich step on `batch` (this rank's shard of the global batch); `after_max` is
        called once the last micro-batch's max subnet is through its backward pass."""
        cfg = self.cfg
        images, density, fixations = _to(batch, self.device, self.memory_format)
        configs = sample_sandwich(self.model, self.arch_rng, cfg.n_random)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        # strided split: micro-batch i of a rank-less run holds what rank i of a DDP run would get
        for i in range(cfg.accum_steps):
            sl = slice(i, None, cfg.accum_steps)
            img, den, fix = images[sl], density[sl], fixations[sl]
            target = den
            if use_teacher and self.teacher is not None and self.teacher.ready:
                with self._autocast():
                    target = self.teacher.target(img, den)
            losses = sandwich_backward(self.model, configs, img, target, fix, self.loss_fn, self.sandwich,
                                       regulariser=self.regulariser, scale=1.0 / cfg.accum_steps,
                                       backward=lambda l: self.scaler.scale(l).backward(),
                                       autocast=self._autocast,
                                       after_first=after_max if i == cfg.accum_steps - 1 else None)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.accum_steps
        dist_utils.all_reduce_grads(self.model)
        self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip_value:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), cfg.grad_clip_value)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.model.sample_max_subnet()
        totals["loss"] = sum(totals.values()) / len(totals)
        return totals

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        self.sampler.set_epoch(epoch)
        n_steps = len(self.train_loader)
        if cfg.steps_per_epoch:
            n_steps = min(n_steps, cfg.steps_per_epoch)
        # Self-KD from the second epoch: the teacher needs one validated snapshot first
        use_teacher = cfg.self_kd and epoch >= 1
        sums: dict[str, float] = {}
        n_images, t0 = 0, time.perf_counter()
        bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not (dist_utils.is_main() and getattr(self, "progress", True)), dynamic_ncols=True,
                   leave=False)
        batches = BackgroundFetch(self.train_loader) if cfg.prefetch else self.train_loader
        try:
            for step, batch in enumerate(batches):
                if step >= n_steps:
                    break
                losses = self.train_step(batch, use_teacher, batches.start_next if cfg.prefetch else None)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_images += batch["image"].shape[0] * self.world
                self.global_step += 1
                ips = n_images / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", img_s=f"{ips:.1f}")
                bar.update(1)
                if cfg.log_every and self.global_step % cfg.log_every == 0 and dist_utils.is_main():
                    self.logger({f"step/{k}": v for k, v in losses.items()}, self.global_step)
        finally:
            if cfg.prefetch:
                batches.close()
            bar.close()
        means = {k: v / n_steps for k, v in sums.items()}
        keys = sorted(means)
        means = dict(zip(keys, dist_utils.all_reduce_mean([means[k] for k in keys], self.device)))
        return means, n_images / max(time.perf_counter() - t0, 1e-9)

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def evaluate_config(self, config: dict) -> dict[str, float]:
        """Extract the subnet, recalibrate its BN on training images, score it on the val set."""
        from salnas_core.metrics import SaliencyMetrics, selection_score
        from salnas_core.metrics.blur import gaussian_blur
        from salnas_core.supernet import recalibrate_bn

        self.model.set_active_subnet(config)
        subnet = self.model.get_active_subnet(preserve_weight=True).to(self.device, memory_format=self.memory_format)
        self.model.sample_max_subnet()
        recalibrate_bn(subnet, self.calib_loader, len(self.calib_loader))
        subnet.eval()
        # rank 0 scores the whole split alone: no torchmetrics sync with ranks that are not scoring
        metrics = SaliencyMetrics(names=VAL_METRICS, sync_on_compute=False).to(self.device)
        for batch in self.val_loader:
            images, density, fixations = _to(batch, self.device, self.memory_format)
            with self._autocast():
                pred = subnet(images, out_size=tuple(density.shape[-2:]))
            pred = gaussian_blur(pred.float()) if self.cfg.select_blur else pred.float()
            metrics.update(pred, density, fixations)
        out = {k: float(v) for k, v in metrics.compute().items()}
        out["score"] = float(selection_score(out))
        return out

    def validate(self) -> dict[str, dict[str, float]]:
        """Max and min subnets, on rank 0; the result is broadcast so every rank decides alike."""
        result = None
        if dist_utils.is_main():
            min_cfg = self.model.sample_min_subnet()
            max_cfg = self.model.sample_max_subnet()
            result = {"max": self.evaluate_config(max_cfg), "min": self.evaluate_config(min_cfg)}
        return dist_utils.broadcast_object(result)

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        rngs = dist_utils.all_gather_object(get_rng_state(self.loader_gen, self.arch_rng))
        return {
            "epoch": self.epoch, "space": self.space, "world_size": self.world,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "best_score": self.best_score, "best_epoch": self.best_epoch, "global_step": self.global_step,
            "history": self.history, "rng": rngs, "config": asdict(self.cfg),
        }

    def save(self) -> None:
        state = self.state()  # collective: every rank takes part
        if dist_utils.is_main():
            save_checkpoint(self.ckpt_path, state)
        dist_utils.barrier()

    def load(self, path: str | Path | None = None) -> None:
        path = Path(path) if path else self.ckpt_path
        ck = load_checkpoint(path, map_location=self.device)
        if ck["space"] != self.space:
            raise ValueError(f"{path}: checkpoint is for space {ck['space']!r}, this run trains {self.space!r}")
        old = ck.get("config", {})
        for k in ("batch_size", "accum_steps", "n_random", "self_kd", "seed", "lr", "t0"):
            if k in old and old[k] != getattr(self.cfg, k):
                raise ValueError(f"{path}: checkpoint was trained with {k}={old[k]!r}, this run asks for "
                                 f"{getattr(self.cfg, k)!r}; resume with the same settings or start afresh")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        if self.teacher is not None and ck.get("teacher"):
            self.teacher.load_state_dict(ck["teacher"])
        self.epoch, self.global_step = int(ck["epoch"]), int(ck["global_step"])
        self.best_score, self.best_epoch = ck["best_score"], ck["best_epoch"]
        self.history = list(ck["history"])
        rngs = ck["rng"]
        if len(rngs) == self.world:
            set_rng_state(rngs[self.rank], self.loader_gen, self.arch_rng)
        else:
            log.warning("%s: saved with %d processes, resuming with %d: RNG streams restart, the run "
                        "stays valid but is no longer bit-identical to an uninterrupted one",
                        path, len(rngs), self.world)
            set_rng_state(rngs[0], self.loader_gen, self.arch_rng)
        log.info("resumed from %s at epoch %d/%d", path, self.epoch, self.cfg.epochs)

    # ---------------------------------------------------------------- the loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        if resume and self.ckpt_path.exists():
            self.load()
        elif resume:
            log.warning("--resume: %s does not exist; starting from scratch", self.ckpt_path)
        t_start = time.perf_counter()
        for epoch in range(self.epoch, cfg.epochs):
            te = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train, ips = self.train_epoch(epoch)
            self.scheduler.step()
            dist_utils.average_buffers(self.model)
            val = self.validate()
            score = val["max"]["score"]  # as the authors: the max subnet selects the model
            res = EpochResult(epoch=epoch + 1, lr=lr, train=train, val=val, improved=improved(score, self.best_score),
                              images_per_s=ips)
            if res.improved:
                self.best_score, self.best_epoch = score, epoch + 1
                if self.teacher is not None:
                    self.teacher.update(self.model)
                if dist_utils.is_main():
                    save_supernet(self.best_path, self.model, self.space,
                                  {"epoch": epoch + 1, "resolutions": list(self.model.space.resolutions), "score": score, "val": val, "self_kd": cfg.self_kd})
            self.epoch = epoch + 1
            self.history.append(res.flat())
            self.save()
            if dist_utils.is_main():
                self.logger({k: v for k, v in res.flat().items() if k != "epoch"}, epoch + 1)
                eta = (time.perf_counter() - te) * (cfg.epochs - epoch - 1)
                log.info("epoch %d/%d  loss %.4f  max: score %.4f cc %.3f nss %.3f  min: score %.4f  "
                         "%.1f img/s  %s  eta %.0fs", epoch + 1, cfg.epochs, train["loss"], score,
                         val["max"]["cc"], val["max"]["nss"], val["min"]["score"], ips,
                         "best" if res.improved else "", eta)
        return self.summary(time.perf_counter() - t_start)

    def summary(self, seconds: float = 0.0) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        pick = lambda row, sub: {k[len(sub) + 1:]: v for k, v in row.items() if k.startswith(sub + "_")}
        best_row = next((r for r in self.history if r["epoch"] == self.best_epoch), {})
        return {
            "space": self.space, "epochs": self.epoch, "self_kd": self.cfg.self_kd, "world_size": self.world,
            "best_epoch": self.best_epoch, "best_score": self.best_score,
            "final": {"max": pick(last, "max"), "min": pick(last, "min")},
            "best": {"max": pick(best_row, "max"), "min": pick(best_row, "min")},
            "train_seconds": seconds,
            "images_per_s": float(np.mean([r["images_per_s"] for r in self.history])) if self.history else 0.0,
        }
