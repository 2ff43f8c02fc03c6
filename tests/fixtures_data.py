"""Dataset fixtures (owned by the data layer).

osie_dir / scene_dir: the real eye-tracking data in <repo>/../shared/data (skip if absent).
tiny_ingested: a small real ingested dataset (24 OSIE images at 96x128, both splits present)
for the steps' tests; without ../shared/data it is built from synthetic data instead.
synthetic_ingested: the synthetic dataset ingested (always available).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_SIZE = (96, 128)
TINY_N = 24


def _dataset_dir(name: str) -> Path:
    d = SHARED_DATA / name
    if not (d / "fixations.json").exists():
        pytest.skip(f"real data not present: {d}")
    return d


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def osie_dir() -> Path:
    return _dataset_dir("osie")


@pytest.fixture(scope="session")
def scene_dir() -> Path:
    return _dataset_dir("nus_scene")


@pytest.fixture(scope="session")
def osie_subset_dir(tmp_path_factory, osie_dir) -> Path:
    """A folder named osie in the shared_json layout with the first 8 real OSIE images (symlinked).

    Reading it is instant (the full fixations.json takes ~0.5 s to parse), for tests that ingest often.
    """
    import json

    root = tmp_path_factory.mktemp("osie_subset") / "osie"
    (root / "stimuli").mkdir(parents=True)
    data = json.loads((osie_dir / "fixations.json").read_text())
    data["images"] = data["images"][:8]
    for e in data["images"]:
        (root / e["file"]).symlink_to(osie_dir / e["file"])
    data["n_images"] = len(data["images"])
    data["n_fixations"] = sum(len(s["x"]) for e in data["images"] for s in e["subjects"])
    (root / "fixations.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> Path:
    from salnas_core.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic_src"), n_images=16, seed=0, size=(120, 160))


@pytest.fixture(scope="session")
def synthetic_ingested(tmp_path_factory, synthetic_source) -> Path:
    from salnas_core.steps.ingest import run

    out = tmp_path_factory.mktemp("synthetic_ingested")
    summary = run(str(synthetic_source), "shared_json", str(out), working_size=TINY_SIZE, progress=False)
    return Path(summary["out"])


@pytest.fixture(scope="session")
def tiny_ingested(tmp_path_factory) -> Path:
    """Folder with manifest.json: 24 real OSIE images at 96x128 (train and val), ~3k fixations."""
    from salnas_core.steps.ingest import run

    out = tmp_path_factory.mktemp("tiny_ingested")
    osie = SHARED_DATA / "osie"
    if (osie / "fixations.json").exists():
        summary = run(str(osie), "shared_json", str(out), working_size=TINY_SIZE, limit=TINY_N, progress=False)
    else:
        from salnas_core.data.synthetic import generate

        src = generate(tmp_path_factory.mktemp("tiny_synthetic_src"), n_images=TINY_N, seed=0)
        summary = run(str(src), "shared_json", str(out), working_size=TINY_SIZE, progress=False)
    return Path(summary["out"])


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Two real static subnets of the lite space (the smallest), with different weights."""
    import torch

    from salnas_core.supernet import create_supernet, save_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    sn = create_supernet("lite", pretrained=False)
    sn.sample_min_subnet()
    net = sn.get_active_subnet()
    paths = [save_model(d / "m0" / "model.pt", net)]
    with torch.no_grad():  # a second model: same architecture, other weights
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    paths.append(save_model(d / "m1" / "model.pt", net))
    return paths
