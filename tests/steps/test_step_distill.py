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
    assert m["self_kd"] is True and m["teacher"] == "paper" and m["distill"]["teacher"] == "paper"
    assert m["score_split"] == "holdout" and "paper" in m["teacher_label"]
    model = load_model(vdir / "model.pt")
    assert config_key(model.config) == config_key(_load(searched[0] / "variants.json")["M"]["config"])
    assert model.meta["distilled"] and load_model(vdir / "extracted.pt").meta["distilled"] is False
    assert "paper" in model.meta["teacher"] and model.meta["selection_split"] == "holdout"
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




def test_distill_fits_the_postprocess_on_the_holdout_and_every_door_runs_it(distilled, tiny_ingested, tmp_path):
    """distill.postprocess: the blur + centre prior fitted on the holdout slice is inside model.pt,
    recorded in metrics.json with the holdout score with and without, and load_model (evaluate's
    loader) and predict run it."""
    import numpy as np
    import torch

    from salnas_core.nn.postprocess import Postprocess
    from salnas_core.serve.predict import Predictor
    from salnas_core.supernet import load_model, save_model

    vdir = distilled[0] / "M"
    m = _load(vdir / "metrics.json")
    post = m["postprocess"]
    n_held = _load(tiny_ingested / "manifest.json")["splits"]["holdout"]
    assert post["fitted_on"] == "holdout" and post["n_images"] == min(4, n_held) == m["holdout_images"]
    assert post["holdout_score_with"] <= post["holdout_score_without"]
    fitted = {k: post[k] for k in ("blur_px", "centre_weight", "centre_sigma", "centre_power")}
    assert fitted != {"blur_px": 0.0, "centre_weight": 0.0, "centre_sigma": fitted["centre_sigma"], "centre_power": 0.0}, \
        "an untrained decoder gains from blur or the centre prior"
    model = load_model(vdir / "model.pt")
    assert model.meta["postprocess"] == fitted and model.postprocess.as_dict() == fitted
    # the extracted subnet carries the same post-processing: extracted vs distilled rows differ by distillation only
    assert load_model(vdir / "extracted.pt").postprocess.as_dict() == fitted
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        want = model(x)
        model.set_postprocess(None)
        raw = model(x)
    assert not torch.allclose(want, raw, atol=1e-3)
    with torch.inference_mode():  # the same map as the net's raw output post-processed at its working size
        assert torch.allclose(want, model.set_postprocess(Postprocess(**fitted))(x), atol=1e-6)
    rgb = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    pr = Predictor(vdir / "model.pt", device="cpu")
    assert pr.net.postprocess.as_dict() == fitted
    model.set_postprocess(None)
    plain = Predictor(save_model(tmp_path / "plain.pt", model, meta=model.meta), device="cpu")
    assert not np.allclose(pr.predict_arrays([rgb])[0], plain.predict_arrays([rgb])[0], atol=1e-3)


def test_search_and_distill_never_read_the_validation_split(supernet_dir, tiny_ingested, tmp_path):
    """Every validation file (image, maps, fixations) is replaced by garbage: search and distill
    still run (they score on the holdout slice), and the holdout is not among the training images."""
    import shutil

    from salnas_core.data.dataset import SaliencyDataset
    from salnas_core.steps.distill import run as distill
    from salnas_core.steps.search import run as search

    data = tmp_path / "data" / tiny_ingested.name
    shutil.copytree(tiny_ingested, data)
    man = _load(data / "manifest.json")
    val = [it for it in man["items"] if it["split"] == "val"]
    assert val
    for it in val:
        for k in ("image", "density", "fixations", "orig_fixations"):
            if it.get(k):
                (data / it[k]).write_bytes(b"poison")
    with pytest.raises(Exception):  # the poison works: a val image does not decode
        SaliencyDataset(data, "val")[0]
    s = search(supernet_dir, data, tmp_path / "s", preset="tiny", progress=False, track=False)
    cands = _load(tmp_path / "s" / "candidates.json")
    assert cands["score_split"] == "holdout" and cands["score_images"] == min(2, man["splits"]["holdout"])
    res = distill(tmp_path / "s" / "variants.json", supernet_dir, data, tmp_path / "d", variant="M",
                  preset="tiny", progress=False, track=False)
    assert "M" in s["variants"] and res["M"]["holdout_images"] > 0
    held = set(man["holdout"]["ids"])
    assert held and not held & set(SaliencyDataset(data, "train").ids)
