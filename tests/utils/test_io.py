"""Atomic writes: a reader sees the old artifact or the new one, never a half-written one."""
import json

import pytest

from salnas_core.utils.io import atomic_dir, atomic_path, atomic_write_json, read_json


def test_atomic_dir_creates_and_replaces(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("1")
        assert not out.exists()  # invisible until the block ends
    assert (out / "a.txt").read_text() == "1"
    with atomic_dir(out) as d:
        (d / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no leftovers


def test_atomic_dir_failure_keeps_previous(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "a.txt").write_text("new")
            raise RuntimeError("crash mid-write")
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_read_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: malformed JSON"):
        read_json(p)
    atomic_write_json(p, {"a": 1})
    assert read_json(p) == {"a": 1} == json.loads(p.read_text())
