"""The one image decoder: ingest (training data) and predict (serving) see the same pixels."""
from __future__ import annotations

import numpy as np
from PIL import Image


def _rgba_png(path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    alpha = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    alpha[:4] = 255
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return rgb, alpha


def test_ingest_and_predict_decode_an_rgba_png_identically(tmp_path):
    from salnas_core.data.images import ALPHA_BACKGROUND
    from salnas_core.data.ingest import load_image as ingest_load
    from salnas_core.serve.images import load_image as predict_load

    path = tmp_path / "rgba.png"
    rgb, alpha = _rgba_png(path)
    at_ingest, _, warnings = ingest_load(path)
    at_predict = predict_load(path)
    np.testing.assert_array_equal(at_ingest, at_predict)
    a = alpha[..., None] / 255.0
    expected = rgb * a + np.asarray(ALPHA_BACKGROUND) * (1 - a)
    np.testing.assert_allclose(at_predict, expected, atol=1.0)
    assert any(w.kind == "image_mode" and "grey (128)" in w.message for w in warnings)
    # an RGBA array handed to predict is composited the same way
    arr = predict_load(np.asarray(Image.open(path)))
    np.testing.assert_allclose(arr, at_predict, atol=1.0)


def test_other_modes_agree(tmp_path):
    from salnas_core.data.ingest import load_image as ingest_load
    from salnas_core.serve.images import load_image as predict_load

    g16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)
    cases = {"l.png": Image.fromarray((g16 >> 8).astype(np.uint8), "L"),
             "g16.png": Image.fromarray(g16),
             "p.png": Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 3), dtype=np.uint8)).convert("P")}
    for name, im in cases.items():
        im.save(tmp_path / name)
        np.testing.assert_array_equal(ingest_load(tmp_path / name)[0], predict_load(tmp_path / name), err_msg=name)
