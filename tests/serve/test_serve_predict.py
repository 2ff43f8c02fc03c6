"""`salnas predict` and predict_images on real photos in awkward forms."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salnas_core.serve.images import ImageReadError, collect_inputs, load_image
from salnas_core.serve.models import ModelNotFoundError, resolve_model
from salnas_core.serve.predict import FITS, Predictor, predict_images, read_png16, to_uint16

GOOD = {"photo", "wide", "gray", "deep16", "rgba", "cmyk", "rotated", "sub/photo"}
BAD = {"truncated.jpg", "notes.png"}


def _display_size(path: Path) -> tuple[int, int]:
    from PIL import ImageOps

    with Image.open(path) as im:
        w, h = ImageOps.exif_transpose(im).size
    return h, w


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, image_folder, lite_model):
    from salnas_core.cli import main

    out = tmp_path_factory.mktemp("pred")
    rc = main(["predict", str(image_folder), "--model", str(lite_model), "--out", str(out), "--npy",
               "--batch-size", "3", "--device", "cpu"])
    return rc, out, json.loads((out / "predictions.json").read_text())


def test_folder_run_skips_corrupt_files_and_finishes(folder_run, image_folder):
    rc, out, summary = folder_run
    assert rc == 1  # some inputs were skipped: say so in the exit status
    assert {Path(f["input"]).name for f in summary["failed"]} == BAD
    for f in summary["failed"]:  # the message names the file and the problem
        assert f["input"] in f["error"] and ("decode" in f["error"] or "not an image" in f["error"])
    names = {Path(it["saliency"]).relative_to(out).as_posix().removesuffix("_saliency.png") for it in summary["items"]}
    assert names == GOOD
    assert summary["n_predicted"] == len(GOOD) and summary["device"] == "cpu"


@pytest.mark.parametrize("name", sorted(GOOD))
def test_outputs_at_original_size(folder_run, image_folder, name):
    _, out, _ = folder_run
    src = next(p for p in image_folder.rglob("*") if p.is_file()
               and p.relative_to(image_folder).with_suffix("").as_posix() == name)
    size = _display_size(src)
    with Image.open(out / f"{name}_saliency.png") as png:
        assert png.mode.startswith("I;16") or png.mode == "I"  # 16-bit greyscale
        assert (png.height, png.width) == size
        stored = np.asarray(png)
    raw = np.load(out / f"{name}_saliency.npy")
    assert raw.dtype == np.float32 and raw.shape == size and raw.min() >= 0
    # the PNG is the float map divided by its maximum, to 1/65535
    assert stored.max() == 65535
    np.testing.assert_allclose(stored / 65535.0, raw / raw.max(), atol=0.51 / 65535)
    with Image.open(out / f"{name}_overlay.jpg") as ov:
        assert (ov.height, ov.width) == size and ov.mode == "RGB"


def test_exif_rotation_is_applied(image_folder):
    with Image.open(image_folder / "rotated.jpg") as im:
        assert im.size == (800, 600)  # stored landscape ...
    assert load_image(image_folder / "rotated.jpg").shape == (800, 600, 3)  # ... shown portrait
    ref = np.asarray(Image.open(SHARED_1005()).convert("RGB"))
    np.testing.assert_array_less(np.abs(load_image(image_folder / "rotated.jpg").astype(int)
                                        - np.rot90(ref, k=-1).astype(int)).mean(), 3.0)


def SHARED_1005() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "osie" / "stimuli" / "1005.jpg"


def test_modes_read_as_the_same_picture(image_folder):
    gray = load_image(image_folder / "gray.png")
    assert gray.shape == (600, 800, 3) and (gray[..., 0] == gray[..., 2]).all()
    # 16-bit grey scales to the same 8-bit values (PIL's own convert would clip at 255)
    np.testing.assert_array_equal(load_image(image_folder / "deep16.png"), gray)
    rgba = load_image(image_folder / "rgba.png")
    assert rgba.shape == (600, 800, 3)
    src = np.asarray(Image.open(image_folder / "rgba.png"), dtype=np.float64)
    a = src[..., 3:] / 255
    np.testing.assert_allclose(rgba, src[..., :3] * a + 128 * (1 - a), atol=1.0)  # over grey, as ingest
    cmyk = load_image(image_folder / "cmyk.jpg")
    ref = np.asarray(Image.open(SHARED_1005().with_name("1004.jpg")).convert("RGB"), dtype=np.float64)
    assert cmyk.shape == ref.shape and np.abs(cmyk - ref).mean() < 6  # CMYK JPEG round trip


def test_corrupt_files_raise_clear_errors(image_folder, tmp_path):
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        load_image(image_folder / "truncated.jpg")
    with pytest.raises(ImageReadError, match="notes.png: not an image"):
        load_image(image_folder / "notes.png")
    with pytest.raises(ImageReadError, match="missing.jpg: file not found"):
        load_image(tmp_path / "missing.jpg")


def test_inputs_files_folders_globs(image_folder):
    items, problems = collect_inputs([str(image_folder / "*.png"), str(image_folder / "photo.jpg"),
                                      str(image_folder / "sub"), str(image_folder / "nothing*.jpg"), "no/such/dir"])
    names = [i.name for i in items]
    assert names == ["deep16", "gray", "notes", "rgba", "photo", "photo_2"]  # same stem twice: both kept
    assert items[-1].path == image_folder / "sub" / "photo.jpg"
    assert [p[0] for p in problems] == [str(image_folder / "nothing*.jpg"), "no/such/dir"]


def test_api_matches_cli_and_grey_equals_rgb(folder_run, image_folder, lite_model):
    _, out, _ = folder_run
    pil = Image.open(image_folder / "wide.jpg")
    arr = np.asarray(pil.convert("RGB"))
    maps = predict_images(str(lite_model), [pil, arr.astype(np.float32) / 255.0], device="cpu")
    cli = np.load(out / "wide_saliency.npy")
    for m in maps:
        assert m.shape == (172, 288)
        np.testing.assert_allclose(m, cli, atol=1e-5)
    gray = np.asarray(Image.open(image_folder / "gray.png"))
    single = predict_images(str(lite_model), gray, device="cpu")  # one (H, W) array -> one map
    assert isinstance(single, np.ndarray) and single.shape == (600, 800)
    np.testing.assert_allclose(single, np.load(out / "gray_saliency.npy"), atol=1e-5)
    np.testing.assert_allclose(single, np.load(out / "deep16_saliency.npy"), atol=1e-5)


def test_batching_does_not_change_maps(folder_run, lite_model, image_folder):
    _, out, _ = folder_run  # the folder run batched photo, gray and cmyk together (same input size)
    one = Predictor(str(lite_model), device="cpu", batch_size=1).predict_arrays([load_image(image_folder / "cmyk.jpg")])
    np.testing.assert_allclose(one[0], np.load(out / "cmyk_saliency.npy"), atol=1e-5)


@pytest.mark.parametrize("fit", FITS)
def test_fit_modes_map_back_to_original_size(lite_model, fit):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 333), (401, 97), (1, 1))]
    p = Predictor(str(lite_model), device="cpu", fit=fit)
    for img, m in zip(imgs, p.predict_arrays(imgs)):
        assert m.shape == img.shape[:2] and np.isfinite(m).all() and m.min() >= 0
    # every size fed to the net is a multiple of 32, as the encoder needs
    for img in imgs:
        assert all(s % 32 == 0 for s in p.input_size(*img.shape[:2]))


def test_predictor_feeds_the_net_what_its_forward_would(lite_model, image_folder):
    """Resizing outside the net (to batch) gives the map the net's own forward gives."""
    import torch

    from salnas_core.data.transforms import NORMALIZATIONS
    from salnas_core.supernet import load_model

    net = load_model(lite_model)
    rgb = load_image(image_folder / "photo.jpg")
    x = NORMALIZATIONS[net.space.normalization](torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255)
    with torch.no_grad():
        ref = net(x)[0, 0].numpy()  # SalNASNet.forward resizes to its working size and back
    got = Predictor(str(lite_model), device="cpu").predict_arrays([rgb])[0]
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.999
    assert np.abs(ref - got).max() < 2e-2


def test_png16_round_trip_and_zero_map(tmp_path):
    from salnas_core.serve.predict import save_png16

    m = np.random.default_rng(1).random((37, 53)).astype(np.float32) * 0.3
    save_png16(tmp_path / "m.png", m)
    np.testing.assert_allclose(read_png16(tmp_path / "m.png"), m / m.max(), atol=0.51 / 65535)
    assert not to_uint16(np.zeros((4, 4))).any()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_model_specs(lite_model, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "distill" / "S").mkdir(parents=True)
    shutil.copy(lite_model, runs / "distill" / "S" / "model.pt")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("S").normalization == "lite"             # variant name under ./runs
    assert resolve_model(str(lite_model.parent)).working_size      # run folder holding model.pt
    lm = resolve_model(str(lite_model))
    assert lm.resolution == lm.config["resolution"][0]
    with pytest.raises(ModelNotFoundError, match="runs/distill/XL/model.pt"):
        resolve_model("XL")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        resolve_model(str(tmp_path / "junk.pt"))


def test_registry_champion(lite_model, tmp_path, monkeypatch):
    """No --model: the champion of the registry (embedded sqlite store), as the main job leaves it."""
    from salnas_core.serve import pyfunc_model
    from salnas_core.tracking import mlflow_utils

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "serve-test")
    reg = mlflow_utils.register_model(lite_model, python_model=pyfunc_model.__file__, score=1.5, arch_config={"space": "lite"})
    assert mlflow_utils.promote_if_better(reg["name"], reg["version"])["promoted"]
    lm = resolve_model(None)
    assert lm.source == "models:/salnas@champion" and lm.config == resolve_model(str(lite_model)).config
    with pytest.raises(ModelNotFoundError, match="models:/salnas@nope"):
        resolve_model("models:/salnas@nope")


def test_skip_existing_resumes_without_rewriting(folder_run, image_folder, lite_model):
    from salnas_core.serve.predict import run as predict_run

    _, out, _ = folder_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*_saliency.png")}
    (out / "wide_saliency.png").unlink()  # one output lost: only that image is redone
    s = predict_run([image_folder], out, str(lite_model), npy=True, skip_existing=True, device="cpu", progress=False)
    redone = [it for it in s["items"] if not it.get("skipped")]
    assert [Path(it["input"]).name for it in redone] == ["wide.jpg"]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "wide_saliency.png")
    assert (out / "wide_saliency.png").exists()


def test_overlay_blends_by_saliency():
    from salnas_core.serve.predict import overlay

    rgb = np.full((4, 6, 3), 200, dtype=np.uint8)
    m = np.zeros((4, 6), dtype=np.float32)
    m[:, 3:] = np.linspace(0.2, 1.0, 3)
    import matplotlib

    o = overlay(rgb, m, cmap="inferno", alpha=0.6).astype(float)
    assert (o[:, :3] == 200).all()  # zero saliency: the picture untouched
    for j, v in zip((3, 4, 5), np.linspace(0.2, 1.0, 3)):  # colour weight alpha * saliency / max
        colour = np.array(matplotlib.colormaps["inferno"](v)[:3]) * 255
        np.testing.assert_allclose(o[0, j], 200 * (1 - 0.6 * v) + colour * 0.6 * v, atol=2.0)
