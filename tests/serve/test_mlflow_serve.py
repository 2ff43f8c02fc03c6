"""The registered champion served with MLflow's own tools: `mlflow models serve` on loopback answers
a POSTed image with a saliency map at the image's size; the logged model carries its code and
installable requirements (no `salnas` pseudo-package)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(600)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image() -> np.ndarray:
    """A real OSIE photo when the data is there (shrunk to keep the JSON small), else noise."""
    from PIL import Image

    photo = SHARED / "osie" / "stimuli" / "1001.jpg"
    if photo.exists():
        return np.asarray(Image.open(photo).convert("RGB").resize((53, 41)))[None]
    return np.random.default_rng(0).integers(0, 256, size=(1, 41, 53, 3), dtype=np.uint8)


def test_mlflow_models_serve_answers_with_a_map(lite_model, tmp_path, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    from salnas_core.serve import pyfunc_model
    from salnas_core.serve.predict import Predictor
    from salnas_core.tracking import mlflow_utils as mu

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "serve-test")
    reg = mu.register_model(lite_model, python_model=pyfunc_model.__file__, name="served", score=1.0)
    assert mu.promote_if_better("served", reg["version"])["promoted"]

    # what was logged: the package's code and requirements a package index can install
    mv = MlflowClient().get_model_version("served", str(reg["version"]))
    local = Path(download_artifacts(artifact_uri=mv.source, dst_path=str(tmp_path / "dl")))
    reqs = (local / "requirements.txt").read_text().split()
    assert "salnas" not in reqs and "torch==2.13.0" in reqs
    assert (local / "code" / "salnas_core" / "serve" / "predict.py").is_file()

    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)  # the environment's uvicorn, as `mlflow models serve` expects
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/served@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], env=env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "mlflow models serve did not come up"
            time.sleep(1)
        img = _image()
        body = json.dumps({"inputs": img.tolist()}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            maps = np.asarray(json.loads(r.read())["predictions"], dtype=np.float32)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    assert maps.shape == img.shape[:3] and np.isfinite(maps).all() and maps.std() > 0
    direct = Predictor(str(lite_model), device="cpu").predict_arrays([img[0]])[0]
    np.testing.assert_allclose(maps[0], direct, rtol=1e-4, atol=1e-5)


def test_a_model_that_cannot_serve_is_not_registered(lite_model, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from salnas_core.tracking import mlflow_utils as mu

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "serve-test")
    broken = tmp_path / "broken_model.py"  # a pyfunc whose load fails, as a broken wrapper would
    broken.write_text("import mlflow.models, mlflow.pyfunc\n"
                      "class M(mlflow.pyfunc.PythonModel):\n"
                      "    def load_context(self, context):\n        raise RuntimeError('cannot load')\n"
                      "    def predict(self, context, model_input, params=None):\n        return model_input\n"
                      "mlflow.models.set_model(M())\n")
    with pytest.raises(ValueError, match="failed validation with mlflow.models.predict"):
        mu.register_model(lite_model, python_model=broken, name="never", score=1.0)
    assert not [m for m in MlflowClient().search_registered_models() if m.name == "never"]
