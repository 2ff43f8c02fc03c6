"""`salnas pipeline compile` writes IR YAML with the DAG, typed parameters and Kubernetes settings;
`salnas pipeline submit` argument handling (no Kubeflow server can run here)."""
from __future__ import annotations

import socket

import pytest
import yaml

from salnas_core import cli

TRAINING = ("train-supernet", "search", "distill")


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "salnas.yaml"
    rc = cli.main(["pipeline", "compile", "--out", str(out), "--image", "ghcr.io/acme/salnas:cuda-1.0",
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
                     "constraints": "STRUCT", "model_name": "STRING", "device": "STRING"}
    assert params["budgets"]["defaultValue"] == ["XL", "M", "S"]
    assert params["preset"]["defaultValue"] == "paper"
    assert params["constraints"]["defaultValue"] == {"max_latency_ms": 30}
    assert params["device"]["defaultValue"] == "cuda"  # compiled with GPUs


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
    assert set(body) == {"distill", "evaluate"}
    assert body["evaluate"]["dependentTasks"] == ["distill"]
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
        assert c["image"] == "ghcr.io/acme/salnas:cuda-1.0"
        assert "salnas" in " ".join(c["command"]) and step in " ".join(c["command"])
    # the search step gets the budgets and constraints as params.yaml overrides
    args = " ".join(ex[_executor_of(spec, "search")]["container"]["args"])
    assert "variants=" in args and "{{$.inputs.parameters['budgets']}}" in args
    assert "constraints=" in args and "{{$.inputs.parameters['constraints']}}" in args
    # the gate has no container form (it collects lists of artifacts): lightweight, same image
    g = ex[_executor_of(spec, "gate")]["container"]
    assert g["image"] == "ghcr.io/acme/salnas:cuda-1.0" and "run_step('gate'" in " ".join(g["command"])


def test_gpu_settings_only_on_training_steps(ir):
    spec, platform = ir
    ex = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in TRAINING:
        label = _executor_of(spec, step)
        acc = ex[label]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu" and acc["resourceCount"] == "2"
        assert k8s[label]["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[label]["tolerations"]
    for step in ("ingest", "evaluate", "gate", "register"):
        label = _executor_of(spec, step)
        assert "accelerator" not in ex[label]["container"].get("resources", {})
        assert "nodeSelector" not in k8s.get(label, {})


def test_s3_secret_env_and_cache_pvc(ir):
    spec, platform = ir
    ex = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("ingest", *TRAINING, "evaluate", "gate", "register"):
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
        assert "pip install -e ." in text
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
