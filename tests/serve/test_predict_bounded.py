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


def test_tiny_images_run_at_a_small_size_and_photos_at_the_net_resolution(lite_model):
    """Finding 12b: a 16x16 icon was enlarged to 256x256 (16x the pixels of 64x64) before the net;
    now an image under half the resolution runs at twice its long side (at least 64), and
    everything larger exactly as before."""
    import torch

    # eager: the sizes are read off the torch net's first convolution (test_serve_engines checks
    # that the ONNX engines give the same maps at these sizes)
    pred = P.Predictor(lite_model, device="cpu", batch_size=4, engine="eager")
    res = pred.loaded.resolution
    seen: list[tuple[int, int]] = []
    first_conv = next(m for m in pred.net.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    rng = np.random.default_rng(0)
    tiny = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    small = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    maps = pred.predict_arrays(tiny + [small, photo])
    hook.remove()
    assert [m.shape for m in maps] == [(16, 16)] * 3 + [(40, 100), (300, 400)]
    assert all(np.isfinite(m).all() and (m >= 0).all() for m in maps)
    assert (64, 64) in seen and (96, 224) in seen  # 2 x 16 -> 64 (the floor); 2 x 100 -> 224
    assert pred.input_size(300, 400) == pred.loaded.net.space.working_size(300, 400, res)
    assert max(max(s) for s in seen) == res and len(seen) == 3  # one batch per input size
    # the map of a tiny image is the net's own output at that size, resized back
    x = P.normalize(torch.from_numpy(tiny[0]).permute(2, 0, 1)[None].float() / 255.0, pred.loaded.normalization)
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        y = pred.net(x, resolution=64)
    want = torch.nn.functional.interpolate(y, size=(16, 16), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(maps[0], want, atol=1e-5)
