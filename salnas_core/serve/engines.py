"""The runtimes a Predictor feeds: PyTorch eager, ONNX Runtime fp32 and ONNX Runtime int8.

Every engine takes RGB float32 (B, 3, H, W) in [0, 1] at the input size Predictor picked and
returns the (B, 1, H', W') map; normalisation is the engine's job (the exported graph has it
inside). "auto" is the fastest form measured (bench/inference_forms.py): ONNX Runtime fp32 on
CPU, eager PyTorch on CUDA (no CUDA build of ONNX Runtime here). int8 changes the maps (CC to
fp32 >= 0.95 is checked when it is built), so it is only used when asked for.

The ONNX files are built once per model and kept in <working root>/.cache/onnx, keyed by the
hash of the model's config, weights and meta (and for int8 the calibration set), never next to
the installed package or inside a model folder (a registry download is read-only or temporary).
They are built with serve.export (same parity checks) and written atomically, so two processes
building at once both end with a whole file.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from salnas_core.runtime import ENGINES  # noqa: F401 - the engine names, defined with the runtime

log = logging.getLogger(__name__)
CACHE_ENV = "SALNAS_ONNX_CACHE"  # overrides <working root>/.cache/onnx


def model_key(loaded: Any) -> str:
    """sha256 (first 16 hex) of what decides the exported graph: config, weights, meta."""
    import torch

    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in loaded.net.state_dict().items()}
    torch.save({"config": loaded.config, "state_dict": state, "meta": loaded.meta,
                "normalization": loaded.normalization, "working_size": list(loaded.working_size)}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()[:16]


def cache_dir() -> Path:
    """$SALNAS_ONNX_CACHE, else <working root>/.cache/onnx; a temporary folder when that is not
    writable (a read-only serving container)."""
    from salnas_core.utils.root import work_root

    d = Path(os.environ.get(CACHE_ENV) or work_root() / ".cache" / "onnx")
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    d = Path(tempfile.gettempdir()) / "salnas-onnx-cache"
    d.mkdir(parents=True, exist_ok=True)
    log.warning("ONNX cache not writable; building in %s", d)
    return d


def onnx_file(loaded: Any, int8: bool = False, calibration: str | os.PathLike | None = None) -> Path:
    """The cached ONNX (fp32, or int8 calibrated on `calibration`) of a LoadedModel; built if missing."""
    from salnas_core.errors import UserError
    from salnas_core.serve import export

    key = model_key(loaded)
    if int8:
        if calibration is None:
            raise UserError("engine int8 needs a calibration set (--calibration: an ingested dataset folder such "
                            "as data/ingested/osie, or a folder of images)")
        ckey = hashlib.sha256(str(Path(calibration).expanduser().resolve()).encode()).hexdigest()[:8]
        path = cache_dir() / f"{key}.int8-{ckey}.onnx"
    else:
        path = cache_dir() / f"{key}.onnx"
    if not path.is_file():
        log.info("building %s (%s) for %s", path, "int8" if int8 else "fp32", loaded.source)
        export.run(loaded, path, "onnx-int8" if int8 else "onnx", calibration=calibration)
    return path


class TorchEngine:
    """Eager PyTorch, channels_last (1.3-2.8x faster for depthwise nets on CPU than NCHW, which
    `channels_last=False` keeps for comparison)."""

    name = "eager"

    def __init__(self, loaded: Any, device: Any, channels_last: bool = True):
        import inspect

        import torch

        from salnas_core.serve.predict import normalize

        self._normalize = normalize
        self.normalization = loaded.normalization
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.net = loaded.net.eval().to(device, memory_format=self.layout)
        self.device = device
        # a SalNAS net resizes its input to the long side it is given (supernet._SaliencyForward)
        self.resizes_inside = "resolution" in inspect.signature(self.net.forward).parameters

    def __call__(self, x: Any, resolution: int | None = None) -> Any:
        import torch

        x = self._normalize(x.to(self.device), self.normalization).contiguous(memory_format=self.layout)
        with torch.inference_mode():
            y = self.net(x, resolution=resolution) if self.resizes_inside and resolution else self.net(x)
        return y[0] if isinstance(y, (tuple, list)) else y


class OrtEngine:
    """ONNX Runtime (CPU) on a cached export: one session (salnas_core.runtime.session: all graph
    optimisations, as many intra-op threads as torch uses), dynamic batch/height/width."""

    def __init__(self, loaded: Any, int8: bool = False, calibration: str | os.PathLike | None = None,
                 path: str | os.PathLike | None = None):
        from salnas_core import runtime

        self.name = "int8" if int8 else "onnx"
        self.path = Path(path) if path else onnx_file(loaded, int8=int8, calibration=calibration)
        self.session = runtime.session(self.path)
        self.resizes_inside = hasattr(loaded.net, "_core")  # the graph is the net's core: fed at the working size

    def __call__(self, x: Any, resolution: int | None = None) -> Any:
        import torch

        from salnas_core import runtime

        return torch.from_numpy(runtime.run(self.session, x))


def make_engine(loaded: Any, engine: str = "auto", device: Any = None,
                calibration: str | os.PathLike | None = None) -> Any:
    """The engine a Predictor runs: `engine` one of ENGINES ("auto": onnx on CPU, eager on CUDA;
    an auto export that fails falls back to eager with a warning)."""
    import torch

    from salnas_core.runtime import resolve_engine

    resolve_engine(engine)  # ValueError for an unknown name
    device = torch.device(device or "cpu")
    if engine in ("onnx", "int8") and device.type != "cpu":
        raise ValueError(f"engine {engine} runs on CPU (ONNX Runtime's CPU provider); use --device cpu or --engine eager")
    if engine == "auto":
        if device.type != "cpu":
            return TorchEngine(loaded, device)
        try:
            return OrtEngine(loaded)
        except Exception as e:  # noqa: BLE001 - an odd module that does not export still predicts
            log.warning("%s: ONNX export failed (%s: %s); running eager PyTorch", loaded.source, type(e).__name__, e)
            return TorchEngine(loaded, device)
    if engine == "eager":
        return TorchEngine(loaded, device)
    return OrtEngine(loaded, int8=engine == "int8", calibration=calibration)
