"""`salnas predict`: saliency maps for your own images, at their original size.

Each image is read in any mode/orientation (serve.images), resized (or letterboxed) to the net's
working size, normalised the way its search space was trained, predicted in batches, and the map
is resized back bilinearly to the original size, as the MIT benchmark does with predictions.
Outputs per image: a 16-bit PNG of the map scaled by its maximum (8-bit rounding alone changes
KLD measurably: docs/predict.md), optionally the raw float map as .npy, and a heat-map overlay.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from salnas_core.serve.engines import ENGINES
from salnas_core.serve.images import ImageReadError, InputItem, collect_inputs, load_image
from salnas_core.serve.models import LoadedModel, resolve_model

log = logging.getLogger(__name__)

# aspect: long side to the net's resolution, short side scaled and rounded to a multiple of 32 (the
#   space's rule; a 4:3 photo gets exactly the training size 288x384);
# resize: stretch to the fixed working size; pad: keep aspect, letterbox into the working size.
FITS = ("aspect", "resize", "pad")
MIN_LONG_SIDE = 64  # the smallest long side predict runs a net at: 2 cells of the 32-stride encoder


def pick_device(device: str = "auto") -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def normalize(x: Any, name: str) -> Any:
    """x: float (B, 3, H, W) RGB in [0, 1] -> what the encoder expects."""
    from salnas_core.data.transforms import NORMALIZATIONS

    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {name!r} (have: {sorted(NORMALIZATIONS)})")
    spec = NORMALIZATIONS[name]
    if callable(spec):
        return spec(x)
    if isinstance(spec, dict):
        mean, std = spec["mean"], spec["std"]
    else:
        mean, std = spec
    mean = x.new_tensor(mean).view(1, -1, 1, 1)
    std = x.new_tensor(std).view(1, -1, 1, 1)
    return (x - mean) / std


class Predictor:
    """Batched inference of one model on images of any size.

    Args:
        model: anything `resolve_model` takes (URI, path, variant name, nn.Module, LoadedModel).
        device: "auto" (CUDA when present), "cpu" or "cuda[:n]".
        fit: "aspect" (keep aspect, sides multiples of 32), "resize" (stretch to the working
            size) or "pad" (keep aspect, letterbox into the working size).
        batch_size: images per forward pass.
        engine: "auto" (ONNX Runtime fp32 on CPU, eager on CUDA), "eager" (PyTorch channels_last),
            "onnx" or "int8" (ONNX Runtime), "bf16" (AOTInductor bfloat16, compiled once per input size;
            serve.engines).
        calibration: for engine "int8": an ingested dataset folder (its train split) or a folder
            of images to calibrate the int8 ranges on.
    """

    def __init__(self, model: Any = None, device: str = "auto", fit: str = "aspect", batch_size: int = 8,
                 engine: str = "auto", calibration: str | os.PathLike | None = None):
        from salnas_core.serve.engines import make_engine

        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.loaded: LoadedModel = resolve_model(model)
        self.device = pick_device(device)
        self.fit = fit
        self.batch_size = int(batch_size)
        self.engine = make_engine(self.loaded, engine, self.device, calibration)
        self.net = self.loaded.net
        # a SalNAS net resizes its input to the long side it is given (supernet._SaliencyForward);
        # any other module is fed the working size as it is
        self._resizes_inside = self.engine.resizes_inside
        self._pad = _zero_colour(self.loaded.normalization)

    @property
    def working_size(self) -> tuple[int, int]:
        return self.loaded.working_size

    def long_side(self, h: int, w: int) -> int:
        """The long side the net runs an (h, w) image at with fit="aspect": its resolution, or for
        an image under half of it, twice the image's long side rounded up to 32 (at least
        MIN_LONG_SIDE). Enlarging a 16x16 icon to 256x256 costs 16x the compute of 64x64 and
        adds no detail to see."""
        long_ = self.loaded.resolution or max(self.working_size)
        if self.fit != "aspect" or not self._resizes_inside:
            return long_
        return min(long_, max(MIN_LONG_SIDE, -(-2 * max(h, w) // 32) * 32))

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The (H, W) an image of size (h, w) is fed at."""
        if self.fit != "aspect":
            return self.working_size
        long_ = self.long_side(h, w)
        space = getattr(self.loaded.net, "space", None)
        if hasattr(space, "working_size"):  # the rule the net itself applies in forward
            return tuple(space.working_size(h, w, long_))
        short = max(32, int(round(long_ * min(h, w) / max(h, w) / 32)) * 32)
        return (short, long_) if w >= h else (long_, short)

    def _prepare(self, rgb: np.ndarray) -> tuple[Any, tuple[int, int, int, int]]:
        """uint8 (h, w, 3) -> float (3, H, W) in [0, 1] at the input size, and the valid box
        (the engine normalises)."""
        import torch
        import torch.nn.functional as F

        h, w = rgb.shape[:2]
        H, W = self.input_size(h, w)
        rgb = _reduce_huge(rgb, (H, W))  # a float copy of an 80 MP photo alone would take ~1 GB
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=None if rgb.flags.writeable else True, order="C")).permute(2, 0, 1)[None].float().div_(255.0)
        if self.fit != "pad":
            box = (0, 0, H, W)
            size = (H, W)
        else:
            s = min(H / h, W / w)
            size = (max(1, round(h * s)), max(1, round(w * s)))
            top, left = (H - size[0]) // 2, (W - size[1]) // 2
            box = (top, left, top + size[0], left + size[1])
        if (h, w) != size:
            # antialias: downscaling a 12 MP photo without it aliases (PIL's resize does the same)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)
        if self.fit == "pad":  # pad with the colour that normalises to 0: the encoder's mean colour
            canvas = x.new_tensor(self._pad).view(1, 3, 1, 1).expand(1, 3, H, W).clone()
            canvas[:, :, box[0]:box[2], box[1]:box[3]] = x
            x = canvas
        return x[0], box

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 RGB arrays -> float32 maps (h, w) at each image's size (non-negative).

        Images are grouped by input size (only same-size tensors stack), then batched."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(self.input_size(*img.shape[:2]), []).append(i)
        out: list[Any] = [None] * len(images)
        for idx in groups.values():
            for j in range(0, len(idx), self.batch_size):
                chunk = idx[j:j + self.batch_size]
                for i, m in zip(chunk, self._predict_batch([images[i] for i in chunk])):
                    out[i] = m
        return out

    def _predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F

        prepared = [self._prepare(img) for img in images]
        x = torch.stack([p[0] for p in prepared])
        y = self.engine(x, resolution=self.long_side(*images[0].shape[:2]) if self._resizes_inside else None)
        with torch.inference_mode():
            if y.ndim == 3:
                y = y[:, None]
            if tuple(y.shape[-2:]) != tuple(x.shape[-2:]):
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            maps = []
            for k, (img, (_, box)) in enumerate(zip(images, prepared)):
                m = y[k:k + 1, :, box[0]:box[2], box[1]:box[3]].float()
                m = F.interpolate(m, size=img.shape[:2], mode="bilinear", align_corners=False)
                maps.append(m[0, 0].clamp_(min=0).cpu().numpy().astype(np.float32, copy=False))
        return maps


def _zero_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour in [0, 1] that normalisation `name` maps to 0 (its mean colour)."""
    import torch

    zero = normalize(torch.zeros(1, 3, 1, 1), name).view(3)
    one = normalize(torch.ones(1, 3, 1, 1), name).view(3)
    return tuple(float(v) for v in (-zero / (one - zero)))


# Inputs above this many pixels are first reduced in uint8 (Pillow's box reduction by an integer
# factor, keeping at least twice the input size on each side) before the float resize; smaller
# ones (every usual photo) take the float path unchanged.
HUGE_PIXELS = 24_000_000


def _reduce_huge(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if h * w <= HUGE_PIXELS:
        return rgb
    factor = max(1, min(h // (2 * size_hw[0]), w // (2 * size_hw[1])))
    if factor < 2:
        return rgb
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").reduce(factor))


def predict_images(model: Any, images: Any, *, batch_size: int = 8, device: str = "auto",
                   fit: str = "aspect", engine: str = "auto", calibration: str | os.PathLike | None = None) -> Any:
    """Saliency maps for in-memory images, each at its image's original size.

    images: one image (numpy (H, W[, C]) array or PIL image) -> one float32 (H, W) map;
    a list/tuple of them or a (N, H, W, C) array -> a list of maps. Maps are the net's raw
    output (sigmoid, non-negative), resized bilinearly; normalise as your metric needs.
    """
    from PIL import Image

    single = isinstance(images, Image.Image) or (isinstance(images, np.ndarray) and images.ndim in (2, 3))
    batch = [images] if single else list(images)
    arrays = [load_image(im) for im in batch]
    maps = Predictor(model, device=device, fit=fit, batch_size=batch_size, engine=engine,
                     calibration=calibration).predict_arrays(arrays)
    return maps[0] if single else maps


# ----------------------------------------------------------------------------- writers

def to_uint16(saliency: np.ndarray) -> np.ndarray:
    """Scale by the maximum to the full 16-bit range (an all-zero map stays zero)."""
    m = np.asarray(saliency)
    hi = float(m.max(initial=0.0))
    if not np.isfinite(hi) or hi <= 0:
        return np.zeros(m.shape, dtype=np.uint16)
    res = np.empty(m.shape, dtype=np.uint16)
    flat_in, flat_out = m.reshape(-1), res.reshape(-1)
    for i in range(0, flat_in.size, _BLOCK):  # in blocks: no float64 copy of a whole 80 MP map
        # float64: float32 rounding could shift a level near the top of the 16-bit range
        out = flat_in[i:i + _BLOCK].astype(np.float64) * (65535.0 / hi)
        np.clip(out, 0.0, 65535.0, out=out)
        flat_out[i:i + _BLOCK] = np.rint(out, out=out)
    return res


_BLOCK = 1 << 20  # elements per block of the whole-image arithmetic below


def save_png16(path: str | os.PathLike, saliency: np.ndarray) -> Path:
    """A 16-bit greyscale PNG of the map, written atomically."""
    from PIL import Image

    from salnas_core.utils.io import atomic_write_bytes

    buf = io.BytesIO()
    # compress_level 1: a 10 MP map encodes in well under a second (level 6 takes ~7 s) for ~10% more bytes
    Image.fromarray(to_uint16(saliency)).save(buf, format="PNG", compress_level=1)
    return atomic_write_bytes(path, buf.getvalue())


def read_png16(path: str | os.PathLike) -> np.ndarray:
    """A saved map back as float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as img:
        a = np.asarray(img)
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 or a.max(initial=0) > 255 else 255.0)


def overlay(rgb: np.ndarray, saliency: np.ndarray, cmap: str = "inferno", alpha: float = 0.6) -> np.ndarray:
    """Heat map blended over the image, more opaque where saliency is higher; uint8 (H, W, 3).

    Display only: the map is stretched min..max, so the least salient region shows the bare
    picture whatever the net's sigmoid floor is."""
    import matplotlib

    sal = np.asarray(saliency, dtype=np.float32)
    lo, hi = float(sal.min(initial=np.inf)), float(sal.max(initial=-np.inf))
    flat = np.isfinite(hi - lo) and hi > lo
    table = matplotlib.colormaps[cmap].resampled(256)
    res = np.empty(sal.shape + (3,), dtype=np.uint8)
    rows = max(1, _BLOCK // max(1, sal.shape[1]))
    for r in range(0, sal.shape[0], rows):  # row blocks: memory stays ~ the output, whatever the size
        s_ = slice(r, r + rows)
        m = np.clip((sal[s_] - lo) / (hi - lo), 0.0, 1.0) if flat else np.zeros_like(sal[s_])
        # integer indices pick the colormap's 256-entry table as uint8: no float64 RGBA copy; no
        # pyplot, so nothing opens a window
        idx = np.rint(m * 255.0).astype(np.uint8)
        colors = table(idx, bytes=True)[..., :3].astype(np.float32)
        a = (alpha * m)[..., None]
        out = rgb[s_].astype(np.float32) * (1.0 - a) + colors * a
        res[s_] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return res


def save_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 90) -> Path:
    from PIL import Image

    from salnas_core.utils.io import atomic_write_bytes

    path = Path(path)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return atomic_write_bytes(path, buf.getvalue())


def save_npy(path: str | os.PathLike, saliency: np.ndarray) -> Path:
    from salnas_core.utils.io import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, np.asarray(saliency, dtype=np.float32))
    return atomic_write_bytes(path, buf.getvalue())


def output_paths(out_dir: Path, item: InputItem) -> dict[str, Path]:
    base = out_dir / item.name
    return {"saliency": base.with_name(base.name + "_saliency.png"),
            "npy": base.with_name(base.name + "_saliency.npy"),
            "overlay": base.with_name(base.name + "_overlay.jpg")}


# ----------------------------------------------------------------------------- the step

def run(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, model: Any = None, *,
        npy: bool = False, overlay_maps: bool = True, batch_size: int = 8, device: str = "auto",
        fit: str = "aspect", skip_existing: bool = False, cmap: str = "inferno",
        progress: bool = True, engine: str = "auto", calibration: str | os.PathLike | None = None) -> dict[str, Any]:
    """Predict every image under `inputs` into `out`; unreadable files are reported and skipped.

    Returns the summary also written to `<out>/predictions.json`.
    """
    from tqdm import tqdm

    from salnas_core.utils.io import atomic_write_json

    out_dir = Path(out)
    items, problems = collect_inputs(inputs)
    failed = [{"input": src, "error": msg} for src, msg in problems]
    for f in failed:
        log.warning("%s: %s", f["input"], f["error"])
    predictor = Predictor(model, device=device, fit=fit, batch_size=batch_size, engine=engine, calibration=calibration)
    log.info("model %s (%s normalisation, working size %s) on %s, engine %s", predictor.loaded.source,
             predictor.loaded.normalization, predictor.working_size, predictor.device, predictor.engine.name)

    wanted = ["saliency"] + (["npy"] if npy else []) + (["overlay"] if overlay_maps else [])
    todo, done = [], []
    for item in items:
        paths = output_paths(out_dir, item)
        if skip_existing and all(paths[k].exists() for k in wanted):
            done.append({"input": str(item.path), **{k: str(paths[k]) for k in wanted}, "skipped": True})
        else:
            todo.append(item)

    bar = tqdm(total=len(todo), unit="img", desc="predict", disable=not progress)
    for i in range(0, len(todo), predictor.batch_size):
        chunk = todo[i:i + predictor.batch_size]
        ok_items, arrays = [], []
        for item in chunk:
            try:
                arrays.append(load_image(item.path))
                ok_items.append(item)
            except ImageReadError as e:  # report and go on: one bad file never stops a folder
                log.warning("skipped %s", e)
                failed.append({"input": str(item.path), "error": str(e)})
                bar.update(1)
        if not arrays:
            continue
        maps = predictor.predict_arrays(arrays)
        for item, rgb, m in zip(ok_items, arrays, maps):
            paths = output_paths(out_dir, item)
            save_png16(paths["saliency"], m)
            if npy:
                save_npy(paths["npy"], m)
            if overlay_maps:
                save_image(paths["overlay"], overlay(rgb, m, cmap=cmap))
            done.append({"input": str(item.path), "size": list(m.shape), **{k: str(paths[k]) for k in wanted}})
            bar.update(1)
    bar.close()

    summary = {
        "model": predictor.loaded.source,
        "normalization": predictor.loaded.normalization,
        "working_size": list(predictor.working_size),
        "fit": fit,
        "device": str(predictor.device),
        "engine": predictor.engine.name,
        "png": "16-bit greyscale, map divided by its maximum",
        "n_predicted": len(done),
        "n_failed": len(failed),
        "items": done,
        "failed": failed,
    }
    if done or failed:
        atomic_write_json(out_dir / "predictions.json", summary)
    return summary


def add_arguments(parser: Any) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs ('photos/*.jpg')")
    parser.add_argument("--model", default=None,
                        help="models:/salnas@champion, a model.pt, a run folder or a variant name (S -> runs/distill/S/model.pt); "
                             "default: the champion of the local registry")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--npy", action="store_true", help="also write the raw float32 map as .npy")
    parser.add_argument("--overlay", dest="overlay", action="store_true", default=True, help="write a heat-map overlay (default)")
    parser.add_argument("--no-overlay", dest="overlay", action="store_false", help="no overlay")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--fit", choices=FITS, default="aspect",
                        help="aspect: long side to the net's resolution, short side to a multiple of 32 (default; "
                             "4:3 photos get the training size); resize: stretch to the working size; pad: letterbox")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="auto (default: ONNX Runtime fp32 on CPU, eager on CUDA), eager (PyTorch), onnx, int8 "
                             "(ONNX Runtime int8; needs --calibration), bf16 (AOTInductor bfloat16: fastest on CPUs "
                             "with AVX512-BF16/AMX, ~40 s compile per model and input size on first use, cached)")
    parser.add_argument("--calibration", default=None,
                        help="engine int8: an ingested dataset folder (its train split, e.g. data/ingested/osie) or a folder of images")
    parser.add_argument("--cmap", default="inferno", help="matplotlib colormap of the overlay")
    parser.add_argument("--skip-existing", action="store_true", help="resume: skip images whose outputs all exist")


def run_cli(args: Any) -> int:
    import sys

    from salnas_core.serve.models import ModelNotFoundError
    from salnas_core.utils.logs import setup_logging, show_progress

    setup_logging()
    try:
        summary = run(args.inputs, args.out, args.model, npy=args.npy, overlay_maps=args.overlay,
                      batch_size=args.batch_size, device=args.device, fit=args.fit,
                      skip_existing=args.skip_existing, cmap=args.cmap, progress=show_progress(),
                      engine=args.engine, calibration=args.calibration)
    except (ModelNotFoundError, ValueError, RuntimeError) as e:
        print(f"salnas predict: error: {e}", file=sys.stderr)
        return 2
    print(f"{summary['n_predicted']} maps written to {args.out}; {summary['n_failed']} inputs skipped")
    for f in summary["failed"]:
        print(f"  skipped {f['input']}: {f['error']}", file=sys.stderr)
    return 1 if summary["n_failed"] else 0
