"""The ONE image decoder: a decoded Pillow image in any mode -> uint8 RGB (H, W, 3).

Used by ingest (the training data) and by predict/serve (what users send), so a model sees the
same pixels for the same file at training and at serving time (no train/serve skew).

Transparent pixels: composited over mid-grey (128, 128, 128). Eye-tracking set-ups show stimuli on
a mid-grey screen, so grey is what the viewers saw where an image was transparent, and it is what
the training data has always held (ingest's convention since version 1). Predict used white before;
it now follows the training data, because a net should be fed what it was trained on.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ALPHA_BACKGROUND = (128, 128, 128)
GREY16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class UnsupportedImageError(ValueError):
    """An image that is not a photograph (strict decoding: floating-point or out-of-range data)."""


def has_alpha(im: Any) -> bool:
    return im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def to_rgb8(im: Any, strict: bool = False) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(uint8 RGB array, notes): each note is (kind, what was changed), for validators to report.

    16/32-bit grey is scaled to 8 bit (PIL's convert("L") clips at 255 instead) and replicated to
    RGB; alpha is composited over ALPHA_BACKGROUND. `strict` (ingest): floating-point images and
    32-bit integers outside 0..65535 raise UnsupportedImageError; otherwise (predict) they are
    scaled by their range. The array is a writable copy.
    """
    from PIL import Image

    mode = im.mode
    notes: list[tuple[str, str]] = []
    if mode == "RGB":
        return np.array(im, dtype=np.uint8), notes
    if mode in GREY16_MODES or mode in ("I", "F"):
        if strict and mode == "F":
            raise UnsupportedImageError("floating-point image (mode F) is not a photograph")
        a = np.asarray(im).astype(np.float64)
        if strict and mode == "I" and (a.min(initial=0) < 0 or a.max(initial=0) > 65535):
            raise UnsupportedImageError("32-bit integer image with values outside 0..65535")
        hi = 65535.0 if (mode in GREY16_MODES or a.max(initial=0) > 255) else 255.0
        a = np.clip(a, 0, None)
        g = np.clip(np.rint(a * (255.0 / hi)), 0, 255).astype(np.uint8)
        notes.append(("image_mode", f"{'16' if hi > 255 else '8'}-bit grayscale ({mode}) scaled to 8 bit "
                                    "and replicated to RGB"))
        return np.repeat(g[:, :, None], 3, axis=2), notes
    if has_alpha(im):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[:, :, 3]
        if alpha.min(initial=255) == 255:
            notes.append(("image_mode", f"{mode}: fully opaque alpha channel dropped"))
            return np.array(rgba.convert("RGB"), dtype=np.uint8), notes
        bg = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        notes.append(("image_mode", f"{mode}: transparent pixels ({(alpha < 255).mean():.1%}) "
                                    f"composited over grey ({ALPHA_BACKGROUND[0]})"))
        return np.array(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8), notes
    if mode in ("L", "1"):
        notes.append(("image_mode", f"grayscale ({mode}) replicated to RGB"))
    elif mode == "CMYK":
        notes.append(("image_mode", "CMYK converted to RGB (no colour profile applied)"))
    elif mode != "P":
        notes.append(("image_mode", f"{mode} converted to RGB"))
    return np.array(im.convert("RGB"), dtype=np.uint8), notes


def composite_rgba_array(f: np.ndarray) -> np.ndarray:
    """float (H, W, 4) in 0..255 -> float (H, W, 3): alpha over ALPHA_BACKGROUND, as `to_rgb8`."""
    alpha = f[..., 3:4] / 255.0
    return f[..., :3] * alpha + np.asarray(ALPHA_BACKGROUND, dtype=f.dtype) * (1.0 - alpha)
