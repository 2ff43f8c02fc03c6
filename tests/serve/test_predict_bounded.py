"""Issue 16, finding 12: predict's memory on a huge image stays a small multiple of the image itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from salnas_core.serve import predict as P

_PEAK = """
import json, sys
import numpy as np
from PIL import Image
from salnas_core.serve.predict import run

def hwm():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024

h, w = int(sys.argv[3]), int(sys.argv[4])
y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
a = np.empty((h, w, 3), np.uint8)
a[..., 0] = (0.5 * (x + y)).astype(np.uint8); a[..., 1] = (255 - y).astype(np.uint8); a[..., 2] = (3 * x % 256).astype(np.uint8)
Image.fromarray(a).save(sys.argv[2] + "/big.jpg", quality=85)
del a, x, y
run([sys.argv[2] + "/small.png"], sys.argv[2] + "/warm", sys.argv[1], progress=False)  # model, imports, torch pools
base = hwm()
s = run([sys.argv[2] + "/big.jpg"], sys.argv[2] + "/out", sys.argv[1], progress=False)
print(json.dumps({"base": base, "peak": hwm(), "n": s["n_predicted"]}))
"""


def test_huge_image_peak_memory_is_bounded(tmp_path, lite_model):
    from PIL import Image

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "small.png")
    h, w = 5000, 6000  # 30 MP, 90 MB as RGB
    r = subprocess.run([sys.executable, "-c", _PEAK, str(lite_model), str(tmp_path), str(h), str(w)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["n"] == 1
    rgb = h * w * 3
    # before: float copies of the image (input resize) and of the overlay arithmetic, ~20x the RGB
    # bytes; now: decoded image, its array, the float map and the 16-bit map
    assert got["peak"] - got["base"] < 8 * rgb, (got, rgb)


def test_blockwise_uint16_and_overlay_equal_the_whole_image_formula():
    rng = np.random.default_rng(0)
    h, w = 700, 1800  # > one block of 2**20 elements
    m = rng.random((h, w), dtype=np.float32) * 0.7
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref16 = np.rint(np.clip(m.astype(np.float64) * (65535.0 / float(m.max())), 0, 65535)).astype(np.uint16)
    np.testing.assert_array_equal(P.to_uint16(m), ref16)
    import matplotlib

    lo, hi = float(m.min()), float(m.max())
    mm = np.clip((m - lo) / (hi - lo), 0.0, 1.0)
    colors = matplotlib.colormaps["inferno"].resampled(256)(np.rint(mm * 255).astype(np.uint8), bytes=True)[..., :3]
    a = (0.6 * mm)[..., None]
    ref = np.clip(np.rint(rgb.astype(np.float32) * (1 - a) + colors.astype(np.float32) * a), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(P.overlay(rgb, m), ref)


def test_huge_input_reduction_changes_the_input_little(lite_model, monkeypatch):
    pred = P.Predictor(str(lite_model), device="cpu")
    h, w = 2400, 3200
    y = np.linspace(0, 1, h)[:, None]
    x = np.linspace(0, 1, w)[None, :]
    rgb = np.stack(np.broadcast_arrays(np.sin(7 * x + 3 * y), np.cos(5 * y), x * y), axis=-1)
    rgb = np.clip(np.rint((rgb * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    direct, _ = pred._prepare(rgb)
    monkeypatch.setattr(P, "HUGE_PIXELS", 1000)  # take the reducing path for this 7.7 MP image
    reduced, _ = pred._prepare(rgb)
    assert reduced.shape == direct.shape
    assert float((reduced - direct).abs().mean()) < 0.01
