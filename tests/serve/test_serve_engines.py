"""Inference engines (serve.engines): ONNX Runtime gives eager's maps, files are cached by model
hash outside the model folder, int8 exports, loads, serves through the pyfunc and stays close to fp32."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from salnas_core.serve import engines
from salnas_core.serve.predict import Predictor

OSIE = Path(__file__).resolve().parents[3] / "shared" / "data" / "osie" / "stimuli"


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), rng.integers(0, 256, (40, 100, 3), dtype=np.uint8),
            rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), rng.integers(0, 256, (500, 260, 3), dtype=np.uint8)]


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


@pytest.mark.parametrize("space,fit", [("lite", "aspect"), ("salnas", "aspect"), ("lite", "pad")])
def test_onnx_engine_gives_eager_maps_at_every_input_size(space, fit, request):
    model = request.getfixturevalue(f"{space}_model")
    eager = Predictor(str(model), device="cpu", fit=fit, engine="eager")
    onnx = Predictor(str(model), device="cpu", fit=fit, batch_size=2)  # auto on CPU = onnx
    assert onnx.engine.name == "onnx" and eager.engine.name == "eager"
    imgs = _images()
    for a, b, img in zip(eager.predict_arrays(imgs), onnx.predict_arrays(imgs), imgs):
        assert a.shape == b.shape == img.shape[:2]
        assert np.abs(a - b).max() <= 1e-4


def test_onnx_file_is_cached_by_model_hash(lite_model, salnas_model, tmp_path, monkeypatch):
    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "cache"))
    first = Predictor(str(lite_model), device="cpu", engine="onnx").engine.path
    assert first.parent == tmp_path / "cache" and first.name.endswith(".onnx")
    stamp = first.stat().st_mtime_ns
    again = Predictor(str(lite_model), device="cpu", engine="onnx").engine.path
    assert again == first and first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = Predictor(str(salnas_model), device="cpu", engine="onnx").engine.path
    assert other != first and sorted(p.name for p in (tmp_path / "cache").glob("*.onnx")) == sorted([first.name, other.name])


def test_read_only_cache_falls_back_to_a_temporary_folder(lite_model, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    monkeypatch.setenv(engines.CACHE_ENV, str(ro))
    monkeypatch.setattr(engines.os, "access", lambda p, mode: Path(p) != ro and os.access(p, mode))  # root ignores modes
    try:
        path = Predictor(str(lite_model), device="cpu", engine="onnx").engine.path
    finally:
        ro.chmod(0o755)
    assert path.is_file() and ro not in path.parents and list(ro.iterdir()) == []


def test_unknown_engine_and_int8_without_calibration_are_clear_errors(lite_model):
    from salnas_core.errors import UserError

    with pytest.raises(ValueError, match="engine must be one of"):
        Predictor(str(lite_model), device="cpu", engine="tensorrt")
    with pytest.raises(UserError, match="calibration"):
        Predictor(str(lite_model), device="cpu", engine="int8")


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory):
    """A folder of real training photos (OSIE), the way users have them."""
    import shutil

    src = OSIE
    if not src.is_dir():
        pytest.skip(f"real data not present: {src}")
    d = tmp_path_factory.mktemp("calib")
    for f in sorted(src.glob("*.jpg"))[:12]:
        shutil.copy(f, d / f.name)
    return d


def test_int8_exports_and_stays_close_to_fp32(lite_model, calibration_dir, tmp_path):
    import onnx

    from salnas_core.cli import main

    out = tmp_path / "m.int8.onnx"
    assert main(["export", "--model", str(lite_model), "--int8", "--calibration", str(calibration_dir),
                 "--calibration-images", "8", "--out", str(out)]) == 0
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["format"] == "onnx-int8" and side["n_calibration"] == 8 and side["int8_cc_vs_fp32"] >= 0.95
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, out.name + ".json"])  # no fp32 leftover
    # engine int8: the same quantiser, on real photos it was not calibrated on
    from salnas_core.serve.images import load_image

    photos = [load_image(p) for p in sorted(OSIE.glob("*.jpg"))[-4:]]
    fp32 = Predictor(str(lite_model), device="cpu", engine="onnx").predict_arrays(photos)
    int8 = Predictor(str(lite_model), device="cpu", engine="int8", calibration=str(calibration_dir))
    assert int8.engine.name == "int8" and ".int8-" in int8.engine.path.name
    for a, b in zip(fp32, int8.predict_arrays(photos)):
        assert a.shape == b.shape and _cc(a, b) > 0.95 and not np.array_equal(a, b)


def test_failed_int8_check_leaves_no_file(lite_model, calibration_dir, tmp_path):
    from salnas_core.serve.export import run

    out = tmp_path / "m.int8.onnx"
    with pytest.raises(RuntimeError, match="int8 map agrees"):
        run(str(lite_model), out, "onnx-int8", calibration=calibration_dir, n_calibration=4, min_cc=1.01)
    assert list(tmp_path.iterdir()) == []


def test_pyfunc_serves_each_engine(lite_model, calibration_dir, tmp_path):
    import mlflow.pyfunc

    from salnas_core.serve import pyfunc_model

    path = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(str(path), python_model=pyfunc_model.__file__, artifacts={"model": str(lite_model)},
                               model_config=pyfunc_model.MODEL_CONFIG)
    img = _images()[2]
    maps = {}
    for engine in ("eager", "onnx", "int8"):
        m = mlflow.pyfunc.load_model(str(path), model_config={"engine": engine, "calibration": str(calibration_dir)})
        assert m._model_impl.python_model.predictor.engine.name == engine
        maps[engine] = np.asarray(m.predict(img[None]))[0]
    assert maps["eager"].shape == img.shape[:2]
    assert np.abs(maps["eager"] - maps["onnx"]).max() <= 1e-4
    assert _cc(maps["onnx"], maps["int8"]) > 0.95


def test_cli_engine_flag(lite_model, tmp_path, capsys):
    from PIL import Image

    from salnas_core.cli import main

    img = tmp_path / "in" / "a.png"
    img.parent.mkdir()
    Image.fromarray(_images()[1]).save(img)
    assert main(["predict", str(img), "--model", str(lite_model), "--out", str(tmp_path / "e"), "--engine", "eager"]) == 0
    assert json.loads((tmp_path / "e" / "predictions.json").read_text())["engine"] == "eager"
    assert main(["predict", str(img), "--model", str(lite_model), "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "predictions.json").read_text())["engine"] == "onnx"
    assert main(["predict", str(img), "--model", str(lite_model), "--out", str(tmp_path / "i"), "--engine", "int8"]) == 2
    assert "--calibration" in capsys.readouterr().err


def test_registered_model_takes_the_engine_at_load(lite_model, tmp_path, monkeypatch):
    """What the register step logs (pyfunc_model.MODEL_CONFIG) lets load_model choose the engine;
    without a choice the environment's SALNAS_ENGINE decides, else auto."""
    import mlflow.pyfunc

    from salnas_core.serve import pyfunc_model
    from salnas_core.tracking import mlflow_utils as mu

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "engine-test")
    reg = mu.register_model(lite_model, python_model=pyfunc_model.__file__, model_config=pyfunc_model.MODEL_CONFIG,
                            name="engines", score=1.0)

    def engine_of(**kw):
        return mlflow.pyfunc.load_model(reg["uri"], **kw)._model_impl.python_model.predictor.engine.name

    assert engine_of() == "onnx"
    assert engine_of(model_config={"engine": "eager"}) == "eager"
    monkeypatch.setenv("SALNAS_ENGINE", "eager")
    assert engine_of() == "eager"


_rt = __import__("salnas_core.runtime", fromlist=["x"])
needs_bf16 = pytest.mark.skipif(not (_rt.bf16_supported() and _rt.cxx_compiler()),
                                reason="no native bfloat16 on this CPU (AVX512-BF16 / AMX) or no C++ compiler")


@needs_bf16
def test_bf16_engine_compiles_once_per_input_size_and_stays_close_to_fp32(lite_model, tmp_path, monkeypatch):
    """One checked AOTInductor package per input size, cached by model hash and reused by the next
    Predictor; maps within the bf16 agreement bound of the fp32 maps, batches image by image."""
    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "cache"))
    imgs = [_images()[2], _images()[3], _images()[2][:, ::-1].copy()]  # two input sizes, a batch of two
    fp32 = Predictor(str(lite_model), device="cpu", engine="onnx").predict_arrays(imgs)
    p = Predictor(str(lite_model), device="cpu", engine="bf16", batch_size=2)
    assert p.engine.name == "bf16"
    maps = p.predict_arrays(imgs)
    packages = sorted((tmp_path / "cache").glob("*.pt2"))
    assert [q.name.split(".")[1] for q in packages] == sorted(f"bf16-{h}x{w}" for h, w in {p.input_size(*i.shape[:2]) for i in imgs})
    for a, b, img in zip(fp32, maps, imgs):
        assert a.shape == b.shape == img.shape[:2]
        assert _cc(a, b) > 0.99 and not np.array_equal(a, b)
    stamps = [q.stat().st_mtime_ns for q in packages]
    again = Predictor(str(lite_model), device="cpu", engine="bf16").predict_arrays(imgs)
    assert [q.stat().st_mtime_ns for q in packages] == stamps  # loaded, not compiled again
    assert all(np.array_equal(a, b) for a, b in zip(maps, again))


@needs_bf16
def test_bf16_package_that_disagrees_with_fp32_is_not_kept(lite_model, tmp_path, monkeypatch):
    from salnas_core import runtime

    monkeypatch.setenv(engines.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(runtime, "MIN_BF16_CC", 1.01)
    with pytest.raises(RuntimeError, match="not kept"):
        Predictor(str(lite_model), device="cpu", engine="bf16").predict_arrays(_images()[2:3])
    assert not [q for q in (tmp_path / "cache").iterdir() if ".bf16-" in q.name]


def test_bf16_engine_without_bf16_or_a_compiler_is_a_clear_error(lite_model, monkeypatch):
    from salnas_core import runtime
    from salnas_core.errors import UserError

    monkeypatch.setattr(runtime, "bf16_supported", lambda: False)
    with pytest.raises(UserError, match="native bfloat16.*--engine onnx"):
        Predictor(str(lite_model), device="cpu", engine="bf16")
    monkeypatch.setattr(runtime, "bf16_supported", lambda: True)
    monkeypatch.setattr(runtime, "cxx_compiler", lambda: None)
    with pytest.raises(UserError, match="C\\+\\+ compiler.*--engine onnx"):
        Predictor(str(lite_model), device="cpu", engine="bf16")
