"""Step `snapshot`: the raw data, whole and deterministic; a generated dataset when asked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from salnas_core.errors import UserError
from salnas_core.steps import snapshot

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "osie").is_dir(), reason="../shared/data/osie is not beside the repository")
def test_shared_snapshot_is_whole_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SHARED_ENV, str(SHARED))
    (tmp_path / "a" / "stale").mkdir(parents=True)
    a = snapshot.run(tmp_path / "a", dataset="osie", overrides={"cross_datasets": []})
    b = snapshot.run(tmp_path / "b", dataset="osie", overrides={"cross_datasets": []})
    assert a["images"] == b["images"] == 700 and not a["synthetic"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["osie"]  # OUT holds the snapshot only
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.endswith(".jpg")]) == 700
    for f in files[::37] + ["osie/fixations.json"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_synthetic_snapshot_and_missing_shared_data(tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SHARED_ENV, str(tmp_path / "nowhere"))
    info = snapshot.run(tmp_path / "raw", dataset="synthetic", overrides={"synthetic_images": 3})
    meta = json.loads((tmp_path / "raw" / "synthetic" / "fixations.json").read_text())
    assert info["synthetic"] and meta.get("synthetic") and len(meta["images"]) == 3
    with pytest.raises(UserError, match="shared eye-tracking data not found; run `salnas main`"):
        snapshot.run(tmp_path / "raw", dataset="osie")
    # the door: one line, exit 2, nothing already written is lost
    r = subprocess.run([sys.executable, "-m", "salnas_core.cli", "snapshot", "--out", str(tmp_path / "raw"),
                        "--dataset", "osie"], capture_output=True, text=True,
                       env={**__import__("os").environ, snapshot.SHARED_ENV: str(tmp_path / "nowhere")})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (tmp_path / "raw" / "synthetic" / "fixations.json").is_file()


@pytest.mark.skipif(not (SHARED / "nus_scene").is_dir(), reason="../shared/data/nus_scene is not beside the repository")
def test_cross_datasets_are_copied_beside_the_training_set(tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.SHARED_ENV, str(SHARED))
    info = snapshot.run(tmp_path / "raw", dataset="synthetic",
                        overrides={"synthetic_images": 3, "cross_datasets": ["nus_scene", "synthetic"]})
    assert info["dataset"] == "synthetic" and info["cross"] == ["nus_scene"]  # never the training set itself
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["nus_scene", "synthetic"]
    assert (tmp_path / "raw" / "nus_scene" / "fixations.json").read_bytes() == (SHARED / "nus_scene" / "fixations.json").read_bytes()
    # without the shared data the job still runs: the cross-dataset is skipped and said
    monkeypatch.setenv(snapshot.SHARED_ENV, str(tmp_path / "nowhere"))
    info = snapshot.run(tmp_path / "raw", dataset="synthetic",
                        overrides={"synthetic_images": 3, "cross_datasets": ["nus_scene"]})
    assert info["cross"] == [] and sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["synthetic"]
