"""S3 through boto3: endpoint and credentials from the environment, retries, whole-or-nothing transfers.

- Endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` (unset: AWS itself).
  Credentials: boto3's usual chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` ...); never logged.
- Transient failures (connection refused/reset, timeouts, 5xx, SlowDown) are retried with exponential
  backoff and jitter (`SALNAS_S3_ATTEMPTS`, default 5; `SALNAS_S3_BACKOFF` base seconds, default 0.5).
- An uploaded object carries its sha256 in metadata and is checked after upload; `upload_dir` writes a
  manifest last and deletes what it uploaded if it fails, so a prefix is complete or absent.
- Downloads land under a temporary name and are verified before the rename.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import shutil

from salnas_core.utils.hashing import sha256_file
from salnas_core.utils.io import atomic_path, replace_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST = ".salnas-manifest.json"
TRANSIENT_CODES = {
    "500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "BadGateway", "GatewayTimeout",
}


def endpoint_from_env() -> str | None:
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def s3_client(endpoint: str | None = None, access_key: str | None = None, secret_key: str | None = None,
              retries: int | None = None):
    """A boto3 S3 client for `endpoint` (default: from the environment), path-style addressing.

    botocore's own retries are off: `with_retries` retries whole operations, so a failed multipart
    upload is redone from the start instead of leaving parts behind.
    """
    import boto3
    from botocore.config import Config

    kw: dict[str, Any] = {}
    if access_key or secret_key:
        kw.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                 connect_timeout=5, read_timeout=60, signature_version="s3v4")
    return boto3.client("s3", endpoint_url=endpoint or endpoint_from_env(),
                        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1", config=cfg, **kw)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key")."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"{url!r}: not an S3 URL (expected s3://bucket/key)")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"{url!r}: S3 URL without a bucket")
    return bucket, key


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: the network or the server, not the request."""
    from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError,
                                     EndpointConnectionError, ReadTimeoutError)
    from urllib3.exceptions import ProtocolError

    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError,
                        ProtocolError, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return str(err.get("Code")) in TRANSIENT_CODES or status >= 500
    try:  # s3transfer wraps a failed transfer; look at the cause
        from boto3.exceptions import S3UploadFailedError
        if isinstance(exc, S3UploadFailedError) and exc.__cause__ is not None:
            return is_transient(exc.__cause__)
        if isinstance(exc, S3UploadFailedError):
            return any(c in str(exc) for c in TRANSIENT_CODES)
    except ImportError:  # pragma: no cover
        pass
    return False


def with_retries(fn: Callable[[], T], what: str, attempts: int | None = None, backoff: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fn`, retrying transient errors with exponential backoff (base * 2**i, jittered, max 20 s)."""
    attempts = attempts or int(os.environ.get("SALNAS_S3_ATTEMPTS", "5"))
    backoff = float(os.environ.get("SALNAS_S3_BACKOFF", "0.5")) if backoff is None else backoff
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:
            if i == attempts - 1 or not is_transient(e):
                raise
            delay = min(20.0, backoff * 2 ** i) * (0.5 + random.random() / 2)
            log.warning("%s: transient error (%s: %s); retry %d/%d in %.2f s",
                        what, type(e).__name__, e, i + 1, attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _join(key: str, rel: str) -> str:
    return f"{key.rstrip('/')}/{rel}" if key else rel


def upload_file(local: str | os.PathLike, url: str, client=None) -> dict[str, Any]:
    """Upload one file; returns {"url", "size", "sha256"}. The object is complete or absent."""
    local = Path(local)
    if not local.is_file():
        raise FileNotFoundError(f"{local}: no such file to upload to {url}")
    bucket, key = parse_s3_url(url)
    if not key or key.endswith("/"):
        raise ValueError(f"{url!r}: an object key is needed to upload {local}")
    client = client or s3_client()
    size, digest = local.stat().st_size, sha256_file(local)

    def once() -> None:
        from boto3.s3.transfer import TransferConfig

        # S3 only shows an object once its PUT / CompleteMultipartUpload succeeded; s3transfer
        # aborts a failed multipart upload, so nothing partial stays behind.
        client.upload_file(str(local), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}},
                           Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20))
        head = client.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != size:
            raise IOError(f"{url}: uploaded size {head['ContentLength']} != local size {size} of {local}")

    with_retries(once, f"upload {local} -> {url}")
    return {"url": url, "size": size, "sha256": digest}


def download_file(url: str, local: str | os.PathLike, client=None, expected_sha256: str | None = None) -> Path:
    """Download one object to `local` through a temporary file; verified (size, sha256) before the rename."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    local = Path(local)

    def once() -> Path:
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{url}: no such object") from None
            raise
        want = expected_sha256 or (head.get("Metadata") or {}).get("sha256")
        with atomic_path(local) as tmp:
            client.download_file(bucket, key, str(tmp))
            if tmp.stat().st_size != head["ContentLength"]:
                raise IOError(f"{url}: downloaded {tmp.stat().st_size} bytes, object has {head['ContentLength']}")
            if want and sha256_file(tmp) != want:
                raise IOError(f"{url}: sha256 of the downloaded bytes does not match the object's ({want[:12]}...)")
        return local

    return with_retries(once, f"download {url} -> {local}")


def list_prefix(url: str, client=None) -> list[dict[str, Any]]:
    """All objects under an S3 prefix: [{"key", "size"}], keys relative to the prefix."""
    bucket, key = parse_s3_url(url)
    prefix = key.rstrip("/") + "/" if key else ""
    client = client or s3_client()

    def once() -> list[dict[str, Any]]:
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    out.append({"key": obj["Key"][len(prefix):], "size": obj["Size"],
                                "etag": str(obj.get("ETag") or "").strip('"')})
        return out

    return with_retries(once, f"list {url}")


def upload_dir(local_dir: str | os.PathLike, url: str, client=None) -> dict[str, Any]:
    """Upload a folder under an S3 prefix, then a manifest (relative path -> size, sha256) last.

    If any file fails after its retries, the objects this call uploaded are deleted again:
    a reader that trusts the manifest never sees a half-uploaded folder.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise NotADirectoryError(f"{local_dir}: not a folder to upload to {url}")
    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    uploaded: list[str] = []
    manifest: dict[str, Any] = {"files": {}}
    try:
        for p in files:
            rel = p.relative_to(local_dir).as_posix()
            if rel == MANIFEST:
                continue
            info = upload_file(p, f"s3://{bucket}/{_join(key, rel)}", client=client)
            uploaded.append(_join(key, rel))
            manifest["files"][rel] = {"size": info["size"], "sha256": info["sha256"]}
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        with_retries(lambda: client.put_object(Bucket=bucket, Key=_join(key, MANIFEST), Body=body),
                     f"manifest {url}")
    except BaseException:
        for k in uploaded:
            try:
                client.delete_object(Bucket=bucket, Key=k)
            except Exception as e:  # best effort: report, keep the original error
                log.warning("could not remove partial upload s3://%s/%s: %s", bucket, k, e)
        raise
    return {"url": url, "files": len(manifest["files"]),
            "bytes": sum(f["size"] for f in manifest["files"].values())}


def source_index_path(dest_dir: str | os.PathLike) -> Path:
    """Beside `dest_dir` (its content stays exactly the prefix's): what the last download fetched."""
    dest_dir = Path(dest_dir)
    return dest_dir.with_name(f"{dest_dir.name}.salnas-source.json")


def _unchanged(old: Path, obj: dict[str, Any] | None, known: dict[str, Any] | None, digest: str | None) -> bool:
    """Is the copy from the last download still the object's content? Same size, and the same
    sha256 as the manifest says (recorded, else hashed here), or without a manifest the same ETag."""
    if obj is None or not old.is_file() or old.stat().st_size != obj["size"]:
        return False
    known = known or {}
    if digest:
        if known.get("sha256") == digest and known.get("etag") == obj.get("etag"):
            return True
        return sha256_file(old) == digest
    return bool(obj.get("etag")) and known.get("etag") == obj.get("etag") and known.get("size") == obj["size"]


def download_prefix(url: str, dest_dir: str | os.PathLike, client=None, reuse: bool = True) -> Path:
    """Download everything under an S3 prefix into `dest_dir`, swapped in whole at the end.

    With a manifest (written by `upload_dir`) exactly its files are fetched and checked against their
    sha256; without one (a prefix filled by another tool), every object under the prefix.
    `reuse`: a file `dest_dir` already holds with the object's content (sha256 from the manifest,
    else the ETag and size recorded at the last download) is kept instead of downloaded again.
    """
    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    objects = list_prefix(url, client=client)
    listing = {o["key"]: o for o in objects}
    rels = {o["key"] for o in objects}
    expected: dict[str, str | None]
    if MANIFEST in rels:
        tmp_manifest = client.get_object(Bucket=bucket, Key=_join(key, MANIFEST))["Body"].read()
        try:
            files = json.loads(tmp_manifest)["files"]
        except (ValueError, KeyError) as e:
            raise ValueError(f"{url}/{MANIFEST}: malformed manifest ({e})") from None
        missing = sorted(set(files) - rels)
        if missing:
            raise FileNotFoundError(f"{url}: manifest lists {len(missing)} missing objects, e.g. {missing[0]}")
        expected = {rel: f.get("sha256") for rel, f in files.items()}
    else:
        expected = {rel: None for rel in sorted(rels)}
    if not expected:
        raise FileNotFoundError(f"{url}: no objects under this prefix")
    dest_dir = Path(dest_dir)
    index_path = source_index_path(dest_dir)
    known: dict[str, Any] = {}
    if reuse and dest_dir.is_dir() and index_path.is_file():
        try:
            idx = json.loads(index_path.read_text())
            known = (idx.get("files") or {}) if idx.get("url") == url else {}
        except (ValueError, AttributeError):
            known = {}
    tmp = dest_dir.with_name(f"{dest_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index: dict[str, Any] = {}
    reused = 0
    try:
        for rel, digest in sorted(expected.items()):
            target = tmp / rel
            if not target.resolve().is_relative_to(tmp.resolve()):
                raise ValueError(f"{url}: object key {rel!r} escapes the destination folder")
            obj = listing.get(rel)
            if reuse and _unchanged(dest_dir / rel, obj, known.get(rel), digest):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(dest_dir / rel, target)  # the old folder is swapped out below: no copy needed
                except OSError:
                    shutil.copy2(dest_dir / rel, target)
                reused += 1
            else:
                download_file(f"s3://{bucket}/{_join(key, rel)}", target, client=client, expected_sha256=digest)
            index[rel] = {"size": (obj or {}).get("size"), "etag": (obj or {}).get("etag"), "sha256": digest}
        replace_dir(tmp, dest_dir)
        with atomic_path(index_path) as tmp_index:
            Path(tmp_index).write_text(json.dumps({"url": url, "files": index}, indent=1, sort_keys=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if reused:
        log.info("%s: %d of %d files unchanged since the last download (kept), %d downloaded",
                 url, reused, len(expected), len(expected) - reused)
    return dest_dir
