"""`salnas pipeline compile` writes IR YAML with the DAG, typed parameters and Kubernetes settings;
`salnas pipeline submit` argument handling (no Kubeflow server can run here)."""
from __future__ import annotations

import socket

import pytest
import yaml

from salnas_core import cli

TRAINING = ("train-supernet", "search", "distill")
CPU_STEPS = ("ingest", "variants", "evaluate", "publish", "gate", "register")
IMAGE = "ghcr.io/acme/salnas@sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "salnas.yaml"
    rc = cli.main(["pipeline", "compile", "--out", str(out), "--image", IMAGE,
                   "--gpus", "2", "--accelerator-type", "nvidia.com/gpu",
                   "--node-selector", "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3",
                   "--s3-secret", "salnas-s3", "--s3-endpoint", "http://minio.kubeflow:9000",
                   "--mlflow-uri", "http://mlflow.mlflow:5000", "--cache-pvc", "salnas-cache",
                   "--budgets", "XL,M,S", "--preset", "paper", "--constraints", "{max_latency_ms: 30}"])
    assert rc == 0 and out.exists()
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 2, "pipeline spec + platform spec"
    return docs[0], docs[1]


def _executor_of(spec, task_name: str, dag: dict | None = None) -> str:
    comp = spec["components"]
    for dag_ in [spec["root"]["dag"], *(c["dag"] for c in comp.values() if "dag" in c)]:
        t = dag_["tasks"].get(task_name)
        if t:
            return comp[t["componentRef"]["name"]]["executorLabel"]
    raise KeyError(task_name)


def test_typed_parameters_with_defaults(ir):
    spec, _ = ir
    params = spec["root"]["inputDefinitions"]["parameters"]
    types = {k: v["parameterType"] for k, v in params.items()}
    assert types == {"source": "STRING", "fmt": "STRING", "limit": "NUMBER_INTEGER", "preset": "STRING",
                     "epochs": "NUMBER_INTEGER", "distill_epochs": "NUMBER_INTEGER", "budgets": "LIST",
                     "constraints": "STRUCT", "model_name": "STRING"}
    assert params["budgets"]["defaultValue"] == ["XL", "M", "S"]
    assert params["preset"]["defaultValue"] == "paper"
    assert params["constraints"]["defaultValue"] == {"max_latency_ms": 30}
    # no `device` parameter: each task's device follows what it requests (test_device_follows_the_gpu)


def test_dag_fan_out_over_budgets_then_gate_then_register(ir):
    spec, _ = ir
    root = spec["root"]["dag"]["tasks"]
    assert {"ingest", "train-supernet", "search", "variants", "gate"} <= set(root)
    assert root["train-supernet"]["dependentTasks"] == ["ingest"]
    # the budgets asked for go to the search; the loop runs over the variants it found
    assert root["variants"]["inputs"]["parameters"]["budgets"] == {"componentInputParameter": "budgets"}
    loops = [t for t in root.values() if "parameterIterator" in t]
    assert len(loops) == 1
    loop = loops[0]
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][items]["taskOutputParameter"] == {
        "outputParameterKey": "names", "producerTask": "variants"}
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"distill", "evaluate", "publish"}
    assert body["evaluate"]["dependentTasks"] == ["distill"]
    assert body["publish"]["dependentTasks"] == ["evaluate"]
    # the gate collects every branch's model and evaluation
    gate_in = root["gate"]["inputs"]["artifacts"]
    assert {"models", "evaluations"} <= set(gate_in)
    conds = [t for t in root.values() if "triggerPolicy" in t]
    # the gate's decision is its return value ("Output": the only task output kfp.local's If resolves)
    assert len(conds) == 1 and conds[0]["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    assert "gate" in conds[0]["dependentTasks"]
    inner = spec["components"][conds[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"register"}
    # the champion may move between runs: never cache the gate or register
    assert root["gate"]["cachingOptions"] == {} or root["gate"]["cachingOptions"].get("enableCache") is not True
    assert inner["register"]["cachingOptions"].get("enableCache") is not True


def test_container_executors_use_the_project_image_and_the_cli(ir):
    spec, _ = ir
    ex = spec["deploymentSpec"]["executors"]
    for step in ("ingest", *TRAINING, "evaluate", "register"):
        c = ex[_executor_of(spec, step)]["container"]
        assert c["image"] == IMAGE
        assert "salnas" in " ".join(c["command"]) and step in " ".join(c["command"])
    # the search step gets the budgets and constraints as params.yaml overrides
    args = " ".join(ex[_executor_of(spec, "search")]["container"]["args"])
    assert "variants=" in args and "{{$.inputs.parameters['budgets']}}" in args
    assert "constraints=" in args and "{{$.inputs.parameters['constraints']}}" in args
    # the gate has no container form (it collects lists of artifacts): lightweight, same image
    g = ex[_executor_of(spec, "gate")]["container"]
    assert g["image"] == IMAGE and "run_step('gate'" in " ".join(g["command"])


def _task(spec, name: str) -> dict:
    for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]:
        if name in dag["tasks"]:
            return dag["tasks"][name]
    raise KeyError(name)


def test_gpu_settings_only_on_training_steps(ir):
    spec, platform = ir
    ex = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # --gpus 2: the distributed trainer gets both, the single-process steps one each
    for step, n in (("train-supernet", "2"), ("search", "1"), ("distill", "1")):
        label = _executor_of(spec, step)
        acc = ex[label]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and acc["resourceCount"] == n
        assert k8s[label]["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[label]["tolerations"]
    for step in CPU_STEPS:
        label = _executor_of(spec, step)
        assert "accelerator" not in ex[label]["container"].get("resources", {})
        assert "nodeSelector" not in k8s.get(label, {})


def test_device_follows_the_gpu_the_task_requests(ir):
    """A task with a GPU runs on cuda; evaluate (no GPU) on cpu, so a CPU node never sees `cuda`."""
    spec, _ = ir
    ex = spec["deploymentSpec"]["executors"]
    for step in ("search", "distill", "evaluate"):
        dev = _task(spec, step)["inputs"]["parameters"]["device"]["runtimeValue"]["constant"]
        has_gpu = "accelerator" in ex[_executor_of(spec, step)]["container"]["resources"]
        assert dev == ("cuda" if has_gpu else "cpu"), step
        assert has_gpu == (step in TRAINING)


def _compile(tmp_path, *args: str) -> tuple[dict, dict]:
    out = tmp_path / "p.yaml"
    assert cli.main(["pipeline", "compile", "--out", str(out), "--image", IMAGE, *args]) == 0
    return tuple(yaml.safe_load_all(out.read_text()))


def test_no_gpus_means_cpu_everywhere_and_gpu_steps_can_be_chosen(tmp_path):
    spec, _ = _compile(tmp_path, "--gpus", "0")
    ex = spec["deploymentSpec"]["executors"]
    for step in ("search", "distill", "evaluate"):
        assert _task(spec, step)["inputs"]["parameters"]["device"]["runtimeValue"]["constant"] == "cpu"
        assert "accelerator" not in ex[_executor_of(spec, step)]["container"]["resources"]
    assert "torchrun" not in " ".join(ex[_executor_of(spec, "train-supernet")]["container"]["command"])
    # evaluate on a GPU too (GPU latency in the efficiency table): it then gets cuda and a GPU
    spec, _ = _compile(tmp_path, "--gpus", "1", "--gpu-steps", "train-supernet,search,distill,evaluate")
    ev = spec["deploymentSpec"]["executors"][_executor_of(spec, "evaluate")]["container"]
    assert ev["resources"]["accelerator"]["resourceCount"] == "1"
    assert _task(spec, "evaluate")["inputs"]["parameters"]["device"]["runtimeValue"]["constant"] == "cuda"


def test_multi_gpu_training_launches_one_process_per_gpu(ir, tmp_path):
    """--gpus 2: train-supernet runs under torchrun with 2 processes on its node; run the compiled
    command with stand-ins for torchrun to see the argv it gets."""
    import os
    import stat
    import subprocess

    spec, _ = ir
    c = spec["deploymentSpec"]["executors"][_executor_of(spec, "train-supernet")]["container"]
    script = c["command"][2]
    assert "exec torchrun --standalone --nnodes=1 --nproc-per-node=2 --no-python salnas train-supernet" in script
    fake = tmp_path / "torchrun"
    fake.write_text('#!/bin/sh\necho "KFP=$SALNAS_KFP_RUN_ID"; for a do echo "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    out = subprocess.run([*c["command"], "--kfp-run-id=run-123", "--data", "/d", "--epochs=0"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["KFP=run-123", "--standalone", "--nnodes=1", "--nproc-per-node=2", "--no-python", "salnas",
                   "train-supernet", "--data", "/d"]
    # the single-process steps never run under torchrun
    for step in ("search", "distill", "evaluate"):
        assert "torchrun" not in " ".join(spec["deploymentSpec"]["executors"][_executor_of(spec, step)]["container"]["command"])


def test_resources_shm_and_retries(ir, tmp_path):
    spec, platform = ir
    ex = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("ingest", *TRAINING, "evaluate", "publish", "gate", "register"):
        r = ex[_executor_of(spec, step)]["container"]["resources"]
        assert r["resourceCpuRequest"] and r["resourceMemoryRequest"] and r["resourceMemoryLimit"], step
        assert _task(spec, step)["retryPolicy"]["maxRetryCount"] == 2, step
    r = ex[_executor_of(spec, "train-supernet")]["container"]["resources"]
    assert (r["resourceCpuRequest"], r["resourceMemoryRequest"]) == ("12", "48Gi")  # 6 CPU / 24Gi per GPU
    r = ex[_executor_of(spec, "ingest")]["container"]["resources"]
    assert (r["resourceCpuRequest"], r["resourceCpuLimit"], r["resourceMemoryLimit"]) == ("2", "4", "8Gi")
    # /dev/shm where loaders use worker processes (GPU steps; train_supernet.num_workers: 4 in paper)
    for step in TRAINING:
        (shm,) = k8s[_executor_of(spec, step)]["emptyDirMounts"]
        assert shm == {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "8Gi"}
    assert "emptyDirMounts" not in k8s[_executor_of(spec, "register")]
    # per-step resources from the command line
    spec, _ = _compile(tmp_path, "--resources", "evaluate:cpu=3,memory=5Gi,cpu_limit=6,memory_limit=7Gi",
                       "--retries", "0")
    r = spec["deploymentSpec"]["executors"][_executor_of(spec, "evaluate")]["container"]["resources"]
    assert (r["resourceCpuRequest"], r["resourceCpuLimit"], r["resourceMemoryRequest"], r["resourceMemoryLimit"]) \
        == ("3", "6", "5Gi", "7Gi")
    assert "retryPolicy" not in _task(spec, "evaluate")


@pytest.mark.parametrize("args,msg", [(["--resources", "evaluate:cpu=2"], "--resources"),
                                      (["--resources", "evaluat:cpu=2,memory=1Gi"], "no pipeline step evaluat"),
                                      (["--gpu-steps", "train-supernet,serach"], "no pipeline step serach")])
def test_bad_cluster_settings_are_one_line(tmp_path, capsys, args, msg):
    assert cli.main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml"), "--image", IMAGE, *args]) == 2
    assert msg in capsys.readouterr().err


def test_metrics_and_html_outputs(ir):
    spec, _ = ir
    comp = spec["components"][_task(spec, "publish")["componentRef"]["name"]]
    outs = comp["outputDefinitions"]["artifacts"]
    assert outs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outs["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    ins = _task(spec, "publish")["inputs"]["artifacts"]
    assert ins["evaluation"]["taskOutputArtifact"] == {"outputArtifactKey": "evaluation", "producerTask": "evaluate"}


def test_every_task_gets_the_kfp_run_id(ir):
    """Each step's MLflow run is tagged with the Kubeflow run id and nests under one parent run."""
    spec, _ = ir
    ex = spec["deploymentSpec"]["executors"]
    for step in ("ingest", *TRAINING, "variants", "evaluate", "publish", "gate", "register"):
        p = _task(spec, step)["inputs"]["parameters"]["kfp_run_id"]
        assert p == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}, step
        line = " ".join(ex[_executor_of(spec, step)]["container"]["command"] +
                        ex[_executor_of(spec, step)]["container"].get("args", []))
        assert "SALNAS_KFP_RUN_ID" in line or "kfp_run_id=kfp_run_id" in line, step


@pytest.mark.parametrize("image,ok", [
    ("ghcr.io/acme/salnas:latest", False), ("ghcr.io/acme/salnas", False), ("localhost:5000/salnas", False),
    ("localhost:5000/salnas:0a1b2c3d4e5f", True), ("ghcr.io/acme/salnas@sha256:" + "0" * 64, True)])
def test_mutable_images_are_refused(tmp_path, capsys, image, ok):
    rc = cli.main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml"), "--image", image])
    assert rc == (0 if ok else 2)
    if not ok:
        assert "mutable" in capsys.readouterr().err
        assert cli.main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml"), "--image", image,
                         "--allow-mutable-image"]) == 0


def test_default_image_is_the_commit_tag_or_salnas_image(monkeypatch):
    from components import factory
    from salnas_core.errors import UserError
    from salnas_core.tracking import mlflow_utils

    monkeypatch.setenv("SALNAS_IMAGE", "reg.example/salnas:v1")
    assert factory.default_image() == "reg.example/salnas:v1"
    monkeypatch.delenv("SALNAS_IMAGE")
    monkeypatch.setattr(mlflow_utils, "git_commit", lambda *a: "0123456789abcdef0123")
    assert factory.default_image() == "ghcr.io/salnas/salnas:0123456789ab"
    monkeypatch.setattr(mlflow_utils, "git_commit", lambda *a: "0123456789abcdef0123-dirty")
    with pytest.raises(UserError, match="--image"):
        factory.default_image()


def test_s3_secret_env_and_cache_pvc(ir):
    spec, platform = ir
    ex = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("ingest", *TRAINING, "evaluate", "publish", "gate", "register"):
        label = _executor_of(spec, step)
        (sec,) = k8s[label]["secretAsEnv"]
        assert sec["secretName"] == "salnas-s3"
        assert {(m["secretKey"], m["envVar"]) for m in sec["keyToEnv"]} == {
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")}
        env = {e["name"]: e["value"] for e in ex[label]["container"].get("env", [])}
        assert env["AWS_ENDPOINT_URL"] == "http://minio.kubeflow:9000"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow:5000"
        assert not any("SECRET" in k for k in env), "secrets come from the Secret, never as literal env"
    pvc = k8s[_executor_of(spec, "ingest")]["pvcMount"]
    assert [(p["constant"], p["mountPath"]) for p in pvc] == [("salnas-cache", "/home/salnas/.cache/salnas")]
    assert "pvcMount" not in k8s[_executor_of(spec, "train-supernet")]


def test_docker_images_match_the_project(ir):
    """The Dockerfiles pin the same torch as pyproject, install every package, and put the user's
    home where the cache PVC is mounted."""
    import re
    from pathlib import Path

    from pipelines.salnas_pipeline import CACHE_MOUNT

    repo = Path(__file__).resolve().parents[2]
    torch_pin = re.search(r'"torch==([^"]+)"', (repo / "pyproject.toml").read_text()).group(1)
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (repo / "docker" / name).read_text()
        assert f"ARG TORCH_VERSION={torch_pin}" in text, name
        for pkg in ("salnas_core", "components", "pipelines", "params.yaml"):
            assert re.search(rf"^COPY .*\b{re.escape(pkg)}\b", text, re.M), f"{name} does not copy {pkg}"
        assert re.search(r"pip install (--no-index --find-links \"\$WHEELS_URL\" )?\. ", text), name  # a wheel install
        assert re.search(r"^ARG BASE=python:3.11-slim$", text, re.M) and "FROM ${BASE}" in text, name
        assert "ENV HOME=/home/salnas" in text and CACHE_MOUNT.startswith("/home/salnas/")
        assert re.search(r"^USER salnas$", text, re.M)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_without_a_server_says_so(ir, tmp_path, capsys):
    package = tmp_path / "p.yaml"
    package.write_text(yaml.safe_dump_all(list(ir)))
    host = f"http://127.0.0.1:{_closed_port()}"
    rc = cli.main(["pipeline", "submit", "--host", host, "--package", str(package), "--param", "budgets=[S]"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1  # a user mistake: one line, exit 2
    assert host in err and "submit failed" in err


def test_submit_needs_a_compiled_package(tmp_path, capsys):
    rc = cli.main(["pipeline", "submit", "--host", "http://127.0.0.1:9", "--package", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and "salnas pipeline compile" in err and len(err.strip().splitlines()) == 1
