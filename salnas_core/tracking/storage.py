"""S3 through boto3: endpoint and credentials from the environment, bounded retries, whole-or-nothing transfers.

- Endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` (unset: AWS itself).
  Credentials: boto3's usual chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` ...); never logged.
- Failing fast and honestly: botocore's `standard` retry mode retries transient failures (connection
  refused/reset, timeouts, 5xx, throttling) of each request with jittered exponential backoff, at most
  `SALNAS_S3_ATTEMPTS` attempts in all (default 3); connect/read timeouts `SALNAS_S3_CONNECT_TIMEOUT`
  (default 5 s) and `SALNAS_S3_READ_TIMEOUT` (default 30 s); and every operation of this module (a
  whole `upload_dir` or `download_prefix` included) has a total deadline, `SALNAS_S3_DEADLINE` (default
  120 s): no request is started after it (S3DeadlineError). Client errors (403, 404) are not retried.
- An uploaded object carries its sha256 in metadata and is checked after upload. `upload_dir` removes
  the prefix's old manifest first and writes the new one last: a prefix is complete (manifest) or,
  for a reader, absent (no manifest), whatever happens to the server or the uploader in between.
- `download_prefix` needs that manifest (a prefix without one is refused, nothing downloaded), fetches
  exactly its files, checks each against its size and sha256 and swaps the folder in whole.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

import shutil

from salnas_core.utils.hashing import sha256_file
from salnas_core.utils.io import atomic_path, replace_dir

log = logging.getLogger(__name__)

MANIFEST = ".salnas-manifest.json"


class S3DeadlineError(TimeoutError):
    """An S3 operation ran past its total deadline (SALNAS_S3_DEADLINE)."""


def _env_num(name: str, default: float) -> float:
    v = os.environ.get(name)
    if not v:
        return default
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{name}={v!r}: expected a number") from None


def retry_settings() -> dict[str, float]:
    """The bounded-failure settings in force: attempts, timeouts and total deadline (seconds)."""
    return {"attempts": max(1, int(_env_num("SALNAS_S3_ATTEMPTS", 3))),
            "connect_timeout": _env_num("SALNAS_S3_CONNECT_TIMEOUT", 5.0),
            "read_timeout": _env_num("SALNAS_S3_READ_TIMEOUT", 30.0),
            "deadline": _env_num("SALNAS_S3_DEADLINE", 120.0)}


def endpoint_from_env() -> str | None:
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return None


def s3_client(endpoint: str | None = None, access_key: str | None = None, secret_key: str | None = None,
              retries: int | None = None):
    """A boto3 S3 client for `endpoint` (default: from the environment), path-style addressing.

    Retries: botocore's `standard` mode, `retries` retries after the first attempt (default:
    SALNAS_S3_ATTEMPTS - 1), connect/read timeouts from retry_settings().
    """
    import boto3
    from botocore.config import Config

    st = retry_settings()
    attempts = st["attempts"] if retries is None else max(0, int(retries)) + 1
    kw: dict[str, Any] = {}
    if access_key or secret_key:
        kw.update(aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    # one request never outlives the total deadline either (a server that accepts and never answers)
    cfg = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": int(attempts), "mode": "standard"},
                 connect_timeout=min(st["connect_timeout"], st["deadline"]),
                 read_timeout=min(st["read_timeout"], st["deadline"]), signature_version="s3v4")
    client = boto3.client("s3", endpoint_url=endpoint or endpoint_from_env(),
                          region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1", config=cfg, **kw)
    _deadline_state(client)
    return client


def _deadline_state(client) -> dict[str, Any]:
    """The client's deadline slot, checked before every request it sends (transfer threads included)."""
    st = getattr(client, "_salnas_deadline", None)
    if st is None:
        st = {"at": None, "what": "", "seconds": 0.0}

        def check(**_kw) -> None:
            at = st["at"]
            if at is not None and time.monotonic() > at:
                raise S3DeadlineError(f"{st['what']}: S3 gave no answer within the {st['seconds']:g} s deadline "
                                      f"(SALNAS_S3_DEADLINE; endpoint {client.meta.endpoint_url})")

        def before_retry(caught_exception=None, response=None, **kw) -> None:
            # a failed attempt past the deadline: no backoff sleep, no next attempt
            failed = caught_exception is not None or (
                response is not None and getattr(response[0], "status_code", 200) >= 429)
            if failed:
                check()

        client.meta.events.register("before-send.s3", check)
        client.meta.events.register("needs-retry.s3", before_retry)
        client._salnas_deadline = st
    return st


@contextlib.contextmanager
def deadline(client, what: str, seconds: float | None = None) -> Iterator[None]:
    """Bound every request `client` sends inside the block by a total deadline; an enclosing one rules."""
    st = _deadline_state(client)
    if st["at"] is not None:
        yield
        return
    seconds = retry_settings()["deadline"] if seconds is None else float(seconds)
    st.update(at=time.monotonic() + seconds, what=what, seconds=seconds)
    try:
        yield
    finally:
        st["at"] = None


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key")."""
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ValueError(f"{url!r}: not an S3 URL (expected s3://bucket/key)")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"{url!r}: S3 URL without a bucket")
    return bucket, key


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

    from boto3.s3.transfer import TransferConfig

    with deadline(client, f"upload {local} -> {url}"):
        # S3 only shows an object once its PUT / CompleteMultipartUpload succeeded; s3transfer
        # aborts a failed multipart upload, so nothing partial stays behind.
        client.upload_file(str(local), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}},
                           Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20))
        head = client.head_object(Bucket=bucket, Key=key)
    if head["ContentLength"] != size:
        raise IOError(f"{url}: uploaded size {head['ContentLength']} != local size {size} of {local}")
    return {"url": url, "size": size, "sha256": digest}


def download_file(url: str, local: str | os.PathLike, client=None, expected_sha256: str | None = None,
                  expected_size: int | None = None) -> Path:
    """Download one object to `local` through a temporary file; verified (size, sha256) before the rename."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    local = Path(local)

    with deadline(client, f"download {url} -> {local}"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{url}: no such object") from None
            raise
        want = expected_sha256 or (head.get("Metadata") or {}).get("sha256")
        if expected_size is not None and head["ContentLength"] != expected_size:
            raise IOError(f"{url}: object has {head['ContentLength']} bytes, the manifest says {expected_size}")
        with atomic_path(local) as tmp:
            client.download_file(bucket, key, str(tmp))
            if tmp.stat().st_size != head["ContentLength"]:
                raise IOError(f"{url}: downloaded {tmp.stat().st_size} bytes, object has {head['ContentLength']}")
            if want and sha256_file(tmp) != want:
                raise IOError(f"{url}: sha256 of the downloaded bytes does not match the object's ({want[:12]}...)")
    return local


def list_prefix(url: str, client=None) -> list[dict[str, Any]]:
    """All objects under an S3 prefix: [{"key", "size", "etag"}], keys relative to the prefix."""
    bucket, key = parse_s3_url(url)
    prefix = key.rstrip("/") + "/" if key else ""
    client = client or s3_client()

    out = []
    with deadline(client, f"list {url}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    out.append({"key": obj["Key"][len(prefix):], "size": obj["Size"],
                                "etag": str(obj.get("ETag") or "").strip('"')})
    return out


def upload_dir(local_dir: str | os.PathLike, url: str, client=None) -> dict[str, Any]:
    """Upload a folder under an S3 prefix; the manifest (relative path -> size, sha256) goes last.

    The prefix's old manifest is removed first, so from a reader's side the prefix is the old
    complete upload, absent, or the new complete upload, never a mix. If the upload fails, what
    it put is removed in one batch request (best effort: with the server gone this cannot work, and
    the missing manifest keeps the leftovers invisible to `download_prefix`).
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
        with deadline(client, f"upload {local_dir} -> {url}"):
            client.delete_object(Bucket=bucket, Key=_join(key, MANIFEST))  # absent until complete again
            for p in files:
                rel = p.relative_to(local_dir).as_posix()
                if rel == MANIFEST:
                    continue
                info = upload_file(p, f"s3://{bucket}/{_join(key, rel)}", client=client)
                uploaded.append(_join(key, rel))
                manifest["files"][rel] = {"size": info["size"], "sha256": info["sha256"]}
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            client.put_object(Bucket=bucket, Key=_join(key, MANIFEST), Body=body)
    except BaseException as e:
        _remove_partial(client, bucket, uploaded)
        log.error("upload of %s to %s failed after %d of %d files (%s); the prefix has no manifest, so readers "
                  "treat it as absent", local_dir, url, len(uploaded), len(files), e)
        raise
    return {"url": url, "files": len(manifest["files"]),
            "bytes": sum(f["size"] for f in manifest["files"].values())}


def _remove_partial(client, bucket: str, keys: list[str]) -> None:
    """One DeleteObjects request per 1000 keys, under a short deadline of its own (10 s at most)."""
    if not keys:
        return
    st = _deadline_state(client)
    saved = dict(st)
    seconds = min(10.0, retry_settings()["deadline"])
    st.update(at=time.monotonic() + seconds, what=f"clean up s3://{bucket}", seconds=seconds)
    try:
        for i in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                         "Quiet": True})
    except Exception as e:  # best effort: report, keep the original error
        log.warning("could not remove the %d objects of the failed upload under s3://%s (%s: %s); "
                    "without a manifest they are ignored by download_prefix", len(keys), bucket, type(e).__name__, e)
    finally:
        st.update(saved)


def read_manifest(url: str, client=None) -> dict[str, dict[str, Any]] | None:
    """The files of the prefix's manifest ({rel: {"size", "sha256"}}), None if it has none."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    with deadline(client, f"manifest of {url}"):
        try:
            body = client.get_object(Bucket=bucket, Key=_join(key.rstrip("/"), MANIFEST))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
    try:
        files = json.loads(body)["files"]
        if not isinstance(files, dict) or not all(isinstance(v, dict) and "sha256" in v for v in files.values()):
            raise ValueError("'files' is not a map of {size, sha256}")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{url.rstrip('/')}/{MANIFEST}: malformed manifest ({e})") from None
    return files


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


def download_prefix(url: str, dest_dir: str | os.PathLike, client=None, require_manifest: bool | None = None,
                    reuse: bool = True) -> Path:
    """Download the folder `upload_dir` put under an S3 prefix into `dest_dir`, swapped in whole at the end.

    Exactly the manifest's files are fetched and checked against their size and sha256. A prefix
    without a manifest is an upload that never finished: refused with FileNotFoundError and nothing
    downloaded. (Data put there by another tool: `require_manifest=False` or
    SALNAS_S3_ALLOW_NO_MANIFEST=1 takes every object as it is, unverified.)
    `reuse`: a file `dest_dir` already holds with the object's content (sha256 from the manifest,
    else the ETag and size recorded at the last download) is kept instead of downloaded again
    (the ingest cache: a rerun fetches only what changed).
    """
    bucket, key = parse_s3_url(url)
    client = client or s3_client()
    if require_manifest is None:
        require_manifest = os.environ.get("SALNAS_S3_ALLOW_NO_MANIFEST", "") in ("", "0")
    with deadline(client, f"download {url} -> {dest_dir}"):
        files = read_manifest(url, client=client)
        listing = {o["key"]: o for o in list_prefix(url, client=client)}
        objects = {k: o["size"] for k, o in listing.items()}
        expected: dict[str, dict[str, Any]]
        if files is not None:
            missing = sorted(set(files) - set(objects))
            if missing:
                raise FileNotFoundError(f"{url}: incomplete: {len(missing)} of the {len(files)} files its manifest "
                                        f"lists are missing (e.g. {missing[0]}); nothing downloaded")
            expected = files
        elif require_manifest:
            what = f"{len(objects)} objects but no" if objects else "no objects and no"
            raise FileNotFoundError(f"{url}: {what} {MANIFEST}: an upload that did not finish (or data not written "
                                    "by salnas upload_dir); nothing downloaded. Upload it again, or set "
                                    "SALNAS_S3_ALLOW_NO_MANIFEST=1 to take the objects unverified")
        else:
            expected = {rel: {"size": size, "sha256": None} for rel, size in objects.items()}
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
            for rel, f in sorted(expected.items()):
                target = tmp / rel
                if not target.resolve().is_relative_to(tmp.resolve()):
                    raise ValueError(f"{url}: object key {rel!r} escapes the destination folder")
                obj = listing.get(rel)
                if reuse and _unchanged(dest_dir / rel, obj, known.get(rel), f.get("sha256")):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(dest_dir / rel, target)  # the old folder is swapped out below: no copy needed
                    except OSError:
                        shutil.copy2(dest_dir / rel, target)
                    reused += 1
                else:
                    download_file(f"s3://{bucket}/{_join(key, rel)}", target, client=client,
                                  expected_sha256=f.get("sha256"), expected_size=f.get("size"))
                index[rel] = {"size": (obj or {}).get("size"), "etag": (obj or {}).get("etag"),
                              "sha256": f.get("sha256")}
            replace_dir(tmp, dest_dir)
            with atomic_path(index_path) as tmp_index:
                Path(tmp_index).write_text(json.dumps({"url": url, "files": index}, indent=1, sort_keys=True))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if reused:
            log.info("%s: %d of %d files unchanged since the last download (kept), %d downloaded",
                     url, reused, len(expected), len(expected) - reused)
    return dest_dir


# ---------------------------------------------------------------------------------------------
# DVC remotes: the same bounds for `dvc push` / `dvc pull` (s3fs under DVC has retries of its own)
# ---------------------------------------------------------------------------------------------

def dvc_remote_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` plus botocore's standard retry mode with SALNAS_S3_ATTEMPTS attempts for DVC's s3fs.

    Connect/read timeouts for a remote are DVC settings (`connect_timeout`, `read_timeout` in
    .dvc/config, set for the `s3` remote); s3fs still retries each call 5 times on top, so the
    total is bounded by `run_dvc`'s deadline.
    """
    out = dict(os.environ if env is None else env)
    out.setdefault("AWS_RETRY_MODE", "standard")
    out.setdefault("AWS_MAX_ATTEMPTS", str(int(retry_settings()["attempts"])))
    return out


def dvc_deadline() -> float:
    return _env_num("SALNAS_DVC_DEADLINE", 600.0)


def run_dvc(cmd: list[str], cwd: str | os.PathLike, env: dict[str, str] | None = None,
            deadline_s: float | None = None) -> None:
    """Run a dvc command that talks to a remote with bounded retries and a total deadline.

    Past `deadline_s` (SALNAS_DVC_DEADLINE, default 600 s) the command and its children are
    killed and TimeoutError says so in one line; a failure is a RuntimeError with its exit code.
    """
    import signal
    import subprocess

    deadline_s = dvc_deadline() if deadline_s is None else float(deadline_s)
    shown = " ".join(str(c) for c in cmd)
    proc = subprocess.Popen(cmd, cwd=cwd, env=dvc_remote_env(env), start_new_session=True)
    try:
        rc = proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise TimeoutError(f"`{shown}` did not finish within {deadline_s:g} s (SALNAS_DVC_DEADLINE): the remote "
                           f"is unreachable or not answering (in {cwd})") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if rc != 0:
        raise RuntimeError(f"`{shown}` failed with exit code {rc} (in {cwd})")
