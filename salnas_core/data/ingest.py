"""Ingest: read a dataset with its reader, validate every item, write a versioned preprocessed copy.

Output (OUT/<dataset>/): images/<id>.png at the working size, density/<id>.npy, fixations/<id>.npy
(working size) and fixations/<id>.orig.npy (original size), items/<id>.json (per-item record,
written last for that item), then manifest.json (written last of all) and report.json.
See docs/INTERFACES.md (Data) and docs/datasets.md.

Every problem names its file, is logged and counted in report.json. Errors skip the item;
warnings keep it and say what was changed (mode conversion, EXIF rotation, dropped points).
Re-running over a partial output keeps the finished items (checked by hash) and does the rest.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.hashing import sha256_bytes as _sha, sha256_file as _file_sha
from ..utils.io import atomic_path, atomic_write_json
from . import ground_truth as gt
from .protocols import Protocol, get_protocol
from .readers import DEFAULT_NAMES, Problem, Record, get_reader
from .splits import assign_splits, holdout_ids

log = logging.getLogger(__name__)

INGEST_VERSION = 1  # bump when the output format or the preprocessing changes

# Gaussian sigma of each dataset's density maps: (sigma in px, at image size (H, W), source).
# Sigma scales with the image diagonal to other sizes (ground_truth.scale_sigma).
DATASET_SIGMA: dict[str, tuple[float, tuple[int, int], str]] = {
    "osie": (24.0, (600, 800), "OSIE authors' MATLAB config (../shared/data/README.md)"),
    "nus_scene": (8.0, (256, 256), "Scene authors' config, maps at 256x256 (../shared/data/README.md)"),
    "salicon": (19.0, (480, 640), "SALICON API buildFixMap/gaussian_filter(sigma=19)"),
    "mit1003": (35.0, (768, 1024), "MIT benchmark: 1 degree of visual angle ~ 35 px"),
    "cat2000": (42.0, (1080, 1920), "1 degree at the CAT2000 display (1920 px over 45.5 degrees)"),
    "pascal_s": (16.0, (375, 500), "assumed ~1 degree (not published); change with --sigma"),
    "dut_omron": (12.0, (300, 400), "assumed ~1 degree (not published); change with --sigma"),
    "fiwi": (30.0, (768, 1360), "assumed ~1 degree (not published); change with --sigma"),
    "toronto": (24.0, (511, 681), "assumed ~1 degree (not published); change with --sigma"),
}

_EXIF_ORIENTATION = 0x0112
EDGE_TOLERANCE = 1.0  # px: fixations this close outside the image are clipped, not dropped
# largest image (width x height) ingest decodes; larger ones are skipped as `image_too_large`
# (Pillow's own decompression-bomb limit; 20000x20000 would take 1.2 GB as RGB). Override with
# SALNAS_MAX_IMAGE_PIXELS or ingest(max_pixels=...).
DEFAULT_MAX_PIXELS = 89_478_485


class ItemError(Exception):
    """An item cannot be ingested; carries the Problem to report."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class Settings:
    dataset: str
    fmt: str
    working_size: tuple[int, int]
    sigma_ref: float
    sigma_ref_size: tuple[int, int]
    sigma_source: str
    max_pixels: int = DEFAULT_MAX_PIXELS  # not in the fingerprint: it only decides what is skipped

    @property
    def sigma_working(self) -> float:
        return gt.scale_sigma(self.sigma_ref, self.sigma_ref_size, self.working_size)

    def fingerprint(self) -> dict:
        return {"ingest_version": INGEST_VERSION, "format": self.fmt, "working_size": list(self.working_size),
                "sigma_ref_px": self.sigma_ref, "sigma_ref_size": list(self.sigma_ref_size)}


# ---------------------------------------------------------------------------------------------
# image loading: every way an image file can be odd
# ---------------------------------------------------------------------------------------------

def _orientation_point_map(orientation: int, h: int, w: int, pts_rc: np.ndarray) -> np.ndarray:
    """Move continuous (row, col) points of a raw h x w image the way exif_transpose moves pixels."""
    r, c = pts_rc[:, 0], pts_rc[:, 1]
    if orientation == 2:      # mirror left-right
        out = (r, w - c)
    elif orientation == 3:    # rotate 180
        out = (h - r, w - c)
    elif orientation == 4:    # mirror top-bottom
        out = (h - r, c)
    elif orientation == 5:    # transpose
        out = (c, r)
    elif orientation == 6:    # rotate 90 clockwise
        out = (c, h - r)
    elif orientation == 7:    # transverse
        out = (w - c, h - r)
    elif orientation == 8:    # rotate 90 counter-clockwise
        out = (w - c, r)
    else:
        return pts_rc
    return np.stack(out, axis=1)


def max_pixels_default() -> int:
    v = os.environ.get("SALNAS_MAX_IMAGE_PIXELS")
    return int(v) if v else DEFAULT_MAX_PIXELS


def load_image(path: Path, points_rc: np.ndarray | None = None, declared_hw: tuple[int, int] | None = None,
               declared_by: str = "the annotations",
               max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None, list[Problem]]:
    """Decode `path` to uint8 RGB (H, W, 3), upright per EXIF; returns (array, points, warnings).

    `points_rc` (continuous, raw-file pixels) are moved with any EXIF rotation so they stay on the
    same image content; if the declared size already matches the rotated image, they are taken as
    given in the displayed frame. Raises ItemError for unreadable files and for images of more
    than `max_pixels` pixels (checked from the header, before decoding).
    """
    import warnings as _warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    warnings: list[Problem] = []
    f = str(path)
    limit = int(max_pixels or max_pixels_default())
    if not Path(path).is_file():
        raise ItemError(Problem(f, "missing_image", "image file not found"))
    if Path(path).stat().st_size == 0:
        raise ItemError(Problem(f, "corrupt_image", "empty image file (0 bytes)"))
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            im = Image.open(path)
        if im.width * im.height > limit:
            im.close()
            raise ItemError(Problem(f, "image_too_large", f"{im.width}x{im.height} image ({im.width * im.height / 1e6:.1f} "
                                    f"megapixels) exceeds the limit of {limit / 1e6:.1f} megapixels "
                                    "(SALNAS_MAX_IMAGE_PIXELS)"))
        # Pillow decodes 16-bit-per-channel colour (PNG/TIFF "RGB;16B") straight to 8 bit: note it
        tile_args = [getattr(t, "args", None) for t in (im.tile or [])]
        deep = any(isinstance(a, str) and ";16" in a for a in tile_args) and im.mode in ("RGB", "RGBA")
        im.load()
    except UnidentifiedImageError:
        raise ItemError(Problem(f, "corrupt_image", "not a readable image (unknown or corrupt format)")) from None
    except Image.DecompressionBombError as e:  # beyond twice Pillow's global limit: refused in open()
        raise ItemError(Problem(f, "image_too_large", f"image too large to decode safely ({e})")) from None
    except MemoryError:
        raise ItemError(Problem(f, "image_too_large", "not enough memory to decode this image")) from None
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow: "image file is truncated (N bytes not processed)", broken data streams, ...
        raise ItemError(Problem(f, "corrupt_image", f"cannot decode image: {e}")) from None

    orientation = 1
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block should not reject a decodable image
        warnings.append(Problem(f, "bad_exif", "unreadable EXIF block ignored", "warning"))
    if deep:
        warnings.append(Problem(f, "image_mode", f"16-bit per channel {im.mode} reduced to 8 bit (high byte)",
                                "warning"))
    if orientation not in range(1, 9):
        warnings.append(Problem(f, "bad_exif", f"invalid EXIF orientation {orientation} ignored", "warning"))
        orientation = 1
    raw_h, raw_w = im.height, im.width
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
        declared_is_displayed = (declared_hw is not None and tuple(declared_hw) == (im.height, im.width)
                                 and tuple(declared_hw) != (raw_h, raw_w))
        if points_rc is not None and not declared_is_displayed:
            points_rc = _orientation_point_map(orientation, raw_h, raw_w, points_rc)
            what = "fixations moved with it"
        else:
            what = "fixations already in the rotated frame (declared size matches it)"
        warnings.append(Problem(f, "exif_rotation", f"EXIF orientation {orientation}: image turned upright, {what}",
                                "warning"))

    if declared_hw is not None and tuple(declared_hw) not in ((raw_h, raw_w), (im.height, im.width)):
        raise ItemError(Problem(f, "size_mismatch", f"image is {im.height}x{im.width} but {declared_by} declares "
                                f"{declared_hw[0]}x{declared_hw[1]}; fixation coordinates cannot be trusted"))
    arr = _to_rgb8(im, f, warnings)
    return arr, points_rc, warnings


def _to_rgb8(im, f: str, warnings: list[Problem]) -> np.ndarray:
    """The one decoder (data.images, shared with predict); its notes become this file's warnings."""
    from .images import UnsupportedImageError, to_rgb8

    try:
        arr, notes = to_rgb8(im, strict=True)
    except UnsupportedImageError as e:
        raise ItemError(Problem(f, "unsupported_image", str(e))) from None
    warnings.extend(Problem(f, kind, what, "warning") for kind, what in notes)
    return arr


def resize_rgb(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 RGB to (H, W) with Pillow's antialiased bilinear filter."""
    from PIL import Image

    if arr.shape[:2] == tuple(size_hw):
        return arr
    im = Image.fromarray(arr, "RGB").resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# one item
# ---------------------------------------------------------------------------------------------

def safe_id(record_id: str) -> str:
    """Ids become file names: keep letters, digits, '-', '_', '.'; path separators become '__'."""
    s = record_id.replace("/", "__").replace("\\", "__")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG", compress_level=1)  # 3x faster, ~10% larger
    return buf.getvalue()


def _source_stamp(rec: Record) -> dict:
    # content, not path or mtime: a re-downloaded S3 source or a moved folder still resumes
    return {"image_sha": _file_sha(rec.image), "n_fixations": rec.n_fixations,
            "points_sha": _sha(np.ascontiguousarray(rec.points_rc, dtype=np.float64).tobytes())}


def _completed(out: Path, iid: str, fingerprint: dict, stamp: dict) -> dict | None:
    """The item record if this item was fully written by an identical earlier run, else None."""
    rec_path = out / "items" / f"{iid}.json"
    if not rec_path.exists():
        return None
    try:
        item = json.loads(rec_path.read_text())
        if item.get("_fingerprint") != fingerprint or item.get("_source") != stamp:
            return None
        for key in ("image", "density", "fixations", "orig_fixations"):
            p = out / item[key]
            if not p.exists() or _file_sha(p) != item["sha256"][key]:
                return None
        return item
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_item(rec: Record, split: str, out: Path, st: Settings,
                 iid: str | None = None) -> tuple[dict, list[Problem], bool]:
    """Validate and write one item; returns (manifest item, warnings, resumed). Raises ItemError."""
    iid = iid or safe_id(rec.id)
    if rec.image is None:
        raise ItemError(Problem(rec.source, "fixations_without_image", f"fixations for {rec.id!r} but no image file"))
    stamp = _source_stamp(rec)
    done = _completed(out, iid, st.fingerprint(), stamp)
    if done is not None:  # the files are the same; the split is this run's (seed, protocol)
        return {**done, "split": split}, [Problem(**w) for w in done.get("_warnings", [])], True

    if rec.n_fixations == 0:
        raise ItemError(Problem(str(rec.image), "image_without_fixations", f"no fixations in {rec.source}"))
    arr, pts, warnings = load_image(rec.image, rec.points_rc, rec.size_hw, rec.source, max_pixels=st.max_pixels)
    h, w = arr.shape[:2]
    ok = gt.inside(pts, (h, w))
    # eye-tracker noise just past the edge (< EDGE_TOLERANCE px) is clipped onto the border pixel,
    # as the data's own convention col = clip(round(x) - 1) does; farther points are dropped
    near = ~ok & gt.inside(pts + EDGE_TOLERANCE, (h + 2 * EDGE_TOLERANCE, w + 2 * EDGE_TOLERANCE))
    if near.any():
        pts = pts.copy()
        pts[near] = np.clip(pts[near], 0.0, np.array([h, w]) - 1e-6)
        ok = ok | near
        warnings.append(Problem(str(rec.image), "fixation_on_edge",
                                f"{int(near.sum())} of {len(pts)} fixations less than {EDGE_TOLERANCE:g} px outside "
                                f"the {h}x{w} image clipped onto its border", "warning"))
    if not ok.all():
        bad = int((~ok).sum())
        warnings.append(Problem(str(rec.image), "fixation_outside_image",
                                f"{bad} of {len(pts)} fixations outside the {h}x{w} image (or not finite) dropped",
                                "warning"))
        pts = pts[ok]
    if len(pts) == 0:
        raise ItemError(Problem(str(rec.image), "image_without_fixations",
                                f"all {rec.n_fixations} fixations in {rec.source} fall outside the image"))

    H, W = st.working_size
    orig_idx = gt.to_indices(pts, (h, w))
    work_idx = gt.resize_points(pts, (h, w), (H, W))
    dens = gt.density_map(work_idx, (H, W), st.sigma_working)
    img = resize_rgb(arr, (H, W))

    files = {
        "image": (f"images/{iid}.png", _png_bytes(img)),
        "density": (f"density/{iid}.npy", _npy_bytes(dens)),
        "fixations": (f"fixations/{iid}.npy", _npy_bytes(work_idx.astype(np.int32))),
        "orig_fixations": (f"fixations/{iid}.orig.npy", _npy_bytes(orig_idx.astype(np.int32))),
    }
    for rel, data in files.values():
        # temp + rename without fsync: a file torn by a power cut fails its sha256 check on the
        # rerun and is rewritten; the item record below (fsynced) is the commit point
        with atomic_path(out / rel) as tmp:
            tmp.write_bytes(data)
    item = {
        "id": iid, "split": split,
        "image": files["image"][0], "density": files["density"][0], "fixations": files["fixations"][0],
        "orig_size": [h, w], "orig_fixations": files["orig_fixations"][0],
        "n_fixations": int(len(work_idx)), "n_subjects": rec.n_subjects,
        "sha256": {k: _sha(files[k][1]) for k in ("image", "density", "fixations", "orig_fixations")},
    }
    # the per-item record is the item's commit point: written after all its files
    atomic_write_json(out / "items" / f"{iid}.json",
                      {**item, "_fingerprint": st.fingerprint(), "_source": stamp,
                       "_warnings": [p.as_dict() for p in warnings]})
    return item, warnings, False


# ---------------------------------------------------------------------------------------------
# the whole dataset
# ---------------------------------------------------------------------------------------------

def resolve_sigma(dataset: str, meta: dict, sigma: float | None, sigma_ref_size: tuple[int, int] | None,
                  working_size: tuple[int, int], protocol: Protocol | None = None) -> tuple[float, tuple[int, int], str]:
    """Given > the protocol's (data.protocols) > the dataset's fixations.json > DATASET_SIGMA."""
    if sigma is not None:
        return float(sigma), tuple(sigma_ref_size or working_size), "given (--sigma / params ingest.sigma_px)"
    if protocol is not None and dataset in protocol.sigma:
        s, ref, src = protocol.sigma[dataset]
        return s, ref, f"protocol {protocol.name}: {src}"
    if meta.get("sigma_px") is not None and meta.get("sigma_ref_size"):
        return float(meta["sigma_px"]), tuple(meta["sigma_ref_size"]), "declared by the dataset's fixations.json"
    if dataset in DATASET_SIGMA:
        s, ref, src = DATASET_SIGMA[dataset]
        return s, ref, src
    raise ValueError(f"no Gaussian sigma known for dataset {dataset!r} (known: {', '.join(sorted(DATASET_SIGMA))}); "
                     "pass --sigma PX (at the working size) or --name with a known dataset")


def _dataset_name(fmt: str, root: Path, meta: dict, name: str | None) -> str:
    if name:
        return name
    if meta.get("synthetic"):
        return "synthetic"
    return DEFAULT_NAMES.get(fmt) or safe_id(root.name.lower())


def _resolve_source(source: str | os.PathLike) -> Path:
    s = str(source)
    if s.startswith("s3://"):  # local paths only: the ingest step downloads (salnas_core.steps.ingest)
        raise ValueError(f"{s}: ingest reads local folders; download it first (`salnas ingest` does)")
    root = Path(s)
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset source not found")
    return root


ITEM_DIRS = ("images", "density", "fixations", "items")


def item_files(iid: str) -> set[str]:
    """Every file (relative to the dataset folder) that item `iid` owns."""
    return {f"images/{iid}.png", f"density/{iid}.npy", f"fixations/{iid}.npy", f"fixations/{iid}.orig.npy",
            f"items/{iid}.json"}


def _cleanup(out: Path, keep: set[str]) -> int:
    """Remove leftovers of interrupted writes and items no longer in the dataset (our own folders only).

    A file stays only if it is exactly one of the files a kept item owns (item_files), so an id
    with dots in it (`1005.v2`) keeps its files.
    """
    wanted: set[str] = set()
    for iid in keep:
        wanted |= item_files(iid)
    removed = 0
    for sub in ITEM_DIRS:
        d = out / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.is_file() and f"{sub}/{p.name}" not in wanted:
                p.unlink(missing_ok=True)
                removed += 1
    return removed


def _unique_ids(records: list[Record]) -> tuple[list[Record], dict[int, str], list[Problem]]:
    """File-safe ids for the records; records whose ids collide are all reported and skipped.

    Two different files (`a b.jpg`, `a_b.jpg`) that map to one id cannot both be kept, and keeping
    either would be a guess: each is reported naming the other, the rest of the dataset goes on.
    """
    by_id: dict[str, list[Record]] = {}
    for r in records:
        by_id.setdefault(safe_id(r.id), []).append(r)
    keep, ids, problems = [], {}, []
    for iid, group in by_id.items():
        if len(group) == 1:
            keep.append(group[0])
            ids[id(group[0])] = iid
            continue
        names = [str(r.image) if r.image is not None else f"{r.id!r} in {r.source}" for r in group]
        for r, n in zip(group, names):
            others = ", ".join(o for o in names if o != n)
            problems.append(Problem(n, "duplicate_id", f"maps to the same item id {iid!r} as {others}; "
                                    "both skipped (rename one of them)"))
    return keep, ids, problems


def _count_kinds(problems: list[Problem]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for p in problems:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return kinds


def _stopped_report(dest: Path, fmt: str, source, problems: list[Problem], exc: BaseException, t0: float,
                    n_records: int | None, n_items: int) -> None:
    """report.json for a run that stopped: what stopped it, and every problem found until then."""
    try:
        atomic_write_json(dest / "report.json", {
            "dataset": dest.name, "format": fmt, "source": str(source), "stopped": f"{type(exc).__name__}: {exc}",
            "counts": {"records": n_records, "ingested_before_stop": n_items,
                       "errors": sum(p.severity == "error" for p in problems),
                       "warnings": sum(p.severity == "warning" for p in problems), "by_kind": _count_kinds(problems)},
            "problems": [p.as_dict() for p in problems],
            "timing": {"wall_s": round(time.perf_counter() - t0, 3)}})
    except OSError as e:  # the output folder itself is unusable: the original error matters more
        log.error("could not write %s: %s", dest / "report.json", e)


def ingest(source: str | os.PathLike, fmt: str, out: str | os.PathLike, working_size: tuple[int, int] = (288, 384),
           limit: int | None = None, seed: int = 42, name: str | None = None, sigma: float | None = None,
           sigma_ref_size: tuple[int, int] | None = None, workers: int | None = None,
           progress: bool = True, source_label: str | None = None,
           max_pixels: int | None = None, protocol: str | None = None,
           holdout: int | float | None = None) -> dict[str, Any]:
    """Ingest the local folder `source` read as `fmt` into OUT/<dataset>/; returns the summary.
    `source_label`: what report and manifest record as the source (the s3:// prefix it came from).
    `protocol`: whose sigmas and split sizes (data.protocols: mit, the default, or authors).
    `holdout`: images (int) or fraction of the training split set aside for model selection
    (data.splits.holdout_ids; manifest `holdout`); the split itself stays train/val.

    Nothing about a single item stops the run: it is reported and skipped. What stops it (an
    unreadable annotation file, a missing source, Ctrl-C) still leaves OUT/<dataset>/report.json
    with the reason and the problems found so far (no manifest.json).
    """
    t0 = time.perf_counter()
    root = _resolve_source(source)
    source = source_label or source
    problems: list[Problem] = []
    items: list[dict] = []
    state: dict[str, Any] = {"n_records": None}
    try:
        result = get_reader(fmt)(root)
    except BaseException as e:
        dest = Path(out) / _dataset_name(fmt, root, {}, name)
        dest.mkdir(parents=True, exist_ok=True)
        _stopped_report(dest, fmt, source, problems, e, t0, None, 0)
        raise
    dest = Path(out) / _dataset_name(fmt, root, result.meta, name)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _ingest(source, fmt, root, result, dest, problems, items, state, t0, working_size, limit, seed,
                       sigma, sigma_ref_size, workers, progress, max_pixels, get_protocol(protocol), holdout)
    except BaseException as e:
        _stopped_report(dest, fmt, source, problems, e, t0, state["n_records"], len(items))
        raise


def _ingest(source, fmt: str, root: Path, result, dest: Path, problems: list[Problem], items: list[dict],
            state: dict, t0: float, working_size, limit, seed, sigma, sigma_ref_size, workers, progress,
            max_pixels, protocol: Protocol, holdout: int | float | None = None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    dataset = dest.name
    state["n_records"] = len(result.records)
    problems.extend(result.problems)
    working_size = (int(working_size[0]), int(working_size[1]))
    s_ref, s_size, s_src = resolve_sigma(dataset, result.meta, sigma, sigma_ref_size, working_size, protocol)
    st = Settings(dataset, fmt, working_size, s_ref, s_size, s_src, int(max_pixels or max_pixels_default()))
    synthetic = bool(result.meta.get("synthetic"))
    if synthetic:
        log.warning("SYNTHETIC dataset %s: generated images and fixations, not human eye-tracking data", root)

    all_records = sorted(result.records, key=lambda r: r.id)
    records, ids, dup = _unique_ids(all_records)
    problems.extend(dup)
    # split over every listed id (bad and duplicated ones too), so one broken file cannot reshuffle the split
    every_id = sorted({safe_id(r.id) for r in all_records})
    splits = assign_splits(dataset, every_id, seed, {ids[id(r)]: r.split for r in records}, protocol.splits)
    if limit is not None:
        records = records[: int(limit)]
    # over the attempted training ids (after `limit`), so a failed item cannot reshuffle the slice
    held = holdout_ids([ids[id(r)] for r in records if splits[ids[id(r)]] == "train"], holdout, seed)
    resumed = 0
    workers = workers or min(4, os.cpu_count() or 1)

    def work(rec: Record):
        iid = ids[id(rec)]
        try:
            return process_item(rec, splits[iid], dest, st, iid)
        except ItemError as e:
            return e.problem
        except Exception as e:  # anything else about one item is that item's problem, not the run's
            log.debug("item %s failed", iid, exc_info=True)
            return Problem(str(rec.image or rec.source), "item_failed", f"{type(e).__name__}: {e}")

    bar = tqdm(total=len(records), desc=f"ingest {dataset}", unit="img", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for res in pool.map(work, records):
            bar.update(1)
            if isinstance(res, Problem):
                problems.append(res)
                continue
            item, warns, was_done = res
            resumed += was_done
            problems.extend(warns)
            items.append({k: v for k, v in item.items() if not k.startswith("_")})
    finally:
        # on Ctrl-C or a crash, start no new items; finished ones are kept for the rerun
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    for p in problems:
        (log.error if p.severity == "error" else log.warning)("%s", p)

    items.sort(key=lambda it: it["id"])
    removed = _cleanup(dest, {it["id"] for it in items})
    n_split = {s: sum(it["split"] == s for it in items) for s in ("train", "val", "test")}
    held_items = sorted(it["id"] for it in items if it["split"] == "train" and it["id"] in held)
    n_split["holdout"] = len(held_items)  # part of train: model selection scores on it, nothing trains on it
    version = hashlib.sha256(json.dumps({"settings": st.fingerprint(), "items": [
        [it["id"], it["split"], it["sha256"]] for it in items], "holdout": held_items},
        sort_keys=True).encode()).hexdigest()
    wall = time.perf_counter() - t0
    n_fix = int(sum(it["n_fixations"] for it in items))
    report = {
        "dataset": dataset, "format": fmt, "source": str(source), "synthetic": synthetic,
        "counts": {"records": len(result.records), "attempted": len(records), "ingested": len(items),
                   "skipped": len(records) - len(items),
                   "resumed": resumed, "removed_stale_files": removed, "fixations": n_fix,
                   "errors": sum(p.severity == "error" for p in problems),
                   "warnings": sum(p.severity == "warning" for p in problems), "by_kind": _count_kinds(problems)},
        "problems": [p.as_dict() for p in problems],
        "timing": {"wall_s": round(wall, 3), "images_per_s": round(len(items) / wall, 2) if wall > 0 else None},
    }
    manifest = {
        "dataset": dataset, "format": fmt, "version": version, "synthetic": synthetic,
        "sigma_px": round(st.sigma_working, 4), "sigma_ref_px": s_ref, "sigma_ref_size": list(s_size),
        "sigma_source": s_src, "working_size": list(working_size), "seed": seed, "protocol": protocol.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "source": str(source),
        "splits": n_split, "n_fixations": n_fix, "items": items,
        "holdout": {"size": holdout, "ids": held_items},
    }
    atomic_write_json(dest / "report.json", report)
    atomic_write_json(dest / "manifest.json", manifest)  # last: its presence means the dataset is complete
    log.info("ingested %d/%d images of %s (%d fixations) in %.1f s%s", len(items), len(records), dataset, n_fix, wall,
             " [SYNTHETIC]" if synthetic else "")
    return {"dataset": dataset, "out": str(dest), "images": len(items), "fixations": n_fix, "splits": n_split,
            "errors": report["counts"]["errors"], "warnings": report["counts"]["warnings"], "resumed": resumed,
            "synthetic": synthetic, "wall_s": report["timing"]["wall_s"],
            "images_per_s": report["timing"]["images_per_s"], "version": version}
