"""MATLAB v7.3 (HDF5) .mat files: read into the same structures scipy gives for v5/v7 files.

`savemat73` writes what MATLAB's `save -v7.3` writes (the layout MATLAB documents and matio /
hdf5storage follow): a 512-byte MAT header in the HDF5 user block (so scipy.io.loadmat refuses
the file with NotImplementedError, as for real v7.3 files), arrays stored column-major (h5py sees
them transposed) with a MATLAB_class attribute, cells as arrays of object references into
`#refs#`, scalar structs as groups with MATLAB_fields, struct arrays as groups of reference
arrays, chars as uint16 code units, empties as their dims with MATLAB_empty=1. Every .mat-based
reader builder of test_readers is run once with scipy.io.savemat and once with savemat73 and must
give the same records.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from test_readers import BUILDERS  # noqa: E402  (same folder; tests/ is not a package)

from salnas_core.data.readers import get_reader
from salnas_core.data.readers.base import load_mat

_CLASS = {np.dtype(np.float64): "double", np.dtype(np.float32): "single", np.dtype(np.uint8): "uint8",
          np.dtype(np.int8): "int8", np.dtype(np.uint16): "uint16", np.dtype(np.int16): "int16",
          np.dtype(np.uint32): "uint32", np.dtype(np.int32): "int32", np.dtype(np.uint64): "uint64",
          np.dtype(np.int64): "int64"}


class _Writer:
    def __init__(self, f: h5py.File):
        self.f, self.refs, self.n = f, f.create_group("#refs#"), 0

    def ref(self, value) -> h5py.Reference:
        name = f"r{self.n}"
        self.n += 1
        self.write(self.refs, name, value)
        return self.refs[name].ref

    def write(self, parent, name: str, v) -> None:
        if isinstance(v, str):
            d = parent.create_dataset(name, data=np.array([[ord(c)] for c in v] or [[0]], dtype=np.uint16))
            d.attrs["MATLAB_class"], d.attrs["MATLAB_int_decode"] = np.bytes_("char"), np.int32(2)
            return
        if isinstance(v, dict):
            self._struct(parent, name, list(v), {k: [v[k]] for k in v}, (1, 1))
            return
        a = np.asarray(v)
        if a.ndim < 2:
            a = a.reshape(1, -1)  # scipy's oned_as="row"
        if a.dtype.names:
            flat = a.reshape(-1, order="F")
            self._struct(parent, name, list(a.dtype.names), {n: [e[n] for e in flat] for n in a.dtype.names}, a.shape)
            return
        cls = "cell" if a.dtype == object else "logical" if a.dtype == bool else _CLASS[a.dtype]
        if a.size == 0:
            d = parent.create_dataset(name, data=np.array(a.shape[::-1], dtype=np.uint64))
            d.attrs["MATLAB_class"], d.attrs["MATLAB_empty"] = np.bytes_(cls), np.uint8(1)
            return
        if cls == "cell":
            refs = np.empty(a.shape, dtype=h5py.ref_dtype)
            for idx in np.ndindex(a.shape):
                refs[idx] = self.ref(a[idx])
            d = parent.create_dataset(name, data=refs.T)
        else:
            d = parent.create_dataset(name, data=(a.astype(np.uint8) if cls == "logical" else a).T)
            if cls == "logical":
                d.attrs["MATLAB_int_decode"] = np.int32(1)
        d.attrs["MATLAB_class"] = np.bytes_(cls)

    def _struct(self, parent, name, names, values, shape):
        g = parent.create_group(name)
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        fields = np.empty(len(names), dtype=object)
        fields[:] = [np.array(list(n), dtype="S1") for n in names]
        g.attrs.create("MATLAB_fields", fields, dtype=h5py.vlen_dtype(np.dtype("S1")))
        for n in names:
            if shape == (1, 1):  # scalar struct: fields are plain members of the group
                self.write(g, n, values[n][0])
            else:  # struct array: one reference array per field, no MATLAB_class on it
                refs = np.array([self.ref(x) for x in values[n]], dtype=h5py.ref_dtype).reshape(shape, order="F")
                g.create_dataset(n, data=refs.T)


def savemat73(path, variables: dict, **_) -> None:
    """Write `variables` (what scipy.io.savemat accepts) as MATLAB `save -v7.3` lays them out."""
    with h5py.File(path, "w", userblock_size=512) as f:
        w = _Writer(f)
        for k, v in variables.items():
            w.write(f, k, v)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Nov 25 12:00:00 2026 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"  # version 0x0200, little-endian
    with open(path, "r+b") as fh:
        fh.write(header.ljust(512, b"\x00"))


MAT_CASES = ["pascal_s", "osie", "fiwi", "nus_scene", "salicon", "cat2000", "toronto", "dut_omron"]


def _records(res):
    return {r.id: (r.points_rc, r.n_subjects, r.size_hw, r.split) for r in res.records}


@pytest.mark.parametrize("case", MAT_CASES)
def test_v73_reader_gives_the_same_fixations_as_scipy_format(tmp_path, monkeypatch, case):
    fmt, build = BUILDERS[case]
    build(tmp_path / "v5")
    ref = get_reader(fmt)(tmp_path / "v5")
    monkeypatch.setattr(scipy.io, "savemat", savemat73)
    build(tmp_path / "v73")
    mats = sorted((tmp_path / "v73").rglob("*.mat"))
    assert mats
    for m in mats:  # really v7.3: scipy refuses it, h5py opens it
        with pytest.raises(NotImplementedError, match="HDF reader"):
            scipy.io.loadmat(m)
        assert h5py.is_hdf5(m)
    got = get_reader(fmt)(tmp_path / "v73")
    assert got.problems == ref.problems == []
    a, b = _records(ref), _records(got)
    assert a.keys() == b.keys() and len(a) == 2
    for k in a:
        np.testing.assert_array_equal(b[k][0], a[k][0])
        assert b[k][1:] == a[k][1:]


def test_pascal_s_release_layout(tmp_path, monkeypatch):
    """pascalFix.mat as released: fixCell 1xN cell, each cell stored as 3xN in HDF5 ([y x subject] rows in MATLAB)."""
    monkeypatch.setattr(scipy.io, "savemat", savemat73)
    BUILDERS["pascal_s"][1](tmp_path)
    mat = tmp_path / "datasets" / "fixations" / "pascalFix.mat"
    with h5py.File(mat, "r") as f:
        assert f["fixCell"].shape == (2, 1) and f["fixCell"].attrs["MATLAB_class"] == b"cell"
        assert f[f["fixCell"][0, 0]].shape[0] == 3  # column-major: Nx3 in MATLAB is (3, N) in HDF5
    cells = load_mat(mat)["fixCell"]
    assert cells.shape == (1, 2) and cells.dtype == object and cells[0, 0].shape[1] == 3


def test_v73_values_match_loadmat(tmp_path):
    """Each MATLAB class comes back with loadmat's shape, dtype and values."""
    rng = np.random.RandomState(0)
    cell = np.empty((2, 1), dtype=object)
    cell[0, 0], cell[1, 0] = rng.rand(2, 5), "abc"
    rec = np.empty((1, 3), dtype=[("x", object), ("name", object)])
    for i in range(3):
        rec[0, i] = (rng.rand(1, i + 1), f"s{i}")
    v = {"m": rng.rand(3, 4), "i": np.arange(6, dtype=np.int32).reshape(2, 3), "b": rng.rand(4, 2) > 0.5,
         "t": rng.rand(2, 3, 4), "s": "hello", "c": cell, "e": np.zeros((0, 3)),
         "st": {"a": np.array([[1.0, 2.0]]), "name": "img.jpg", "sub": {"k": np.array([[7.0]])}}, "sa": rec}
    scipy.io.savemat(tmp_path / "v5.mat", v)
    savemat73(tmp_path / "v73.mat", v)
    a, b = load_mat(tmp_path / "v5.mat"), load_mat(tmp_path / "v73.mat")

    def same(x, y, where):
        assert type(x) is type(y), where
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape, (where, x.shape, y.shape)
            if x.dtype.names:
                assert x.dtype.names == y.dtype.names, where
                for n in x.dtype.names:
                    for idx in np.ndindex(x.shape):
                        same(x[n][idx], y[n][idx], f"{where}.{n}{idx}")
            elif x.dtype == object:
                for idx in np.ndindex(x.shape):
                    same(x[idx], y[idx], f"{where}{idx}")
            else:
                assert x.dtype == y.dtype, (where, x.dtype, y.dtype)
                np.testing.assert_array_equal(x, y)
        else:
            assert x == y, where

    for k in v:
        same(a[k], b[k], k)


def test_broken_v73_file_names_the_file(tmp_path):
    savemat73(tmp_path / "x.mat", {"fixCell": np.ones((3, 4))})
    data = (tmp_path / "x.mat").read_bytes()
    (tmp_path / "x.mat").write_bytes(data[: len(data) // 2])  # truncated download
    with pytest.raises(ValueError, match=r"x\.mat.*v7\.3"):
        load_mat(tmp_path / "x.mat")
