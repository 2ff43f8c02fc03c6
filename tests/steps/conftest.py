"""Fixtures of the step tests: a real `lite` supernet (ImageNet encoder, untrained decoder) and the
search -> distill chain on the tiny OSIE subset with the tiny preset, shared by tests/steps/.

The steps' logic does not depend on how well the supernet was trained, and training one here would
cost minutes (test_train_supernet trains one epoch through the CLI).
"""
import json

import pytest


def load_json(p):
    return json.loads(p.read_text())


@pytest.fixture(scope="session")
def supernet_dir(tmp_path_factory):
    import torch

    from salnas_core.supernet import create_supernet
    from salnas_core.train.checkpoint import save_supernet

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("supernet")
    save_supernet(d / "supernet.pt", create_supernet("lite", pretrained=True), "lite", {"note": "untrained decoder"})
    return d


@pytest.fixture(scope="session")
def searched(supernet_dir, tiny_ingested, tmp_path_factory):
    from salnas_core.steps.search import run

    out = tmp_path_factory.mktemp("search")
    return out, run(supernet_dir, tiny_ingested, out, preset="tiny", progress=False, track=False)


@pytest.fixture(scope="session")
def distilled(searched, supernet_dir, tiny_ingested, tmp_path_factory):
    from salnas_core.steps.distill import run

    out = tmp_path_factory.mktemp("distill")
    res = run(searched[0] / "variants.json", supernet_dir, tiny_ingested, out, variant="M", preset="tiny",
              progress=False, track=False)
    return out, res
