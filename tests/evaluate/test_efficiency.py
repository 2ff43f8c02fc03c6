"""Efficiency report: every field present, sizes and energy consistent, method stated."""
import pytest
import torch

from salnas_core.evaluate.efficiency import (FIELDS, EnergyMeter, center_bias_row, efficiency_markdown,
                                             efficiency_row, rapl_energy_j, size_on_disk_mb)


@pytest.fixture(scope="module")
def small_net():
    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet

    torch.manual_seed(0)
    return build_subnet(get_space("lite").min_config()).eval()


def test_peak_memory_is_the_probe_s_own_not_the_parent_s(small_net, tmp_path):
    """The probe runs in a fresh process: a parent holding 800 MB must not show up in its peak
    (Linux's ru_maxrss starts at the forking parent's RSS: the main job once reported ~1.9 GB
    for a 3 M-parameter net)."""
    import numpy as np

    from salnas_core.evaluate.efficiency import peak_memory_cpu_mb
    from salnas_core.supernet import save_model

    path = save_model(tmp_path / "s.pt", small_net)
    ballast = np.ones(100_000_000)            # 800 MB, touched: resident in this process
    got = peak_memory_cpu_mb(path, (64, 96))
    assert ballast[-1] == 1.0
    assert 0 < got["peak_mem_mb"] < 200 and got["peak_rss_mb"] < 750, got


def test_efficiency_row_fields(small_net, tmp_path):
    from salnas_core.supernet import count_macs, count_params

    size = (64, 96)
    row = efficiency_row("S", small_net, None, size, "cpu", batch_throughput=2, warmup=0, repeats=1,
                         cpu_watts_per_core=5.0, grid_gco2_per_kwh=400.0)
    for f in FIELDS:
        assert f in row, f
    assert row["params"] == count_params(small_net) and row["macs"] == count_macs(small_net, size)
    assert row["input_size"] == [64, 96] and row["device"] == "cpu"
    assert row["latency_ms_b1"] > 0 and row["throughput_ips_b32"] > 0 and row["peak_mem_mb"] > 0
    assert row["peak_rss_mb"] > row["peak_mem_mb"]
    # batch 1 twice: eager, and the ONNX Runtime form predict runs by default on CPU
    assert row["latency_ms_b1_onnx"] > 0 and row["deployed_engine"] == "onnx" and "onnx_error" not in row
    # fp16 halves the floating-point payload (plus a small pickle overhead)
    assert 0.45 < row["size_mb_fp16"] / row["size_mb_fp32"] < 0.56
    assert row["size_mb_fp32"] == pytest.approx(4 * row["params"] / 1e6, rel=0.05)
    assert row["co2_g_per_1000"] == pytest.approx(row["energy_j_per_1000"] / 3.6e6 * 400.0)
    if rapl_energy_j() is None:  # no readable counter here: an estimate, and it says which
        assert row["energy_method"].startswith("estimate: 5 W per busy core")
        # energy per image = power per busy core x this process's CPU seconds, over the throughput block
        n_img = row["throughput_ips_b32"] * row["wall_seconds_b32"]
        assert row["energy_j_per_1000"] == pytest.approx(5.0 * row["cpu_seconds_b32"] / n_img * 1000, rel=1e-6)
        assert row["cpu_seconds_b32"] > 0
    md = efficiency_markdown([row, center_bias_row(size)])
    assert "| S | cpu |" in md and "energy:" in md and "64x96" in md
    head = md.splitlines()[0]
    assert "latency b1 eager (ms)" in head and "latency b1 ONNX (ms)" in head and "search table (ms)" in head
    onnx_cell = f"{row['latency_ms_b1_onnx']:.3g}" if row["latency_ms_b1_onnx"] < 100 else f"{row['latency_ms_b1_onnx']:.0f}"
    assert onnx_cell in md.splitlines()[2]
    searched = efficiency_markdown([{**row, "latency_ms_b1_search": 12.34, "latency_engine_search": "onnx"}])
    assert "| 12.3 |" in searched and "(its engine: onnx)" in searched


def test_size_on_disk_and_meter():
    lin = torch.nn.Linear(1000, 1000)
    assert size_on_disk_mb(lin, "fp32") == pytest.approx(4.004, rel=0.01)
    assert size_on_disk_mb(lin, "fp16") == pytest.approx(2.002, rel=0.02)
    m = EnergyMeter("cpu", 3.0, None, 2)
    with m:
        sum(i * i for i in range(200000))  # some CPU work
    assert m.seconds >= 0 and (m.counter or (m.cpu_seconds > 0 and m.joules == pytest.approx(3.0 * m.cpu_seconds)))
