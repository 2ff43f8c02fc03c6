"""Efficiency report: parameters, MACs, size on disk, latency, throughput, peak memory, energy, CO2.

Every model is measured at the same input size (288x384 by default) on each device present.
Energy is measured where the machine exposes a counter (RAPL package energy under
/sys/class/powercap on CPU, NVML's total-energy counter on GPU); otherwise it is estimated as
power x time with the power model stated in the row (`energy_method`). CO2 = energy x grid
intensity (gCO2e/kWh, stated in the row; 475 is the IEA 2019 world average codecarbon falls back to).
"""
from __future__ import annotations

import io
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from glob import glob
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

FIELDS = ("params", "macs", "size_mb_fp32", "size_mb_fp16", "latency_ms_b1", "latency_ms_b1_onnx", "throughput_ips_b32",
          "peak_mem_mb", "energy_j_per_1000", "co2_g_per_1000", "energy_method", "device", "input_size")


def size_on_disk_mb(model: Any, dtype: str = "fp32") -> float:
    """Bytes of torch.save(state_dict) with floating tensors in fp32 or fp16, in MB (1e6)."""
    import torch

    sd = {}
    for k, v in model.state_dict().items():
        if torch.is_floating_point(v):
            v = v.to(torch.float16 if dtype == "fp16" else torch.float32)
        sd[k] = v.detach().cpu()
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.tell() / 1e6


def count_params_macs(model: Any, input_size: Sequence[int]) -> tuple[int, int]:
    from salnas_core.supernet import count_macs, count_params

    return int(count_params(model)), int(count_macs(model, input_size=tuple(input_size)))


# ---- energy counters -------------------------------------------------------------------------
def _rapl_files() -> list[str]:
    files = sorted(glob("/sys/class/powercap/intel-rapl:[0-9]*/energy_uj"))  # packages, not sub-zones
    return [f for f in files if os.access(f, os.R_OK)]


def rapl_energy_j() -> float | None:
    files = _rapl_files()
    if not files:
        return None
    try:
        return sum(int(Path(f).read_text()) for f in files) / 1e6
    except (OSError, ValueError):
        return None


def _nvml_energy_j(index: int) -> float | None:
    try:
        import pynvml  # optional: nvidia-ml-py

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        return pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3  # mJ -> J
    except Exception:  # noqa: BLE001 - absent library, driver or counter: fall back to an estimate
        return None


class EnergyMeter:
    """Energy of a timed block: a hardware counter if readable, else power-model x time."""

    def __init__(self, device: str, cpu_watts_per_core: float, gpu_watts: float | None, threads: int):
        self.device = device
        idx = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        self._read = (lambda: _nvml_energy_j(idx)) if device.startswith("cuda") else rapl_energy_j
        self.counter = self._read() is not None
        if self.counter:
            self.method = ("NVML total energy counter (whole GPU)" if device.startswith("cuda")
                           else "RAPL package energy counter (whole CPU package, other load included)")
        elif device.startswith("cuda"):
            self.watts = float(gpu_watts or 300.0)
            self.method = f"estimate: GPU board power {self.watts:.0f} W x wall time (no NVML counter readable)"
        else:
            # per busy core x this process's CPU seconds: on a shared machine the wall time would
            # charge us for other jobs' load
            self.watts = cpu_watts_per_core
            self.method = (f"estimate: {cpu_watts_per_core:g} W per busy core (CPU TDP share) x process CPU "
                           "seconds (no RAPL counter readable)")

    @staticmethod
    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def __enter__(self) -> "EnergyMeter":
        self.t0, self.c0 = time.perf_counter(), self._cpu()
        self.e0 = self._read() if self.counter else None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.cpu_seconds = self._cpu() - self.c0
        if self.counter:
            e1 = self._read()
            self.joules = (e1 - self.e0) if (e1 is not None and self.e0 is not None and e1 >= self.e0) else float("nan")
        elif self.device.startswith("cuda"):
            self.joules = self.watts * self.seconds
        else:
            self.joules = self.watts * self.cpu_seconds


# ---- peak memory -----------------------------------------------------------------------------
_PEAK_SNIPPET = r"""
import json, resource, sys, torch, psutil
from salnas_core.supernet import load_model
torch.set_num_threads(int(sys.argv[5]))
m = load_model(sys.argv[1]).eval()
x = torch.randn(int(sys.argv[4]), 3, int(sys.argv[2]), int(sys.argv[3]))
if sys.argv[6] == "1":
    m = m.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)
before = psutil.Process().memory_info().rss
with torch.inference_mode():
    m(x)
try:  # this process's own high-water mark: Linux's ru_maxrss keeps the forking parent's RSS
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"rss_before_mb": before / 1e6, "peak_rss_mb": peak / 1e6}))
"""


def peak_memory_cpu_mb(model_path: str | Path, input_size: Sequence[int], batch: int = 1, threads: int = 1,
                       channels_last: bool = True) -> dict[str, float]:
    """Peak resident memory of one forward pass, in a fresh process (its VmHWM high-water mark;
    not ru_maxrss, which on Linux starts at the parent's RSS when forked from a large process).

    `peak_mem_mb` is the peak minus the resident size just before the forward (activations and
    workspace); `peak_rss_mb` is the whole process (torch runtime + weights + activations).
    """
    # the probe runs from the repo root: resolve a relative path against OUR working directory first
    r = subprocess.run([sys.executable, "-c", _PEAK_SNIPPET, str(Path(model_path).resolve()), str(input_size[0]),
                        str(input_size[1]), str(batch), str(threads), "1" if channels_last else "0"],
                       capture_output=True, text=True, timeout=600,
                       cwd=str(Path(__file__).resolve().parents[2]))
    if r.returncode != 0:
        raise RuntimeError(f"{model_path}: peak-memory probe failed: {r.stderr.strip()[-500:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"peak_mem_mb": max(0.0, d["peak_rss_mb"] - d["rss_before_mb"]), "peak_rss_mb": d["peak_rss_mb"]}


# ---- the report ------------------------------------------------------------------------------
def devices_present() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def efficiency_row(name: str, model: Any, model_path: str | Path | None = None,
                   input_size: Sequence[int] = (288, 384), device: str = "cpu", batch_throughput: int = 32,
                   warmup: int = 1, repeats: int = 3, cpu_watts_per_core: float = 4.0,
                   gpu_watts: float | None = None, grid_gco2_per_kwh: float = 475.0,
                   channels_last: bool = True, params_macs: tuple[int, int] | None = None) -> dict[str, Any]:
    """All efficiency fields of one model on one device. Batch-1 latency twice: `latency_ms_b1`
    eager PyTorch (channels_last), `latency_ms_b1_onnx` the ONNX Runtime fp32 form `salnas
    predict` runs by default on CPU (salnas_core.runtime; None on CUDA, where the default is
    eager, or when the net does not export: `onnx_error`); `deployed_engine` names the default."""
    import torch

    from salnas_core.runtime import onnx_latency_ms, resolve_engine

    from salnas_core.utils.timing import device_name, prepare, time_call

    params, macs = params_macs or count_params_macs(model, input_size)
    row: dict[str, Any] = {"model": name, "device": device, "device_name": device_name(device),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "input_size": list(input_size), "params": params, "macs": macs,
                           "gmacs": macs / 1e9, "mparams": params / 1e6,
                           "size_mb_fp32": size_on_disk_mb(model, "fp32"), "size_mb_fp16": size_on_disk_mb(model, "fp16")}
    h, w = int(input_size[0]), int(input_size[1])
    m1, x1 = prepare(model, torch.randn(1, 3, h, w), device, channels_last)
    with torch.inference_mode():
        row["latency_ms_b1"] = time_call(lambda: m1(x1), device, warmup, repeats)
    row["deployed_engine"] = resolve_engine("auto", device)
    row["latency_ms_b1_onnx"] = None
    if device == "cpu":
        try:
            row["latency_ms_b1_onnx"] = onnx_latency_ms(model, input_size, 1, warmup, repeats)
        except Exception as e:  # noqa: BLE001 - a net that does not export still gets its eager row
            row["onnx_error"] = f"{type(e).__name__}: {e}"[:300]
            log.warning("%s: ONNX latency not measured (%s)", name, row["onnx_error"])
    with torch.inference_mode():
        mb, xb = prepare(model, torch.randn(batch_throughput, 3, h, w), device, channels_last)
        for _ in range(warmup):
            mb(xb)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        meter = EnergyMeter(device, cpu_watts_per_core, gpu_watts, torch.get_num_threads())
        with meter:
            for _ in range(repeats):
                mb(xb)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    n_img = repeats * batch_throughput
    row["throughput_ips_b32"] = n_img / meter.seconds
    row["batch_throughput"] = batch_throughput
    row["energy_j_per_1000"] = meter.joules / n_img * 1000
    row["co2_g_per_1000"] = row["energy_j_per_1000"] / 3.6e6 * grid_gco2_per_kwh
    row["energy_method"] = meter.method
    row["cpu_seconds_b32"] = meter.cpu_seconds
    row["wall_seconds_b32"] = meter.seconds
    row["grid_gco2_per_kwh"] = grid_gco2_per_kwh
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.inference_mode():
            m1(x1)
        torch.cuda.synchronize()
        row["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / 1e6
        row["peak_mem_method"] = "torch.cuda.max_memory_allocated over one batch-1 forward, minus weights"
    else:
        tmp = None
        try:
            if model_path is None:
                from salnas_core.supernet import save_model

                tmp = tempfile.NamedTemporaryFile(suffix=".pt", delete=False)
                tmp.close()
                save_model(tmp.name, model.cpu())
                model_path = tmp.name
            row.update(peak_memory_cpu_mb(model_path, input_size, 1, torch.get_num_threads(), channels_last))
            row["peak_mem_method"] = "fresh process: peak RSS (VmHWM) after one batch-1 forward minus RSS before it"
        finally:
            if tmp is not None:
                os.unlink(tmp.name)
    model.to("cpu").to(memory_format=torch.contiguous_format)
    return row


def center_bias_row(input_size: Sequence[int] = (288, 384)) -> dict[str, Any]:
    """The centre-bias baseline costs nothing to run: a fixed map (listed for completeness)."""
    return {"model": "centre_bias", "device": "any", "input_size": list(input_size), "params": 0, "macs": 0,
            "gmacs": 0.0, "mparams": 0.0, "size_mb_fp32": 0.0, "size_mb_fp16": 0.0,
            "note": "a precomputed Gaussian: no network"}


def efficiency_markdown(rows: Sequence[dict[str, Any]]) -> str:
    cols = [("model", "model"), ("device", "device"), ("mparams", "params (M)"), ("gmacs", "GMACs"),
            ("size_mb_fp32", "MB fp32"), ("size_mb_fp16", "MB fp16"), ("latency_ms_b1", "latency b1 eager (ms)"),
            ("latency_ms_b1_onnx", "latency b1 ONNX (ms)"), ("latency_ms_b1_search", "search table (ms)"),
            ("throughput_ips_b32", "throughput b32 (img/s)"), ("peak_mem_mb", "peak mem (MB)"),
            ("energy_j_per_1000", "J / 1000 img"), ("co2_g_per_1000", "gCO2e / 1000 img")]

    def f(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f(r.get(k)) for k, _ in cols) + " |")
    methods = sorted({r["energy_method"] for r in rows if r.get("energy_method")})
    devs = sorted({f"{r['device']}: {r['device_name']} (torch {r['torch']})" for r in rows if r.get("device_name")})
    size = next((r["input_size"] for r in rows if r.get("input_size")), None)
    lines += ["", f"Input size {size[0]}x{size[1]} for every model." if size else "",
              "Latency b1: eager = channels_last PyTorch; ONNX = ONNX Runtime fp32, the `salnas predict` "
              "default on CPU; search table = the search's prediction for the variant (its engine: "
              + (", ".join(sorted({str(r['latency_engine_search']) for r in rows if r.get('latency_engine_search')}))
                 or "-") + ").",
              *[f"- device {d}" for d in devs], *[f"- energy: {m}" for m in methods],
              *sorted({f"- CO2: energy x {r['grid_gco2_per_kwh']:g} gCO2e/kWh" for r in rows if r.get('grid_gco2_per_kwh')}),
              *sorted({f"- peak memory: {r['peak_mem_method']}" for r in rows if r.get('peak_mem_method')})]
    return "\n".join(lines) + "\n"
