"""The ingest step end to end: output layout, resume after a crash, params, CLI, synthetic data, S3."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import salnas_core.data.ingest as ingest_mod
from salnas_core.cli import main as cli_main
from salnas_core.data.dataset import load_manifest
from salnas_core.data.ingest import ingest
from salnas_core.data.synthetic import generate
from salnas_core.steps.ingest import run

SMALL = (48, 64)


def _osie(osie_subset_dir, out, **kw):
    return ingest(osie_subset_dir, "shared_json", out, working_size=SMALL, limit=6, progress=False, workers=1, **kw)


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_output_matches_the_manifest(osie_subset_dir, tmp_path):
    s = _osie(osie_subset_dir, tmp_path)
    root = tmp_path / "osie"
    man = load_manifest(root)
    assert man["dataset"] == "osie" and man["working_size"] == list(SMALL) and man["synthetic"] is False
    assert man["sigma_px"] == pytest.approx(24 * 80 / 1000)  # diagonal 80 px vs 1000 px
    assert len(man["items"]) == s["images"] == 6 and man["splits"]["train"] + man["splits"]["val"] == 6
    for it in man["items"]:
        for key in ("image", "density", "fixations"):
            assert _sha(root / it[key]) == it["sha256"][key]
        fx, orig = np.load(root / it["fixations"]), np.load(root / it["orig_fixations"])
        assert fx.dtype == np.int32 and len(fx) == len(orig) == it["n_fixations"] > 0
    report = json.loads((root / "report.json").read_text())
    assert report["counts"]["fixations"] == s["fixations"] == sum(it["n_fixations"] for it in man["items"])
    assert report["timing"]["wall_s"] > 0


def test_rerun_after_crash_finishes_without_redoing_work(osie_subset_dir, tmp_path, monkeypatch):
    fresh = _osie(osie_subset_dir, tmp_path / "fresh")
    out = tmp_path / "out"
    real = ingest_mod.process_item
    calls = {"n": 0}

    def crash_on_fifth(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated crash")
        return real(*a, **kw)

    monkeypatch.setattr(ingest_mod, "process_item", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        _osie(osie_subset_dir, out)
    monkeypatch.setattr(ingest_mod, "process_item", real)
    assert not (out / "osie" / "manifest.json").exists()  # no manifest: readers never see a partial dataset
    (out / "osie" / "images" / "1005.png.tmp-4242").write_bytes(b"half a png")  # debris of a killed write
    again = _osie(osie_subset_dir, out)
    # items 1-4 were finished before the crash (a thread may have finished one more)
    assert again["resumed"] in (4, 5) and again["images"] == 6
    assert again["version"] == fresh["version"]  # same bytes as an uninterrupted run
    assert not list((out / "osie").rglob("*.tmp-*"))


def test_damaged_output_is_detected_and_rewritten(osie_subset_dir, tmp_path):
    first = _osie(osie_subset_dir, tmp_path)
    man = load_manifest(tmp_path / "osie")
    victim = tmp_path / "osie" / man["items"][2]["density"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the map
    victim.write_bytes(bytes(data))
    again = _osie(osie_subset_dir, tmp_path)
    assert again["resumed"] == 5 and again["version"] == first["version"]
    assert _sha(victim) == man["items"][2]["sha256"]["density"]


def test_changed_settings_redo_everything_and_drop_stale_items(osie_subset_dir, tmp_path):
    _osie(osie_subset_dir, tmp_path)
    s = ingest(osie_subset_dir, "shared_json", tmp_path, working_size=(24, 32), limit=4, progress=False, workers=1)
    assert s["resumed"] == 0 and s["images"] == 4
    root = tmp_path / "osie"
    assert sorted(p.name for p in (root / "images").iterdir()) == [f"{i}.png" for i in range(1001, 1005)]
    assert np.load(root / "density" / "1001.npy").shape == (24, 32)


def test_step_reads_params_and_cli_runs(osie_subset_dir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  working_size: [24, 32]\n  seed: 7\n")
    s = run(str(osie_subset_dir), "shared_json", str(tmp_path / "a"), limit=3, params_path=str(params), progress=False)
    man = load_manifest(s["out"])
    assert man["working_size"] == [24, 32] and man["seed"] == 7
    rc = cli_main(["ingest", "--source", str(osie_subset_dir), "--format", "shared_json", "--out", str(tmp_path / "b"),
                   "--working-size", "24", "32", "--limit", "2", "--no-progress"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["images"] == 2


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli_main(["ingest", "--source", str(tmp_path), "--format", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset format 'nope'" in err and "shared_json" in err and len(err.splitlines()) == 1
    assert cli_main(["ingest", "--source", str(tmp_path / "absent"), "--format", "osie", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'absent'}: not found" in err and len(err.splitlines()) == 1


def test_unknown_dataset_needs_a_sigma(tmp_path):
    generate(tmp_path / "src", n_images=2, seed=0)
    data = json.loads((tmp_path / "src" / "fixations.json").read_text())
    for k in ("synthetic", "sigma_px", "sigma_ref_size"):
        data.pop(k)
    (tmp_path / "src" / "fixations.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no Gaussian sigma known for dataset 'src'"):
        ingest(tmp_path / "src", "shared_json", tmp_path / "out", progress=False)


def test_synthetic_data_says_so_and_follows_its_density(tmp_path, caplog):
    from PIL import Image

    src = generate(tmp_path / "src", n_images=4, seed=3, n_subjects=20, fixations_per_subject=30)
    with caplog.at_level("WARNING"):
        s = ingest(src, "shared_json", tmp_path / "out", working_size=(96, 128), progress=False)
    assert s["synthetic"] is True and "SYNTHETIC" in caplog.text
    man = load_manifest(s["out"])
    assert man["synthetic"] is True and man["dataset"] == "synthetic"
    assert s["fixations"] == 4 * 20 * 30
    ccs = []
    for it in man["items"]:
        true = np.load(src / "true_density" / f"{it['id']}.npy")
        true = np.asarray(Image.fromarray(true, "F").resize((128, 96), Image.Resampling.BILINEAR))
        dens = np.load(Path(s["out"]) / it["density"])
        ccs.append(np.corrcoef(true.ravel(), dens.ravel())[0, 1])
    assert min(ccs) > 0.6, ccs  # fixations really were drawn from the known density


def test_s3_source(s3_server, s3_prefix, tmp_path):
    from salnas_core.tracking.storage import upload_dir

    src = generate(tmp_path / "src", n_images=3, seed=1)
    local = ingest(src, "shared_json", tmp_path / "local", working_size=SMALL, progress=False)
    upload_dir(src, s3_prefix)
    with pytest.raises(ValueError, match="local folders"):  # data/ingest is local-only: the step downloads
        ingest(s3_prefix, "shared_json", tmp_path / "remote", working_size=SMALL, progress=False)
    from salnas_core.steps.ingest import fetch_source

    remote = ingest(fetch_source(s3_prefix, tmp_path / "cache"), "shared_json", tmp_path / "remote",
                    working_size=SMALL, progress=False, source_label=s3_prefix)
    assert remote["images"] == 3 and remote["version"] == local["version"]
    assert load_manifest(remote["out"])["source"] == s3_prefix
