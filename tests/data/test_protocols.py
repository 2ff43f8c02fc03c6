"""The `authors` protocol (data.protocols): the SalNAS authors' sigmas, split sizes and CAT2000
stratification at ingest, 384x384 + blur scoring at evaluate; `mit` stays the default."""
from __future__ import annotations

import json

import numpy as np
import pytest

from salnas_core.data.protocols import PROTOCOLS, category_of, get_protocol
from salnas_core.data.splits import assign_splits
from salnas_core.errors import UserError


@pytest.mark.parametrize("dataset,total,n_val", [("mit1003", 1003, 200), ("pascal_s", 850, 200),
                                                 ("dut_omron", 5168, 1000), ("fiwi", 149, 50), ("osie", 700, 200)])
def test_authors_split_sizes(dataset, total, n_val):
    ids = [f"{i:05d}" for i in range(total)]
    s = assign_splits(dataset, ids, 42, rules=PROTOCOLS["authors"].splits)
    assert sum(v == "val" for v in s.values()) == n_val
    # same seed-42 shuffle of sorted names: the authors' OSIE split is this project's
    if dataset == "osie":
        assert s == assign_splits("osie", ids, 42)


def test_cat2000_is_stratified_per_category():
    cats = [f"Cat{c:02d}" for c in range(20)]
    ids = [f"{c}__{i:03d}" for c in cats for i in range(1, 101)]
    s = assign_splits("cat2000", ids, 42, rules=PROTOCOLS["authors"].splits)
    assert sum(v == "val" for v in s.values()) == 400
    per_cat = {c: sum(v == "val" for k, v in s.items() if category_of(k) == c) for c in cats}
    assert set(per_cat.values()) == {20}  # 80/20 inside every category
    mit = assign_splits("cat2000", ids, 42)  # the default rule is a plain 80/20 over everything
    assert sum(v == "val" for v in mit.values()) == 400
    assert len({sum(v == "val" for k, v in mit.items() if category_of(k) == c) for c in cats}) > 1


def test_unknown_protocol_is_one_line():
    with pytest.raises(UserError, match="unknown protocol 'paper'.*mit, authors"):
        get_protocol("paper")
    assert get_protocol(None).name == "mit"


def test_ingest_under_the_authors_protocol_uses_their_sigma(tmp_path, osie_subset_dir):
    from salnas_core.steps.ingest import run

    mit = run(str(osie_subset_dir), "shared_json", str(tmp_path / "mit"), working_size=(96, 128), progress=False)
    aut = run(str(osie_subset_dir), "shared_json", str(tmp_path / "aut"), working_size=(96, 128),
              protocol="authors", progress=False)
    m_mit = json.loads((tmp_path / "mit" / "osie" / "manifest.json").read_text())
    m_aut = json.loads((tmp_path / "aut" / "osie" / "manifest.json").read_text())
    assert m_mit["protocol"] == "mit" and m_mit["sigma_ref_px"] == 24.0  # OSIE's declared sigma
    assert m_aut["protocol"] == "authors" and m_aut["sigma_ref_px"] == 16.0
    assert "download.py L291" in m_aut["sigma_source"]
    assert m_aut["sigma_px"] == pytest.approx(m_mit["sigma_px"] * 16 / 24)
    assert mit["version"] != aut["version"]  # a different data version, so DVC and the registry see it
    it = m_aut["items"][0]
    d_mit = np.load(tmp_path / "mit" / "osie" / it["density"])
    d_aut = np.load(tmp_path / "aut" / "osie" / it["density"])
    assert d_aut.max() > d_mit.max()  # the narrower Gaussian peaks higher


def test_a_resumed_ingest_takes_the_new_split(tmp_path, osie_subset_dir):
    """A rerun with another seed kept the first run's split for every finished item."""
    from salnas_core.steps.ingest import run

    # named "subset": the default 80/20 rule (OSIE's 200 validation images would take all 8)
    a = run(str(osie_subset_dir), "shared_json", str(tmp_path), working_size=(96, 128), name="subset", progress=False,
            overrides={"sigma_px": 8.0})
    man_a = json.loads((tmp_path / "subset" / "manifest.json").read_text())
    b = run(str(osie_subset_dir), "shared_json", str(tmp_path), working_size=(96, 128), name="subset",
            progress=False, overrides={"seed": 7, "sigma_px": 8.0})
    man_b = json.loads((tmp_path / "subset" / "manifest.json").read_text())
    want = assign_splits("subset", [it["id"] for it in man_a["items"]], 7)
    assert b["resumed"] == len(man_b["items"]) > 0
    assert {it["id"]: it["split"] for it in man_b["items"]} == {k: want[k] for k in want}
    assert {it["id"]: it["split"] for it in man_a["items"]} != {it["id"]: it["split"] for it in man_b["items"]}
    assert a["version"] != b["version"]


def test_evaluate_follows_the_protocol_of_the_dataset(tmp_path, osie_subset_dir):
    import torch

    from salnas_core import artifacts
    from salnas_core.evaluate.tables import evaluate_dataset
    from salnas_core.steps.ingest import run

    class Centre(torch.nn.Module):
        def forward(self, x):
            h, w = x.shape[-2:]
            yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
            return torch.exp(-(xx ** 2 + yy ** 2) / 0.3).expand(x.shape[0], 1, h, w).clone()

    rows = {}
    for proto in ("mit", "authors"):
        s = run(str(osie_subset_dir), "shared_json", str(tmp_path / proto), working_size=(96, 128),
                protocol=proto, progress=False)
        rows[proto] = evaluate_dataset({"blob": (Centre(), "imagenet", None)}, s["out"], blur_options=(False,),
                                       n_other=2, progress=False)
    mit, aut = rows["mit"], rows["authors"]
    assert {r["blur"] for r in mit} == {False} and all(r["eval_size"] is None for r in mit)
    assert {r["blur"] for r in aut} == {True}  # always blurred, whatever the params say
    assert all(r["protocol"] == "authors" and r["eval_size"] == [384, 384] for r in aut)
    blob_mit = next(r for r in mit if r["model"] == "blob")
    blob_aut = next(r for r in aut if r["model"] == "blob")
    assert blob_aut["n"] == blob_mit["n"] and blob_aut["cc"] != blob_mit["cc"]
    assert artifacts.protocol(blob_aut) == f"protocol=authors/osie/{blob_aut['split']}/n={blob_aut['n']}/384x384/blur=on"
    assert artifacts.protocol(blob_mit) == f"osie/{blob_mit['split']}/n={blob_mit['n']}/original-size/blur=off"
