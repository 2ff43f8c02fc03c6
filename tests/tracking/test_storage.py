"""salnas_core.tracking.storage against a real S3 server (SeaweedFS on loopback)."""
from __future__ import annotations

import os

import pytest
from botocore.exceptions import EndpointConnectionError

from salnas_core.tracking import storage


@pytest.mark.parametrize("url,expected", [
    ("s3://dvc/a/b.txt", ("dvc", "a/b.txt")),
    ("s3://mlflow", ("mlflow", "")),
    ("s3://bucket/dir/", ("bucket", "dir/")),
])
def test_parse_s3_url(url, expected):
    assert storage.parse_s3_url(url) == expected


@pytest.mark.parametrize("url", ["http://x/y", "dvc/a", "s3:///key", "", None])
def test_parse_s3_url_rejects(url):
    with pytest.raises(ValueError):
        storage.parse_s3_url(url)


def test_client_uses_botocore_standard_retries_with_bounds(monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "4")
    monkeypatch.setenv("SALNAS_S3_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("SALNAS_S3_READ_TIMEOUT", "7")
    cfg = storage.s3_client(endpoint="http://127.0.0.1:1").meta.config
    assert cfg.retries == {"total_max_attempts": 4, "mode": "standard"}
    assert (cfg.connect_timeout, cfg.read_timeout) == (2.0, 7.0)
    assert storage.s3_client(endpoint="http://127.0.0.1:1", retries=0).meta.config.retries["total_max_attempts"] == 1
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "lots")
    with pytest.raises(ValueError, match="SALNAS_S3_ATTEMPTS='lots'"):
        storage.s3_client()


def test_file_roundtrip(s3_prefix, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(300_000))
    info = storage.upload_file(src, f"{s3_prefix}/m/model.bin")
    assert info["size"] == 300_000 and info["sha256"] == storage.sha256_file(src)
    dst = storage.download_file(f"{s3_prefix}/m/model.bin", tmp_path / "out" / "model.bin")
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["model.bin"]  # no temp file left


def test_missing_inputs_name_the_path(s3_prefix, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        storage.upload_file(tmp_path / "nope.bin", f"{s3_prefix}/x")
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        storage.download_file(f"{s3_prefix}/absent.bin", tmp_path / "y")
    with pytest.raises(FileNotFoundError, match="no objects"):
        storage.download_prefix(f"{s3_prefix}/empty", tmp_path / "z")
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def _fail_first(client, event: str, n: int, exc_factory):
    """Make the first `n` requests of an operation fail on a real client (botocore event hook)."""
    seen = []

    def hook(**kw):
        seen.append(1)
        if len(seen) <= n:
            raise exc_factory()

    client.meta.events.register(event, hook)
    return seen


def test_transient_upload_errors_are_retried(s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "3")
    client = storage.s3_client()
    seen = _fail_first(client, "before-send.s3.PutObject", 2,
                       lambda: EndpointConnectionError(endpoint_url=client.meta.endpoint_url))
    src = tmp_path / "a.txt"
    src.write_text("payload")
    storage.upload_file(src, f"{s3_prefix}/a.txt", client=client)
    assert len(seen) == 3
    assert storage.download_file(f"{s3_prefix}/a.txt", tmp_path / "b.txt").read_text() == "payload"


def test_retries_are_bounded(s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "2")
    client = storage.s3_client()
    seen = _fail_first(client, "before-send.s3.PutObject", 99,
                       lambda: EndpointConnectionError(endpoint_url=client.meta.endpoint_url))
    src = tmp_path / "a.txt"
    src.write_text("payload")
    with pytest.raises(Exception, match="Could not connect"):
        storage.upload_file(src, f"{s3_prefix}/a.txt", client=client)
    assert len(seen) == 2


def test_total_deadline_stops_retrying(s3_prefix, tmp_path, monkeypatch):
    """Many attempts allowed, but no request starts after the deadline: S3DeadlineError, not a retry."""
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "50")
    monkeypatch.setenv("SALNAS_S3_DEADLINE", "0.5")
    client = storage.s3_client()
    seen = _fail_first(client, "before-send.s3.PutObject", 999,
                       lambda: EndpointConnectionError(endpoint_url=client.meta.endpoint_url))
    src = tmp_path / "a.txt"
    src.write_text("payload")
    with pytest.raises(Exception, match="SALNAS_S3_DEADLINE") as ei:
        storage.upload_file(src, f"{s3_prefix}/a.txt", client=client)
    assert "upload" in str(ei.value) and str(src) in str(ei.value)
    assert 1 <= len(seen) < 50


def test_wrong_credentials_fail_fast(s3_server, s3_prefix, tmp_path):
    client = storage.s3_client(access_key=s3_server.access_key, secret_key="wrong-secret")
    src = tmp_path / "a.txt"
    src.write_text("x")
    calls = _fail_first(client, "before-send.s3.PutObject", 0, None)
    with pytest.raises(Exception, match="SignatureDoesNotMatch|AccessDenied|Forbidden"):
        storage.upload_file(src, f"{s3_prefix}/a.txt", client=client)
    assert len(calls) == 1  # a refused request is not retried


def test_dir_roundtrip_and_manifest(s3_prefix, tmp_path):
    src = tmp_path / "src"
    for rel, data in {"a.txt": b"A", "sub/b.npy": os.urandom(5000), "sub/deep/c.json": b"{}"}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    out = storage.upload_dir(src, f"{s3_prefix}/ds")
    assert out["files"] == 3
    keys = {o["key"] for o in storage.list_prefix(f"{s3_prefix}/ds")}
    assert keys == {"a.txt", "sub/b.npy", "sub/deep/c.json", storage.MANIFEST}
    dst = tmp_path / "dst"
    (dst / "stale.txt").parent.mkdir(parents=True)
    (dst / "stale.txt").write_text("old")  # replaced as a whole
    storage.download_prefix(f"{s3_prefix}/ds", dst)
    got = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    want = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    assert got == want


def test_failed_dir_upload_leaves_nothing(s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("SALNAS_S3_ATTEMPTS", "2")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.txt").write_text(str(i))
    client = storage.s3_client()
    seen = []

    def hook(request, **kw):  # the third file keeps failing with a connection error
        seen.append(request.url)
        if request.url.endswith("f2.txt"):
            raise EndpointConnectionError(endpoint_url=client.meta.endpoint_url)

    client.meta.events.register("before-send.s3.PutObject", hook)
    with pytest.raises(Exception, match="Could not connect"):
        storage.upload_dir(src, f"{s3_prefix}/ds", client=client)
    assert sum(u.endswith("f2.txt") for u in seen) == 2  # retried once, then gave up
    assert storage.list_prefix(f"{s3_prefix}/ds") == []  # complete or absent
    with pytest.raises(FileNotFoundError, match="no objects and no .salnas-manifest.json"):
        storage.download_prefix(f"{s3_prefix}/ds", tmp_path / "dst")


def test_prefix_without_manifest_is_refused(s3_prefix, tmp_path):
    client = storage.s3_client()
    bucket, key = storage.parse_s3_url(s3_prefix)
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"{key}/raw/f{i}.txt", Body=b"x")
    with pytest.raises(FileNotFoundError, match=r"3 objects but no \.salnas-manifest\.json.*nothing downloaded"):
        storage.download_prefix(f"{s3_prefix}/raw", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    got = storage.download_prefix(f"{s3_prefix}/raw", tmp_path / "dst", require_manifest=False)
    assert sorted(p.name for p in got.iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]


def test_object_changed_behind_the_manifest_is_refused(s3_prefix, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("A")
    (src / "b.txt").write_text("B")
    storage.upload_dir(src, f"{s3_prefix}/ds")
    bucket, key = storage.parse_s3_url(f"{s3_prefix}/ds/b.txt")
    client = storage.s3_client()
    client.put_object(Bucket=bucket, Key=key, Body=b"C")  # same size, other bytes, no sha metadata
    with pytest.raises(IOError, match="b.txt: sha256"):
        storage.download_prefix(f"{s3_prefix}/ds", tmp_path / "dst")
    client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(FileNotFoundError, match="1 of the 2 files its manifest lists are missing"):
        storage.download_prefix(f"{s3_prefix}/ds", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_corrupt_download_keeps_previous_file(s3_server, s3_prefix, tmp_path):
    bucket, key = storage.parse_s3_url(f"{s3_prefix}/c.bin")
    client = storage.s3_client()
    client.put_object(Bucket=bucket, Key=key, Body=b"new bytes", Metadata={"sha256": "0" * 64})
    dst = tmp_path / "c.bin"
    dst.write_bytes(b"previous")
    with pytest.raises(IOError, match="sha256"):
        storage.download_file(f"s3://{bucket}/{key}", dst)
    assert dst.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["c.bin"]


@pytest.mark.parametrize("with_manifest", [True, False])
def test_download_prefix_keeps_files_it_already_has(s3_prefix, tmp_path, monkeypatch, with_manifest):
    """The ingest cache: a second download of an unchanged prefix fetches nothing; a changed
    object is fetched again, the others are kept (manifest sha256, else ETag and size)."""
    src = tmp_path / "src"
    files = {"a.txt": b"A", "sub/b.bin": os.urandom(3000), "c.json": b"{}"}
    url = f"{s3_prefix}/cache-{int(with_manifest)}"
    if with_manifest:
        for rel, data in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        storage.upload_dir(src, url)
    else:  # data another tool put there: taken unverified, only when asked
        monkeypatch.setenv("SALNAS_S3_ALLOW_NO_MANIFEST", "1")
        for rel, data in files.items():
            (tmp_path / "one").write_bytes(data)
            storage.upload_file(tmp_path / "one", f"{url}/{rel}")
    fetched: list[str] = []
    real = storage.download_file

    def counting(u, local, **kw):
        fetched.append(u.rsplit("/", 1)[-1])
        return real(u, local, **kw)

    monkeypatch.setattr(storage, "download_file", counting)
    dst = tmp_path / "cache" / "ds"
    storage.download_prefix(url, dst)
    assert sorted(fetched) == ["a.txt", "b.bin", "c.json"]
    fetched.clear()
    storage.download_prefix(url, dst)
    assert fetched == []
    assert {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == files
    # one object changes: only it is fetched again
    (tmp_path / "new").write_bytes(b"B" * 10)
    if with_manifest:
        (src / "a.txt").write_bytes(b"B" * 10)
        storage.upload_dir(src, url)
    else:
        storage.upload_file(tmp_path / "new", f"{url}/a.txt")
    storage.download_prefix(url, dst)
    assert fetched == ["a.txt"] and (dst / "a.txt").read_bytes() == b"B" * 10
    fetched.clear()
    storage.download_prefix(url, dst, reuse=False)
    assert len(fetched) == 3
