"""Issue 16, finding 7: an S3 server killed in the middle of an upload, then restarted.

A private SeaweedFS (not the session's shared one) is started, SIGKILLed from inside the upload
after some objects went up, and restarted on the same data and ports. At each point the test
checks what a reader sees: never a partial dataset, always a clear error or the complete one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from salnas_core.tracking import services, storage


@pytest.fixture
def private_s3(tmp_path, monkeypatch):
    import boto3

    svc = services.start_s3(tmp_path / "s3")
    for k, v in svc.env().items():
        monkeypatch.setenv(k, v)
    # boto3's default session keeps the credentials it first resolved (the shared server's when
    # other tests ran first): start from a fresh one that reads this server's from the environment
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    state = {"svc": svc, "proc": svc.proc}

    def kill() -> None:
        os.killpg(state["proc"].pid, signal.SIGKILL)
        state["proc"].wait(timeout=30)

    def restart() -> None:
        log = open(os.path.join(svc.workdir, "seaweed.log"), "ab")
        state["proc"] = subprocess.Popen(svc.proc.args, cwd=svc.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        probe = storage.s3_client(retries=0)
        for _ in range(240):  # up to ~60 s
            try:
                probe.list_buckets()
                probe.list_objects_v2(Bucket="dvc", MaxKeys=1)
                return
            except Exception:
                time.sleep(0.25)
        raise RuntimeError("restarted SeaweedFS did not come back")

    state["kill"], state["restart"] = kill, restart
    yield state
    services.stop_pid(state["proc"].pid, state["proc"])


def _folder(root, n: int, tag: str):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"f{i:03d}.txt").write_text(f"{tag} {i}\n" * 50)
    return root


def _kill_after(client, n_puts: int, kill) -> list:
    seen = []

    def hook(**kw):
        seen.append(1)
        if len(seen) == n_puts + 1:
            kill()  # the server dies while the upload is going on

    client.meta.events.register("before-send.s3.PutObject", hook)
    return seen


def test_kill_mid_upload_restart_and_what_a_reader_sees(private_s3, tmp_path, monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "3")
    monkeypatch.setenv("SALNAS_S3_CONNECT_TIMEOUT", "2")
    url = "s3://dvc/ds"
    src = _folder(tmp_path / "v1", 40, "v1")

    # 1. the server is killed after 15 objects: the upload fails with the connection error, quickly
    client = storage.s3_client()
    _kill_after(client, 15, private_s3["kill"])
    with pytest.raises(Exception, match="Could not connect|Connection|S3_DEADLINE"):
        storage.upload_dir(src, url, client=client)

    # 2. while it is down a reader gets a clear error and no folder
    with pytest.raises(Exception, match="Could not connect|S3_DEADLINE"):
        storage.download_prefix(url, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()

    # 3. restarted: the 15 objects are there (the cleanup needed the dead server) but no manifest,
    #    so a reader refuses the prefix instead of returning 15 of 40 files
    private_s3["restart"]()
    keys = {o["key"] for o in storage.list_prefix(url)}
    assert len(keys) == 15 and storage.MANIFEST not in keys
    with pytest.raises(FileNotFoundError, match="15 objects but no .salnas-manifest.json.*nothing downloaded"):
        storage.download_prefix(url, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()

    # ... and so does `salnas ingest --source s3://...` (exit 2, one line naming the prefix)
    from salnas_core.cli import main

    rc = main(["ingest", "--source", url, "--format", "shared_json", "--out", str(tmp_path / "ing"),
               "--no-progress"])
    assert rc == 2 and not (tmp_path / "ing").exists()

    # 4. the upload run again completes; the reader gets exactly the 40 files, verified
    storage.upload_dir(src, url)
    got = storage.download_prefix(url, tmp_path / "dst")
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in src.iterdir())
    assert all((got / p.name).read_bytes() == p.read_bytes() for p in src.iterdir())

    # 5. a new version uploaded over it is killed half-way: the reader sees no dataset rather than
    #    a mix of v1 and v2 under the v1 manifest
    src2 = _folder(tmp_path / "v2", 40, "v2")
    client = storage.s3_client()
    _kill_after(client, 10, private_s3["kill"])
    with pytest.raises(Exception):
        storage.upload_dir(src2, url, client=client)
    private_s3["restart"]()
    with pytest.raises(FileNotFoundError, match="no .salnas-manifest.json"):
        storage.download_prefix(url, tmp_path / "dst2")
    storage.upload_dir(src2, url)
    got = storage.download_prefix(url, tmp_path / "dst2")
    assert all((got / p.name).read_bytes() == p.read_bytes() for p in src2.iterdir())


def test_time_to_failure_with_the_server_down_is_bounded_by_the_settings(private_s3, tmp_path, monkeypatch):
    """With the server gone, every operation ends in the connection error or S3DeadlineError."""
    private_s3["kill"]()
    src = _folder(tmp_path / "v1", 5, "v1")
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "1000")  # attempts alone would take hours
    monkeypatch.setenv("SALNAS_S3_DEADLINE", "2")
    with pytest.raises(storage.S3DeadlineError, match="SALNAS_S3_DEADLINE"):
        storage.download_prefix("s3://dvc/ds", tmp_path / "dst")
    with pytest.raises(Exception, match="SALNAS_S3_DEADLINE"):
        storage.upload_dir(src, "s3://dvc/ds")
