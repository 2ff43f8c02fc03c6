"""Distributed supernet training on Kubernetes: one PyTorchJob (Kubeflow Training Operator).

`salnas k8s train` builds a `kubeflow.org/v1` PyTorchJob with N pods (1 Master + N-1 Workers)
of G GPUs each; every pod runs the same trainer as the laptop, `salnas train-supernet`, under
`torchrun --nnodes N --nproc-per-node G`. The operator injects the rendezvous (PET_NODE_RANK,
PET_MASTER_ADDR, PET_MASTER_PORT, which torchrun reads as defaults) into the container it must
find under the name `pytorch`. Then the job's status conditions are followed until it ends.

Only the `kubernetes` client talks to the cluster (tests run it against kmock, an in-memory API).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
DEFAULT_IMAGE = os.environ.get("SALNAS_IMAGE", "ghcr.io/salnas/salnas:cuda")
GPU_RESOURCE = "nvidia.com/gpu"
# Node label that GPU Feature Discovery puts on NVIDIA nodes (e.g. "NVIDIA-H100-80GB-HBM3").
ACCELERATOR_LABEL = "nvidia.com/gpu.product"
# Conditions that end a job; "Created"/"Running"/"Restarting"/"Suspended" do not.
TERMINAL = ("Succeeded", "Failed")


class K8sError(RuntimeError):
    """A Kubernetes request failed; the message says what to do about it."""


class JobExistsError(K8sError):
    """409: a PyTorchJob of that name is already in the namespace."""


class ForbiddenError(K8sError):
    """403: the credentials may not create/read PyTorchJobs in the namespace."""


class CRDMissingError(K8sError):
    """404 on kubeflow.org/v1 pytorchjobs: the Training Operator is not installed."""


class JobFailedError(K8sError):
    """The job reached the Failed condition."""


@dataclass
class PyTorchJobSpec:
    """What one distributed training job needs; `build_pytorchjob` turns it into the manifest."""

    name: str
    trainer_args: list[str]                 # arguments after `salnas train-supernet`
    image: str = DEFAULT_IMAGE
    namespace: str = "default"
    workers: int = 1                        # N pods in all (1 Master + N-1 Workers)
    gpus_per_worker: int = 1                # G: GPUs per pod = torchrun processes per pod
    accelerator: str | None = None          # value of ACCELERATOR_LABEL to pin a GPU model
    accelerator_label: str = ACCELERATOR_LABEL
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] | None = None   # None: tolerate nvidia.com/gpu taints when G > 0
    s3_secret: str | None = None            # Secret whose keys (AWS_ACCESS_KEY_ID, ...) become env
    pvc: str | None = None                  # PersistentVolumeClaim for data + run folders (RWX for N > 1)
    mount_path: str = "/data"
    cpu: str | None = None                  # requests per pod, e.g. "8"
    memory: str | None = None               # e.g. "32Gi"
    shm_size: str = "8Gi"                   # /dev/shm for DataLoader workers and NCCL
    env: dict[str, str] = field(default_factory=dict)
    backoff_limit: int = 3                  # pod restarts; the trainer resumes from its checkpoint
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?", self.name):
            raise UserError(f"job name {self.name!r}: use lowercase letters, digits and '-', at most 53 "
                             "characters (pod names get a suffix)")
        if self.workers < 1:
            raise UserError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise UserError(f"gpus per worker must be >= 0, got {self.gpus_per_worker}")


def torchrun_command(spec: PyTorchJobSpec) -> list[str]:
    """The same trainer as on one machine, under torchrun (CPU pods run one gloo process each)."""
    nproc = max(spec.gpus_per_worker, 1)
    return ["torchrun", f"--nnodes={spec.workers}", f"--nproc-per-node={nproc}", "--no-python",
            "salnas", "train-supernet", *spec.trainer_args]


def build_pytorchjob(spec: PyTorchJobSpec) -> dict[str, Any]:
    """The PyTorchJob manifest (a plain dict, as CustomObjectsApi sends it)."""
    gpus = spec.gpus_per_worker
    resources: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    if gpus:
        resources["limits"][GPU_RESOURCE] = gpus
    if spec.cpu:
        resources["requests"]["cpu"] = spec.cpu
    if spec.memory:
        resources["requests"]["memory"] = spec.memory
        resources["limits"]["memory"] = spec.memory
    resources = {k: v for k, v in resources.items() if v}

    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator injects the rendezvous env only into this name
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": torchrun_command(spec),
        "env": env,
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if resources:
        container["resources"] = resources
    if spec.s3_secret:
        # Credentials stay in the Secret; the manifest only names it.
        container["envFrom"] = [{"secretRef": {"name": spec.s3_secret}}]
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    if spec.pvc:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": spec.pvc}})
        container["volumeMounts"].append({"name": "data", "mountPath": spec.mount_path})
        container["workingDir"] = spec.mount_path  # relative run folders land on the shared volume

    node_selector = dict(spec.node_selector)
    if spec.accelerator:
        node_selector[spec.accelerator_label] = spec.accelerator
    tolerations = spec.tolerations
    if tolerations is None:
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}] if gpus else []

    pod_spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    labels = {"app.kubernetes.io/name": "salnas", "app.kubernetes.io/component": "train-supernet", **spec.labels}

    def replica(n: int) -> dict[str, Any]:
        return {"replicas": n, "restartPolicy": "OnFailure",
                "template": {"metadata": {"labels": labels}, "spec": pod_spec}}

    replicas = {"Master": replica(1)}
    if spec.workers > 1:
        replicas["Worker"] = replica(spec.workers - 1)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "nprocPerNode": str(max(gpus, 1)),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": spec.backoff_limit},
            "pytorchReplicaSpecs": replicas,
        },
    }


# --- talking to the API --------------------------------------------------------------------------

def custom_objects_api(kubeconfig: str | None = None, context: str | None = None, host: str | None = None):
    """CustomObjectsApi from an explicit host, a kubeconfig, or the in-cluster service account."""
    from kubernetes import client, config

    if host:
        cfg = client.Configuration()
        cfg.host = host
        return client.CustomObjectsApi(client.ApiClient(cfg))
    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except Exception as e_kube:  # no kubeconfig: maybe we run inside a pod
        try:
            config.load_incluster_config()
        except Exception:
            raise K8sError(f"no Kubernetes configuration: {kubeconfig or '~/.kube/config'}: {e_kube}; "
                           "and not running inside a cluster") from None
    return client.CustomObjectsApi()


def _explain(e: Exception, spec_ns: str, name: str, verb: str) -> K8sError:
    """Map an ApiException (or a connection error) to an error that says what to do."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(e, ApiException):
        return K8sError(f"cannot reach the Kubernetes API to {verb} PyTorchJob {spec_ns}/{name}: {e}")
    message = ""
    kind = None
    try:
        body = json.loads(e.body or "{}")
        message = body.get("message") or ""
        kind = (body.get("details") or {}).get("kind")
    except (ValueError, TypeError):
        message = str(e.body or "")[:300]
    where = f"PyTorchJob {spec_ns}/{name}"
    if e.status == 409:
        return JobExistsError(f"{where} already exists: choose another --name, or delete it with "
                              f"`kubectl delete pytorchjob {name} -n {spec_ns}` ({message})")
    if e.status in (401, 403):
        return ForbiddenError(f"forbidden to {verb} {where}: the current credentials need RBAC verbs "
                              f"create/get on {PLURAL}.{GROUP} in namespace {spec_ns!r} ({e.status} {message})")
    if e.status == 404:
        if kind == "namespaces":
            return K8sError(f"namespace {spec_ns!r} does not exist ({message})")
        return CRDMissingError(f"the cluster does not serve {PLURAL}.{GROUP}/{VERSION}: install the Kubeflow "
                               "Training Operator (it provides the PyTorchJob CRD), see docs/kubeflow.md "
                               f"({message or e.reason})")
    return K8sError(f"{verb} {where} failed: {e.status} {e.reason} {message}".rstrip())


def check_crd(api) -> None:
    """Discovery: is `pytorchjobs` served under kubeflow.org/v1? (404 otherwise, as on a real API)."""
    try:
        res = api.get_api_resources(GROUP, VERSION)
    except Exception as e:
        raise _explain(e, "-", "-", "discover") from None
    names = {r.name for r in (res.resources or [])}
    if PLURAL not in names:
        raise CRDMissingError(f"the cluster serves {GROUP}/{VERSION} but not {PLURAL} "
                              f"(found: {sorted(names)}): install the Kubeflow Training Operator")


def create_pytorchjob(api, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the job; errors name the job and the fix (conflict, forbidden, missing CRD)."""
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
    except Exception as e:
        raise _explain(e, ns, name, "create") from None


def job_state(obj: dict[str, Any]) -> str:
    """The job's current phase: the newest condition whose status is True ('Pending' before any)."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    current = [c for c in conditions if str(c.get("status")) == "True"]
    if not current:
        return "Pending"
    # Conditions are appended in order; lastTransitionTime breaks ties where a controller rewrites.
    newest = max(enumerate(current), key=lambda ic: (ic[1].get("lastTransitionTime") or "", ic[0]))[1]
    return str(newest.get("type"))


def follow(api, namespace: str, name: str, timeout_s: float = 24 * 3600, poll_s: float = 10.0,
           on_change: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Poll the job until Succeeded (returns it) or Failed (raises); TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except Exception as e:
            raise _explain(e, namespace, name, "read") from None
        state = job_state(obj)
        if state != last:
            log.info("PyTorchJob %s/%s: %s", namespace, name, state)
            if on_change:
                on_change(state, obj)
            last = state
        if state == "Succeeded":
            return obj
        if state == "Failed":
            conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"]
            why = (conds[-1].get("message") or conds[-1].get("reason") or "") if conds else ""
            raise JobFailedError(f"PyTorchJob {namespace}/{name} failed: {why} "
                                 f"(logs: kubectl logs -n {namespace} {name}-master-0)")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"PyTorchJob {namespace}/{name} still {state} after {timeout_s:.0f} s; "
                               "it keeps running: follow it with `kubectl get pytorchjob` or delete it")
        time.sleep(poll_s)


def train(spec: PyTorchJobSpec, api=None, follow_job: bool = True, timeout_s: float = 24 * 3600,
          poll_s: float = 10.0, on_change: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Check the CRD, create the job, and (by default) follow it to its end. Returns a summary."""
    api = api or custom_objects_api()
    check_crd(api)
    manifest = build_pytorchjob(spec)
    created = create_pytorchjob(api, manifest)
    summary = {"name": spec.name, "namespace": spec.namespace, "uid": (created.get("metadata") or {}).get("uid"),
               "workers": spec.workers, "gpus_per_worker": spec.gpus_per_worker, "state": "Created"}
    if follow_job:
        final = follow(api, spec.namespace, spec.name, timeout_s=timeout_s, poll_s=poll_s, on_change=on_change)
        summary["state"] = job_state(final)
    return summary


# --- CLI -----------------------------------------------------------------------------------------

def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def _toleration(text: str) -> dict[str, Any]:
    """KEY[=VALUE][:EFFECT] -> a toleration (Exists when no value)."""
    effect = None
    if ":" in text:
        text, effect = text.rsplit(":", 1)
    tol: dict[str, Any] = {"key": text, "operator": "Exists"}
    if "=" in text:
        k, v = text.split("=", 1)
        tol = {"key": k, "operator": "Equal", "value": v}
    if effect:
        tol["effect"] = effect
    return tol


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="k8s_command", metavar="ACTION", required=True)
    p = sub.add_parser("train", help="run train-supernet as a PyTorchJob with N pods x G GPUs",
                       description="Create a PyTorchJob running `salnas train-supernet` under torchrun "
                                   "and follow it. Arguments after `--` go to the trainer.")
    p.add_argument("--name", default=None, help="job name (default: salnas-supernet-<time>)")
    p.add_argument("--namespace", "-n", default=os.environ.get("SALNAS_K8S_NAMESPACE", "default"))
    p.add_argument("--image", default=DEFAULT_IMAGE, help="project image built from docker/Dockerfile.cuda")
    p.add_argument("--workers", type=int, default=1, help="pods (1 master + N-1 workers)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per pod (= torchrun processes per pod)")
    p.add_argument("--accelerator", default=None, help=f"GPU model, node label {ACCELERATOR_LABEL}")
    p.add_argument("--node-selector", type=_kv, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--toleration", type=_toleration, action="append", default=None,
                   metavar="KEY[=VALUE][:EFFECT]", help="default with GPUs: nvidia.com/gpu:NoSchedule")
    p.add_argument("--s3-secret", default=None, help="Secret with AWS_* keys, exposed as env")
    p.add_argument("--pvc", default=None, help="PersistentVolumeClaim mounted at --mount-path (working dir)")
    p.add_argument("--mount-path", default="/data")
    p.add_argument("--cpu", default=None)
    p.add_argument("--memory", default=None)
    p.add_argument("--env", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="extra env (e.g. MLFLOW_TRACKING_URI); never put secrets here, use --s3-secret")
    p.add_argument("--data", default="data/ingested", help="trainer --data (on the PVC)")
    p.add_argument("--out", default="runs/supernet", help="trainer --out (on the PVC)")
    p.add_argument("--preset", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="trainer --resume (continue a killed run)")
    p.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to follow before giving up")
    p.add_argument("--poll", type=float, default=10.0)
    p.add_argument("--no-follow", action="store_true", help="create and return")
    p.add_argument("--dry-run", action="store_true", help="print the manifest (YAML) and exit")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--context", default=None)
    p.add_argument("trainer_args", nargs="*", help="extra trainer arguments (after --)")


def spec_from_args(args: argparse.Namespace) -> PyTorchJobSpec:
    trainer = ["--data", args.data, "--out", args.out]
    if args.preset:
        trainer += ["--preset", args.preset]
    if args.epochs is not None:
        trainer += ["--epochs", str(args.epochs)]
    if args.resume:
        trainer.append("--resume")
    trainer += list(args.trainer_args)
    return PyTorchJobSpec(
        name=args.name or time.strftime("salnas-supernet-%Y%m%d-%H%M%S"), trainer_args=trainer,
        image=args.image, namespace=args.namespace, workers=args.workers, gpus_per_worker=args.gpus,
        accelerator=args.accelerator, node_selector=dict(args.node_selector), tolerations=args.toleration,
        s3_secret=args.s3_secret, pvc=args.pvc, mount_path=args.mount_path, cpu=args.cpu,
        memory=args.memory, env=dict(args.env))


def run_cli(args: argparse.Namespace) -> int:
    from salnas_core.utils.logs import setup_logging

    setup_logging()
    try:
        spec = spec_from_args(args)
    except ValueError as e:
        print(f"salnas k8s: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(build_pytorchjob(spec), sort_keys=False), end="")
        return 0
    try:
        api = custom_objects_api(args.kubeconfig, args.context)
        summary = train(spec, api, follow_job=not args.no_follow, timeout_s=args.timeout, poll_s=args.poll)
    except (K8sError, TimeoutError) as e:
        print(f"salnas k8s: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
