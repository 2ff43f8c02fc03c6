"""Distributed supernet training on Kubernetes: one Kubeflow Trainer v2 `TrainJob` (default) or
one Training Operator v1 `PyTorchJob` (`--pytorchjob`, for clusters that still run the operator).

`salnas k8s train` runs the same trainer as the laptop, `salnas train-supernet`, on N nodes x G
GPUs under `torchrun --nnodes N --nproc-per-node G`:

- TrainJob (`trainer.kubeflow.org/v1alpha1`): `spec.trainer` (image, command, env, numNodes,
  numProcPerNode, resourcesPerNode) over a ClusterTrainingRuntime (default `torch-distributed`),
  whose torch plugin injects the rendezvous (PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR, ...) that
  torchrun reads; node selector, tolerations and volumes go in a `runtimePatches` entry for the
  runtime's `node` job (Trainer >= 2.2). Conditions: Complete | Failed (| Suspended).
- PyTorchJob (`kubeflow.org/v1`): 1 Master + N-1 Workers, the container must be named `pytorch`.
  Conditions: Created | Running | Restarting | Succeeded | Failed.

Then the job's status is followed until it ends. Only the `kubernetes` client talks to the
cluster (tests run it against kmock, an in-memory API).
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

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"   # Training Operator v1
DEFAULT_IMAGE = os.environ.get("SALNAS_IMAGE", "ghcr.io/salnas/salnas:cuda")
GPU_RESOURCE = "nvidia.com/gpu"
# Node label that GPU Feature Discovery puts on NVIDIA nodes (e.g. "NVIDIA-H100-80GB-HBM3").
ACCELERATOR_LABEL = "nvidia.com/gpu.product"
# Conditions that end a job; "Created"/"Running"/"Restarting"/"Suspended" do not.
TERMINAL = ("Succeeded", "Failed")


class K8sError(RuntimeError):
    """A Kubernetes request failed; the message says what to do about it."""


class JobExistsError(K8sError):
    """409: a job of that name is already in the namespace."""


class ForbiddenError(K8sError):
    """403: the credentials may not create/read the jobs in the namespace."""


class CRDMissingError(K8sError):
    """404 on the job's API (trainjobs / pytorchjobs): Kubeflow Trainer / the Training Operator is not installed."""


class RuntimeMissingError(K8sError):
    """The ClusterTrainingRuntime the TrainJob names does not exist."""


class JobFailedError(K8sError):
    """The job reached the Failed condition."""


@dataclass
class TrainSpec:
    """What one distributed training job needs; `build_trainjob` / `build_pytorchjob` turn it into
    the manifest."""

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
    runtime: str = "torch-distributed"      # TrainJob: the (Cluster)TrainingRuntime it runs on
    runtime_kind: str = "ClusterTrainingRuntime"   # or TrainingRuntime (namespaced)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?", self.name):
            raise UserError(f"job name {self.name!r}: use lowercase letters, digits and '-', at most 53 "
                             "characters (pod names get a suffix)")
        if self.workers < 1:
            raise UserError(f"workers must be >= 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise UserError(f"gpus per worker must be >= 0, got {self.gpus_per_worker}")


PyTorchJobSpec = TrainSpec  # the name before Trainer v2



def _placement(spec: Any, gpus: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Node selector (plus the accelerator label) and tolerations (the GPU taint's by default on GPU pods)."""
    node_selector = dict(spec.node_selector)
    if spec.accelerator:
        node_selector[spec.accelerator_label] = spec.accelerator
    tolerations = spec.tolerations
    if tolerations is None:
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}] if gpus else []
    return node_selector, tolerations

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

    node_selector, tolerations = _placement(spec, gpus)

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


def _resources(spec: PyTorchJobSpec) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = {"limits": {}, "requests": {}}
    if spec.gpus_per_worker:
        resources["limits"][GPU_RESOURCE] = spec.gpus_per_worker
    if spec.cpu:
        resources["requests"]["cpu"] = spec.cpu
    if spec.memory:
        resources["requests"]["memory"] = spec.memory
        resources["limits"]["memory"] = spec.memory
    return {k: v for k, v in resources.items() if v}


def _s3_env(secret: str) -> list[dict[str, Any]]:
    """The Secret's keys as env (TrainJob env takes EnvVar entries, no envFrom); values stay in the Secret."""
    return [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]


TRAINER_GROUP, TRAINER_VERSION = "trainer.kubeflow.org", "v1alpha1"
TRAINJOB_PLURAL, TRAINJOB_KIND = "trainjobs", "TrainJob"
TRAINER_NODE = "node"        # the runtime's trainer job and container (torch-distributed)
SALNAS_PATCH_MANAGER = "salnas.io/k8s-train"


def build_trainjob(spec: PyTorchJobSpec) -> dict[str, Any]:
    """The TrainJob manifest (Kubeflow Trainer v2): the same torchrun command as the PyTorchJob."""
    gpus = spec.gpus_per_worker
    command = torchrun_command(spec)
    if spec.pvc:  # the runtime owns workingDir: start in the shared volume, where relative run folders go
        command = ["sh", "-c", 'cd "$0" && exec "$@"', spec.mount_path, *command]
    env = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    if spec.s3_secret:
        env += _s3_env(spec.s3_secret)
    trainer: dict[str, Any] = {"image": spec.image, "command": command, "env": env,
                               "numNodes": spec.workers, "numProcPerNode": max(gpus, 1)}
    resources = _resources(spec)
    if resources:
        trainer["resourcesPerNode"] = resources

    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if spec.pvc:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": spec.pvc}})
        mounts.append({"name": "data", "mountPath": spec.mount_path})
    node_selector, tolerations = _placement(spec, gpus)
    pod: dict[str, Any] = {"volumes": volumes, "containers": [{"name": TRAINER_NODE, "volumeMounts": mounts}]}
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    labels = {"app.kubernetes.io/name": "salnas", "app.kubernetes.io/component": "train-supernet", **spec.labels}
    patch = {"manager": SALNAS_PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": TRAINER_NODE, "template": {"spec": {"template": {"metadata": {"labels": labels}, "spec": pod}}}}]}}}}
    return {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": TRAINJOB_KIND,
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "runtimeRef": {"name": spec.runtime, "apiGroup": TRAINER_GROUP, "kind": spec.runtime_kind},
            "trainer": trainer,
            "runtimePatches": [patch],
        },
    }


def trainjob_state(obj: dict[str, Any]) -> str:
    """Complete | Failed | Suspended from the conditions; else Running while a child job is
    active, else Created (TrainJob has no Running condition: the JobSet's jobs say it)."""
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []
                  if str(c.get("status")) == "True"}
    for t in ("Failed", "Complete", "Suspended"):
        if t in conditions:
            return t
    jobs = (obj.get("status") or {}).get("jobsStatus") or []
    if any((j.get("active") or 0) > 0 or (j.get("ready") or 0) > 0 for j in jobs):
        return "Running"
    return "Created" if obj.get("status") else "Pending"


@dataclass(frozen=True)
class JobAPI:
    """One kind of training job: where it is served, how it is built, how its state reads."""

    group: str
    version: str
    plural: str
    kind: str
    build: Callable[[PyTorchJobSpec], dict[str, Any]]
    state: Callable[[dict[str, Any]], str]
    succeeded: str
    install: str                      # what to install when the CRD is missing
    logs: str                         # how to read the logs, {ns} {name}

    @property
    def resource(self) -> str:
        return f"{self.plural}.{self.group}"


TRAINJOB = JobAPI(TRAINER_GROUP, TRAINER_VERSION, TRAINJOB_PLURAL, TRAINJOB_KIND, build_trainjob, trainjob_state,
                  "Complete", "install Kubeflow Trainer v2 (it provides the TrainJob CRD and the torch-distributed "
                  "runtime), or pass --pytorchjob on a cluster that runs the Training Operator v1",
                  "kubectl logs -n {ns} -l jobset.sigs.k8s.io/jobset-name={name} --prefix")
PYTORCHJOB = JobAPI(GROUP, VERSION, PLURAL, KIND, lambda spec: build_pytorchjob(spec), lambda obj: job_state(obj),
                    "Succeeded", "install the Kubeflow Training Operator (it provides the PyTorchJob CRD), or drop "
                    "--pytorchjob to use Kubeflow Trainer v2", "kubectl logs -n {ns} {name}-master-0")
APIS = {"trainjob": TRAINJOB, "pytorchjob": PYTORCHJOB}


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


def _explain(e: Exception, spec_ns: str, name: str, verb: str, job: JobAPI = PYTORCHJOB) -> K8sError:
    """Map an ApiException (or a connection error) to an error that says what to do."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(e, ApiException):
        return K8sError(f"cannot reach the Kubernetes API to {verb} {job.kind} {spec_ns}/{name}: {e}")
    message = ""
    kind = None
    try:
        body = json.loads(e.body or "{}")
        message = body.get("message") or ""
        kind = (body.get("details") or {}).get("kind")
    except (ValueError, TypeError):
        message = str(e.body or "")[:300]
    where = f"{job.kind} {spec_ns}/{name}"
    if e.status == 409:
        return JobExistsError(f"{where} already exists: choose another --name, or delete it with "
                              f"`kubectl delete {job.kind.lower()} {name} -n {spec_ns}` ({message})")
    if e.status in (401, 403):
        return ForbiddenError(f"forbidden to {verb} {where}: the current credentials need RBAC verbs "
                              f"create/get on {job.resource} in namespace {spec_ns!r} ({e.status} {message})")
    if e.status == 404:
        if kind == "namespaces":
            return K8sError(f"namespace {spec_ns!r} does not exist ({message})")
        return CRDMissingError(f"the cluster does not serve {job.resource}/{job.version}: {job.install}, "
                               f"see docs/kubeflow.md ({message or e.reason})")
    return K8sError(f"{verb} {where} failed: {e.status} {e.reason} {message}".rstrip())


def check_crd(api, job: JobAPI = PYTORCHJOB) -> None:
    """Discovery: is the job's plural served under its group/version? (404 otherwise, as on a real API)."""
    try:
        res = api.get_api_resources(job.group, job.version)
    except Exception as e:
        raise _explain(e, "-", "-", "discover", job) from None
    names = {r.name for r in (res.resources or [])}
    if job.plural not in names:
        raise CRDMissingError(f"the cluster serves {job.group}/{job.version} but not {job.plural} "
                              f"(found: {sorted(names)}): {job.install}")


def check_runtime(api, spec: PyTorchJobSpec) -> None:
    """The TrainJob's runtime exists (a missing one would only show as a Failed condition later).
    Credentials that may not read runtimes skip the check (the job then reports it)."""
    from kubernetes.client.exceptions import ApiException

    plural = "clustertrainingruntimes" if spec.runtime_kind == "ClusterTrainingRuntime" else "trainingruntimes"
    try:
        if spec.runtime_kind == "ClusterTrainingRuntime":
            api.get_cluster_custom_object(TRAINER_GROUP, TRAINER_VERSION, plural, spec.runtime)
        else:
            api.get_namespaced_custom_object(TRAINER_GROUP, TRAINER_VERSION, spec.namespace, plural, spec.runtime)
    except ApiException as e:
        if e.status == 404:
            raise RuntimeMissingError(
                f"no {spec.runtime_kind} {spec.runtime!r} on the cluster (`kubectl get {plural}` lists them): "
                f"pass --runtime NAME, or ask the admin to install Kubeflow Trainer's default runtimes") from None
        if e.status in (401, 403):
            log.info("cannot read %s/%s (%s): not checked", plural, spec.runtime, e.status)
            return
        raise _explain(e, spec.namespace, spec.name, "check the runtime of", TRAINJOB) from None
    except Exception as e:
        raise _explain(e, spec.namespace, spec.name, "check the runtime of", TRAINJOB) from None


def create_job(api, manifest: dict[str, Any], job: JobAPI = PYTORCHJOB) -> dict[str, Any]:
    """Create the job; errors name the job and the fix (conflict, forbidden, missing CRD)."""
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        return api.create_namespaced_custom_object(job.group, job.version, ns, job.plural, manifest)
    except Exception as e:
        raise _explain(e, ns, name, "create", job) from None


def create_pytorchjob(api, manifest: dict[str, Any]) -> dict[str, Any]:
    return create_job(api, manifest, PYTORCHJOB)


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
           on_change: Callable[[str, dict], None] | None = None, job: JobAPI = PYTORCHJOB) -> dict[str, Any]:
    """Poll the job until it succeeds (returns it) or fails (raises); TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            obj = api.get_namespaced_custom_object(job.group, job.version, namespace, job.plural, name)
        except Exception as e:
            raise _explain(e, namespace, name, "read", job) from None
        state = job.state(obj)
        if state != last:
            log.info("%s %s/%s: %s", job.kind, namespace, name, state)
            if on_change:
                on_change(state, obj)
            last = state
        if state == job.succeeded:
            return obj
        if state == "Failed":
            conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"]
            why = ""
            if conds:
                why = "; ".join(x for x in (conds[-1].get("reason"), conds[-1].get("message")) if x)
            raise JobFailedError(f"{job.kind} {namespace}/{name} failed: {why} "
                                 f"(logs: {job.logs.format(ns=namespace, name=name)})")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{job.kind} {namespace}/{name} still {state} after {timeout_s:.0f} s; it keeps "
                               f"running: follow it with `kubectl get {job.kind.lower()} -n {namespace} {name}` "
                               "or delete it")
        time.sleep(poll_s)


def train(spec: PyTorchJobSpec, api=None, follow_job: bool = True, timeout_s: float = 24 * 3600,
          poll_s: float = 10.0, on_change: Callable[[str, dict], None] | None = None,
          kind: str = "trainjob") -> dict[str, Any]:
    """Check the CRD (and a TrainJob's runtime), create the job, and (by default) follow it to its
    end. `kind`: "trainjob" (Kubeflow Trainer v2) | "pytorchjob" (Training Operator v1)."""
    job = APIS[kind]
    api = api or custom_objects_api()
    check_crd(api, job)
    if job is TRAINJOB:
        check_runtime(api, spec)
    created = create_job(api, job.build(spec), job)
    summary = {"kind": job.kind, "name": spec.name, "namespace": spec.namespace,
               "uid": (created.get("metadata") or {}).get("uid"),
               "workers": spec.workers, "gpus_per_worker": spec.gpus_per_worker, "state": "Created"}
    if follow_job:
        final = follow(api, spec.namespace, spec.name, timeout_s=timeout_s, poll_s=poll_s, on_change=on_change,
                       job=job)
        summary["state"] = job.state(final)
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
    p = sub.add_parser("train", help="run train-supernet as a Kubeflow TrainJob with N nodes x G GPUs",
                       description="Create a Kubeflow Trainer v2 TrainJob (or, with --pytorchjob, a Training "
                                   "Operator v1 PyTorchJob) running `salnas train-supernet` under torchrun and "
                                   "follow it. Arguments after `--` go to the trainer.")
    p.add_argument("--pytorchjob", dest="kind", action="store_const", const="pytorchjob", default="trainjob",
                   help="create a kubeflow.org/v1 PyTorchJob (Training Operator v1) instead of a TrainJob")
    p.add_argument("--runtime", default="torch-distributed",
                   help="TrainJob: the ClusterTrainingRuntime to run on (kubectl get clustertrainingruntimes)")
    p.add_argument("--namespaced-runtime", action="store_true",
                   help="TrainJob: --runtime names a TrainingRuntime in --namespace, not a ClusterTrainingRuntime")
    p.add_argument("--name", default=None, help="job name (default: salnas-supernet-<time>)")
    p.add_argument("--namespace", "-n", default=os.environ.get("SALNAS_K8S_NAMESPACE", "default"))
    p.add_argument("--image", default=DEFAULT_IMAGE, help="project image built from docker/Dockerfile.cuda")
    p.add_argument("--workers", "--nodes", dest="workers", type=int, default=1,
                   help="nodes (TrainJob numNodes; PyTorchJob: 1 master + N-1 workers)")
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
        memory=args.memory, env=dict(args.env), runtime=args.runtime,
        runtime_kind="TrainingRuntime" if args.namespaced_runtime else "ClusterTrainingRuntime")


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

        # sys.stdout.write, not print: kfp.local swaps builtins.print for an indenting one while it
        # runs (and a failed run can leave it swapped); machine-readable output must stay exact
        sys.stdout.write(yaml.safe_dump(APIS[args.kind].build(spec), sort_keys=False))
        return 0
    try:
        api = custom_objects_api(args.kubeconfig, args.context)
        summary = train(spec, api, follow_job=not args.no_follow, timeout_s=args.timeout, poll_s=args.poll,
                        kind=args.kind)
    except (K8sError, TimeoutError) as e:
        print(f"salnas k8s: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
