"""Pareto front, budget choice, plot; latency table: cached, keyed, calibrated."""
import json

import pytest
import torch
from torch import nn

from salnas_core.search.latency import LatencyTable, leaf_ops, measure_latency, search_engine, table_key
from salnas_core.search.pareto import choose_distinct, choose_for_budget, pareto_front, plot_pareto

CANDS = [
    {"name": "a", "score": 3.0, "macs": 1.0, "latency_ms": 5.0},
    {"name": "b", "score": 2.5, "macs": 2.0, "latency_ms": 4.0},
    {"name": "c", "score": 2.7, "macs": 3.0, "latency_ms": 9.0},  # dominated by b
    {"name": "d", "score": 2.0, "macs": 4.0, "latency_ms": 8.0},
    {"name": "e", "score": 2.0, "macs": 5.0, "latency_ms": 7.0},  # ties d on score, costs more MACs
]


def test_pareto_front_is_the_non_dominated_set():
    names = [c["name"] for c in pareto_front(CANDS, "macs")]
    assert names == ["a", "b", "d"]
    brute = [c["name"] for c in CANDS if not any(
        o["score"] <= c["score"] and o["macs"] <= c["macs"] and (o["score"] < c["score"] or o["macs"] < c["macs"])
        for o in CANDS)]
    assert sorted(names) == sorted(brute)
    assert [c["name"] for c in pareto_front(CANDS, "latency_ms")] == ["b", "e"]


def test_choose_for_budget():
    assert choose_for_budget(CANDS, {"macs": None})["name"] in ("d", "e")
    assert choose_for_budget(CANDS, {"macs": 3.5})["name"] == "b"
    assert choose_for_budget(CANDS, {"macs": 4.5, "latency_ms": 7.5}) ["name"] == "b"
    assert choose_for_budget(CANDS, {"macs": 0.5}) is None


def test_distinct_picks_fall_in_cost_along_the_front():
    """b (2 GMACs) is the best under both 4.5 and 3.5: with one rule per budget L and M were the
    same subnet; distinct gives L = b and M = the best cheaper one (a), both on the front."""
    limits = {"M": {"macs": 3.5}, "L": {"macs": 4.5, "latency_ms": 7.5}, "S": {"macs": 2.5}}
    same = {n: choose_for_budget(CANDS, lim)["name"] for n, lim in limits.items()}
    assert same == {"L": "b", "M": "b", "S": "b"}
    picks = choose_distinct(CANDS, limits)
    assert {n: c["name"] for n, c in picks.items()} == {"L": "b", "M": "a", "S": "a"}
    front = [c["name"] for c in pareto_front(CANDS, "macs")]
    assert all(c["name"] in front for c in picks.values())
    # a budget nothing cheaper fits keeps its own best (marked same_as by the search step)
    assert choose_distinct(CANDS, {"L": {"macs": 1.5}, "M": {"macs": 1.2}})["M"]["name"] == "a"
    assert choose_distinct(CANDS, {"T": {"macs": 0.5}}) == {"T": None}


def test_plot_written(tmp_path):
    p = plot_pareto(CANDS, tmp_path / "pareto.png", chosen={"S": CANDS[1]}, baselines={"centre bias": 3.2})
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp-*"))


def _net(width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1, groups=width), nn.Conv2d(width, 1, 1), nn.Sigmoid())


def test_latency_table_caches_and_predicts(tmp_path):
    torch.manual_seed(0)
    size = (32, 48)
    t = LatencyTable("cpu", size, cache_dir=tmp_path, warmup=1, repeats=3)
    assert t.key == table_key("cpu", size) and "torch " + torch.__version__ in t.key and "32x48" in t.key
    small, big = _net(8), _net(64)
    assert len(leaf_ops(small, size)) == 6
    t.calibrate([small, big])
    first = t.measured
    assert first == len({s for s, _, _ in leaf_ops(small, size)} | {s for s, _, _ in leaf_ops(big, size)})
    p_small, p_big = t.predict(small), t.predict(big)
    assert 0 < p_small < p_big
    assert t.measured == first  # nothing re-timed: served from the table
    t.save()
    data = json.loads(t.path.read_text())
    assert data["key"] == t.key and len(data["ops"]) == first and data["calibration"]["n"] == 2
    t2 = LatencyTable("cpu", size, cache_dir=tmp_path)  # a new process would read the same file
    assert t2.predict(big) == pytest.approx(p_big) and t2.measured == 0
    other = LatencyTable("cpu", (64, 64), cache_dir=tmp_path)  # another input size: another table
    assert other.path != t.path and not other.ops


def test_broken_cache_is_rebuilt(tmp_path):
    t = LatencyTable("cpu", (16, 16), cache_dir=tmp_path)
    t.path.parent.mkdir(parents=True, exist_ok=True)
    t.path.write_text("{not json")
    t2 = LatencyTable("cpu", (16, 16), cache_dir=tmp_path, repeats=1, warmup=0)
    assert t2.ops == {} and t2.predict(_net(4)) > 0


def test_table_keyed_by_engine(tmp_path):
    """eager and onnx tables of one device are two tables; auto is predict's default on the device."""
    eager = LatencyTable("cpu", (32, 48), cache_dir=tmp_path)
    onnx = LatencyTable("cpu", (32, 48), cache_dir=tmp_path, engine="onnx")
    auto = LatencyTable("cpu", (32, 48), cache_dir=tmp_path, engine="auto")
    assert (eager.engine, onnx.engine, auto.engine) == ("eager", "onnx", "onnx")
    assert "|eager|" in eager.key and "|onnx|" in onnx.key and eager.path != onnx.path
    assert auto.key == onnx.key == table_key("cpu", (32, 48), 1, "onnx")
    assert search_engine("auto", "cuda") == "eager"
    with pytest.raises(ValueError, match="int8"):
        LatencyTable("cpu", (32, 48), cache_dir=tmp_path, engine="int8")
    with pytest.raises(ValueError, match="cpu"):
        search_engine("onnx", "cuda")


def test_onnx_calibration_times_the_deployed_form(tmp_path, monkeypatch):
    """engine onnx: the calibration subnets are timed through the ONNX Runtime form (never the
    eager timer), and a * op_sum + b is fitted to those times; the engine is recorded."""
    import salnas_core.runtime as runtime
    import salnas_core.search.latency as latency

    timed = []
    real = runtime.onnx_latency_ms

    def spy(net, *a, **k):
        timed.append(real(net, *a, **k))
        return timed[-1]

    def no_eager(*a, **k):
        raise AssertionError("the eager timer measured a calibration subnet of an onnx table")

    monkeypatch.setattr(runtime, "onnx_latency_ms", spy)
    monkeypatch.setattr(latency, "measure_latency", no_eager)
    torch.manual_seed(0)
    size = (32, 48)
    t = LatencyTable("cpu", size, cache_dir=tmp_path, warmup=1, repeats=3, engine="onnx")
    nets = [_net(4), _net(16), _net(64)]
    c = t.calibrate(nets, rounds=3)
    # three interleaved passes over the three nets; each net's wall time is its median
    assert len(timed) == 9 and c["engine"] == "onnx" and c["n"] == 3
    assert c["measured_ms"] == [sorted(timed[i::3])[1] for i in range(3)]
    fit = [c["a"] * s + c["b"] for s in c["op_sum_ms"]]
    assert c["residual_pct"] == pytest.approx([100 * (f - w) / w for f, w in zip(fit, c["measured_ms"])])
    assert [t.predict(n) for n in nets] == pytest.approx(fit)
    t.save()
    data = json.loads(t.path.read_text())
    assert data["engine"] == "onnx" and data["calibration"]["engine"] == "onnx" and "|onnx|" in data["key"]


def test_onnx_table_times_whole_blocks_in_onnx_runtime(tmp_path, monkeypatch):
    """engine onnx: the table's units are the static blocks (ConvBnAct, MBConv: ORT fuses inside
    them, not across), each exported alone and timed in ONNX Runtime; no unit is timed in PyTorch.
    The eager table keeps timing every leaf operator."""
    import salnas_core.runtime as runtime
    import salnas_core.search.latency as latency
    from salnas_core.nn.static import ConvBnAct, MBConv
    from salnas_core.supernet import create_supernet

    units, real = [], runtime.module_latency_ms

    def spy(module, shape, *a, **k):
        units.append((type(module), tuple(shape)))
        return real(module, shape, *a, **k)

    def no_eager(*a, **k):
        raise AssertionError("a unit of the onnx table was timed in PyTorch")

    monkeypatch.setattr(runtime, "module_latency_ms", spy)
    monkeypatch.setattr(latency, "time_call", no_eager)
    net = create_supernet("lite", pretrained=False)
    sub = net.build_from_config(net.space.min_config(), preserve_weight=False).eval()
    t = LatencyTable("cpu", (96, 128), cache_dir=tmp_path, warmup=0, repeats=1, engine="onnx")
    assert t.key.endswith("|onnx blocks")
    total = t.op_sum(sub)
    calls = leaf_ops(sub, (96, 128), 1, t.units)
    kinds = (ConvBnAct, MBConv)
    outer = [m for m in sub.modules() if isinstance(m, kinds) and not any(
        o is not m and isinstance(o, kinds) and any(c is m for c in o.modules()) for o in sub.modules())]
    assert {type(m) for _, m, _ in calls} == set(kinds) and len(calls) == len(outer) > 10
    assert len(units) == len({sig for sig, _, _ in calls}) == t.measured and total > 0
    assert all(k in kinds for k, _ in units)
    eager = leaf_ops(sub, (96, 128))
    assert len(eager) > 2 * len(calls) and not any(isinstance(m, kinds) for _, m, _ in eager)


def test_operators_timed_on_op_threads(tmp_path, monkeypatch):
    """op_threads: each operator is timed on that many threads, then torch's count is restored;
    such a table is another table (its key says so)."""
    import salnas_core.search.latency as latency

    seen = []
    real = latency.time_call

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(latency, "time_call", spy)
    before = torch.get_num_threads()
    t = LatencyTable("cpu", (16, 16), cache_dir=tmp_path, warmup=0, repeats=1, op_threads=1)
    assert "ops on 1 threads" in t.key and t.path != LatencyTable("cpu", (16, 16), cache_dir=tmp_path).path
    assert t.op_sum(_net(4)) > 0 and seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_measure_latency_positive():
    assert measure_latency(_net(4), (16, 16), batch=2, warmup=0, repeats=2) > 0


def test_budget_limits_absolute_relative_and_global():
    from salnas_core.search.pareto import choose_for_budget
    from salnas_core.utils.params import parse_set
    from salnas_core.steps.search import _limits

    ref = {"macs": 2e9, "params": 4e6, "latency_ms": 100.0}
    lim = _limits({"macs_frac": 0.5, "max_latency_ms": 80}, ref, {"max_mparams": 3.0, "max_gmacs": 0.8})
    assert lim == {"macs": 0.8e9, "params": 3e6, "latency_ms": 80.0}  # the tighter of global and budget
    assert _limits({"latency_frac": 0.6, "macs_frac": None}, ref, {}) == {"macs": None, "params": None,
                                                                          "latency_ms": pytest.approx(60.0)}
    cands = [{"macs": 0.7e9, "params": 2e6, "latency_ms": 70.0, "score": 3.0},
             {"macs": 0.9e9, "params": 2e6, "latency_ms": 50.0, "score": 2.0}]
    assert choose_for_budget(cands, lim)["score"] == 3.0
    assert parse_set(["latency.mode=measure", "population=3", "variants=[XL, M]"]) == {
        "latency": {"mode": "measure"}, "population": 3, "variants": ["XL", "M"]}
