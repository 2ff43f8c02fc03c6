"""Timing a forward pass on a device, the one home: search's latency tables and evaluate's
efficiency report both time models this way (median of repeated calls after warm-up)."""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any


def device_name(device: str = "cpu") -> str:
    """The GPU's name, or the CPU model and the torch thread count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} x{torch.get_num_threads()} threads"


def sync(device: str) -> None:
    """Wait for queued CUDA work (a no-op on CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prepare(model: Any, x: Any, device: str, channels_last: bool) -> tuple[Any, Any]:
    """(model, x) on `device` in eval mode; NHWC (channels_last) when asked and x is 4-d."""
    import torch

    model = model.to(device).eval()
    x = x.to(device)
    if channels_last and x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def time_call(fn: Any, device: str = "cpu", warmup: int = 2, repeats: int = 5, min_time_s: float = 0.0) -> float:
    """Median wall time of fn() in milliseconds (after warm-up; at least `repeats` runs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start) < min_time_s:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
