"""The SalNAS Kubeflow pipeline: ingest -> train-supernet -> search -> per budget (distill ->
evaluate) -> gate -> register (only if the candidate beats the registry's champion).

`build_pipeline(form=...)` returns the same DAG over either component form: "container" (what
a cluster runs; compiled to IR YAML) or "python" (what kfp.local runs). Kubernetes settings
(kfp-kubernetes) are attached to the container form; kfp.local ignores them anyway.
"""
# no `from __future__ import annotations`: KFP reads the pipeline function's annotations as types

from dataclasses import dataclass, field
from typing import Any

PIPELINE_NAME = "salnas"
DESCRIPTION = ("SalNAS: ingest, supernet training, architecture search, per-budget Self-KD distillation and "
               "evaluation, and a champion gate before the MLflow registry")
# The ingest step caches s3:// sources under ~/.cache/salnas (salnas_core.data.ingest); the
# image runs as user `salnas` (docker/Dockerfile.*), so the cache PVC is mounted there.
CACHE_MOUNT = "/home/salnas/.cache/salnas"
# Secret keys -> env names (the names boto3, MLflow and DVC read)
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}


@dataclass(frozen=True)
class Resources:
    """CPU / memory requests and limits of one task (Kubernetes quantities)."""

    cpu: str
    memory: str
    cpu_limit: str | None = None        # None: no CPU limit (throttling slows data loaders)
    memory_limit: str | None = None     # None: the request (a step over its memory is OOM-killed, clearly)

    @classmethod
    def parse(cls, text: str) -> "Resources":
        """`cpu=8,memory=32Gi[,cpu_limit=16][,memory_limit=48Gi]`."""
        kv = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        unknown = set(kv) - {"cpu", "memory", "cpu_limit", "memory_limit"}
        if unknown or not {"cpu", "memory"} <= set(kv):
            raise ValueError(f"resources {text!r}: expected cpu=N,memory=SIZE[,cpu_limit=N][,memory_limit=SIZE]")
        return cls(**kv)


# Defaults per kind of task; a GPU task's values are per GPU it requests.
CPU_TASK = Resources(cpu="2", memory="8Gi", cpu_limit="4")
GPU_TASK = Resources(cpu="6", memory="24Gi")


@dataclass
class K8sSettings:
    """Cluster settings for the compiled pipeline (all names, never secret values).

    Which steps get a GPU: the registry rows' `gpu` flag (train-supernet, search, distill), or
    `gpu_steps` when given. A GPU task runs its step with `--device cuda`, every other task with
    `--device cpu` (no pipeline parameter can disagree with what the task requested). A distributed
    step (the registry's `distributed`: train-supernet) gets `gpus` GPUs and runs one torchrun
    process per GPU; the single-process steps get one GPU."""

    accelerator_type: str = "nvidia.com/gpu"      # the GPU resource training steps ask for
    gpus: int = 1                                  # GPUs of the distributed step (0: no GPU anywhere)
    gpu_steps: tuple[str, ...] | None = None       # None: the registry rows with gpu=True
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, Any]] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    s3_secret: str = "salnas-s3"                   # Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    s3_endpoint: str | None = None                 # e.g. http://minio.kubeflow:9000 (None: AWS)
    mlflow_tracking_uri: str | None = None         # e.g. http://mlflow.mlflow:5000
    cache_pvc: str | None = "salnas-data-cache"    # PVC for the ingest cache (None: no PVC)
    step_timeout_s: int | None = 24 * 3600
    resources: dict[str, Resources] = field(default_factory=dict)  # per step name; else CPU_TASK / GPU_TASK
    shm_size: str = "8Gi"                          # /dev/shm (memory-backed) for DataLoader workers and NCCL
    retries: int = 2                               # per task: a preempted / evicted pod runs again
    retry_backoff: str = "60s"

    def gpu_step(self, defn) -> bool:
        if self.gpus <= 0:
            return False
        return defn.name in self.gpu_steps if self.gpu_steps is not None else defn.gpu

    def gpus_for(self, defn) -> int:
        """GPUs the task requests: `gpus` for a distributed step, 1 for the others, 0 off the GPU."""
        if not self.gpu_step(defn):
            return 0
        return self.gpus if defn.distributed else 1

    def device_for(self, defn) -> str:
        return "cuda" if self.gpus_for(defn) else "cpu"

    def resources_for(self, defn) -> Resources:
        if defn.name in self.resources:
            return self.resources[defn.name]
        n = self.gpus_for(defn)
        if not n:
            return CPU_TASK
        return Resources(cpu=str(int(GPU_TASK.cpu) * n), memory=f"{int(GPU_TASK.memory[:-2]) * n}Gi")


def uses_loader_workers(defn) -> bool:
    """Does the step's params section (or any preset of it) start DataLoader worker processes?
    They pass batches through /dev/shm, which is 64 MiB in a container by default."""
    from salnas_core.utils.params import load_params, load_presets

    if not defn.section:
        return False
    try:
        sections = [load_params().get(defn.section) or {}]
    except (OSError, ValueError):  # no params.yaml where we compile: the presets still say it
        sections = []
    sections += [(p.get(defn.section) or {}) for p in load_presets().values()]
    return any(int(sec.get("num_workers") or 0) > 0 for sec in sections if isinstance(sec, dict))


def _apply_k8s(task, defn, s: K8sSettings) -> None:
    from kfp import kubernetes

    gpus = s.gpus_for(defn)
    if gpus:
        task.set_accelerator_type(s.accelerator_type)
        task.set_accelerator_limit(gpus)
        for k, v in s.node_selector.items():
            kubernetes.add_node_selector(task, label_key=k, label_value=v)
        for t in s.tolerations:
            kubernetes.add_toleration(task, key=t.get("key"), operator=t.get("operator"), value=t.get("value"),
                                      effect=t.get("effect"))
    r = s.resources_for(defn)
    task.set_cpu_request(r.cpu)
    task.set_memory_request(r.memory)
    if r.cpu_limit:
        task.set_cpu_limit(r.cpu_limit)
    task.set_memory_limit(r.memory_limit or r.memory)
    if gpus or uses_loader_workers(defn):
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=s.shm_size)
    if s.retries:
        # every step is idempotent: outputs are rewritten, `register` finds the same version by hash
        task.set_retry(num_retries=s.retries, backoff_duration=s.retry_backoff, backoff_factor=2.0)
    if s.s3_secret:
        kubernetes.use_secret_as_env(task, secret_name=s.s3_secret, secret_key_to_env=S3_SECRET_KEYS)
    if s.s3_endpoint:
        for name in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
            task.set_env_variable(name, s.s3_endpoint)
    if s.mlflow_tracking_uri:
        task.set_env_variable("MLFLOW_TRACKING_URI", s.mlflow_tracking_uri)
    if s.cache_pvc and defn.name == "ingest":
        kubernetes.mount_pvc(task, pvc_name=s.cache_pvc, mount_path=CACHE_MOUNT)
    if s.step_timeout_s:
        kubernetes.set_timeout(task, s.step_timeout_s)


def build_pipeline(form: str = "container", image: str | None = None, k8s: K8sSettings | None = None,
                   defaults: dict[str, Any] | None = None):
    """The pipeline function (a KFP GraphComponent). `defaults` overrides parameter defaults.

    Each task's `--device` follows what the task requests (`K8sSettings.device_for`): cuda on a
    GPU task of the container form, cpu everywhere else (kfp.local, CPU tasks)."""
    from typing import List

    from kfp import dsl

    from components.factory import build_components
    from salnas_core.steps.registry import get_step, pipeline_steps

    if k8s is None and form == "container":
        k8s = K8sSettings()
    nproc = {d.name: k8s.gpus_for(d) for d in pipeline_steps() if d.distributed} if k8s is not None else {}
    c = build_components(form, image, nproc=nproc)
    d = {"source": "s3://salnas-data/osie", "fmt": "shared_json", "limit": 0, "preset": "cpu", "epochs": 0,
         "distill_epochs": 0, "budgets": ["XL", "M", "S"], "constraints": {}, "model_name": "salnas",
         **(defaults or {})}

    def device(step: str) -> str:
        return k8s.device_for(get_step(step)) if k8s is not None and form == "container" else "cpu"

    def k(task, step: str):
        task.set_display_name(step)
        if k8s is not None:
            _apply_k8s(task, get_step(step), k8s)
        return task

    def run(step: str, **kw):
        """A task of `step`, with the Kubeflow run id (its MLflow runs nest under the run's parent)."""
        return k(c[step](**kw, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), step)

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def salnas(source: str = d["source"], fmt: str = d["fmt"], limit: int = d["limit"],
               preset: str = d["preset"], epochs: int = d["epochs"], distill_epochs: int = d["distill_epochs"],
               budgets: List[str] = d["budgets"], constraints: dict = d["constraints"],
               model_name: str = d["model_name"]):
        """source: dataset folder or s3:// prefix; fmt: its reader; limit: first N images (0: all);
        preset: tiny | cpu | paper (params.yaml); epochs / distill_epochs: 0 = the preset's;
        budgets: named variants from params.yaml `search.budgets` (one distilled model each);
        constraints: limits for every budget, e.g. {"max_latency_ms": 30} (params.yaml search);
        model_name: the MLflow registered model the gate compares against."""
        ingest = run("ingest", source=source, fmt=fmt, limit=limit)
        data = ingest.outputs["data"]
        train = run("train-supernet", data=data, preset=preset, epochs=epochs)
        search = run("search", supernet=train.outputs["supernet"], data=data, preset=preset, budgets=budgets,
                     constraints=constraints, device=device("search"))
        # a budget the search could not meet (limits below the smallest subnet) has no variant:
        # fan out over what it found, not over what was asked
        found = run("variants", search=search.outputs["search"], budgets=budgets)
        names = found.outputs[get_step("variants").output_key("names", form)]
        with dsl.ParallelFor(names, name="per-budget") as variant:
            distill = run("distill", search=search.outputs["search"], supernet=train.outputs["supernet"],
                          data=data, variant=variant, preset=preset, epochs=distill_epochs, device=device("distill"))
            evaluate = run("evaluate", model=distill.outputs["model"], data=data, search=search.outputs["search"],
                           preset=preset, device=device("evaluate"))
            # the table as KFP Metrics and the report page as HTML, in the run's UI
            run("publish", evaluation=evaluate.outputs["evaluation"], search=search.outputs["search"])
        gate = run("gate", models=dsl.Collected(distill.outputs["model"]),
                   evaluations=dsl.Collected(evaluate.outputs["evaluation"]), model_name=model_name)
        gate.set_caching_options(False)  # the champion may have moved since a cached run
        beats = gate.outputs[get_step("gate").output_key("beats_champion", form)]
        with dsl.If(beats == True, name="beats-champion"):  # noqa: E712 (a KFP condition, not a bool)
            reg = run("register", candidate=gate.outputs["candidate"], data=data, model_name=model_name)
            reg.set_caching_options(False)

    return salnas


def compile_pipeline(path: str, image: str | None = None, k8s: K8sSettings | None = None,
                     defaults: dict[str, Any] | None = None, allow_mutable_image: bool = False) -> str:
    """Compile the container form to IR YAML at `path`. The image must be immutable (a digest or a
    tag other than `latest`; default: $SALNAS_IMAGE, else the repository tagged with the commit)."""
    from kfp import compiler

    from components.factory import check_image, default_image
    from salnas_core.utils.io import atomic_path

    image = check_image(image or default_image(), allow_mutable=allow_mutable_image)
    pipe = build_pipeline("container", image=image, k8s=k8s, defaults=defaults)
    with atomic_path(path) as tmp:
        tmp_yaml = f"{tmp}.yaml"  # the compiler insists on a .yaml/.json suffix
        compiler.Compiler().compile(pipe, tmp_yaml)
        import os

        os.replace(tmp_yaml, tmp)
    return str(path)
