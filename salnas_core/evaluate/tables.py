"""Metric tables over datasets and models, at the original image size (MIT benchmark practice), or
at the size and blur of the protocol the dataset was ingested under (data.protocols: `authors`).

Each prediction is made at the working size, resized bilinearly to the image's original size,
optionally blurred (the paper's 11x11 Gaussian, sigma 10.5), and scored against the original-size
fixation map and density with `salnas_core.metrics.SaliencyMetrics`. Shuffled AUC takes its
negatives from the fixations of `n_other` other images of the same split (mapped to this image's
size); information gain uses the centre-bias map as its baseline, as the MIT benchmark does.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from salnas_core.errors import UserError
from salnas_core.evaluate.baselines import CenterBias

log = logging.getLogger(__name__)

METRICS = ("cc", "kld", "nss", "sim", "auc_judd", "sauc", "ig")
# Direction of each metric, for the markdown table header and for picking the best row
HIGHER_IS_BETTER = {"cc": True, "kld": False, "nss": True, "sim": True, "auc_judd": True, "sauc": True,
                    "ig": True, "score": False}
# the benchmark's prediction blur (one definition, shared with training-time selection)
from salnas_core.metrics.blur import BLUR_KERNEL, BLUR_SIGMA, gaussian_blur  # noqa: E402,F401


def dataset_dirs(path: str | Path) -> list[Path]:
    """An ingested dataset folder (has manifest.json), or a folder of them."""
    path = Path(path)
    if (path / "manifest.json").exists():
        return [path]
    subs = sorted(p for p in path.iterdir() if (p / "manifest.json").exists()) if path.is_dir() else []
    if not subs:
        raise FileNotFoundError(f"{path}: no ingested dataset (manifest.json) here or one level below")
    return subs


def eval_split(manifest: dict) -> str:
    """The held-out split: test when the dataset has one, else val."""
    splits = manifest.get("splits", {})
    return "test" if splits.get("test", 0) > 0 else "val"


@dataclass
class _GT:
    item: dict
    fixations: np.ndarray   # (h, w) binary, original size
    density: np.ndarray     # (h, w) sums to 1
    points: np.ndarray      # (N, 2) rows/cols at original size


def _ground_truth(root: Path, man: dict, split: str, limit: int | None) -> list[_GT]:
    from salnas_core.data.dataset import load_original_ground_truth

    out = []
    for it in (i for i in man["items"] if i["split"] == split):
        fix, dens = load_original_ground_truth(root, it)
        fix = np.asarray(fix, dtype=np.float32).squeeze()
        dens = np.asarray(dens, dtype=np.float32).squeeze()
        pts = np.argwhere(fix > 0)
        out.append(_GT(it, fix, dens, pts))
        if limit and len(out) >= limit:
            break
    if not out:
        raise UserError(f"{root / 'manifest.json'}: split {split!r} is empty")
    return out


def _resized(g: _GT, size: tuple[int, int], threshold: float) -> _GT:
    """Ground truth at `size` the authors' way: both maps resized bilinearly (cv2's INTER_LINEAR =
    torch's bilinear without antialias), the fixation map thresholded (a fixation can vanish when
    the map shrinks: their protocol, kept), the density renormalised."""
    import torch
    import torch.nn.functional as F

    def rs(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()

    fix = (rs(g.fixations) > threshold).astype(np.float32)
    dens = rs(g.density)
    dens /= max(float(dens.sum()), 1e-12)
    return _GT(g.item, fix, dens, np.argwhere(fix > 0))


def _other_fixations(gts: list[_GT], i: int, n_other: int, rng: np.random.Generator) -> np.ndarray:
    h, w = gts[i].fixations.shape
    others = [j for j in range(len(gts)) if j != i]
    pick = rng.choice(others, size=min(n_other, len(others)), replace=False) if others else []
    m = np.zeros((h, w), dtype=np.float32)
    for j in pick:
        p = gts[j].points.astype(np.float64)
        hj, wj = gts[j].fixations.shape
        r = np.clip(np.floor((p[:, 0] + 0.5) * h / hj), 0, h - 1).astype(int)
        c = np.clip(np.floor((p[:, 1] + 0.5) * w / wj), 0, w - 1).astype(int)
        m[r, c] = 1.0
    return m


def _rgb(path: Path) -> np.ndarray:
    """An ingested image as uint8 RGB (H, W, 3), through the one decoder."""
    from PIL import Image

    from salnas_core.data.images import to_rgb8

    with Image.open(path) as im:
        return to_rgb8(im)[0]


def _predictions(model: Any, root: Path, gts: list[_GT], normalization: str, batch_size: int,
                 device: str, size: Sequence[int] | None = None) -> Iterator[tuple[int, Any]]:
    """Working-size predictions (1, 1, H, W) for each ground-truth item, in order."""
    import torch

    from salnas_core.data.dataset import SaliencyDataset

    ds = SaliencyDataset(root, gts[0].item["split"], normalization=normalization, size=tuple(size) if size else None)
    want = {g.item["id"]: i for i, g in enumerate(gts)}
    model = model.to(device).eval()
    batch: list[tuple[int, Any]] = []
    done = 0

    def flush() -> Iterator[tuple[int, Any]]:
        x = torch.stack([b[1] for b in batch]).to(device)
        y = model(x).float().cpu()
        for k, (i, _) in enumerate(batch):
            yield i, y[k:k + 1]
        batch.clear()

    with torch.inference_mode():
        for k in range(len(ds)):  # dataset order (manifest order); one pass, no double decoding
            rec = ds[k]
            if rec["id"] not in want:
                continue
            batch.append((want[rec["id"]], rec["image"]))
            done += 1
            if len(batch) == batch_size:
                yield from flush()
            if done == len(want):
                break
        if batch:
            yield from flush()
    if done != len(want):
        raise UserError(f"{root}: {len(want) - done} manifest items of split {gts[0].item['split']!r} "
                         "not yielded by the dataset")


def evaluate_maps(predict: Callable[[int], Any], gts: list[_GT], center: CenterBias, blur: bool,
                  n_other: int = 10, seed: int = 0, names: Sequence[str] = METRICS,
                  desc: str = "eval", progress: bool = True) -> dict[str, float]:
    """Mean metrics of predictions (working or original size) against original-size ground truth."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from salnas_core.metrics import SaliencyMetrics

    metric = SaliencyMetrics(names=tuple(names))
    rng = np.random.default_rng(seed)
    for i in tqdm(range(len(gts)), desc=desc, unit="img", disable=not progress, leave=False):
        g = gts[i]
        h, w = g.fixations.shape
        p = predict(i)
        if tuple(p.shape[-2:]) != (h, w):
            p = F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
        if blur:
            p = gaussian_blur(p)
        p = p.clamp_min(0)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
        kw = {}
        if "sauc" in names:
            kw["other_fixations"] = t(_other_fixations(gts, i, n_other, rng))
        if "ig" in names:
            kw["baseline"] = t(center.map((h, w)))
        metric.update(p, t(g.density), t(g.fixations), **kw)
    out = {k: float(v) for k, v in metric.compute().items()}
    out["n"] = len(gts)
    return out


def selection(m: dict[str, float]) -> float:
    from salnas_core.metrics import selection_score

    return float(selection_score(m))


def evaluate_dataset(models: dict[str, tuple[Any, str, Sequence[int] | None]], root: str | Path, split: str | None = None,
                     blur_options: Sequence[bool] = (False,), center: CenterBias | None = None,
                     batch_size: int = 8, device: str = "cpu", limit: int | None = None, n_other: int = 10,
                     seed: int = 0, trained_on: dict[str, str] | None = None,
                     adapt: Sequence[str] = (), adapt_images: int | None = 100,
                     progress: bool = True) -> list[dict[str, Any]]:
    """Rows for one dataset: the centre-bias baseline and each model, for each blur option.

    models: name -> (model, normalization name, input size (H, W) or None). The centre bias is fitted on this dataset's
    training split unless given. Each model named in `adapt` that was trained on another dataset is
    also scored with its post-processing refitted on `adapt_images` images of this dataset's training
    split (evaluate.postprocess.refit_on_dataset: the benchmark's treatment of a new dataset, the
    network untouched), as the row "<name> (pp fitted on <dataset> train)".
    """
    from salnas_core.utils.io import read_json

    from salnas_core.data.protocols import get_protocol

    root = Path(root)
    man = read_json(root / "manifest.json")
    split = split or eval_split(man)
    dataset = man.get("dataset", root.name)
    gts = _ground_truth(root, man, split, limit)
    # the protocol the dataset was ingested under decides the scoring size and blur (data.protocols)
    proto = get_protocol(man.get("protocol"))
    eval_size = proto.eval_size_for(dataset)
    if eval_size is not None:
        gts = [_resized(g, eval_size, proto.fixation_threshold or 0.5) for g in gts]
    if proto.blur is not None:
        blur_options = (proto.blur,)
    if center is None:
        try:
            center = CenterBias.fit_dataset(root, "train")
        except (ValueError, FileNotFoundError, KeyError) as e:
            log.warning("%s: centre bias not fitted (%s); using defaults", root, e)
            center = CenterBias()
    rows: list[dict[str, Any]] = []
    base = {"dataset": dataset, "split": split, "protocol": proto.name,
            "eval_size": list(eval_size) if eval_size else None}
    import torch

    # the baseline is a smooth Gaussian already: scored once, unblurred, and listed under each blur option
    m = evaluate_maps(lambda i: torch.from_numpy(center.map(gts[i].fixations.shape).astype(np.float32))[None, None],
                      gts, center, False, n_other, seed, desc=f"{dataset} centre bias", progress=progress)
    for blur in blur_options:
        rows.append({**base, "model": "centre_bias", "blur": blur, "trained_on": dataset, "cross": False,
                     **m, "score": selection(m)})
    # the classical bottom-up baseline: spectral residual saliency x the same fitted centre bias
    from .baselines import spectral_residual_x_centre

    def sr_map(i: int):
        img = _rgb(root / gts[i].item["image"])
        return torch.from_numpy(spectral_residual_x_centre(img, center, gts[i].fixations.shape)
                                .astype(np.float32))[None, None]

    m = evaluate_maps(sr_map, gts, center, False, n_other, seed, desc=f"{dataset} spectral residual",
                      progress=progress)
    for blur in blur_options:
        rows.append({**base, "model": "spectral_residual_x_centre", "blur": blur, "trained_on": dataset,
                     "cross": False, **m, "score": selection(m)})
    from salnas_core.data.dataset import split_items

    from .postprocess import refit_on_dataset

    has_train = bool(split_items(man, "train"))
    for name, (model, norm, size) in models.items():
        src = (trained_on or {}).get(name) or dataset
        runs = [(name, model, {})]
        if name in adapt and src != dataset and has_train and hasattr(model, "set_postprocess"):
            adapted, fit = refit_on_dataset(model, root, center, "train", adapt_images, batch_size, device)
            log.info("%s on %s: post-processing refitted on %d training images: blur %.1f px, centre weight %.2f, "
                     "power %.2f", name, dataset, fit["n_images"], fit["blur_px"], fit["centre_weight"],
                     fit["centre_power"])
            runs.append((f"{name} (pp fitted on {dataset} train)", adapted, {"adapted_from": name, "postprocess_fit": fit}))
        for label, net, extra in runs:
            preds = {i: p for i, p in _predictions(net, root, gts, norm, batch_size, device, size)}
            for blur in blur_options:
                m = evaluate_maps(preds.__getitem__, gts, center, blur, n_other, seed,
                                  desc=f"{dataset} {label}", progress=progress)
                rows.append({**base, "model": label, "blur": blur, "trained_on": src, "cross": src != dataset,
                             **extra, **m, "score": selection(m)})
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]], names: Sequence[str] = METRICS) -> str:
    """One markdown table per (dataset, blur); the best value of each metric in bold."""
    out: list[str] = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["split"], r["blur"]), []).append(r)
    cols = list(names) + ["score"]
    for (ds, split, blur), rs in groups.items():
        trained = sorted({r["trained_on"] for r in rs if r["model"] not in ("centre_bias", "spectral_residual_x_centre")})
        out.append(f"### {ds} ({split} split, n={rs[0]['n']}, blur {'on' if blur else 'off'}"
                   f"{', trained on ' + '/'.join(trained) if trained else ''})\n")
        out.append("| model | " + " | ".join(f"{c} {'↑' if HIGHER_IS_BETTER[c] else '↓'}" for c in cols) + " |")
        out.append("|---|" + "---|" * len(cols))
        best = {}
        for c in cols:
            vals = [r[c] for r in rs if isinstance(r.get(c), float) and not math.isnan(r[c])]
            if vals:
                best[c] = max(vals) if HIGHER_IS_BETTER[c] else min(vals)
        for r in rs:
            cells = [f"**{_fmt(r[c])}**" if c in best and r.get(c) == best[c] else _fmt(r.get(c, float("nan")))
                     for c in cols]
            out.append(f"| {r['model']}{' (cross)' if r.get('cross') else ''} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
