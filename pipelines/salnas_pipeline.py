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


@dataclass
class K8sSettings:
    """Cluster settings for the compiled pipeline (all names, never secret values)."""

    accelerator_type: str = "nvidia.com/gpu"      # the GPU resource training steps ask for
    gpus: int = 1                                  # GPUs per training step
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, Any]] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    s3_secret: str = "salnas-s3"                   # Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    s3_endpoint: str | None = None                 # e.g. http://minio.kubeflow:9000 (None: AWS)
    mlflow_tracking_uri: str | None = None         # e.g. http://mlflow.mlflow:5000
    cache_pvc: str | None = "salnas-data-cache"    # PVC for the ingest cache (None: no PVC)
    step_timeout_s: int | None = 24 * 3600


def _apply_k8s(task, defn, s: K8sSettings) -> None:
    from kfp import kubernetes

    if defn.gpu:
        task.set_accelerator_type(s.accelerator_type)
        task.set_accelerator_limit(s.gpus)
        for k, v in s.node_selector.items():
            kubernetes.add_node_selector(task, label_key=k, label_value=v)
        for t in s.tolerations:
            kubernetes.add_toleration(task, key=t.get("key"), operator=t.get("operator"), value=t.get("value"),
                                      effect=t.get("effect"))
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
    """The pipeline function (a KFP GraphComponent). `defaults` overrides parameter defaults."""
    from typing import List

    from kfp import dsl

    from components.factory import build_components
    from salnas_core.steps.registry import get_step

    c = build_components(form, image)
    d = {"source": "s3://salnas-data/osie", "fmt": "shared_json", "limit": 0, "preset": "cpu", "epochs": 0,
         "distill_epochs": 0, "budgets": ["XL", "M", "S"], "constraints": {}, "model_name": "salnas",
         **(defaults or {})}
    if k8s is None and form == "container":
        k8s = K8sSettings()
    # search and distill take --device: GPUs where the compiled steps get them
    d.setdefault("device", "cuda" if k8s is not None and form == "container" and k8s.gpus > 0 else "cpu")

    def k(task, step: str):
        task.set_display_name(step)
        if k8s is not None:
            _apply_k8s(task, get_step(step), k8s)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)
    def salnas(source: str = d["source"], fmt: str = d["fmt"], limit: int = d["limit"],
               preset: str = d["preset"], epochs: int = d["epochs"], distill_epochs: int = d["distill_epochs"],
               budgets: List[str] = d["budgets"], constraints: dict = d["constraints"],
               model_name: str = d["model_name"], device: str = d["device"]):
        """source: dataset folder or s3:// prefix; fmt: its reader; limit: first N images (0: all);
        preset: tiny | cpu | paper (params.yaml); epochs / distill_epochs: 0 = the preset's;
        budgets: named variants from params.yaml `search.budgets` (one distilled model each);
        constraints: limits for every budget, e.g. {"max_latency_ms": 30} (params.yaml search);
        model_name: the MLflow registered model the gate compares against;
        device: where search and distill run (cuda | cpu)."""
        ingest = k(c["ingest"](source=source, fmt=fmt, limit=limit), "ingest")
        data = ingest.outputs["data"]
        train = k(c["train-supernet"](data=data, preset=preset, epochs=epochs), "train-supernet")
        search = k(c["search"](supernet=train.outputs["supernet"], data=data, preset=preset, budgets=budgets,
                               constraints=constraints, device=device), "search")
        # a budget the search could not meet (limits below the smallest subnet) has no variant:
        # fan out over what it found, not over what was asked
        found = k(c["variants"](search=search.outputs["search"], budgets=budgets), "variants")
        names = found.outputs[get_step("variants").output_key("names", form)]
        with dsl.ParallelFor(names, name="per-budget") as variant:
            distill = k(c["distill"](search=search.outputs["search"], supernet=train.outputs["supernet"],
                                     data=data, variant=variant, preset=preset, epochs=distill_epochs,
                                     device=device), "distill")
            evaluate = k(c["evaluate"](model=distill.outputs["model"], data=data, search=search.outputs["search"],
                                       preset=preset, device=device), "evaluate")
        gate = k(c["gate"](models=dsl.Collected(distill.outputs["model"]),
                           evaluations=dsl.Collected(evaluate.outputs["evaluation"]), model_name=model_name),
                 "gate")
        gate.set_caching_options(False)  # the champion may have moved since a cached run
        beats = gate.outputs[get_step("gate").output_key("beats_champion", form)]
        with dsl.If(beats == True, name="beats-champion"):  # noqa: E712 (a KFP condition, not a bool)
            reg = k(c["register"](candidate=gate.outputs["candidate"], data=data, model_name=model_name), "register")
            reg.set_caching_options(False)

    return salnas


def compile_pipeline(path: str, image: str | None = None, k8s: K8sSettings | None = None,
                     defaults: dict[str, Any] | None = None) -> str:
    """Compile the container form to IR YAML at `path`."""
    from kfp import compiler

    from salnas_core.utils.io import atomic_path

    pipe = build_pipeline("container", image=image, k8s=k8s, defaults=defaults)
    with atomic_path(path) as tmp:
        tmp_yaml = f"{tmp}.yaml"  # the compiler insists on a .yaml/.json suffix
        compiler.Compiler().compile(pipe, tmp_yaml)
        import os

        os.replace(tmp_yaml, tmp)
    return str(path)
