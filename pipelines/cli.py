"""`salnas pipeline compile | run-local | submit`: the Kubeflow door to the same steps.

- compile: the container-form pipeline to IR YAML (kfp-kubernetes settings from the flags);
- run-local: the lightweight form through kfp.local's SubprocessRunner in this interpreter,
  under one MLflow parent run (the steps' runs nest under it through SALNAS_PARENT_RUN_ID);
- submit: a compiled package to a Kubeflow Pipelines API server (kfp.Client); by default the file
  `compile` writes.

The DAG lives in pipelines/salnas_pipeline.py, the components in components/; this module only
parses arguments. salnas_core never imports it: `salnas pipeline` is registered through the
`salnas.commands` entry point (pyproject.toml), so the import arrows run pipelines -> salnas_core
only (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "build/salnas_pipeline.yaml"  # compile writes it, submit reads it


# --- compile / run-local / submit ----------------------------------------------------------------

def _k8s_settings(args: argparse.Namespace):
    from .salnas_pipeline import K8sSettings

    from salnas_core.errors import UserError
    from salnas_core.steps.registry import pipeline_steps

    from .salnas_pipeline import Resources

    known = {d.name for d in pipeline_steps()}
    try:
        resources = {step: Resources.parse(text) for step, text in args.resources}
    except ValueError as e:
        raise UserError(f"--resources: {e}") from None
    gpu_steps = tuple(x.strip() for x in args.gpu_steps.split(",") if x.strip()) if args.gpu_steps else None
    unknown = sorted((set(resources) | set(gpu_steps or ())) - known)
    if unknown:
        raise UserError(f"no pipeline step {', '.join(unknown)} (steps: {', '.join(sorted(known))})")
    s = K8sSettings(accelerator_type=args.accelerator_type, gpus=args.gpus, gpu_steps=gpu_steps,
                    s3_secret=args.s3_secret, s3_endpoint=args.s3_endpoint, mlflow_tracking_uri=args.mlflow_uri,
                    cache_pvc=args.cache_pvc or None, resources=resources, shm_size=args.shm_size,
                    retries=args.retries)
    if args.node_selector:
        s.node_selector = dict(args.node_selector)
    return s


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k in ("source", "fmt", "limit", "preset", "epochs", "distill_epochs", "model_name"):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    if getattr(args, "budgets", None):
        d["budgets"] = [b.strip() for b in args.budgets.split(",") if b.strip()]
    if getattr(args, "constraints", None):
        import yaml

        c = yaml.safe_load(args.constraints)
        if not isinstance(c, dict):
            raise ValueError(f"--constraints: expected a mapping like '{{max_latency_ms: 30}}', got {args.constraints!r}")
        d["constraints"] = c
    return d


def run_local(source: str, fmt: str = "shared_json", preset: str = "tiny", limit: int = 0, epochs: int = 0,
              distill_epochs: int = 0, budgets: list[str] | None = None, constraints: dict | None = None,
              model_name: str = "salnas", pipeline_root: str = "runs/kfp-local",
              cache: bool = False, runner: str = "subprocess", image: str | None = None) -> dict[str, Any]:
    """Run the whole pipeline with kfp.local: `runner="subprocess"` runs the lightweight components in
    this interpreter; `runner="docker"` runs each in the project image (`image`, built by
    `bash scripts/image build`) with kfp.local's DockerRunner: artifacts pass between containers
    through the pipeline root, the steps reach the MLflow and S3 servers on loopback (host network).

    Returns {"run_dir", "parent_run_id", "gate", "registered"} read from the run's artifacts.
    """
    from kfp import local

    from .salnas_pipeline import PIPELINE_NAME, build_pipeline
    from salnas_core.tracking import mlflow_utils as mu

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # cache: a rerun reuses every task whose command and inputs are unchanged (kfp.local's cache
    # under PIPELINE_ROOT/.kfp_cache); gate and register never cache
    if runner == "docker":
        run_with = docker_runner(image, source)
    elif runner == "subprocess":
        run_with = local.SubprocessRunner(use_venv=False)  # tasks run in this interpreter, where salnas is installed
    else:
        raise UserError(f"--runner: {runner!r} (subprocess | docker)")
    local.init(runner=run_with, pipeline_root=str(root), raise_on_error=True, enable_caching=cache)
    pipe = build_pipeline("python", image=image if runner == "docker" else None)
    args = {"source": source, "fmt": fmt, "preset": preset, "limit": limit, "epochs": epochs,
            "distill_epochs": distill_epochs, "model_name": model_name}
    if budgets:
        args["budgets"] = list(budgets)
    if constraints:
        args["constraints"] = dict(constraints)
    before = {p.name for p in root.iterdir()}
    t0 = time.time()
    import warnings

    with mu.start_run("pipeline-kfp-local", pipeline=True, params=args) as parent, warnings.catch_warnings():
        # the lightweight components name the project image for clusters; locally they run here
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        pipe(**args)
    runs = sorted((p for p in root.iterdir() if p.is_dir() and p.name not in before
                   and p.name.startswith(f"{PIPELINE_NAME}-")), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RuntimeError(f"{root}: kfp.local wrote no run folder")
    run_dir = runs[-1]
    out: dict[str, Any] = {"run_dir": str(run_dir), "seconds": round(time.time() - t0, 1),
                           "parent_run_id": parent.info.run_id if parent is not None else None}
    for key, pattern in (("gate", "gate/candidate/gate.json"), ("registered", "**/register/registration/registered.json")):
        hits = sorted(run_dir.glob(pattern))
        out[key] = json.loads(hits[0].read_text()) if hits else None
    return out


# the environment a step container gets from this process: where the servers are, and the
# credentials (passed at run time, never baked into the image)
PASS_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_EXPERIMENT_NAME", "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "SALNAS_S3_ENDPOINT",
            "SALNAS_PARENT_RUN_ID", "SALNAS_TRACKING", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION")


def docker_runner(image: str | None, source: str):
    """A DockerRunner over the project image: host network (the servers on loopback), this user's
    uid (files in the pipeline root stay the caller's), the dataset source mounted read-only at the
    same path, and PASS_ENV from this process."""
    import docker  # kfp.local's own dependency
    from kfp import local

    if not image:
        raise UserError("--runner docker needs --image (e.g. the tag `bash scripts/image build` prints)")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise UserError("--runner docker needs an MLflow tracking server the containers can reach "
                        "(MLFLOW_TRACKING_URI=http://...; `bash scripts/services start` runs one)")
    try:
        docker.from_env().images.get(image)
    except docker.errors.ImageNotFound:
        raise UserError(f"{image}: no such image here (build it: bash scripts/image build)") from None
    except docker.errors.DockerException as e:
        raise UserError(f"no Docker engine reachable ({e}); `bash scripts/image daemon start`") from None
    mounts = []
    if "://" not in source:  # the dataset, read-only at the same path (kfp.local mounts the pipeline root)
        src = str(Path(source).resolve())
        mounts.append(docker.types.Mount(target=src, source=src, type="bind", read_only=True))
    return local.DockerRunner(network_mode="host", user=f"{os.getuid()}:{os.getgid()}", mounts=mounts,
                              environment=_LiveEnv(PASS_ENV))


class _LiveEnv(dict):
    """The PASS_ENV variables as they are when a container starts (docker-py reads the mapping then)."""

    def __init__(self, names):
        super().__init__()
        self._names = names

    def _now(self) -> dict[str, str]:
        return {k: os.environ[k] for k in self._names if k in os.environ}

    def items(self):
        return self._now().items()

    def keys(self):
        return self._now().keys()

    def __iter__(self):
        return iter(self._now())

    def __len__(self):
        return len(self._now())

    def __getitem__(self, k):
        return self._now()[k]


def submit(host: str, package: str, arguments: dict[str, Any] | None = None, run_name: str | None = None,
           experiment: str = "salnas", namespace: str | None = None) -> dict[str, Any]:
    """Submit a compiled package to the KFP API at `host`. A bearer token comes from KFP_TOKEN
    (never a flag, so it stays out of shell history and logs)."""
    import kfp

    if not Path(package).is_file():
        raise FileNotFoundError(f"{package}: pipeline package not found (run `salnas pipeline compile` first)")
    kwargs: dict[str, Any] = {"host": host}
    if os.environ.get("KFP_TOKEN"):
        kwargs["existing_token"] = os.environ["KFP_TOKEN"]
    if namespace:
        kwargs["namespace"] = namespace
    try:
        client = kfp.Client(**kwargs)
        res = client.create_run_from_pipeline_package(
            package, arguments=arguments or {}, run_name=run_name or time.strftime("salnas-%Y%m%d-%H%M%S"),
            experiment_name=experiment, namespace=namespace)
    except Exception as e:  # urllib3/kfp_server_api errors: say where and what
        reason = getattr(e, "reason", None) or e
        raise ConnectionError(f"Kubeflow Pipelines at {host}: submit failed: {type(e).__name__}: {reason}") from None
    return {"run_id": res.run_id, "host": host, "run_url": f"{host.rstrip('/')}/#/runs/details/{res.run_id}"}


# --- CLI -----------------------------------------------------------------------------------------

def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def _step_kv(text: str) -> tuple[str, str]:
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"expected STEP:cpu=N,memory=SIZE, got {text!r}")
    step, rest = text.split(":", 1)
    return step, rest


def _add_pipeline_params(p: argparse.ArgumentParser, tiny: bool = False) -> None:
    p.add_argument("--source", default=None, help="dataset folder or s3:// prefix")
    p.add_argument("--fmt", "--format", dest="fmt", default=None, help="ingest reader (default shared_json)")
    p.add_argument("--limit", type=int, default=None, help="first N images (0: all)")
    p.add_argument("--preset", default="tiny" if tiny else None, help="tiny | cpu | paper")
    p.add_argument("--epochs", type=int, default=None, help="supernet epochs (0: the preset's)")
    p.add_argument("--distill-epochs", type=int, default=None, help="distill epochs (0: the preset's)")
    p.add_argument("--budgets", default=None, help="comma-separated variant names, e.g. XL,M,S")
    p.add_argument("--constraints", default=None, help="search limits for every budget (YAML mapping), "
                   "e.g. '{max_latency_ms: 30, max_gmacs: 1.5}'")
    p.add_argument("--model-name", default=None, help="MLflow registered model name")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    c = sub.add_parser("compile", help="compile the Kubeflow pipeline (container components) to IR YAML")
    c.add_argument("--out", default=DEFAULT_PACKAGE)
    c.add_argument("--image", default=None,
                   help="project image by digest (REPO@sha256:...) or tag (default: $SALNAS_IMAGE, else "
                        "ghcr.io/salnas/salnas:<git commit> of a clean checkout); `latest`/untagged is refused")
    c.add_argument("--allow-mutable-image", action="store_true",
                   help="accept an untagged or :latest image (runs cannot be reproduced)")
    c.add_argument("--accelerator-type", default="nvidia.com/gpu")
    c.add_argument("--gpus", type=int, default=1,
                   help="GPUs of train-supernet, one torchrun process each; search/distill get 1 (0: all on CPU)")
    c.add_argument("--gpu-steps", default=None, metavar="STEP,...",
                   help="steps that get a GPU and run on cuda (default: the registry's: train-supernet,search,distill)")
    c.add_argument("--resources", type=_step_kv, action="append", default=[],
                   metavar="STEP:cpu=N,memory=SIZE[,cpu_limit=N][,memory_limit=SIZE]",
                   help="requests/limits of one step (default: 2 CPU / 8Gi, GPU tasks 6 CPU / 24Gi per GPU)")
    c.add_argument("--shm-size", default="8Gi", help="/dev/shm of GPU steps and steps with loader workers")
    c.add_argument("--retries", type=int, default=2, help="retries per task (preempted / evicted pods)")
    c.add_argument("--node-selector", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="GPU node selector (default nvidia.com/gpu.present=true)")
    c.add_argument("--s3-secret", default="salnas-s3", help="Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    c.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL set as env (not secret)")
    c.add_argument("--mlflow-uri", default=None, help="MLFLOW_TRACKING_URI for the steps")
    c.add_argument("--cache-pvc", default="salnas-data-cache", help="PVC for the ingest cache ('' for none)")
    _add_pipeline_params(c)

    r = sub.add_parser("run-local", help="run the whole pipeline with kfp.local (tiny preset by default)")
    r.add_argument("--pipeline-root", default="runs/kfp-local")
    r.add_argument("--no-cache", dest="cache", action="store_false",
                   help="rerun every task (default: reuse unchanged tasks of earlier runs)")
    r.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess",
                   help="subprocess: this interpreter; docker: every step in the project image (--image)")
    r.add_argument("--image", default=None, help="the project image for --runner docker (bash scripts/image build)")
    _add_pipeline_params(r, tiny=True)

    s = sub.add_parser("submit", help="submit a compiled pipeline to a Kubeflow Pipelines server")
    s.add_argument("--host", required=True, help="KFP API URL, e.g. http://localhost:8080 (token: $KFP_TOKEN)")
    s.add_argument("--package", default=DEFAULT_PACKAGE)
    s.add_argument("--experiment", default="salnas")
    s.add_argument("--run-name", default=None)
    s.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user installs)")
    s.add_argument("--param", type=_kv, action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline argument (YAML value), e.g. --param budgets='[XL, S]'")


def run_cli(args: argparse.Namespace) -> int:
    cmd = args.pipeline_command
    try:  # user mistakes (salnas_core.errors.UserError, missing files) become one line in salnas_core.cli
        if cmd == "compile":
            from .salnas_pipeline import compile_pipeline

            path = compile_pipeline(args.out, image=args.image, k8s=_k8s_settings(args), defaults=_defaults(args),
                                    allow_mutable_image=args.allow_mutable_image)
            print(path)
        elif cmd == "run-local":
            d = _defaults(args)
            if "source" not in d:
                d["source"] = default_source(d.get("preset") or "tiny")
            res = run_local(pipeline_root=args.pipeline_root, cache=args.cache, runner=args.runner, image=args.image,
                            **d)
            print(json.dumps(res, indent=1, default=str))
        elif cmd == "submit":
            import yaml

            arguments = {k: yaml.safe_load(v) for k, v in args.param}
            print(json.dumps(submit(args.host, args.package, arguments, args.run_name, args.experiment,
                                    args.namespace)))
    except ConnectionError as e:
        from salnas_core.errors import UserError

        raise UserError(f"{getattr(args, 'host', '')}: {e}") from None
    return 0


def default_source(preset: str) -> str:
    """The shared OSIE data beside the working root, else a dataset generated into
    .cache/kfp-sources/synthetic (as `salnas main` does), said loudly."""
    from salnas_core.steps import snapshot
    from salnas_core.utils.params import preset_overlay, step_params
    from salnas_core.utils.root import work_root

    src = snapshot.shared_source("osie")
    if src is not None:
        return str(src)
    n = int((preset_overlay(preset).get("data") or {}).get("synthetic_images")
            or step_params("data").get("synthetic_images") or 24)
    dest = work_root() / ".cache" / "kfp-sources" / snapshot.SYNTHETIC
    if not (dest / "fixations.json").is_file() or len(list((dest / "stimuli").glob("*"))) != n:
        snapshot.generate(dest, n)
    log.warning("%s not found: GENERATING a synthetic dataset (%d images) at %s instead of real eye-tracking data",
                snapshot.shared_root() / "osie", n, dest)
    return str(dest)
