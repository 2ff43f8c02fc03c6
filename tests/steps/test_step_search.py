"""Step `search`: evolution per budget, the Pareto front, and the tables DVC plots."""
import json

import pytest


pytestmark = pytest.mark.timeout(900)


def _load(p):
    return json.loads(p.read_text())


def test_search_outputs_and_constraints(searched, supernet_dir, tiny_ingested):
    from salnas_core.spaces import get_space
    from salnas_core.steps.search import run

    out, s = searched
    cands = _load(out / "candidates.json")
    variants = _load(out / "variants.json")
    pareto = _load(out / "pareto.json")
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    space = get_space("lite")
    assert set(variants) == {"XL", "M", "FIXED"}
    assert variants["XL"]["config"] == space.max_config() and not variants["XL"]["searched"]
    assert variants["FIXED"]["searched"] is False
    lim = variants["M"]["limits"]
    assert lim["macs"] == pytest.approx(0.55 * cands["max_subnet"]["macs"])
    assert lim["latency_ms"] is None  # the tiny preset limits M on MACs only
    # every candidate searched for M respects M's limits, and M is the best of them
    m_cands = [c for c in cands["candidates"] if "M" in c["budgets"]]
    assert len(m_cands) >= 3
    assert all(c["macs"] <= lim["macs"] for c in m_cands)
    assert variants["M"]["score"] == min(c["score"] for c in cands["candidates"] if c["macs"] <= lim["macs"])
    for c in cands["candidates"]:
        space.validate_config(c["config"])
        assert set(c["metrics"]) >= {"cc", "kld", "nss", "sim", "auc_judd", "score"}
        assert c["metrics"]["score"] == c["score"] and c["params"] > 0 and c["macs"] > 0
    # the front holds non-dominated points only
    front = pareto["front_macs"]
    assert all(a["macs"] <= b["macs"] and a["score"] > b["score"] for a, b in zip(front, front[1:]))
    assert "held_out_spearman" in cands["predictor"] and cands["predictor"]["name"] == "ridge"
    # the latency is of the deployed form the params name (tiny: eager), recorded with it
    assert cands["latency"]["engine"] == "eager" and all(v["latency_engine"] == "eager" for v in variants.values())
    # a rerun with the same inputs is recognised as complete
    again = run(supernet_dir, tiny_ingested, out, preset="tiny", progress=False, track=False)
    assert again.get("skipped") and again["variants"] == variants


    # the tables `dvc plots` reads: every candidate, and the front, GMACs against the score
    rows = (out / "plots" / "candidates.csv").read_text().splitlines()
    assert rows[0] == "gmacs,score,latency_ms,mparams,variant" and len(rows) == 1 + cands["n"]
    assert {r.split(",")[-1] for r in rows[1:]} >= {"XL", "M"}
    prow = (out / "plots" / "pareto.csv").read_text().splitlines()
    assert prow[0] == "gmacs,score" and len(prow) == 1 + len(front)


def test_budgets_with_the_same_subnet_are_marked():
    from salnas_core.steps.search import mark_same_subnets

    a, b = {"width": [1, 2], "depth": [1]}, {"width": [1, 3], "depth": [1]}
    v = {"XL": {"config": b, "score": 1.0}, "M": {"config": a, "score": 2.0},
         "S": {"config": dict(a), "score": 2.0}}
    assert mark_same_subnets(v) == [("M", "S")]
    assert v["S"]["same_as"] == "M" and "same_as" not in v["M"] and "same_as" not in v["XL"]


