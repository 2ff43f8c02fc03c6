"""salnas_core.tracking.storage against a real S3 server (SeaweedFS on loopback)."""
from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

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


def test_with_retries_backs_off_exponentially_then_succeeds():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return "ok"

    assert storage.with_retries(flaky, "t", attempts=5, backoff=1.0, sleep=sleeps.append) == "ok"
    assert len(calls) == 4 and len(sleeps) == 3
    for i, d in enumerate(sleeps):  # base * 2**i, jittered into [half, full]
        assert 0.5 * 2 ** i <= d <= 2 ** i


def test_with_retries_gives_up_and_does_not_retry_client_errors():
    sleeps = []
    with pytest.raises(EndpointConnectionError):
        storage.with_retries(lambda: (_ for _ in ()).throw(EndpointConnectionError(endpoint_url="x")),
                             "t", attempts=3, backoff=0.0, sleep=sleeps.append)
    assert len(sleeps) == 2
    denied = ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "Put")
    calls = []

    def forbidden():
        calls.append(1)
        raise denied

    with pytest.raises(ClientError):
        storage.with_retries(forbidden, "t", attempts=5, backoff=0.0, sleep=sleeps.append)
    assert len(calls) == 1


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
    monkeypatch.setenv("SALNAS_S3_BACKOFF", "0.01")
    client = storage.s3_client()
    seen = _fail_first(client, "before-send.s3.PutObject", 2,
                       lambda: EndpointConnectionError(endpoint_url=client.meta.endpoint_url))
    src = tmp_path / "a.txt"
    src.write_text("payload")
    storage.upload_file(src, f"{s3_prefix}/a.txt", client=client)
    assert len(seen) == 3
    assert storage.download_file(f"{s3_prefix}/a.txt", tmp_path / "b.txt").read_text() == "payload"


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
    monkeypatch.setenv("SALNAS_S3_BACKOFF", "0.01")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.txt").write_text(str(i))
    client = storage.s3_client()
    seen = []

    def hook(params, **kw):  # the third file keeps failing with a server error
        seen.append(params["Key"])
        if params["Key"].endswith("f2.txt"):
            raise ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                              "PutObject")

    client.meta.events.register("before-parameter-build.s3.PutObject", hook)
    with pytest.raises(Exception, match="InternalError"):
        storage.upload_dir(src, f"{s3_prefix}/ds", client=client)
    assert sum(k.endswith("f2.txt") for k in seen) == 2  # retried once, then gave up
    assert storage.list_prefix(f"{s3_prefix}/ds") == []  # complete or absent


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
    else:
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
