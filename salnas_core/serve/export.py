"""`salnas export`: a model as ONNX or TorchScript for deployment.

The exported graph takes RGB float32 (B, 3, H, W) in [0, 1] with dynamic batch, height and
width (the space's normalisation is baked in, so a deployer cannot feed it wrongly) and returns
the saliency map (B, 1, H, W). H and W must be multiples of 32 (the encoder's stride); feed the
image at its working size (long side = the config's resolution, short side scaled and rounded
to a multiple of 32, what `salnas predict --fit aspect` does) and resize the map back. Batch norms are folded into the convolutions before export (in a copy;
the loaded model is untouched), and the file is only kept if its output matches the PyTorch
model (max abs difference <= 1e-4) at several input sizes, checked inside the command.

`--format onnx-int8` (or `--int8`) then quantises that fp32 graph to int8 (ONNX Runtime's
post-training static quantisation, calibrated on `--calibration` training images) and keeps it
only if its maps agree with the fp32 maps (CC >= 0.95 on held-out calibration images). The same
functions build the files `salnas predict --engine onnx|int8` runs (serve.engines).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from salnas_core import runtime
from salnas_core.runtime import (
    MIN_INT8_CC,
    fold_batchnorm,
    freeze_same_padding,
    quantize_onnx,
)
from salnas_core.serve.models import LoadedModel, resolve_model

log = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-int8", "torchscript")
TOLERANCE = 1e-4
N_CALIBRATION = 32


def _wrapper(loaded: LoadedModel) -> Any:
    import torch

    from salnas_core.serve.predict import normalize

    class SaliencyExport(torch.nn.Module):
        """RGB in [0, 1] -> normalise -> net -> (B, 1, H, W) map."""

        def __init__(self, net: torch.nn.Module, normalization: str):
            super().__init__()
            self.net = net
            self.normalization = normalization

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            x = normalize(image, self.normalization)
            # the fully convolutional core: SalNASNet.forward's resize to the working size is
            # Python arithmetic on shapes, which a trace would freeze to one size
            y = self.net._core(x) if hasattr(self.net, "_core") else self.net(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y

    return SaliencyExport(loaded.net, loaded.normalization).eval()


def check_sizes(working_size: Sequence[int]) -> list[tuple[int, int, int]]:
    """(batch, H, W) the parity check runs: the working size, then its portrait twin at batch 2
    (both working sizes of the space's rule: long side = resolution, short side k * 32), so
    batch, height and width all change between the two."""
    H, W = int(working_size[0]), int(working_size[1])
    return [(1, H, W), (2, W, H)]


def _reference(wrapped: Any, x: Any) -> np.ndarray:
    """The PyTorch model as users run it: full forward (with its own resizing), BN unfolded."""
    import torch

    from salnas_core.serve.predict import normalize

    with torch.no_grad():
        y = wrapped.net(normalize(x, wrapped.normalization))
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.float().cpu().numpy()


def export_onnx(wrapped: Any, folded: Any, path: Path, example: Any, metadata: dict[str, str],
                inputs: list[Any]) -> float:
    """Write ONNX of `folded` (runtime.export_onnx); returns the max abs difference to `wrapped` over `inputs`."""
    runtime.export_onnx(folded, example, path, metadata)
    sess = runtime.session(path)
    worst = 0.0
    for x in inputs:
        worst = max(worst, _max_diff(_reference(wrapped, x), runtime.run(sess, x), path, tuple(x.shape)))
    return worst


def export_torchscript(wrapped: Any, folded: Any, path: Path, example: Any, metadata: dict[str, str],
                       inputs: list[Any]) -> float:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # tracing, not scripting: the nets' forward is plain tensor code; shapes are read
        # through aten::size, so H/W stay dynamic (the parity check at other sizes proves it)
        scripted = torch.jit.trace(folded, example, check_trace=False)
        scripted = torch.jit.freeze(scripted.eval())
        torch.jit.save(scripted, str(path), _extra_files={"salnas.json": json.dumps(metadata)})
    loaded = torch.jit.load(str(path), map_location="cpu")
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            got = loaded(x).float().cpu().numpy()
            worst = max(worst, _max_diff(_reference(wrapped, x), got, path, tuple(x.shape)))
    return worst


def calibration_images(source: str | os.PathLike, size_hw: Sequence[int], n: int = N_CALIBRATION) -> list[np.ndarray]:
    """Up to `n` float32 (1, 3, H, W) RGB images in [0, 1] at `size_hw` for int8 calibration:
    the train split of an ingested dataset folder (its manifest.json), else the images of a
    folder (sorted, evenly spaced through the list)."""
    import torch
    import torch.nn.functional as F

    from salnas_core.errors import UserError
    from salnas_core.serve.images import collect_inputs, load_image

    src = Path(source).expanduser()
    if (src / "manifest.json").is_file():
        from salnas_core.data.dataset import load_manifest

        files = [src / it["image"] for it in load_manifest(src)["items"] if it.get("split") == "train"]
    else:
        files = [item.path for item in collect_inputs([str(src)])[0]]
    if not files:
        raise UserError(f"{src}: no calibration images (give an ingested dataset folder or a folder of images)")
    step = max(1, len(files) // n)
    out = []
    for f in files[::step][:n]:
        x = torch.from_numpy(np.ascontiguousarray(load_image(f))).permute(2, 0, 1)[None].float().div_(255.0)
        x = F.interpolate(x, size=tuple(int(v) for v in size_hw), mode="bilinear", align_corners=False, antialias=True)
        out.append(x.clamp_(0.0, 1.0).numpy())
    return out


def _max_diff(ref: np.ndarray, got: np.ndarray, path: Path, shape: tuple) -> float:
    if ref.shape != got.shape:
        raise RuntimeError(f"{path}: output shape {got.shape} != PyTorch {ref.shape} for input {shape} "
                           "(height/width not dynamic in the exported graph?)")
    return float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())


def run(model: Any, out: str | os.PathLike, fmt: str = "onnx", *, tolerance: float = TOLERANCE,
        seed: int = 0, calibration: str | os.PathLike | None = None, n_calibration: int = N_CALIBRATION,
        min_cc: float = MIN_INT8_CC) -> dict[str, Any]:
    """Export `model` (anything resolve_model takes) to `out`; raise if parity fails.

    fmt "onnx-int8": the fp32 ONNX (parity-checked as for "onnx"), then int8 (quantize_onnx)
    calibrated on `calibration` (an ingested dataset folder: its train split; or a folder of images)."""
    import torch

    from salnas_core.utils.io import atomic_path, atomic_write_json

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "onnx-int8" and calibration is None:
        from salnas_core.errors import UserError

        raise UserError("export --format onnx-int8 needs --calibration (an ingested dataset folder such as "
                        "data/ingested/osie, or a folder of images)")
    loaded = resolve_model(model)
    loaded.net = loaded.net.cpu().eval()
    wrapped = _wrapper(loaded)
    gen = torch.Generator().manual_seed(seed)
    H, W = loaded.working_size
    example = torch.rand(1, 3, H, W, generator=gen)
    folded, n_folded = fold_batchnorm(wrapped, example)
    freeze_same_padding(folded)
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in wrapped.modules())
    inputs = [torch.rand(b, 3, h, w, generator=gen) for b, h, w in check_sizes(loaded.working_size)]
    metadata = {
        "salnas.input": "image: float32 RGB (batch, 3, height, width) in [0, 1]; normalisation inside",
        "salnas.output": "saliency: float32 (batch, 1, height, width), sigmoid",
        "salnas.normalization": loaded.normalization,
        "salnas.working_size": json.dumps(list(loaded.working_size)),
        "salnas.resolution": str(loaded.resolution or max(loaded.working_size)),
        "salnas.resize_rule": "long side = resolution, short side = max(32, round(resolution * short / long / 32) * 32)",
        "salnas.config": json.dumps(loaded.config) if loaded.config else "",
        "salnas.source": loaded.source,
    }
    out = Path(out)
    exporter = export_torchscript if fmt == "torchscript" else export_onnx
    extra: dict[str, Any] = {}
    with atomic_path(out) as tmp:  # a failed parity check leaves no file behind
        fp32 = tmp.with_name(tmp.name + ".fp32.onnx") if fmt == "onnx-int8" else tmp
        try:
            diff = exporter(wrapped, folded, fp32, example, metadata, inputs)
            if not diff <= tolerance:
                raise RuntimeError(f"{out}: exported {fmt} differs from PyTorch by {diff:.3g} > {tolerance:g}; not written")
            if fmt == "onnx-int8":
                images = calibration_images(calibration, loaded.working_size, n_calibration)
                extra = {"int8_cc_vs_fp32": quantize_onnx(fp32, tmp, images, min_cc), "min_cc": min_cc,
                         "calibration": str(calibration), "n_calibration": len(images)}
        finally:
            if fp32 != tmp:
                fp32.unlink(missing_ok=True)
    summary = {"path": str(out), "format": fmt, "model": loaded.source, "bn_folded": n_folded, **extra,
               "bn_total": n_bn, "max_abs_diff": diff, "tolerance": tolerance,
               "checked_sizes": [list(x.shape) for x in inputs], "dynamic_axes": ["batch", "height", "width"],
               **{k.split(".", 1)[1]: v for k, v in metadata.items() if k != "salnas.config"}}
    atomic_write_json(out.with_name(out.name + ".json"), {**summary, "config": loaded.config})
    return summary


def add_arguments(parser: Any) -> None:
    parser.add_argument("--model", default=None,
                        help="models:/salnas@champion, a model.pt, a run folder or a variant name; default: local champion")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="onnx",
                        help="onnx (fp32), onnx-int8 (post-training static int8; needs --calibration) or torchscript")
    parser.add_argument("--int8", dest="fmt", action="store_const", const="onnx-int8", help="same as --format onnx-int8")
    parser.add_argument("--out", required=True, help="output file (.onnx or .pt)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="max abs difference to PyTorch allowed")
    parser.add_argument("--calibration", default=None,
                        help="int8: an ingested dataset folder (its train split, e.g. data/ingested/osie) or a folder of images")
    parser.add_argument("--calibration-images", type=int, default=N_CALIBRATION,
                        help="int8: how many images (a quarter is held out for the CC check)")
    parser.add_argument("--min-cc", type=float, default=MIN_INT8_CC, help="int8: lowest CC to the fp32 map allowed")


def run_cli(args: Any) -> int:
    import sys

    from salnas_core.serve.models import ModelNotFoundError
    from salnas_core.utils.logs import setup_logging

    setup_logging()
    try:
        s = run(args.model, args.out, args.fmt, tolerance=args.tolerance, calibration=args.calibration,
                n_calibration=args.calibration_images, min_cc=args.min_cc)
    except (ModelNotFoundError, ValueError, RuntimeError) as e:
        print(f"salnas export: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {s['path']} ({s['format']}; {s['bn_folded']}/{s['bn_total']} batch norms folded; "
          f"max abs diff to PyTorch {s['max_abs_diff']:.2e} over inputs {s['checked_sizes']}"
          + (f"; int8 CC to fp32 {s['int8_cc_vs_fp32']:.4f} on {s['n_calibration'] // 4 or 1} held-out images" if "int8_cc_vs_fp32" in s else "") + ")")
    return 0
