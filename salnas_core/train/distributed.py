"""Data-parallel plumbing for torchrun (gloo on CPU, NCCL on GPU); a no-op in a single process.

Gradients are all-reduced by hand once per optimiser step instead of through the
`DistributedDataParallel` wrapper: a sandwich step runs several backward passes through different
subnets of one dynamic module, each leaving a different set of parameters unused, which DDP's
bucketed hooks handle only with `find_unused_parameters` and `no_sync` juggling. The maths is DDP's:
every rank sees its shard of the global batch, gradients are averaged, every rank steps the same.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group torchrun describes in the environment; False when not launched so."""
    if dist.is_available() and dist.is_initialized():
        return True
    if env_world_size() <= 1:
        return False
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return True


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def _flat_reduce(tensors: list[torch.Tensor], average: bool) -> None:
    if not tensors:
        return
    # one collective per dtype: fewer round trips than a call per tensor
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if average:
            flat /= dist.get_world_size()
        off = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[off:off + n].view_as(t))
            off += n


@torch.no_grad()
def all_reduce_grads(model: nn.Module) -> None:
    """Average gradients over ranks (every rank ran the same subnets, so the same grads exist)."""
    if not is_dist():
        return
    _flat_reduce([p.grad for p in model.parameters() if p.grad is not None], average=True)


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Average floating buffers (BN running statistics) so every rank holds the same model."""
    if not is_dist():
        return
    _flat_reduce([b for b in model.buffers() if torch.is_floating_point(b)], average=True)


@torch.no_grad()
def broadcast_model(model: nn.Module, src: int = 0) -> None:
    """Start every rank from rank `src`'s weights and buffers (what DDP does at wrap time)."""
    if not is_dist():
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    if not is_dist():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).tolist()


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
