"""`salnas k8s train` against an in-memory Kubernetes API (kmock): the real `kubernetes` client
talks HTTP to the emulator, which stores objects, serves discovery and answers errors as a real
API server does. The sync client runs in a thread so the emulator's event loop keeps serving.

Both job kinds: a Kubeflow Trainer v2 TrainJob (the default) and a Training Operator v1
PyTorchJob (`--pytorchjob`). kmock runs no controllers: the tests write the status a controller
would (TrainJob: jobsStatus, then a Complete/Failed condition; PyTorchJob: Created/Running/...)."""
from __future__ import annotations

import asyncio
import json

import kmock as km
import pytest
import yaml

from salnas_core import cli
from salnas_core.tracking import k8s

RES = "kubeflow.org/v1/pytorchjobs"
RESOURCES = {"pytorchjob": RES, "trainjob": "trainer.kubeflow.org/v1alpha1/trainjobs"}
KINDS = {"pytorchjob": "PyTorchJob", "trainjob": "TrainJob"}
RUNTIMES = "trainer.kubeflow.org/v1alpha1/clustertrainingruntimes"


def _declare_crd(kmock, kind: str = "pytorchjob", runtime: bool = True) -> None:
    kmock.resources[RESOURCES[kind]] = km.ResourceInfo(kind=KINDS[kind], namespaced=True,
                                                       verbs=["create", "get", "list", "watch", "delete"])
    if kind == "trainjob":
        kmock.resources[RUNTIMES] = km.ResourceInfo(kind="ClusterTrainingRuntime", namespaced=False,
                                                    verbs=["get", "list"])
        if runtime:
            kmock.objects[RUNTIMES, None, "torch-distributed"] = {
                "metadata": {"name": "torch-distributed"}, "spec": {"mlPolicy": {"torch": {}}}}


def _api(kmock):
    return k8s.custom_objects_api(host=str(kmock.url).rstrip("/"))


async def _wait_created(kmock, ns: str, name: str, kind: str = "pytorchjob"):
    res = RESOURCES[kind]
    for _ in range(250):
        if (km.resource(res), ns, name) in set(kmock.objects.keys()):
            return kmock.objects[res, ns, name]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{ns}/{name} never created")


def _cond(*types: str, failed_msg: str = "") -> dict:
    conds = [{"type": t, "status": "True", "lastTransitionTime": f"2026-01-01T00:00:0{i}Z",
              **({"message": failed_msg} if t == "Failed" else {})} for i, t in enumerate(types)]
    return {"status": {"conditions": conds}}


# The status a controller writes, phase by phase, for each kind (and the state we read from it)
PHASES = {
    "pytorchjob": [(_cond("Created"), "Created"), (_cond("Created", "Running"), "Running"),
                   (_cond("Created", "Running", "Succeeded"), "Succeeded")],
    "trainjob": [({"status": {"jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 0,
                                              "failed": 0, "suspended": 0}]}}, "Created"),
                 ({"status": {"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0,
                                              "failed": 0, "suspended": 0}]}}, "Running"),
                 ({"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted",
                                              "message": "TrainJob is completed"}],
                              "jobsStatus": [{"name": "node", "active": 0, "ready": 0, "succeeded": 1,
                                              "failed": 0, "suspended": 0}]}}, "Complete")],
}
FAILED = {
    "pytorchjob": (_cond("Created", "Running", "Failed", failed_msg="PyTorchJob sn is failed because 1 Master "
                                                                   "replica(s) failed."), "1 Master replica"),
    "trainjob": ({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "JobsFailed",
                                             "message": "jobset failed: node-0 backoff limit reached"}]}},
                 "JobsFailed; jobset failed: node-0 backoff limit"),
}


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
                   "--toleration", "dedicated=gpu:NoSchedule", "--dry-run", "--pytorchjob", "--", "--no-self-kd"])
    assert rc == 0
    m = yaml.safe_load(capsys.readouterr().out)
    c = m["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert c["command"][5:] == ["train-supernet", "--data", "data/ingested", "--out", "runs/supernet",
                                "--preset", "paper", "--epochs", "20", "--no-self-kd"]
    assert m["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


# --- the TrainJob manifest ------------------------------------------------------------------------

@pytest.mark.parametrize("workers,gpus", [(1, 0), (2, 4)])
def test_trainjob_manifest_runs_the_trainer_on_n_nodes_by_g_gpus(workers, gpus):
    spec = k8s.TrainSpec(name="sn", trainer_args=["--data", "d", "--out", "r"], namespace="ml", workers=workers,
                         gpus_per_worker=gpus, accelerator="NVIDIA-H100-80GB-HBM3", s3_secret="s3-creds",
                         pvc="salnas-data", cpu="8", memory="64Gi", env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    m = k8s.build_trainjob(spec)
    assert m["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and m["kind"] == "TrainJob"
    assert m["spec"]["runtimeRef"] == {"name": "torch-distributed", "apiGroup": "trainer.kubeflow.org",
                                       "kind": "ClusterTrainingRuntime"}
    t = m["spec"]["trainer"]
    nproc = max(gpus, 1)
    assert t["numNodes"] == workers and t["numProcPerNode"] == nproc
    # the same command as the PyTorchJob, started in the shared volume (the runtime owns workingDir)
    assert t["command"][:4] == ["sh", "-c", 'cd "$0" && exec "$@"', "/data"]
    assert t["command"][4:] == k8s.torchrun_command(spec) == [
        "torchrun", f"--nnodes={workers}", f"--nproc-per-node={nproc}", "--no-python",
        "salnas", "train-supernet", "--data", "d", "--out", "r"]
    assert t["resourcesPerNode"]["requests"] == {"cpu": "8", "memory": "64Gi"}
    assert (t["resourcesPerNode"]["limits"].get("nvidia.com/gpu") or 0) == gpus
    env = {e["name"]: e for e in t["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
    # credentials stay in the Secret: the manifest only names it
    assert env["AWS_SECRET_ACCESS_KEY"] == {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {
        "secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}}}
    (patch,) = m["spec"]["runtimePatches"]
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == "node"
    pod = rj["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert ("tolerations" in pod) == bool(gpus)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "salnas-data"}} in pod["volumes"]
    (c,) = pod["containers"]
    assert c["name"] == "node" and {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


def test_trainjob_state_reads_conditions_and_child_jobs():
    for status, state in PHASES["trainjob"]:
        assert k8s.trainjob_state(status) == state
    assert k8s.trainjob_state({}) == "Pending"
    assert k8s.trainjob_state(FAILED["trainjob"][0]) == "Failed"
    assert k8s.trainjob_state({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}) == "Suspended"
    resumed = {"status": {"conditions": [{"type": "Suspended", "status": "False", "reason": "Resumed"}],
                          "jobsStatus": [{"name": "node", "active": 1}]}}
    assert k8s.trainjob_state(resumed) == "Running"


def test_cli_dry_run_prints_a_trainjob_by_default_and_a_pytorchjob_behind_the_flag(capsys):
    argv = ["k8s", "train", "--name", "sn1", "-n", "ml", "--nodes", "2", "--gpus", "8", "--runtime", "torch-cuda",
            "--dry-run"]
    assert cli.main(argv) == 0
    m = yaml.safe_load(capsys.readouterr().out)
    assert m["kind"] == "TrainJob" and m["spec"]["runtimeRef"]["name"] == "torch-cuda"
    assert m["spec"]["trainer"]["numNodes"] == 2 and m["spec"]["trainer"]["numProcPerNode"] == 8
    assert cli.main([*argv, "--pytorchjob"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["kind"] == "PyTorchJob"


# --- against the emulated API --------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_create_and_follow_to_success(kmock, kind):
    _declare_crd(kmock, kind)
    spec = k8s.TrainSpec(name="sn", trainer_args=["--data", "/d"], namespace="ml", workers=2, gpus_per_worker=2)
    seen: list[str] = []
    task = asyncio.create_task(asyncio.to_thread(
        k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=30, on_change=lambda s, _o: seen.append(s), kind=kind))
    obj = await _wait_created(kmock, "ml", "sn", kind)
    # The stored object is exactly the manifest we built.
    assert obj >= k8s.APIS[kind].build(spec)
    for status, _state in PHASES[kind]:
        await asyncio.sleep(0.15)
        obj.patch(status)
    summary = await asyncio.wait_for(task, 10)
    assert summary["state"] == PHASES[kind][-1][1] and summary["kind"] == KINDS[kind]
    assert seen[-3:] == [state for _s, state in PHASES[kind]]
    posts = [r for r in kmock if r.method == km.method.POST]
    assert len(posts) == 1 and str(posts[0].url).endswith(f"/apis/{RESOURCES[kind].rsplit('/', 1)[0]}"
                                                          f"/namespaces/ml/{RESOURCES[kind].rsplit('/', 1)[1]}")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_failed_job_raises_with_the_controller_message(kmock, kind):
    _declare_crd(kmock, kind)
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    task = asyncio.create_task(asyncio.to_thread(k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=30, kind=kind))
    obj = await _wait_created(kmock, "ml", "sn", kind)
    status, message = FAILED[kind]
    obj.patch(status)
    with pytest.raises(k8s.JobFailedError, match=f"{KINDS[kind]} ml/sn failed: .*{message}.*kubectl logs -n ml"):
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_follow_times_out_while_running(kmock, kind):
    _declare_crd(kmock, kind)
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    task = asyncio.create_task(asyncio.to_thread(k8s.train, spec, _api(kmock), poll_s=0.02, timeout_s=0.5, kind=kind))
    obj = await _wait_created(kmock, "ml", "sn", kind)
    obj.patch(PHASES[kind][1][0])
    with pytest.raises(TimeoutError, match="still Running"):
        await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_conflict_keeps_the_existing_job(kmock, kind):
    _declare_crd(kmock, kind)
    kmock.objects[RESOURCES[kind], "ml", "sn"] = {"metadata": {"name": "sn", "namespace": "ml"}, "spec": {"mine": True}}
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.JobExistsError, match=f"already exists.*kubectl delete {kind} sn -n ml"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock), kind=kind)
    assert kmock.objects[RESOURCES[kind], "ml", "sn"] >= {"spec": {"mine": True}}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_forbidden_names_the_rbac_needed(kmock, kind):
    _declare_crd(kmock, kind)
    plural = RESOURCES[kind].rsplit("/", 1)[1]
    group = RESOURCES[kind].split("/")[0]
    kmock["post", km.resource(RESOURCES[kind])] << km.KubernetesError(
        status=403, reason="Forbidden",
        message=f'{plural}.{group} is forbidden: User "alice" cannot create resource "{plural}"')
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.ForbiddenError, match=rf"RBAC.*{plural}\.{group}.*'ml'.*alice"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock), kind=kind)


@pytest.mark.asyncio
async def test_missing_crd_says_install_the_training_operator(kmock):
    # Nothing declared: discovery of kubeflow.org/v1 answers 404, as on a cluster without the operator.
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.CRDMissingError, match="Training Operator"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock), kind="pytorchjob")
    assert not [r for r in kmock if r.method == km.method.POST]  # nothing was sent


@pytest.mark.asyncio
async def test_missing_trainjob_crd_says_install_trainer_v2_or_use_the_flag(kmock):
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.CRDMissingError, match=r"trainjobs\.trainer\.kubeflow\.org.*Kubeflow Trainer v2.*--pytorchjob"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))
    # a cluster with only the Training Operator v1 serves kubeflow.org, not trainer.kubeflow.org
    _declare_crd(kmock, "pytorchjob")
    with pytest.raises(k8s.CRDMissingError, match="Kubeflow Trainer v2"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))
    assert not [r for r in kmock if r.method == km.method.POST]


@pytest.mark.asyncio
async def test_missing_runtime_is_named_before_anything_is_created(kmock):
    _declare_crd(kmock, "trainjob", runtime=False)
    spec = k8s.TrainSpec(name="sn", trainer_args=[], namespace="ml")
    with pytest.raises(k8s.RuntimeMissingError, match="ClusterTrainingRuntime 'torch-distributed'.*--runtime"):
        await asyncio.to_thread(k8s.train, spec, _api(kmock))
    assert not [r for r in kmock if r.method == km.method.POST]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
async def test_cli_with_a_kubeconfig(kmock, tmp_path, capsys, kind):
    _declare_crd(kmock, kind)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}]}))
    argv = ["k8s", "train", "--kubeconfig", str(kubeconfig), "--name", "cli1", "-n", "ml",
            "--workers", "2", "--gpus", "1", "--no-follow"] + (["--pytorchjob"] if kind == "pytorchjob" else [])
    assert await asyncio.to_thread(cli.main, argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "Created" and out["kind"] == KINDS[kind]
    want = ({"spec": {"pytorchReplicaSpecs": {"Worker": {"replicas": 1}}}} if kind == "pytorchjob"
            else {"spec": {"trainer": {"numNodes": 2}}})
    assert kmock.objects[RESOURCES[kind], "ml", "cli1"] >= want
    # Same name again: a clear error and exit status 1, not a traceback.
    assert await asyncio.to_thread(cli.main, argv) == 1
    assert "already exists" in capsys.readouterr().err


def test_dry_run_output_stays_yaml_when_print_is_swapped(capsys, monkeypatch):
    """kfp.local swaps builtins.print for an indenting one while it runs (and a failed run can leave
    it so): the manifest goes through sys.stdout, exact, whatever print is."""
    import builtins

    real = builtins.print
    monkeypatch.setattr(builtins, "print", lambda *a, **k: (real("    ", end=""), real(*a, **k)))
    rc = cli.main(["k8s", "train", "--name", "sn1", "--dry-run", "--pytorchjob"])
    assert rc == 0 and yaml.safe_load(capsys.readouterr().out)["kind"] == "PyTorchJob"
