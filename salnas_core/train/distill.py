"""Self-KD distillation of a static subnet (SalNAS, Sec. 3.3, applied after the search).

The chosen subnet is fine-tuned as a plain network. Its teacher is the weight average (parameters
and buffers) of the student's best k checkpoints so far, ranked by the validation selection score;
the extracted subnet itself (after BN recalibration) is checkpoint 0, so the teacher exists from the
first epoch. The target for KLD and CC is `alpha * ground truth + (1 - alpha) * teacher map`
(`salnas_core.train.self_kd.mix_target`); NSS keeps the real fixations. Checkpoints are written
atomically each epoch and `resume=True` continues from the last one. The result is the better of
the best student checkpoint and the final k-average (a "soup" of the same fine-tuning run).
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

log_ = logging.getLogger(__name__)

Logger = Callable[[dict[str, float], "int | None"], None]


@dataclass
class DistillConfig:
    """Fine-tuning hyper-parameters (params.yaml `distill:`)."""

    epochs: int = 3
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-5
    t0: int = 10
    grad_clip: float = 1.0       # clip by value, as the supernet training
    self_kd: bool = True
    alpha: float = 0.5
    top_k: int = 3
    seed: int = 0


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Equal-weight mean of floating tensors; integer buffers (num_batches_tracked) from the first."""
    if not states:
        raise ValueError("average_states: no checkpoints to average")
    out = {}
    for k, v in states[0].items():
        if torch.is_floating_point(v):
            out[k] = torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


class TopKTeacher:
    """Teacher = weight average of the k best student checkpoints seen so far (lower score better)."""

    def __init__(self, model: nn.Module, k: int = 3, alpha: float = 0.5):
        if k < 1:
            raise ValueError(f"TopKTeacher: k must be >= 1, got {k}")
        self.k, self.alpha = int(k), float(alpha)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.entries: list[dict[str, Any]] = []  # {"score", "epoch", "state"}, best first

    @property
    def ready(self) -> bool:
        return bool(self.entries)

    def offer(self, score: float, epoch: int, model: nn.Module) -> bool:
        """Keep this checkpoint if it is among the k best; rebuild the average when the set changes."""
        if len(self.entries) >= self.k and score >= self.entries[-1]["score"]:
            return False
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.entries.append({"score": float(score), "epoch": int(epoch), "state": state})
        self.entries.sort(key=lambda e: (e["score"], e["epoch"]))
        del self.entries[self.k:]
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        dev = next(self.module.parameters()).device
        avg = average_states([e["state"] for e in self.entries])
        self.module.load_state_dict({k: v.to(dev) for k, v in avg.items()})

    @torch.no_grad()
    def target(self, images: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        from salnas_core.train.self_kd import mix_target

        if not self.ready:
            return density
        t = self.module.eval()(images).float()
        if t.shape[-2:] != density.shape[-2:]:
            t = nn.functional.interpolate(t, size=density.shape[-2:], mode="bilinear", align_corners=False)
        return mix_target(density, t, self.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "entries": self.entries}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k, self.alpha = int(state["k"]), float(state["alpha"])
        self.entries = list(state["entries"])
        if self.entries:
            self._rebuild()


def distill(model: nn.Module, train_loader: Iterable[dict], val_loader: Iterable[dict], cfg: DistillConfig,
            ckpt_dir: str | Path, device: str = "cpu", log: Logger | None = None, resume: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Fine-tune `model` in place; returns {"model", "history", "initial", "best", "final", ...}.

    `model` should already have its BN statistics recalibrated (the "without distillation" point).
    """
    from tqdm import tqdm

    from salnas_core.metrics.losses import SalNASLoss
    from salnas_core.metrics.scoring import validate
    from salnas_core.train.checkpoint import load_checkpoint, save_checkpoint
    from salnas_core.train.optim import build_optimizer, build_scheduler

    ckpt = Path(ckpt_dir) / "last.pt"
    model = model.to(device)
    opt = build_optimizer(model, cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay)
    sched = build_scheduler(opt, cfg.t0)
    teacher = TopKTeacher(model, cfg.top_k, cfg.alpha)
    loss_fn = SalNASLoss()
    history: list[dict[str, float]] = []
    start = 1
    if resume and ckpt.exists():
        st = load_checkpoint(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        teacher.load_state_dict(st["teacher"])
        history, start = list(st["history"]), int(st["epoch"]) + 1
        initial = dict(st["initial"])
        log_.info("%s: resuming after epoch %d", ckpt, start - 1)
    else:
        initial = validate(model, val_loader, device)
        teacher.offer(initial["score"], 0, model)  # the extracted subnet is checkpoint 0
        history.append({"epoch": 0, **initial})
        if log:
            log({f"val_{k}": v for k, v in initial.items()}, 0)
    teacher.module.to(device)
    for epoch in range(start, cfg.epochs + 1):
        # a resumed epoch shuffles (and augments) exactly as the uninterrupted run would have
        torch.manual_seed(cfg.seed * 1000 + epoch)
        gen = getattr(train_loader, "generator", None)
        if gen is not None:
            gen.manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        t0, n_img, tot = time.perf_counter(), 0, 0.0
        bar = tqdm(train_loader, desc=f"distill {epoch}/{cfg.epochs}", unit="batch", disable=not progress,
                   leave=False)
        for batch in bar:
            x = batch["image"].to(device)
            dens, fix = batch["density"].to(device), batch["fixations"].to(device)
            target = teacher.target(x, dens) if cfg.self_kd else dens
            pred = model(x)
            if pred.shape[-2:] != dens.shape[-2:]:
                pred = nn.functional.interpolate(pred, size=dens.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss_fn(pred, target, fix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
            opt.step()
            n_img += x.shape[0]
            tot += float(loss.detach()) * x.shape[0]
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", ips=f"{n_img / (time.perf_counter() - t0):.1f}")
        sched.step()
        m = validate(model, val_loader, device)
        kept = teacher.offer(m["score"], epoch, model)
        rec = {"epoch": epoch, "train_loss": tot / max(n_img, 1), **m, "teacher_updated": float(kept),
               "images_per_s": n_img / (time.perf_counter() - t0), "lr": opt.param_groups[0]["lr"]}
        history.append(rec)
        if log:
            log({k if k in ("train_loss", "images_per_s", "lr", "teacher_updated") else f"val_{k}": v
                 for k, v in rec.items() if k != "epoch"}, epoch)
        log_.info("distill epoch %d: loss %.4f, val score %.4f", epoch, rec["train_loss"], m["score"])
        save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "teacher": teacher.state_dict(),
                               "epoch": epoch, "history": history, "initial": initial,
                               "config": asdict(cfg)})
    # the result: best single checkpoint or the k-average, whichever validates better
    best = teacher.entries[0]
    soup = validate(teacher.module, val_loader, device) if len(teacher.entries) > 1 else None
    if soup is not None and soup["score"] < best["score"]:
        model.load_state_dict(teacher.module.state_dict())
        chosen, final = f"average of best {len(teacher.entries)}", soup
    else:
        model.load_state_dict(best["state"])
        chosen = f"epoch {best['epoch']}"
        final = next(h for h in history if h["epoch"] == best["epoch"])
        final = {k: v for k, v in final.items() if k in initial}
    model.eval()
    return {"model": model, "history": history, "initial": initial, "final": final, "soup": soup,
            "chosen": chosen, "teacher_epochs": [e["epoch"] for e in teacher.entries]}
