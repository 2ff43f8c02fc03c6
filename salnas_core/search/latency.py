"""Latency on the target device: direct measurement, and a per-device lookup table of blocks.

The table holds the measured time of every timing unit (module repr + input shape) seen in the
subnets asked about; a subnet's latency is the sum over its units, mapped to wall-clock time by a
linear calibration (a * sum + b) fitted on a few directly measured subnets, because functional
ops (add, concat, upsampling) are not modules and run-time overheads are not additive. The units
and the calibration follow the deployed form (`engine`: what `salnas predict` runs,
salnas_core.runtime; "auto" is the predict default of the device, onnx on CPU, eager on CUDA):
- "onnx": each block (nn.static's ConvBnAct and MBConv, and any leaf outside one) is exported
  alone and timed in ONNX Runtime as the whole graph is (BN folded, conv + activation fused), so
  the sum carries ORT's per-block costs; a sum of eager operator times does not (depthwise,
  pointwise and activations speed up by different factors under ORT: 3/11 of a main job's
  variants within 15%, bench/RESULTS.md "Latency table error").
- "eager": every leaf operator timed in channels_last PyTorch.
int8 is not offered: every measured subnet would need calibration images and a quantisation
pass (seconds each), and its latency follows the fp32 graph's. The table is keyed by device +
engine + torch version + input size + batch + threads and cached as JSON, so it is built once
per device and engine and grows only with unseen units.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from salnas_core.utils.root import work_root
from salnas_core.utils.timing import device_name, prepare, time_call

log = logging.getLogger(__name__)

SEARCH_ENGINES = ("auto", "eager", "onnx")  # the deployed forms the search can time (see above)


def search_engine(engine: str, device: str) -> str:
    """The concrete form ("eager" | "onnx") a search times for `engine` on `device`."""
    from salnas_core.runtime import resolve_engine

    if engine not in SEARCH_ENGINES:
        raise ValueError(f"latency engine must be one of {SEARCH_ENGINES}, got {engine!r} "
                         "(int8 latency is not searched: it needs a quantisation pass per subnet)")
    form = resolve_engine(engine, device)
    if form == "onnx" and not str(device).startswith("cpu"):
        raise ValueError(f"latency engine onnx runs on cpu (ONNX Runtime's CPU provider), not {device}")
    return form


def default_cache() -> Path:
    """$SALNAS_CACHE/latency, else <working root>/.cache/latency (never the installed package's folder)."""
    return Path(os.environ.get("SALNAS_CACHE") or work_root() / ".cache") / "latency"



def table_key(device: str, input_size: Sequence[int], batch: int = 1, engine: str = "eager") -> str:
    import torch

    return (f"{device_name(device)}|{engine}|torch {torch.__version__}|{input_size[0]}x{input_size[1]}"
            f"|batch {batch}" + ("|onnx blocks" if engine == "onnx" else ""))


def measure_latency(model: Any, input_size: Sequence[int] = (288, 384), batch: int = 1, device: str = "cpu",
                    warmup: int = 2, repeats: int = 5, channels_last: bool = True) -> float:
    """Median forward time (ms) of `model` on a random batch, inference mode."""
    import torch

    x = torch.randn(batch, 3, int(input_size[0]), int(input_size[1]))
    model, x = prepare(model, x, device, channels_last)
    with torch.inference_mode():
        return time_call(lambda: model(x), device, warmup, repeats)


def measure_deployed(model: Any, input_size: Sequence[int] = (288, 384), batch: int = 1, device: str = "cpu",
                     warmup: int = 2, repeats: int = 5, engine: str = "eager", channels_last: bool = True) -> float:
    """Median time (ms) of `model` in the deployed form `engine` ("eager" | "onnx", see search_engine)."""
    if engine == "onnx":
        from salnas_core.runtime import onnx_latency_ms

        return onnx_latency_ms(model, input_size, batch, warmup, repeats)
    return measure_latency(model, input_size, batch, device, warmup, repeats, channels_last)


def block_types() -> tuple[type, ...]:
    """The static layers the onnx table times whole: ORT fuses inside them, not across."""
    from salnas_core.nn.static import ConvBnAct, MBConv

    return (ConvBnAct, MBConv)


def leaf_ops(model: Any, input_size: Sequence[int], batch: int = 1,
             units: tuple[type, ...] = ()) -> list[tuple[str, Any, tuple[int, ...]]]:
    """(signature, module, input shape) of each timing-unit call in one forward pass: modules of
    the `units` types (their insides not descended into) and every leaf module outside them."""
    import torch

    calls: list[tuple[str, Any, tuple[int, ...]]] = []
    hooks = []

    def hook(mod: Any, inp: tuple, _out: Any) -> None:
        if inp and isinstance(inp[0], torch.Tensor):
            shape = tuple(inp[0].shape)
            calls.append((f"{mod!r}@{list(shape)}", mod, shape))

    def walk(m: Any) -> None:
        kids = list(m.children())
        if not kids or (units and isinstance(m, units)):
            hooks.append(m.register_forward_hook(hook))
            return
        for c in kids:
            walk(c)

    walk(model)
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(batch, 3, int(input_size[0]), int(input_size[1])))
    finally:
        for h in hooks:
            h.remove()
    return calls


class LatencyTable:
    """Per-device operator latency table with a linear calibration; cached as JSON."""

    def __init__(self, device: str = "cpu", input_size: Sequence[int] = (288, 384), batch: int = 1,
                 cache_dir: str | Path | None = None, warmup: int = 2, repeats: int = 5,
                 channels_last: bool = True, engine: str = "eager", op_threads: int | None = None):
        self.device, self.input_size, self.batch = device, tuple(int(s) for s in input_size), batch
        self.warmup, self.repeats, self.channels_last = warmup, repeats, channels_last
        self.engine = search_engine(engine, device)
        # op_threads: time operators on this many CPU threads (the calibration maps their sum to
        # the deployed form at torch's count); 1 is steadier on a shared, oversubscribed machine
        self.op_threads = int(op_threads) if op_threads else None
        # onnx: blocks timed in ONNX Runtime; eager: leaf operators timed in PyTorch
        self.units = block_types() if self.engine == "onnx" else ()
        self.key = table_key(device, self.input_size, batch, self.engine) + (
            f"|ops on {self.op_threads} threads" if self.op_threads else "")
        slug = "".join(ch if ch.isalnum() else "_" for ch in self.key).strip("_")
        self.path = Path(cache_dir or default_cache()) / f"{slug[:150]}.json"
        self.ops: dict[str, float] = {}
        self.calibration: dict[str, float] = {"a": 1.0, "b": 0.0, "n": 0}
        self.measured = 0  # operators timed in this process (0 on a warm cache)
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                if data.get("key") == self.key:
                    self.ops = {k: float(v) for k, v in data.get("ops", {}).items()}
                    self.calibration = data.get("calibration", self.calibration)
            except (OSError, ValueError) as e:  # a broken cache is rebuilt, not fatal
                log.warning("%s: unreadable latency table (%s); rebuilding", self.path, e)

    def save(self) -> Path:
        from salnas_core.utils.io import atomic_write_json

        return atomic_write_json(self.path, {"key": self.key, "device": self.device, "engine": self.engine,
                                             "input_size": self.input_size,
                                             "batch": self.batch, "calibration": self.calibration, "ops": self.ops})

    def _time_op(self, mod: Any, shape: tuple[int, ...]) -> float:
        import torch

        if self.units:
            from salnas_core.runtime import module_latency_ms

            try:
                return module_latency_ms(mod, shape, self.warmup, self.repeats, self.op_threads)
            except Exception as e:  # noqa: BLE001 - a unit ORT cannot take alone: its eager time stands in
                log.warning("latency table: %s does not export alone (%s); timed in PyTorch",
                            type(mod).__name__, str(e).splitlines()[0][:120])
        m, x = prepare(copy.deepcopy(mod), torch.randn(shape), self.device, self.channels_last)
        before = torch.get_num_threads()
        if self.op_threads and self.device.startswith("cpu"):
            torch.set_num_threads(self.op_threads)
        try:
            with torch.inference_mode():
                return time_call(lambda: m(x), self.device, self.warmup, self.repeats)
        finally:
            torch.set_num_threads(before)

    def op_sum(self, model: Any) -> float:
        """Sum of the table's unit times over one forward pass (times unseen units)."""
        total = 0.0
        for sig, mod, shape in leaf_ops(model, self.input_size, self.batch, self.units):
            if sig not in self.ops:
                self.ops[sig] = self._time_op(mod, shape)
                self.measured += 1
            total += self.ops[sig]
        return total

    def calibrate(self, models: Sequence[Any], rounds: int = 3) -> dict[str, float]:
        """Fit wall = a * op_sum + b on models measured in the deployed form (self.engine; least
        squares; a alone if 1 model). Each model's wall time is the median of `rounds` interleaved
        passes over all of them: one slow moment on a shared machine then skews no single point
        of the fit (single passes put a 70% residual on one calibration subnet). The result
        records the engine, the measurements and the fit's residuals (`residual_pct`: predicted vs
        measured, per model)."""
        import statistics

        import numpy as np

        s = np.array([self.op_sum(m) for m in models])
        passes = [[measure_deployed(m, self.input_size, self.batch, self.device, self.warmup, self.repeats,
                                    self.engine, self.channels_last) for m in models] for _ in range(max(1, rounds))]
        w = np.array([statistics.median(col) for col in zip(*passes)])
        if len(models) >= 2 and np.ptp(s) > 0:
            a, b = np.polyfit(s, w, 1)
        else:
            a, b = float(w.sum() / max(s.sum(), 1e-9)), 0.0
        if a <= 0 or b < 0:  # noisy timings on a busy machine: a pure ratio keeps small nets positive
            a, b = float(w.sum() / max(s.sum(), 1e-9)), 0.0
        fit = a * s + b
        self.calibration = {"a": float(a), "b": float(b), "n": len(models), "engine": self.engine,
                            "measured_ms": w.tolist(), "op_sum_ms": s.tolist(),
                            "residual_pct": (100.0 * (fit - w) / np.maximum(w, 1e-9)).tolist()}
        return self.calibration

    def predict(self, model: Any) -> float:
        c = self.calibration
        return max(0.0, c["a"] * self.op_sum(model) + c["b"])


class DirectLatency:
    """Latency by timing each subnet in the deployed form `engine` (exact for the machine, slower
    than the table)."""

    def __init__(self, device: str = "cpu", input_size: Sequence[int] = (288, 384), batch: int = 1,
                 warmup: int = 1, repeats: int = 3, channels_last: bool = True, engine: str = "eager"):
        self.device, self.input_size, self.batch = device, tuple(input_size), batch
        self.warmup, self.repeats, self.channels_last = warmup, repeats, channels_last
        self.engine = search_engine(engine, device)

    def predict(self, model: Any) -> float:
        return measure_deployed(model, self.input_size, self.batch, self.device, self.warmup, self.repeats,
                                self.engine, self.channels_last)
