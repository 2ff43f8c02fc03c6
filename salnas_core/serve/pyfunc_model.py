"""The pyfunc flavour of a registered SalNAS model: images of any size in, saliency maps out.

Logged as models-from-code with the salnas_core package beside it (`code_paths`), so
`mlflow models serve -m models:/salnas@champion` needs only the logged requirements. The device
follows the machine it is served on: CUDA when present.

The engine (serve.engines) is the fastest measured form unless chosen: `model_config={"engine":
"eager"|"onnx"|"int8"|"bf16", "calibration": DIR}` at `mlflow.pyfunc.load_model`, or $SALNAS_ENGINE /
$SALNAS_CALIBRATION for `mlflow models serve` (which passes no model_config). The ONNX file is
built on load, not logged: it depends on the serving machine's ONNX Runtime, it keeps every
version already registered servable as it is, and its build (export + parity check, seconds) is
cached per model hash in the working root's cache (a temporary folder when that is read-only),
written atomically so parallel workers share it.
"""
from __future__ import annotations

from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np


def as_rgb8(a: Any) -> np.ndarray:
    """(H, W, 3) uint8, or float in [0, 1] / [0, 255] converted to uint8."""
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(a if a.max() > 1.0 else a * 255.0, 0, 255).round().astype(np.uint8)
    return a


# logged with the model (mlflow only accepts model_config keys it was logged with)
MODEL_CONFIG = {"engine": "auto", "calibration": ""}


class SaliencyModel(mlflow.pyfunc.PythonModel):
    """uint8 RGB images (N, H, W, 3) of any H, W -> float32 maps (N, H, W); (H, W, 3) -> (H, W).

    A list of images of different sizes gives a list of maps. Wraps
    salnas_core.serve.predict.Predictor: resize to the net's working size, the space's
    normalisation, forward, maps resized back bilinearly to each image's size.
    """

    # inputs are checked against the logged tensor signature, not predict's type hints
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        import os

        from salnas_core.serve.predict import Predictor

        config = dict(getattr(context, "model_config", None) or {})
        # the logged model_config (MODEL_CONFIG) says "auto": the environment may still choose
        engine = config.get("engine") if config.get("engine") not in (None, "", "auto") else None
        engine = engine or os.environ.get("SALNAS_ENGINE") or "auto"
        calibration = config.get("calibration") or os.environ.get("SALNAS_CALIBRATION") or None
        self.predictor = Predictor(context.artifacts["model"], device="auto", engine=engine, calibration=calibration)

    def predict(self, context, model_input, params=None):
        if isinstance(model_input, dict):  # a named tensor input
            model_input = next(iter(model_input.values()))
        if isinstance(model_input, (list, tuple)):
            return [self.predictor.predict_arrays([as_rgb8(a)])[0] for a in model_input]
        x = np.asarray(model_input)
        single = x.ndim == 3
        batch = [as_rgb8(a) for a in (x[None] if single else x)]
        maps = np.stack(self.predictor.predict_arrays(batch)).astype(np.float32)
        return maps[0] if single else maps


# models-from-code: mlflow logs this file and runs it at load time instead of unpickling an object
mlflow.models.set_model(SaliencyModel())
