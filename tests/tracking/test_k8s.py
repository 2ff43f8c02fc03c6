"""`salnas k8s train` against an in-memory Kubernetes API (kmock): the real `kubernetes` client
talks HTTP to the emulator, which stores objects, serves discovery and answers errors as a real
API server does. The sync client runs in a thread so the emulator's event loop keeps serving."""
from __future__ import annotations

import asyncio
import json

import kmock as km
import pytest
import yaml

from salnas_core import cli
from salnas_core.tracking import k8s

RES = "kubeflow.org/v1/pytorchjobs"


def _declare_crd(kmock) -> None:
    kmock.resources[RES] = km.ResourceInfo(kind="PyTorchJob", namespaced=True,
                                           verbs=["create", "get", "list", "watch", "delete"])


def _api(kmock):
    return k8s.custom_objects_api(host=str(kmock.url).rstrip("/"))


async def _wait_created(kmock, ns: str, name: str):
    for _ in range(250):
        if (km.resource(RES), ns, name) in set(kmock.objects.keys()):
            return kmock.objects[RES, ns, name]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{ns}/{name} never created")


def _cond(*types: str, failed_msg: str = "") -> dict:
    conds = [{"type": t, "status": "True", "lastTransitionTime": f"2026-01-01T00:00:0{i}Z",
              **({"message": failed_msg} if t == "Failed" else {})} for i, t in enumerate(types)]
    return {"status": {"conditions": conds}}


# --- the manifest --------------------------------------------------------------------------------

@pytest.mark.parametrize("workers,gpus", [(1, 0), (1, 1), (3, 4)])
def test_manifest_replicas_gpus_and_torchrun(workers, gpus):
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=["--data", "/d", "--out", "/r"], namespace="ml",
                              workers=workers, gpus_per_worker=gpus, accelerator="NVIDIA-H100-80GB-HBM3",
                              s3_secret="s3-creds", pvc="salnas-data")
    m = k8s.build_pytorchjob(spec)
    assert m["apiVersion"] == "kubeflow.org/v1" and m["kind"] == "PyTorchJob"
    reps = m["spec"]["pytorchReplicaSpecs"]
    assert reps["Master"]["replicas"] == 1
    assert reps.get("Worker", {"replicas": 0})["replicas"] == workers - 1
    pod = reps["Master"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["name"] == "pytorch"  # the operator only wires this container name
    nproc = max(gpus, 1)
    assert c["command"][:4] == ["torchrun", f"--nnodes={workers}", f"--nproc-per-node={nproc}", "--no-python"]
    assert c["command"][4:] == ["salnas", "train-supernet", "--data", "/d", "--out", "/r"]
    assert m["spec"]["nprocPerNode"] == str(nproc)
    if gpus:
        assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nvidia.com/gpu" not in c.get("resources", {}).get("limits", {})
        assert "tolerations" not in pod
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "salnas-data"}} in pod["volumes"]
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]


def test_bad_spec_is_refused():
    with pytest.raises(ValueError, match="job name"):
        k8s.PyTorchJobSpec(name="Bad_Name", trainer_args=[])
    with pytest.raises(ValueError, match="workers"):
        k8s.PyTorchJobSpec(name="ok", trainer_args=[], workers=0)


def test_job_state_reads_the_newest_true_condition():
    assert k8s.job_state({}) == "Pending"
    assert k8s.job_state(_cond("Created")) == "Created"
    assert k8s.job_state(_cond("Created", "Running")) == "Running"
    restarted = _cond("Created", "Running", "Restarting")
    restarted["status"]["conditions"][1]["status"] = "False"
    assert k8s.job_state(restarted) == "Restarting"
    assert k8s.job_state(_cond("Created", "Running", "Succeeded")) == "Succeeded"


def test_cli_dry_run_prints_the_manifest(capsys):
    rc = cli.main(["k8s", "train", "--name", "sn1", "-n", "ml", "--workers", "2", "--gpus", "8",
                   "--preset", "paper", "--epochs", "20", "--s3-secret", "s3", "--pvc", "cache",
                   "--toleration", "dedicated=gpu:NoSchedule", "--dry-run", "--", "--no-self-kd"])
    assert rc == 0
    m = yaml.safe_load(capsys.readouterr().out)
    c = m["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert c["command"][5:] == ["train-supernet", "--data", "data/ingested", "--out", "runs/supernet",
                                "--preset", "paper", "--epochs", "20", "--no-self-kd"]
    assert m["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


# --- against the emulated API --------------------------------------------------------------------

@pytest.mark.asyncio
async def test_create_and_follow_to_success(kmock):
    _declare_crd(kmock)
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=["--data", "/d"], namespace="ml", workers=2, gpus_per_worker=2)
    seen: list[str] = []
    task = asyncio.create_task(asyncio.to_thread(
        k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=30, on_change=lambda s, _o: seen.append(s)))
    obj = await _wait_created(kmock, "ml", "sn")
    # The stored object is exactly the manifest we built.
    assert obj >= k8s.build_pytorchjob(spec)
    for phase in (("Created",), ("Created", "Running"), ("Created", "Running", "Succeeded")):
        await asyncio.sleep(0.15)
        obj.patch(_cond(*phase))
    summary = await asyncio.wait_for(task, 10)
    assert summary["state"] == "Succeeded"
    assert seen[-3:] == ["Created", "Running", "Succeeded"]
    posts = [r for r in kmock if r.method == km.method.POST]
    assert len(posts) == 1 and str(posts[0].url).endswith("/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs")


@pytest.mark.asyncio
async def test_failed_job_raises_with_the_operator_message(kmock):
    _declare_crd(kmock)
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=[], namespace="ml")
    task = asyncio.create_task(asyncio.to_thread(k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=30))
    obj = await _wait_created(kmock, "ml", "sn")
    obj.patch(_cond("Created", "Running", "Failed", failed_msg="PyTorchJob sn is failed because 1 Master replica(s) failed."))
    with pytest.raises(k8s.JobFailedError, match="1 Master replica"):
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_follow_times_out_while_running(kmock):
    _declare_crd(kmock)
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=[], namespace="ml")
    task = asyncio.create_task(asyncio.to_thread(k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=0.5))
    obj = await _wait_created(kmock, "ml", "sn")
    obj.patch(_cond("Created", "Running"))
    with pytest.raises(TimeoutError, match="still Running"):
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_conflict_keeps_the_existing_job(kmock):
    _declare_crd(kmock)
    kmock.objects[RES, "ml", "sn"] = {"metadata": {"name": "sn", "namespace": "ml"}, "spec": {"mine": True}}
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.JobExistsError, match="already exists.*kubectl delete pytorchjob sn -n ml"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))
    assert kmock.objects[RES, "ml", "sn"] >= {"spec": {"mine": True}}


@pytest.mark.asyncio
async def test_forbidden_names_the_rbac_needed(kmock):
    _declare_crd(kmock)
    kmock["post", km.resource(RES)] << km.KubernetesError(
        status=403, reason="Forbidden",
        message='pytorchjobs.kubeflow.org is forbidden: User "alice" cannot create resource "pytorchjobs"')
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.ForbiddenError, match=r"RBAC.*pytorchjobs\.kubeflow\.org.*'ml'.*alice"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))


@pytest.mark.asyncio
async def test_missing_crd_says_install_the_training_operator(kmock):
    # Nothing declared: discovery of kubeflow.org/v1 answers 404, as on a cluster without the operator.
    spec = k8s.PyTorchJobSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.CRDMissingError, match="Training Operator"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))
    assert not [r for r in kmock if r.method == km.method.POST]  # nothing was sent


@pytest.mark.asyncio
async def test_cli_with_a_kubeconfig(kmock, tmp_path, capsys):
    _declare_crd(kmock)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}]}))
    argv = ["k8s", "train", "--kubeconfig", str(kubeconfig), "--name", "cli1", "-n", "ml",
            "--workers", "2", "--gpus", "1", "--no-follow"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "Created"
    assert kmock.objects[RES, "ml", "cli1"] >= {"spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 1}}}}
    # Same name again: a clear error and exit status 1, not a traceback.
    assert await asyncio.to_thread(cli.main, argv) == 1
    assert "already exists" in capsys.readouterr().err
