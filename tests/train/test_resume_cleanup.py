"""Issue 16, findings 10 and 11: resume cleans up after a killed run; bad .pt files are named in one line."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from salnas_core.cli import main
from salnas_core.train.checkpoint import (
    load_checkpoint,
    load_supernet,
    previous_path,
    save_checkpoint,
)

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from salnas_core.utils.io import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the write
"""


def _killed_write(path: Path) -> None:
    """Really start writing `path` atomically in another process and SIGKILL it mid-write."""
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], capture_output=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == -signal.SIGKILL
    assert list(path.parent.glob(f"{path.name}.tmp-*")), "the killed writer left no temporary"


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.full((3,), float(epoch))}}


def test_resume_removes_temporaries_of_killed_writers(tmp_path):
    run = tmp_path / "run"
    ck = run / "checkpoints" / "last.pt"
    save_checkpoint(ck, _state(1))
    _killed_write(ck)
    _killed_write(run / "metrics.json")
    (run / "plots").mkdir()
    _killed_write(run / "plots" / "train.png")
    alive = run / f"metrics.json.tmp-{os.getppid()}"  # a writer that still runs keeps its file
    alive.write_bytes(b"in progress")
    assert load_checkpoint(ck)["epoch"] == 1
    left = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if ".tmp-" in p.name)
    assert left == [alive.name]


def test_first_save_after_a_kill_cleans_up_too(tmp_path):
    ck = tmp_path / "run" / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    _killed_write(ck)  # killed while writing the very first checkpoint: --resume finds no last.pt
    save_checkpoint(ck, _state(1))
    assert [p.name for p in ck.parent.iterdir()] == ["last.pt"]


def test_corrupt_latest_is_set_aside_and_the_previous_used(tmp_path, caplog):
    ck = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(ck, _state(1))
    save_checkpoint(ck, _state(2))
    assert torch.load(previous_path(ck), weights_only=True)["epoch"] == 1
    ck.write_bytes(ck.read_bytes()[:200])  # a copy cut short
    with caplog.at_level("WARNING"):
        got = load_checkpoint(ck)
    assert got["epoch"] == 1 and torch.equal(got["model"]["w"], torch.ones(3))
    aside = list(ck.parent.glob("last.pt.corrupt-*"))
    assert len(aside) == 1 and not ck.exists()
    msg = "\n".join(r.getMessage() for r in caplog.records)
    assert str(ck) in msg and aside[0].name in msg and "previous checkpoint" in msg
    save_checkpoint(ck, _state(3))  # training goes on from there
    assert load_checkpoint(ck)["epoch"] == 3


def test_corrupt_latest_without_a_previous_one(tmp_path):
    ck = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint(ck, _state(1))
    ck.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError) as ei:
        load_checkpoint(ck)
    msg = str(ei.value)
    assert "\n" not in msg and str(ck) in msg and "set aside as last.pt.corrupt-" in msg
    assert not ck.exists()  # a rerun starts afresh instead of failing on the same file


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _malicious_pt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "salnas-supernet/1", "payload": _Evil()}, path)
    return path


def test_malicious_checkpoint_and_supernet_named_in_one_line(tmp_path):
    bad = _malicious_pt(tmp_path / "evil.pt")
    with pytest.raises(ValueError) as ei:
        load_supernet(bad)
    assert str(ei.value).startswith(f"{bad}: not a readable supernet file") and "\n" not in str(ei.value)
    with pytest.raises(ValueError) as ei:
        load_checkpoint(bad)
    assert str(bad) in str(ei.value) and "\n" not in str(ei.value)


def test_search_and_register_cli_refuse_a_malicious_pt_in_one_line(tmp_path, capsys, tiny_ingested):
    bad = _malicious_pt(tmp_path / "sn" / "supernet.pt")
    rc = main(["search", "--supernet", str(bad), "--data", str(tiny_ingested), "--out", str(tmp_path / "s"),
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0], err

    model = _malicious_pt(tmp_path / "distill" / "a" / "model.pt")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(
        {"rows": [{"model": "a", "split": "val", "score": 0.5, "dataset": "osie", "blur": False, "cross": False}]}))
    rc = main(["register", "--evaluate", str(tmp_path / "eval"), "--models", str(tmp_path / "distill"),
               "--data", str(tiny_ingested), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and str(model) in err[-1] and "Traceback" not in "\n".join(err), err


def test_pickle_refusal_still_refuses(tmp_path):
    """weights_only stays on: the payload never runs."""
    marker = tmp_path / "ran"

    class Marker:
        def __reduce__(self):
            return (Path.touch, (marker,))

    p = tmp_path / "m.pt"
    with open(p, "wb") as f:
        pickle.dump({"x": Marker()}, f)
    with pytest.raises(ValueError):
        load_checkpoint(p)
    assert not marker.exists()
