"""Step `distill`: each chosen subnet extracted and fine-tuned with Self-KD."""
import json

import pytest

from salnas_core.search.evolution import config_key

pytestmark = pytest.mark.timeout(900)


def _load(p):
    return json.loads(p.read_text())


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


    rows = (out / "plots" / "distill.csv").read_text().splitlines()  # every variant's curve, for `dvc plots`
    assert rows[0] == "variant,epoch,score" and {r.split(",")[0] for r in rows[1:]} == {"M"}
    assert len(rows) - 1 == len(m["history"])


def test_distill_bad_variant_is_named(searched, supernet_dir, tiny_ingested, tmp_path):
    from salnas_core.steps.distill import run

    with pytest.raises(ValueError, match="no variant 'XXL'"):
        run(searched[0], supernet_dir, tiny_ingested, tmp_path, variant="XXL", preset="tiny", track=False)
    bad = tmp_path / "variants.json"
    bad.write_text("{broken")
    with pytest.raises(ValueError, match="variants.json: malformed JSON"):
        run(bad, supernet_dir, tiny_ingested, tmp_path, preset="tiny", track=False)




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


