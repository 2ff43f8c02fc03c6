"""The three steps on real data (tiny OSIE subset) with the tiny preset: search -> distill -> evaluate.

The supernet is the real `lite` supernet with its ImageNet encoder (untrained decoder): the steps'
logic does not depend on how well it was trained, and training one here would cost minutes.
"""
import json

import pytest

from salnas_core.search.evolution import config_key

pytestmark = pytest.mark.timeout(900)


def _load(p):
    return json.loads(p.read_text())


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory):
    import torch

    from salnas_core.supernet import create_supernet
    from salnas_core.train.checkpoint import save_supernet

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("supernet")
    save_supernet(d / "supernet.pt", create_supernet("lite", pretrained=True), "lite", {"note": "untrained decoder"})
    return d


@pytest.fixture(scope="module")
def searched(supernet_dir, tiny_ingested, tmp_path_factory):
    from salnas_core.steps.search import run

    out = tmp_path_factory.mktemp("search")
    return out, run(supernet_dir, tiny_ingested, out, preset="tiny", progress=False, track=False)


@pytest.fixture(scope="module")
def distilled(searched, supernet_dir, tiny_ingested, tmp_path_factory):
    from salnas_core.steps.distill import run

    out = tmp_path_factory.mktemp("distill")
    res = run(searched[0] / "variants.json", supernet_dir, tiny_ingested, out, variant="M", preset="tiny",
              progress=False, track=False)
    return out, res


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
    # a rerun with the same inputs is recognised as complete
    again = run(supernet_dir, tiny_ingested, out, preset="tiny", progress=False, track=False)
    assert again.get("skipped") and again["variants"] == variants


def test_distill_reports_with_and_without(distilled, searched):
    from salnas_core.supernet import load_model

    out, res = distilled
    vdir = out / "M"
    m = _load(vdir / "metrics.json")
    assert set(res) == {"M"}
    assert m["without"]["score"] == m["history"][0]["score"]
    assert m["with"]["score"] <= m["without"]["score"] + 1e-9
    assert m["self_kd"] is True and m["distill"]["top_k"] == 3
    model = load_model(vdir / "model.pt")
    assert config_key(model.config) == config_key(_load(searched[0] / "variants.json")["M"]["config"])
    assert model.meta["distilled"] and load_model(vdir / "extracted.pt").meta["distilled"] is False
    assert (vdir / "plots" / "distill.png").exists() and (vdir / "plots" / "distill.csv").exists()


def test_distill_bad_variant_is_named(searched, supernet_dir, tiny_ingested, tmp_path):
    from salnas_core.steps.distill import run

    with pytest.raises(ValueError, match="no variant 'XXL'"):
        run(searched[0], supernet_dir, tiny_ingested, tmp_path, variant="XXL", preset="tiny", track=False)
    bad = tmp_path / "variants.json"
    bad.write_text("{broken")
    with pytest.raises(ValueError, match="variants.json: malformed JSON"):
        run(bad, supernet_dir, tiny_ingested, tmp_path, preset="tiny", track=False)


def test_budgets_with_the_same_subnet_are_marked():
    from salnas_core.steps.search import mark_same_subnets

    a, b = {"width": [1, 2], "depth": [1]}, {"width": [1, 3], "depth": [1]}
    v = {"XL": {"config": b, "score": 1.0}, "M": {"config": a, "score": 2.0},
         "S": {"config": dict(a), "score": 2.0}}
    assert mark_same_subnets(v) == [("M", "S")]
    assert v["S"]["same_as"] == "M" and "same_as" not in v["M"] and "same_as" not in v["XL"]


def test_distill_copies_a_twin_variant_instead_of_repeating(searched, supernet_dir, tiny_ingested, tmp_path):
    """Two variants with one subnet (search's same_as): distilled once, the second a renamed copy
    with the same weights, its own meta and no checkpoints."""
    import torch

    from salnas_core.steps.distill import run
    from salnas_core.supernet import load_model

    table = _load(searched[0] / "variants.json")
    twins = tmp_path / "variants.json"
    twins.write_text(json.dumps({"M": table["M"], "S": {**table["M"], "same_as": "M"}}))
    res = run(twins, supernet_dir, tiny_ingested, tmp_path / "d", preset="tiny", progress=False, track=False)
    m, s = load_model(tmp_path / "d" / "M" / "model.pt"), load_model(tmp_path / "d" / "S" / "model.pt")
    assert s.meta["variant"] == "S" and s.meta["same_as"] == "M" and m.meta["variant"] == "M"
    assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), s.state_dict().values()))
    assert res["S"]["same_as"] == "M" and res["S"]["with"] == res["M"]["with"]
    assert _load(tmp_path / "d" / "S" / "metrics.json")["variant"] == "S"
    assert load_model(tmp_path / "d" / "S" / "extracted.pt").meta["variant"] == "S"
    assert (tmp_path / "d" / "M" / "checkpoints").exists() and not (tmp_path / "d" / "S" / "checkpoints").exists()


def test_evaluate_tables_and_efficiency(distilled, searched, tiny_ingested, tmp_path):
    from salnas_core.evaluate.efficiency import FIELDS
    from salnas_core.steps.evaluate import run

    out = tmp_path / "eval"
    s = run(distilled[0], [tiny_ingested], out, search=searched[0], preset="tiny", progress=False, track=False)
    rows = s["rows"]
    names = {r["model"] for r in rows}
    assert names == {"centre_bias", "M", "M (extracted)"}
    assert {r["blur"] for r in rows} == {False, True}
    n_val = sum(1 for it in _load(tiny_ingested / "manifest.json")["items"] if it["split"] == "val")
    for r in rows:
        assert r["n"] == min(4, n_val) and r["split"] == "val" and r["cross"] is False
        assert all(k in r for k in ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig", "score"))
    cb = next(r for r in rows if r["model"] == "centre_bias")
    assert abs(cb["ig"]) < 1e-6  # the IG baseline is the centre bias itself
    md = (out / "metrics.md").read_text()
    assert "| M (extracted) |" in md and "blur on" in md and "## Search" in md
    eff = _load(out / "efficiency.json")
    row = next(r for r in eff["rows"] if r["model"] == "M")
    for f in FIELDS:
        assert f in row, f
    assert row["input_size"] == [64, 96] and row["size_mb_fp16"] < 0.6 * row["size_mb_fp32"]
    assert "estimate" in row["energy_method"] or "counter" in row["energy_method"]
    assert (out / "efficiency.md").read_text().count("| M |") == 1
