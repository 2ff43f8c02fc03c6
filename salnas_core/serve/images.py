"""Reading the images people actually have: any mode, bit depth, orientation or container.

Everything becomes an 8-bit RGB array (H, W, 3) in the orientation a viewer shows, because that
is what the networks were trained on (8-bit RGB JPEGs). Input gathering turns files, folders
and globs into a list of sources, each with a relative output name so that two `cat.jpg` in
different folders do not overwrite each other's maps.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
    ".pnm", ".jp2", ".jfif", ".ico", ".tga",
})


class ImageReadError(ValueError):
    """An input that is not a readable image; the message names the file and the problem."""


@dataclass(frozen=True)
class InputItem:
    """One image to predict: where it is and the output name (relative, without suffix)."""

    path: Path
    name: str


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def collect_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and globs into image items.

    Returns (items, problems); problems are (input, message) for inputs that matched nothing.
    Files named explicitly are kept whatever their extension (a corrupt or mislabelled file is
    then reported by the reader); folders and globs keep only image extensions.
    """
    items: list[InputItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()
    used: set[str] = set()

    def add(path: Path, name: str) -> None:
        real = path.resolve()
        if real in seen:
            return
        seen.add(real)
        base, k = name, 1
        while name in used:  # same relative name from two inputs: keep both
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        items.append(InputItem(path, name))

    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
            if not found:
                problems.append((text, "folder holds no image files"))
            for p in found:
                add(p, p.relative_to(path).with_suffix("").as_posix())
        elif path.is_file():
            add(path, path.stem)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
            found = [p for p in found if p.is_file() and _is_image(p)]
            if not found:
                problems.append((text, "pattern matched no image files"))
            for p in found:
                add(p, p.stem)
        else:
            problems.append((text, "no such file or folder"))
    return items, problems


def _to_rgb8(img: Any) -> np.ndarray:
    """A PIL image in any mode -> uint8 (H, W, 3): the one decoder ingest uses too (data.images),
    alpha composited over its grey, so predict sees what training saw."""
    from salnas_core.data.images import to_rgb8

    return to_rgb8(img)[0]


def load_image(source: Any) -> np.ndarray:
    """uint8 RGB (H, W, 3) from a path, a PIL image or a numpy array.

    Paths: EXIF orientation applied (phone photos), CMYK/palette/16-bit/alpha converted.
    Arrays: (H, W) grey, (H, W, 1|3|4); uint8 as is, uint16 scaled by 65535, floats taken as
    [0, 1] (values above 1.5 as [0, 255]).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with Image.open(path) as img:
                img.load()  # decode now, so a truncated file fails here and not later
                # in place: no second full-size copy of an already upright (most) photo
                ImageOps.exif_transpose(img, in_place=True)
                out = _to_rgb8(img)
        except FileNotFoundError:
            raise ImageReadError(f"{path}: file not found") from None
        except UnidentifiedImageError:
            raise ImageReadError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from None
        except (OSError, SyntaxError, ValueError) as e:  # truncated data, bad headers
            raise ImageReadError(f"{path}: cannot decode image ({e})") from None
        except Image.DecompressionBombError as e:
            raise ImageReadError(f"{path}: {e}") from None
        if out.shape[0] < 1 or out.shape[1] < 1:
            raise ImageReadError(f"{path}: empty image")
        return out
    if isinstance(source, Image.Image):
        return _to_rgb8(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb8(source)
    raise TypeError(f"cannot read an image from {type(source).__name__}: give a path, a PIL image or a numpy array")


def _array_to_rgb8(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageReadError(f"array of shape {a.shape}: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        f = a.astype(np.float32)
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) * (255.0 / 65535.0)
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == bool:
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            raise ImageReadError(f"array of shape {a.shape}: contains NaN or infinite values")
        f = f * (1.0 if f.max(initial=0) > 1.5 else 255.0)
    elif np.issubdtype(a.dtype, np.integer):
        f = a.astype(np.float32)
    else:
        raise ImageReadError(f"array of dtype {a.dtype}: not an image type")
    if f.shape[2] == 4:  # composite over the decoder's grey, like files with alpha
        from salnas_core.data.images import composite_rgba_array

        f = composite_rgba_array(f)
    elif f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)
