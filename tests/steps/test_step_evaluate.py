"""Step `evaluate`: metric tables, efficiency, and the numbers `dvc metrics` prints."""
import json

import pytest

pytestmark = pytest.mark.timeout(900)


def _load(p):
    return json.loads(p.read_text())


def test_evaluate_tables_and_efficiency(distilled, searched, tiny_ingested, tmp_path):
    from salnas_core.evaluate.efficiency import FIELDS
    from salnas_core.steps.evaluate import run

    out = tmp_path / "eval"
    s = run(distilled[0], [tiny_ingested], out, search=searched[0], preset="tiny", progress=False, track=False)
    rows = s["rows"]
    names = {r["model"] for r in rows}
    assert names == {"centre_bias", "spectral_residual_x_centre", "M", "M (extracted)"}
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
    # batch-1 latency of both forms, and the search table's prediction for the variant beside them
    assert row["latency_ms_b1_onnx"] > 0 and row["deployed_engine"] == "onnx"
    searched_m = _load(searched[0] / "variants.json")["M"]
    assert row["latency_ms_b1_search"] == searched_m["latency_ms"] and row["latency_engine_search"] == "eager"
    # `dvc metrics show`: one number per dataset x model x metric, with the model's costs
    scores = _load(out / "scores.json")
    (ds,) = scores
    assert set(scores[ds]) == {"M", "M_blur", "M_extracted", "M_extracted_blur", "centre_bias", "centre_bias_blur",
                               "spectral_residual_x_centre", "spectral_residual_x_centre_blur"}
    m = scores[ds]["M"]
    assert m["nss"] == next(r["nss"] for r in rows if r["model"] == "M" and not r["blur"])
    assert m["gmacs"] == row["gmacs"] and m["latency_ms_b1"] == row["latency_ms_b1"]
    assert m["latency_ms_b1_onnx"] == row["latency_ms_b1_onnx"]
    assert all(isinstance(v, float) for cell in scores[ds].values() for v in cell.values())
