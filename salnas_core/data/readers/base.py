"""What a reader returns, and the registry of readers by format name.

A reader only parses a dataset's annotation files and lists its images; it does not open the
images (ingest does, so every image problem is found and reported in one place). Fixations come
back as continuous (row, col) points in the stored image's pixels (see ground_truth).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class Problem:
    """Something wrong (or changed) in the input, always naming the file."""

    file: str
    kind: str
    message: str
    severity: str = "error"  # "error": item skipped; "warning": item kept, the change is recorded

    def as_dict(self) -> dict:
        return {"file": self.file, "kind": self.kind, "message": self.message, "severity": self.severity}

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Record:
    """One stimulus and its fixations as the dataset stores them."""

    id: str
    image: Path | None                 # None: the annotations name an image that is not there
    points_rc: np.ndarray              # float64 (N, 2) continuous (row, col), stored-image pixels
    source: str                        # the annotation file the points came from (for messages)
    size_hw: tuple[int, int] | None = None   # image size the annotations declare, if any
    split: str | None = None           # the dataset's official split, if it has one
    n_subjects: int = 0

    @property
    def n_fixations(self) -> int:
        return int(len(self.points_rc))


@dataclass
class ReadResult:
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    meta: dict = field(default_factory=dict)   # e.g. {"synthetic": True, "sigma_px": 6, "sigma_ref_size": [h, w]}


Reader = Callable[[Path], ReadResult]
READERS: dict[str, Reader] = {}
# format name -> the dataset name ingest uses by default (shared_json takes the folder name)
DEFAULT_NAMES: dict[str, str | None] = {}


def register_reader(name: str, dataset: str | None = None) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        DEFAULT_NAMES[name] = dataset
        return fn

    return deco


def get_reader(name: str) -> Reader:
    from . import _load_all  # noqa: F401  (fills READERS)

    if name not in READERS:
        raise ValueError(f"unknown dataset format {name!r}; known formats: {', '.join(sorted(READERS))}")
    return READERS[name]


def matlab_xy_to_rc(x, y) -> np.ndarray:
    """MATLAB 1-based continuous (x=col, y=row) -> continuous 0-based (row, col)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y have different lengths ({x.size} vs {y.size})")
    return np.stack([y - 0.5, x - 0.5], axis=1) if x.size else np.zeros((0, 2))


def index_xy_to_rc(x, y) -> np.ndarray:
    """0-based pixel indices (x=col, y=row) -> continuous (row, col) at the pixel centres."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    return np.stack([y + 0.5, x + 0.5], axis=1) if x.size else np.zeros((0, 2))


def binary_map_to_rc(fmap: np.ndarray) -> np.ndarray:
    """Points of a binary fixation map (nonzero pixels) as continuous pixel centres."""
    rows, cols = np.nonzero(np.asarray(fmap))
    return np.stack([rows + 0.5, cols + 0.5], axis=1).astype(np.float64) if rows.size else np.zeros((0, 2))


def load_mat(path: Path) -> dict:
    """scipy.io.loadmat with errors that name the file (empty, truncated, not a .mat, v7.3)."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty .mat file")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        return _load_mat73(path)
    except Exception as e:  # scipy raises ValueError/TypeError/OSError variants for garbage
        raise ValueError(f"{path}: malformed .mat file ({type(e).__name__}: {e})") from None


def _load_mat73(path: Path) -> dict:
    """MATLAB v7.3 files are HDF5; read them with h5py when it is installed."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) file; install h5py to read it") from None
    import h5py

    with h5py.File(path, "r") as f:
        return {"__h5__": path, **{k: f[k][()] for k in f.keys() if not k.startswith("#")}}


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def list_images(folder: Path) -> dict[str, Path]:
    """stem -> path of the image files directly in `folder` (sorted, hidden files ignored)."""
    out: dict[str, Path] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
                out.setdefault(p.stem, p)
    return out


def pair_images(result: ReadResult, images: dict[str, Path], annotated: set[str], where: Path) -> None:
    """Report images that have no fixation data at all (annotations without image are Records with image=None)."""
    for stem, p in images.items():
        if stem not in annotated:
            result.problems.append(Problem(str(p), "image_without_fixations",
                                           f"no fixation data for this image in {where}"))


def first_existing(root: Path, candidates: tuple[str, ...], what: str) -> Path:
    """The first of `candidates` (relative to root) that exists; a clear error listing them if none."""
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    raise FileNotFoundError(f"{root}: no {what} found (looked for: {', '.join(candidates)})")


def mat_var(m: dict, key: str, path: Path):
    if key not in m:
        have = [k for k in m if not k.startswith("__")]
        raise ValueError(f"{path}: no variable {key!r} in .mat file (has: {have})")
    return m[key]


def mat_str(v) -> str:
    """A MATLAB char array as loaded by scipy (nested 1-element arrays) -> str."""
    while isinstance(v, np.ndarray):
        if v.size == 0:
            return ""
        v = v.ravel()[0] if v.dtype == object or v.dtype.kind != "U" else v.ravel()[0]
    return str(v)


def mat_struct(v):
    """Unwrap scipy's (1, 1) object/record wrappers around a MATLAB struct."""
    while isinstance(v, np.ndarray) and v.dtype == object and v.size == 1:
        v = v.ravel()[0]
    if isinstance(v, np.ndarray) and v.dtype.names and v.size == 1:
        v = v.ravel()[0]
    return v
