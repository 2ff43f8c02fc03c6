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

from salnas_core.errors import UserError


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
        raise UserError(f"unknown dataset format {name!r}; known formats: {', '.join(sorted(READERS))}")
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
    """A .mat file as scipy.io.loadmat(squeeze_me=False, struct_as_record=True) returns it, v7.3 included.

    Errors name the file (missing, empty, truncated, not a .mat). MATLAB v7.3 files are HDF5, which
    scipy refuses; they are read with h5py into the same structures (see _load_mat73), so readers
    need no v7.3 special case.
    """
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty .mat file")
    try:
        return scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except NotImplementedError:  # scipy: "Please use HDF reader for matlab v7.3 files"
        return _load_mat73(path)
    except Exception as e:  # scipy raises ValueError/TypeError/OSError variants for garbage
        if _is_hdf5(path):  # an HDF5 .mat written without the 512-byte MATLAB header
            return _load_mat73(path)
        raise ValueError(f"{path}: malformed .mat file ({type(e).__name__}: {e})") from None


def _is_hdf5(path: Path) -> bool:
    try:
        import h5py
    except ImportError:
        return False
    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


def _load_mat73(path: Path) -> dict:
    """Read a MATLAB v7.3 (HDF5) file into loadmat's structures.

    MATLAB stores arrays column-major, so h5py sees every array with its axes reversed: each is
    transposed back. Variables carry a MATLAB_class attribute: cells are arrays of object
    references (into #refs#), structs are groups (struct arrays: groups whose fields are
    reference arrays), chars are uint16 code units, empties are stored as their dims with
    MATLAB_empty=1.
    """
    try:
        import h5py
    except ImportError:  # a declared dependency; a broken environment still gets a clear message
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) file; install h5py to read it") from None
    try:
        with h5py.File(path, "r") as f:
            out: dict = {"__header__": b"MATLAB 7.3 MAT-file (HDF5), read with h5py", "__version__": "7.3",
                         "__globals__": []}
            for k in f.keys():
                if k.startswith("#"):  # #refs# (cell/struct contents), #subsystem# (MATLAB objects)
                    continue
                out[k] = _h5_to_mat(f, f[k], f"{path}:{k}")
            return out
    except ValueError:
        raise
    except Exception as e:  # h5py: OSError for truncated files, KeyError for dangling references
        raise ValueError(f"{path}: malformed MATLAB v7.3 (HDF5) .mat file ({type(e).__name__}: {e})") from None


def _attr_str(obj, name: str) -> str:
    v = obj.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _h5_to_mat(f, obj, where: str):
    """One HDF5 dataset/group of a v7.3 file -> what scipy.io.loadmat gives for that MATLAB value."""
    import h5py

    cls = _attr_str(obj, "MATLAB_class")
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            import scipy.sparse

            n_rows = int(obj.attrs["MATLAB_sparse"])
            jc = obj["jc"][()]
            data = obj["data"][()] if "data" in obj else np.zeros(0)
            ir = obj["ir"][()] if "ir" in obj else np.zeros(0, dtype=np.int64)
            return scipy.sparse.csc_matrix((data, ir, jc), shape=(n_rows, len(jc) - 1))
        if cls not in ("struct", ""):
            raise ValueError(f"{where}: MATLAB class {cls!r} (objects) is not supported")
        names = _struct_fields(obj)
        fields = {n: obj[n] for n in names}
        if fields and all(isinstance(d, h5py.Dataset) and h5py.check_ref_dtype(d.dtype) is not None
                          and "MATLAB_class" not in d.attrs for d in fields.values()):
            # struct array: every field is an array of references, one per element
            shape = next(iter(fields.values())).shape[::-1]
            rec = np.empty(shape, dtype=[(n, object) for n in names])
            for n, d in fields.items():
                refs = d[()].T
                for idx in np.ndindex(shape):
                    rec[n][idx] = _h5_to_mat(f, f[refs[idx]], f"{where}({idx}).{n}")
            return rec
        rec = np.empty((1, 1), dtype=[(n, object) for n in names])  # scalar struct: loadmat's (1, 1) record
        for n, d in fields.items():
            rec[n][0, 0] = _h5_to_mat(f, d, f"{where}.{n}")
        return rec
    if obj.attrs.get("MATLAB_empty", 0):
        dims = tuple(int(x) for x in np.asarray(obj[()]).ravel()[::-1]) if obj.size else (0, 0)
        if cls == "cell":
            return np.empty(dims, dtype=object)
        if cls == "char":
            return np.array([""], dtype="<U1")
        if cls == "struct":
            return np.empty(dims, dtype=object)
        return np.empty(dims, dtype=_MAT_DTYPES.get(cls, np.float64))
    data = obj[()]
    if cls == "cell" or h5py.check_ref_dtype(obj.dtype) is not None:
        refs = np.asarray(data).T
        cell = np.empty(refs.shape, dtype=object)
        for idx in np.ndindex(refs.shape):
            cell[idx] = _h5_to_mat(f, f[refs[idx]], f"{where}{{{idx}}}")
        return cell
    arr = np.asarray(data)
    if arr.dtype.names and set(arr.dtype.names) >= {"real", "imag"}:
        arr = arr["real"] + 1j * arr["imag"]
    arr = arr.T
    if arr.ndim < 2:
        arr = arr.reshape(1, -1)
    if cls == "char":  # UTF-16 code units; loadmat gives one string per row
        rows = ["".join(chr(c) for c in r) for r in np.atleast_2d(arr).astype(np.uint32)]
        return np.array(rows, dtype=f"<U{max(1, max(len(r) for r in rows))}")
    if cls == "logical":  # loadmat keeps MATLAB logicals as uint8 0/1
        return arr.astype(np.uint8)
    return arr


def _struct_fields(group) -> list[str]:
    """A struct's field names in MATLAB's order (MATLAB_fields attribute), else the group's order."""
    raw = group.attrs.get("MATLAB_fields")
    if raw is None:
        return [k for k in group.keys()]
    names = []
    for v in raw:
        v = np.asarray(v)
        names.append(b"".join(x if isinstance(x, bytes) else bytes([int(x)]) for x in v.ravel()).decode())
    return [n for n in names if n in group]


_MAT_DTYPES = {"double": np.float64, "single": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
               "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
               "logical": np.uint8}


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def list_images(folder: Path, problems: list[Problem] | None = None) -> dict[str, Path]:
    """stem -> path of the image files directly in `folder` (sorted, hidden files ignored).

    Two files with one stem (`a.jpg`, `a.png`): the first is listed; the second is reported in
    `problems` (when given) as `duplicate_id`.
    """
    out: dict[str, Path] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
                if p.stem in out:
                    if problems is not None:
                        problems.append(Problem(str(p), "duplicate_id", f"same name as {out[p.stem].name} "
                                                "apart from the extension; ignored"))
                    continue
                out[p.stem] = p
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
