"""A small synthetic saliency dataset for when no real eye-tracking data is present.

Each image is a textured background with a few coloured objects (ellipses and rectangles). Its
true fixation density is known: a mixture of a Gaussian per object (weight growing with the
object's contrast) and a weak centre bias. Fixations of several "subjects" are drawn from that
density. Written in the shared `fixations.json` schema (MATLAB 1-based x/y) with the extra keys
"synthetic": true and "sigma_px"/"sigma_ref_size", plus true_density/<name>.npy for checks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_bytes, atomic_write_json


def true_density(objects: list[dict], shape: tuple[int, int], center_weight: float = 0.15) -> np.ndarray:
    """The known fixation density (float64, sums to 1) of an image with `objects`."""
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    dens = np.zeros(shape)
    for ob in objects:
        g = np.exp(-0.5 * (((rr - ob["cy"]) / ob["sy"]) ** 2 + ((cc - ob["cx"]) / ob["sx"]) ** 2))
        dens += ob["weight"] * g / g.sum()
    cb = np.exp(-0.5 * (((rr - h / 2) / (h / 4)) ** 2 + ((cc - w / 2) / (w / 4)) ** 2))
    dens = (1 - center_weight) * dens / dens.sum() + center_weight * cb / cb.sum()
    return dens / dens.sum()


def _render(rng: np.random.RandomState, shape: tuple[int, int]) -> tuple[np.ndarray, list[dict]]:
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    base = rng.uniform(60, 140, size=3)
    grad = (rr / h)[..., None] * rng.uniform(-30, 30, size=3) + (cc / w)[..., None] * rng.uniform(-30, 30, size=3)
    img = base + grad + rng.normal(0, 6, size=(h, w, 3))
    objects = []
    for _ in range(rng.randint(1, 4)):
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        ry, rx = rng.uniform(0.05, 0.15) * h, rng.uniform(0.05, 0.15) * w
        color = rng.uniform(0, 255, size=3)
        if rng.rand() < 0.5:
            mask = ((rr - cy) / ry) ** 2 + ((cc - cx) / rx) ** 2 <= 1.0
        else:
            mask = (np.abs(rr - cy) <= ry) & (np.abs(cc - cx) <= rx)
        img[mask] = color
        contrast = float(np.abs(color - base).mean() / 255.0)
        objects.append({"cy": cy, "cx": cx, "sy": ry * 0.6, "sx": rx * 0.6, "weight": 0.5 + 2.0 * contrast})
    return np.clip(img, 0, 255).astype(np.uint8), objects


def generate(out_dir: str | Path, n_images: int = 40, seed: int = 0, size: tuple[int, int] = (240, 320),
             n_subjects: int = 8, fixations_per_subject: int = 10, sigma_px: float = 8.0) -> Path:
    """Write `n_images` synthetic stimuli + fixations.json under `out_dir`; returns `out_dir`.

    Ingest it with `salnas ingest --source OUT_DIR --format shared_json`; the manifest then says
    "synthetic": true.
    """
    from PIL import Image
    import io

    out = Path(out_dir)
    rng = np.random.RandomState(seed)
    h, w = size
    entries, total = [], 0
    for i in range(n_images):
        name = f"syn{i:04d}"
        img, objects = _render(rng, size)
        dens = true_density(objects, size)
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format="PNG")
        atomic_write_bytes(out / "stimuli" / f"{name}.png", buf.getvalue())
        buf = io.BytesIO()
        np.save(buf, dens.astype(np.float32))
        atomic_write_bytes(out / "true_density" / f"{name}.npy", buf.getvalue())
        subjects = []
        flat = dens.ravel()
        for s in range(n_subjects):
            k = rng.choice(flat.size, size=fixations_per_subject, p=flat)
            r, c = np.divmod(k, w)
            # uniform position inside the drawn pixel, then MATLAB 1-based continuous coordinates
            y = r + rng.uniform(0, 1, size=k.size) + 0.5
            x = c + rng.uniform(0, 1, size=k.size) + 0.5
            subjects.append({"subject": s, "x": np.round(x, 2).tolist(), "y": np.round(y, 2).tolist(),
                             "dur_ms": rng.randint(100, 500, size=k.size).tolist()})
            total += int(k.size)
        entries.append({"file": f"stimuli/{name}.png", "width": w, "height": h, "subjects": subjects})
    atomic_write_json(out / "fixations.json", {
        "dataset": "synthetic", "synthetic": True,
        "coordinates": "x = column, y = row, MATLAB-style 1-based continuous pixel coordinates",
        "sigma_px": sigma_px, "sigma_ref_size": [h, w], "seed": seed,
        "n_images": n_images, "n_fixations": total, "images": entries}, indent=None)
    return out
