"""The runtimes a Predictor feeds: PyTorch eager, ONNX Runtime fp32 and int8, and bf16 PyTorch
compiled ahead of time (AOTInductor).

Every engine takes RGB float32 (B, 3, H, W) in [0, 1] at the input size Predictor picked and
returns the (B, 1, H', W') map; normalisation is the engine's job (the exported graph has it
inside). "auto" is the fastest form measured (bench/inference_forms.py): ONNX Runtime fp32 on
CPU, eager PyTorch on CUDA (no CUDA build of ONNX Runtime here). int8 changes the maps (CC to
fp32 >= 0.95 is checked when it is built), so it is only used when asked for. bf16 runs faster per
call on CPUs with native bfloat16 (AVX512-BF16, AMX) but compiles ~40 s per model and input size
the first time (a C++ compiler must be on PATH), and changes the maps slightly (CC to fp32 >= 0.99
checked when built): asked for too (`--engine bf16`), for long-running serving.

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


class Bf16Engine:
    """PyTorch compiled ahead of time (AOTInductor) in bfloat16, channels_last, BN folded, for CPUs
    with native bf16: one package per input size, compiled on first use (~40 s for the paper's XL)
    and cached beside the ONNX exports; each is checked against the fp32 model (CC >= MIN_BF16_CC)
    before it is kept. A batch runs image by image through the batch-1 package (ms per image as
    at batch 1)."""

    name = "bf16"

    def __init__(self, loaded: Any):
        from salnas_core import runtime
        from salnas_core.errors import UserError

        if not runtime.bf16_supported():
            raise UserError("engine bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX; this one has "
                            "neither): use --engine onnx")
        if runtime.cxx_compiler() is None:
            raise UserError("engine bf16 compiles the model with a C++ compiler ($CXX, c++, g++ or clang++); none is "
                            "on PATH: install one (e.g. Debian's g++) or use --engine onnx")
        self.loaded = loaded
        self.key = model_key(loaded)
        self.resizes_inside = hasattr(loaded.net, "_core")  # fed at the working size, as the ONNX graph
        self._runners: dict[tuple[int, int], Any] = {}

    def _runner(self, h: int, w: int) -> Any:
        from salnas_core import runtime

        if (h, w) not in self._runners:
            path = cache_dir() / f"{self.key}.bf16-{h}x{w}.pt2"
            if not path.is_file():
                log.info("compiling %s (bf16, %dx%d; once per model and size) for %s", path, h, w, self.loaded.source)
                build_bf16(self.loaded, (h, w), path)
            self._runners[(h, w)] = runtime.load_bf16(path)
        return self._runners[(h, w)]

    def __call__(self, x: Any, resolution: int | None = None) -> Any:
        import torch

        run = self._runner(int(x.shape[-2]), int(x.shape[-1]))
        with torch.inference_mode():
            return torch.cat([run(x[i:i + 1].float().contiguous()) for i in range(x.shape[0])])


# a SalNAS net's sigmoid output convolution and post-processing stay float32 (serve.export's
# wrapper names): in bf16 the map itself would be rounded to 8 bits of mantissa (steps of 0.004)
BF16_FP32_HEAD = ("net.out", "net.postprocess")


def build_bf16(loaded: Any, size_hw: tuple[int, int], path: Path) -> float:
    """Compile the bf16 package of `loaded` (normalisation inside, as the ONNX export) for input
    `size_hw` to `path`; it is kept only if its map agrees with the fp32 model's on random images
    (CC >= runtime.MIN_BF16_CC). Returns the worst CC."""
    import torch

    from salnas_core import runtime
    from salnas_core.metrics import cc as metric_cc
    from salnas_core.serve.export import _wrapper

    wrapped = _wrapper(loaded)
    gen = torch.Generator().manual_seed(0)
    xs = torch.rand(3, 3, *size_hw, generator=gen)
    with torch.no_grad():
        ref = wrapped(xs).float()
    tmp = path.with_name(path.stem + ".unchecked.pt2")  # the loader insists on the suffix
    runtime.compile_bf16(runtime.prepare(wrapped, xs[:1]), xs[:1], tmp, fp32_modules=BF16_FP32_HEAD)
    try:
        run = runtime.load_bf16(tmp)
        with torch.inference_mode():
            got = torch.cat([run(xs[i:i + 1]) for i in range(len(xs))]).float()
        cc = min(metric_cc(g[0].numpy(), r[0].numpy()) for g, r in zip(got, ref))
        if not cc >= runtime.MIN_BF16_CC:
            raise RuntimeError(f"{path}: bf16 map CC {cc:.4f} to fp32 < {runtime.MIN_BF16_CC}; not kept")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return cc


def make_engine(loaded: Any, engine: str = "auto", device: Any = None,
                calibration: str | os.PathLike | None = None) -> Any:
    """The engine a Predictor runs: `engine` one of ENGINES ("auto": onnx on CPU, eager on CUDA;
    an auto export that fails falls back to eager with a warning)."""
    import torch

    from salnas_core.runtime import resolve_engine

    resolve_engine(engine)  # ValueError for an unknown name
    device = torch.device(device or "cpu")
    if engine in ("onnx", "int8", "bf16") and device.type != "cpu":
        raise ValueError(f"engine {engine} runs on CPU; use --device cpu or --engine eager")
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
    if engine == "bf16":
        return Bf16Engine(loaded)
    return OrtEngine(loaded, int8=engine == "int8", calibration=calibration)
