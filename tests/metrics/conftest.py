"""Shared inputs for the metric tests: random smooth maps and a few real OSIE images."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

# OSIE at a quarter of 800x600; sigma 24 px at full size -> 6 px here
OSIE_SHAPE = (150, 200)
OSIE_SIGMA = 6.0


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests use small tensors: on a busy 2-core machine, intra-op threads only add
    synchronisation (8x slower measured); restored afterwards for other test folders."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def smooth_map(rng: np.random.Generator, shape=(60, 80), sigma=4.0) -> np.ndarray:
    return gaussian_filter(rng.random(shape), sigma)


def random_fixations(rng: np.random.Generator, shape, n: int) -> np.ndarray:
    f = np.zeros(shape)
    f.flat[rng.choice(f.size, n, replace=False)] = 1
    return f


@pytest.fixture(scope="session")
def pysal():
    """pysaliency, the independent oracle (test extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources deprecation inside pysaliency
        import pysaliency.metrics
        import pysaliency.roc
    return pysaliency


@pytest.fixture(scope="session")
def osie_maps(osie_dir: Path):
    """Six real OSIE images as (fixation map, density, prediction): the prediction is the
    blurred fixations of half the viewers (an inter-observer model) with a weak centre bias,
    evaluated against all viewers."""
    meta = json.loads((osie_dir / "fixations.json").read_text())
    H, W = OSIE_SHAPE
    yy, xx = np.mgrid[0:H, 0:W]
    centre = np.exp(-(((yy - H / 2) / (H / 4)) ** 2 + ((xx - W / 2) / (W / 4)) ** 2) / 2)
    out = []
    for img in meta["images"][:6]:
        sy, sx = H / img["height"], W / img["width"]
        fix, half = np.zeros((H, W)), np.zeros((H, W))
        for k, subj in enumerate(img["subjects"]):
            r = np.clip(np.round((np.asarray(subj["y"]) - 0.5) * sy).astype(int), 0, H - 1)
            c = np.clip(np.round((np.asarray(subj["x"]) - 0.5) * sx).astype(int), 0, W - 1)
            fix[r, c] = 1
            if k % 2 == 0:
                half[r, c] += 1
        dens = gaussian_filter(fix, OSIE_SIGMA)
        pred = gaussian_filter(half, OSIE_SIGMA)
        pred = pred / pred.max() + 0.1 * centre  # plus a little centre bias: positive, no ties
        out.append((fix, dens / dens.sum(), pred))
    return out
