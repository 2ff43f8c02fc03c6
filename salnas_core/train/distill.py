"""Self-KD distillation of a static subnet, after the search (the project's step; the authors run
Self-KD only while training the supernet).

The chosen subnet is fine-tuned as a plain network with the target for KLD and CC
`alpha * ground truth + (1 - alpha) * teacher map` (`salnas_core.train.self_kd.mix_target`); NSS
keeps the real fixations. Two teacher rules (`DistillConfig.teacher`):

- `paper` (default): the SalNAS paper's rule, the one the supernet training uses
  (`salnas_core.train.self_kd.SelfKDTeacher`): an equal-weight running mean of the student's
  parameters and buffers over every fine-tuning epoch whose selection score ties or beats the best
  so far; absent during the first epoch (target = ground truth), batch-statistics BN. The result is
  the best single checkpoint, the extracted subnet (epoch 0) included.
- `top_k`: the project's variant: the weight average of the student's best k checkpoints so far,
  the extracted subnet (after BN recalibration) being checkpoint 0, so the teacher acts from the
  first epoch (eval-mode BN). The result is the better of the best checkpoint and the final
  k-average (a "soup" of the same run).

Scores come from `sel_loader` (the step gives it the holdout slice of the training split, never
the validation split). Checkpoints are written atomically each epoch; `resume=True` continues.
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
    teacher: str = "paper"       # paper | top_k (see the module docstring)
    top_k: int = 3               # teacher: top_k only
    seed: int = 0

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"distill teacher {self.teacher!r}: one of {', '.join(TEACHERS)}")


TEACHERS = ("paper", "top_k")


def teacher_label(cfg: DistillConfig) -> str:
    """How logs, meta and reports name the distillation's teacher."""
    if not cfg.self_kd:
        return "none (Self-KD off)"
    if cfg.teacher == "paper":
        return "paper (running mean of every new best epoch, from the second epoch)"
    return f"top_k (average of the best {cfg.top_k} checkpoints, from the first epoch)"


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

    name = "top_k"

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


class PaperTeacher:
    """The paper's Self-KD rule on a static net: `SelfKDTeacher` (the supernet training's running
    mean) updated after every fine-tuning epoch whose score ties or beats the best fine-tuning epoch
    so far (`self_kd.improved`); epoch 0 (the extracted subnet) is not offered to it, so the first
    epoch trains on the ground truth alone. Also keeps the best student checkpoint (the result)."""

    name = "paper"

    def __init__(self, model: nn.Module, alpha: float = 0.5):
        from salnas_core.train.self_kd import SelfKDTeacher

        self.kd = SelfKDTeacher(model, alpha)
        self.best_score: float | None = None     # best fine-tuning epoch (the teacher's rule)
        self.epochs: list[int] = []               # epochs averaged into the teacher
        self.best: dict[str, Any] | None = None   # best student checkpoint, epoch 0 included

    @property
    def module(self) -> nn.Module:
        return self.kd.module

    @property
    def ready(self) -> bool:
        return self.kd.ready

    def offer(self, score: float, epoch: int, model: nn.Module) -> bool:
        """Record the checkpoint; update the teacher if this fine-tuning epoch is a new best."""
        from salnas_core.train.self_kd import improved

        if self.best is None or score < self.best["score"]:
            self.best = {"score": float(score), "epoch": int(epoch),
                         "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if epoch < 1 or not improved(score, self.best_score):
            return False
        self.best_score = float(score)
        self.kd.update(model)
        self.epochs.append(int(epoch))
        return True

    def target(self, images: torch.Tensor, density: torch.Tensor) -> torch.Tensor:
        return self.kd.target(images, density)

    def state_dict(self) -> dict[str, Any]:
        return {"kd": self.kd.state_dict(), "best_score": self.best_score, "epochs": self.epochs, "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kd.load_state_dict(state["kd"])
        self.best_score, self.epochs, self.best = state["best_score"], list(state["epochs"]), state["best"]


def make_teacher(model: nn.Module, cfg: DistillConfig) -> "PaperTeacher | TopKTeacher":
    return PaperTeacher(model, cfg.alpha) if cfg.teacher == "paper" else TopKTeacher(model, cfg.top_k, cfg.alpha)


def distill(model: nn.Module, train_loader: Iterable[dict], sel_loader: Iterable[dict], cfg: DistillConfig,
            ckpt_dir: str | Path, device: str = "cpu", log: Logger | None = None, resume: bool = False,
            progress: bool = True) -> dict[str, Any]:
    """Fine-tune `model` in place; returns {"model", "history", "initial", "final", "chosen", ...}.

    `model` should already have its BN statistics recalibrated (the "without distillation" point);
    `sel_loader` scores every epoch (checkpoint choice and teacher updates): never the split the
    model is reported on.
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
    teacher = make_teacher(model, cfg)
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
        initial = validate(model, sel_loader, device)
        teacher.offer(initial["score"], 0, model)  # the extracted subnet is checkpoint 0
        history.append({"epoch": 0, **initial})
        if log:
            log({f"sel_{k}": v for k, v in initial.items()}, 0)
    teacher.module.to(device)
    log_.info("distill: teacher %s", teacher_label(cfg))
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
        m = validate(model, sel_loader, device)
        kept = teacher.offer(m["score"], epoch, model)
        rec = {"epoch": epoch, "train_loss": tot / max(n_img, 1), **m, "teacher_updated": float(kept),
               "images_per_s": n_img / (time.perf_counter() - t0), "lr": opt.param_groups[0]["lr"]}
        history.append(rec)
        if log:
            log({k if k in ("train_loss", "images_per_s", "lr", "teacher_updated") else f"sel_{k}": v
                 for k, v in rec.items() if k != "epoch"}, epoch)
        log_.info("distill epoch %d: loss %.4f, holdout score %.4f%s", epoch, rec["train_loss"], m["score"],
                  " (teacher updated)" if kept else "")
        save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "teacher": teacher.state_dict(),
                               "epoch": epoch, "history": history, "initial": initial,
                               "config": asdict(cfg)})
    if isinstance(teacher, PaperTeacher):  # the result: the best single checkpoint
        best, soup = teacher.best, None
        model.load_state_dict(best["state"])
        chosen = f"epoch {best['epoch']}"
        final = {k: v for k, v in next(h for h in history if h["epoch"] == best["epoch"]).items() if k in initial}
        teacher_epochs = list(teacher.epochs)
    else:  # top_k: best single checkpoint or the k-average, whichever scores better
        best = teacher.entries[0]
        soup = validate(teacher.module, sel_loader, device) if len(teacher.entries) > 1 else None
        if soup is not None and soup["score"] < best["score"]:
            model.load_state_dict(teacher.module.state_dict())
            chosen, final = f"average of best {len(teacher.entries)}", soup
        else:
            model.load_state_dict(best["state"])
            chosen = f"epoch {best['epoch']}"
            final = next(h for h in history if h["epoch"] == best["epoch"])
            final = {k: v for k, v in final.items() if k in initial}
        teacher_epochs = [e["epoch"] for e in teacher.entries]
    model.eval()
    return {"model": model, "history": history, "initial": initial, "final": final, "soup": soup,
            "chosen": chosen, "teacher": cfg.teacher, "teacher_label": teacher_label(cfg),
            "teacher_epochs": teacher_epochs}
