"""MLflow: one parent run per pipeline run, a child run per step, and the model registry.

Tracking URI: `MLFLOW_TRACKING_URI`, else the embedded default `sqlite:///<repo>/mlflow.db` with
artifacts in `<repo>/mlartifacts` (no server). Experiment: `MLFLOW_EXPERIMENT_NAME`, else `salnas`.
`SALNAS_TRACKING=off` turns tracking off (runs become None, loggers no-ops).

Steps that run as separate processes (dvc repro, Kubeflow) find their parent through
`SALNAS_PARENT_RUN_ID`, which `start_run(..., pipeline=True)` exports for the processes it starts.

Registry: `register_model` logs a pyfunc model (images of any size in, saliency maps out) with a
signature, an input example, the architecture config, metrics, the data version and the git commit
as version tags and MLmodel metadata. The same model file registered twice gives the same version
(tag `salnas.source_sha256`). The alias `champion` moves only through `promote_if_better`, by the
one champion rule `beats_champion` (which the pipeline's gate step applies too): a lower validation
selection score than the current champion's.

The pyfunc wrapper lives in salnas_core.serve.pyfunc_model: the caller (the register step) passes
its file, so tracking never imports serve (serve imports tracking: one direction, no loop).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from salnas_core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "salnas"
DEFAULT_MODEL_NAME = "salnas"
PARENT_ENV = "SALNAS_PARENT_RUN_ID"
KFP_RUN_ENV = "SALNAS_KFP_RUN_ID"    # the Kubeflow run id, set by the pipeline's components
TAG_KFP_RUN = "salnas.kfp_run_id"
CHAMPION = "champion"
TAG_HASH = "salnas.source_sha256"
TAG_SCORE = "salnas.val_score"
TAG_PROTOCOL = "salnas.protocol"   # how the score was measured (dataset, split, images, size, blur)
Logger = Callable[..., None]


# ----------------------------------------------------------------------------- configuration

def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the embedded sqlite store at <working root>/mlflow.db (the working
    root: $SALNAS_ROOT, else the current folder; never the checkout the package came from)."""
    from salnas_core.utils.root import work_root

    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{work_root() / 'mlflow.db'}"


def tracking_enabled() -> bool:
    return os.environ.get("SALNAS_TRACKING", "on").strip().lower() not in ("0", "off", "false", "no")


def configure(uri: str | None = None) -> str:
    """Point the mlflow client (tracking and registry) at `uri` (default: `tracking_uri()`)."""
    import mlflow

    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _local_artifact_root(uri: str) -> str | None:
    """For a sqlite store (no server), artifacts go to `mlartifacts/` beside the database."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def experiment_id(name: str | None = None) -> str:
    """The id of experiment `name` (default MLFLOW_EXPERIMENT_NAME or `salnas`), created if missing."""
    import mlflow
    from mlflow import MlflowClient

    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    uri = configure()
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = _local_artifact_root(uri)
    try:
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel step
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(repo: str | os.PathLike | None = None) -> str:
    """HEAD of the repository (`-dirty` when tracked files changed; dvc.lock, which the running
    `dvc repro` itself rewrites, does not count); SALNAS_GIT_COMMIT in containers."""
    if os.environ.get("SALNAS_GIT_COMMIT"):
        return os.environ["SALNAS_GIT_COMMIT"]
    from salnas_core.utils.root import work_root

    repo = str(work_root(repo))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)dvc.lock"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params -> {"a.b": "value"} strings (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            s = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
            out[key] = s[:6000]
    return out


# ----------------------------------------------------------------------------- runs

@contextlib.contextmanager
def start_run(name: str | None = None, *, pipeline: bool = False, params: dict[str, Any] | None = None,
              tags: dict[str, str] | None = None, step: str | None = None,
              run_name: str | None = None) -> Iterator[Any]:
    """A run for a pipeline (`pipeline=True`, the parent) or for one step (a child).

    name: the step (or pipeline) name, tagged `salnas.step` / `salnas.pipeline`; `step=` is an alias
    and `run_name=` a different display name.

    A step's parent is the active run in this process, else `SALNAS_PARENT_RUN_ID` (set by the
    pipeline run for the processes it starts), else none (a standalone step run). Yields the
    mlflow ActiveRun, or None when tracking is off. An exception marks the run FAILED.
    """
    if not tracking_enabled():
        yield None
        return
    import mlflow
    from mlflow import MlflowClient

    name = name or step
    if not name:
        raise ValueError("start_run: give the step or pipeline name")
    configure()
    t = {"salnas.kind": "pipeline" if pipeline else "step", "mlflow.source.git.commit": git_commit(),
         **({"salnas.pipeline": name} if pipeline else {"salnas.step": name}), **(tags or {})}
    kfp_run = os.environ.get(KFP_RUN_ENV) or None
    if kfp_run:
        t[TAG_KFP_RUN] = kfp_run
    active = mlflow.active_run()
    parent = None if pipeline else (active.info.run_id if active else os.environ.get(PARENT_ENV) or None)
    if parent is None and kfp_run and not pipeline:
        parent = kfp_parent_run(kfp_run)
    exp = experiment_id()
    if parent:
        t["mlflow.parentRunId"] = parent
        try:  # a child lives in its parent's experiment
            exp = MlflowClient().get_run(parent).info.experiment_id
        except mlflow.exceptions.MlflowException:
            log.warning("parent run %s not found at %s; the step run is not nested", parent, tracking_uri())
            t.pop("mlflow.parentRunId")
    with mlflow.start_run(run_name=run_name or name, experiment_id=exp, nested=active is not None, tags=t) as run:
        if params:
            mlflow.log_params(flatten(params))
        if not pipeline:
            yield run
            return
        prev = os.environ.get(PARENT_ENV)
        os.environ[PARENT_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if prev is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = prev


def kfp_parent_run(kfp_run_id: str) -> str:
    """The parent run of Kubeflow run `kfp_run_id`: found by tag, else created by the first step
    that asks. Parallel steps may both create one; all then agree on the oldest and the others
    delete theirs, so every step's run nests under one parent."""
    from mlflow import MlflowClient

    client, exp = MlflowClient(), experiment_id()

    def find() -> list[Any]:
        return client.search_runs([exp], filter_string=f"tags.`{TAG_KFP_RUN}` = '{kfp_run_id}' "
                                  "and tags.`salnas.kind` = 'pipeline'", order_by=["attributes.start_time ASC"])

    runs = find()
    if runs:
        return runs[0].info.run_id
    mine = client.create_run(exp, run_name=f"pipeline-kfp-{kfp_run_id[:8]}", tags={
        "salnas.kind": "pipeline", "salnas.pipeline": "kubeflow", TAG_KFP_RUN: kfp_run_id,
        "mlflow.source.git.commit": git_commit()}).info.run_id
    client.set_terminated(mine)  # a grouping run: no step ends it, the children carry their own status
    first = min(find(), key=lambda r: (r.info.start_time, r.info.run_id))  # ties: one order for all
    if first.info.run_id != mine:
        client.delete_run(mine)
    return first.info.run_id


def mlflow_logger(run: Any) -> Logger:
    """The logger callable train/search/evaluate take: log(metrics, step=None) -> metrics on `run`.

    Non-numeric values are skipped; NaN/inf are logged as they are (MLflow keeps them).
    """
    if run is None:
        return lambda metrics, step=None: None
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client, run_id = MlflowClient(), run.info.run_id

    def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
        ts = int(time.time() * 1000)
        batch = []
        for k, v in metrics.items():
            try:
                batch.append(Metric(str(k), float(v), ts, int(step or 0)))
            except (TypeError, ValueError):
                continue
        for i in range(0, len(batch), 1000):  # MLflow's log_batch limit
            client.log_batch(run_id, metrics=batch[i:i + 1000])

    return log_metrics


# ----------------------------------------------------------------------------- pyfunc flavour

def model_signature():
    """Inputs: uint8 (N, H, W, 3), any H and W. Outputs: float32 (N, H, W) saliency maps."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))]))


def input_example(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    """A small deterministic image batch (1, H, W, 3): its size differs from the working size on purpose."""
    return np.random.default_rng(seed).integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- registry

def find_version(name: str, source_sha256: str) -> Any | None:
    """The registered version of `name` made from the model file with this hash, if any."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return None
    hits = [v for v in versions if (v.tags or {}).get(TAG_HASH) == source_sha256]
    return min(hits, key=lambda v: int(v.version)) if hits else None


def package_dir() -> str:
    """The salnas_core package folder, logged with every model (`code_paths`): `mlflow models serve`
    then needs only the requirements below, no salnas installation."""
    from importlib import resources

    return str(resources.files("salnas_core"))


def serving_requirements() -> list[str]:
    """What the logged model needs to load and predict (measured: torch, numpy, tqdm besides mlflow;
    pillow for image files). torch comes from the PyTorch CPU index: PyPI's torch==2.13.0 is a
    multi-GB CUDA build (a GPU server may drop the index line to get CUDA)."""
    import importlib.metadata as md

    import mlflow

    def pin(dist: str) -> str:
        try:
            return f"{dist}=={md.version(dist)}"
        except md.PackageNotFoundError:
            return dist

    return ["--extra-index-url https://download.pytorch.org/whl/cpu", f"mlflow=={mlflow.__version__}",
            "torch==2.13.0", pin("numpy"), pin("tqdm"), pin("pillow")]


def validate_logged_model(model_uri: str, model_path: str | os.PathLike) -> None:
    """Score the logged model on its input example the way `mlflow models serve` does (MLflow's
    scoring code, a fresh process, this environment); raise if it fails or returns no maps."""
    import tempfile

    import mlflow.models

    example = input_example()
    with tempfile.TemporaryDirectory(prefix="salnas-validate-") as tmp:
        out = Path(tmp) / "predictions.json"
        try:
            mlflow.models.predict(model_uri=model_uri, input_data=example, env_manager="local",
                                  output_path=str(out))
            preds = json.loads(out.read_text())
        except Exception as e:  # noqa: BLE001 (any failure of the logged model means: do not register)
            raise UserError(f"{model_path}: the logged model failed validation with mlflow.models.predict "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); not registering") from e
    maps = np.asarray(preds.get("predictions", preds) if isinstance(preds, dict) else preds, dtype=np.float32)
    if maps.shape != example.shape[:3] or not np.isfinite(maps).all():
        raise UserError(f"{model_path}: the logged model returned shape {maps.shape} for an input of "
                        f"{example.shape}; not registering")
    log.info("%s: logged model validated with mlflow.models.predict (maps %s)", model_path, maps.shape)


def register_model(model_path: str | os.PathLike, *, python_model: str | os.PathLike,
                   name: str = DEFAULT_MODEL_NAME, score: float, model_config: dict | None = None,
                   metrics: dict[str, float] | None = None, data_version: str | None = None,
                   arch_config: dict | None = None, git_commit_id: str | None = None,
                   extra_tags: dict[str, str] | None = None, description: str | None = None) -> dict[str, Any]:
    """Register a `save_model` file as a new version of `name` (or return the existing one).

    python_model: the models-from-code file of the pyfunc wrapper
    (`salnas_core.serve.pyfunc_model.__file__`); model_config: its defaults, the keys
    `mlflow.pyfunc.load_model(..., model_config=...)` may then override (`pyfunc_model.MODEL_CONFIG`).
    score: the validation selection score (lower is better) the champion gate compares.
    Logs into the active run (the register step's run) or a new `register` run. Returns
    {"name", "version", "uri", "source_sha256", "created": bool, "run_id", "score" (the score the
    registry holds for that version), "note" (None, or why a new score was not applied)}. Safe
    under concurrent use: two runs registering the same file at once end with one version.
    """
    import mlflow
    import mlflow.pyfunc
    from mlflow import MlflowClient

    from salnas_core.utils.hashing import sha256_file

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: model file to register not found")
    if not math.isfinite(float(score)):
        raise UserError(f"{model_path}: validation score {score!r} is not a finite number; not registering")
    configure()
    digest = sha256_file(model_path)
    found = find_version(name, digest)
    if found is not None:
        log.info("%s: already registered as %s version %s (same sha256)", model_path, name, found.version)
        return _existing(name, found, digest, float(score), model_path)

    commit = git_commit_id or git_commit()
    metrics = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
    meta = {"arch_config": arch_config or {}, "metrics": metrics, "val_score": float(score),
            "data_version": data_version or "unknown", "git_commit": commit, "source_sha256": digest}
    tags = {TAG_HASH: digest, TAG_SCORE: repr(float(score)), "salnas.data_version": meta["data_version"],
            "salnas.git_commit": commit, "salnas.arch_config": json.dumps(arch_config or {}, sort_keys=True),
            "salnas.metrics": json.dumps(metrics, sort_keys=True), **(extra_tags or {})}
    ctx = contextlib.nullcontext(mlflow.active_run()) if mlflow.active_run() else start_run("register")
    with ctx as run:
        mlflow.log_metrics({**{f"val_{k}": v for k, v in metrics.items()}, "val_score": float(score)})
        mlflow.log_dict(arch_config or {}, "arch_config.json")
        mlflow.set_tags({"salnas.data_version": meta["data_version"], TAG_HASH: digest})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(python_model).resolve()), artifacts={"model": str(model_path)},
            model_config=model_config,
            code_paths=[package_dir()], signature=model_signature(), input_example=input_example(),
            metadata=meta, pip_requirements=serving_requirements())
        validate_logged_model(info.model_uri, model_path)  # a model that cannot serve is not registered
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
        run_id = run.info.run_id
    client = MlflowClient()
    # Two registrations of one file started together both passed the check above: the lowest
    # version with this sha256 wins and every other one removes its own version again, so each
    # run ends with the same single version (version numbers are unique in the registry's store).
    winner = find_version(name, digest)
    if winner is not None and int(winner.version) != int(mv.version):
        log.warning("%s: registered concurrently with another run as %s version %s; version %s removed, "
                    "the earlier one kept", model_path, name, winner.version, mv.version)
        client.delete_model_version(name, mv.version)
        return _existing(name, winner, digest, float(score), model_path)
    client.update_model_version(name, mv.version, description=(
        (description + "\n") if description else
        f"SalNAS saliency model; val selection score {float(score):.4f} (lower is better); "
        f"data {meta['data_version']}; ") + f"- commit {commit}, run {run_id}")
    return {"name": name, "version": int(mv.version), "uri": f"models:/{name}/{mv.version}",
            "source_sha256": digest, "created": True, "run_id": run_id, "score": float(score), "note": None}


def _existing(name: str, mv: Any, digest: str, score: float, model_path: Path) -> dict[str, Any]:
    """What register_model returns for a file already registered: that version and its recorded score.

    A new evaluation of the same file does not change the record (the champion gate compared the
    recorded score); the returned note says so, and `score` is the one the registry holds.
    """
    try:
        recorded = float((mv.tags or {})[TAG_SCORE])
    except (KeyError, ValueError, TypeError):
        recorded = score
    note = None
    if not math.isclose(recorded, score, rel_tol=1e-9, abs_tol=1e-12):
        note = (f"{model_path} is already registered as {name} version {mv.version} with score {recorded:.6g}; "
                f"the new evaluation's score {score:.6g} was not applied (the record is kept as it was)")
        log.warning("%s", note)
    return {"name": name, "version": int(mv.version), "uri": f"models:/{name}/{mv.version}",
            "source_sha256": digest, "created": False, "run_id": mv.run_id, "score": recorded, "note": note}


def get_champion(name: str = DEFAULT_MODEL_NAME) -> Any | None:
    """The model version holding the `champion` alias, or None."""
    import mlflow
    from mlflow import MlflowClient

    configure()
    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def version_score(name: str, version: int | str) -> float:
    from mlflow import MlflowClient

    mv = MlflowClient().get_model_version(name, str(version))
    try:
        return float(mv.tags[TAG_SCORE])
    except (KeyError, ValueError):
        raise UserError(f"models:/{name}/{version}: no {TAG_SCORE} tag; it was not registered by salnas") from None


def beats_champion(score: float, champion_score: float | None, protocol: str | None = None,
                   champion_protocol: str | None = None) -> bool:
    """THE champion rule (the pipeline's gate and `promote_if_better` both apply it): a candidate
    takes the alias only with a strictly lower validation selection score (lower is better) measured
    under the champion's protocol (scores under different protocols are not comparable); a tie
    keeps the champion; with no champion (None) any finite score wins."""
    if champion_score is None:
        return True
    if protocol is not None and champion_protocol is not None and protocol != champion_protocol:
        return False
    return float(score) < float(champion_score)


def version_protocol(name: str, version: int | str) -> str | None:
    """The evaluation protocol a version's score was measured under (None: registered before protocols)."""
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(name, str(version)).tags.get(TAG_PROTOCOL)


def promote_if_better(name: str, version: int | str) -> dict[str, Any]:
    """The gate: move `champion` to `version` only if its validation score beats the champion's.

    Lower is better; a tie keeps the current champion. Returns {"promoted", "version", "score",
    "previous", "previous_score", "reason"}.
    """
    from mlflow import MlflowClient

    configure()
    score = version_score(name, version)
    cur = get_champion(name)
    out: dict[str, Any] = {"version": int(version), "score": score, "previous": None, "previous_score": None}
    if cur is not None:
        out.update(previous=int(cur.version), previous_score=version_score(name, cur.version))
        if int(cur.version) == int(version):
            return {**out, "promoted": False, "reason": f"version {version} is already the champion"}
        mine, theirs = version_protocol(name, version), version_protocol(name, cur.version)
        if mine is not None and theirs is not None and mine != theirs:
            return {**out, "promoted": False,
                    "reason": f"measured under another protocol ({mine}) than champion v{cur.version} ({theirs}): "
                              f"scores are not comparable; registered without the alias"}
        if not beats_champion(score, out["previous_score"]):
            return {**out, "promoted": False,
                    "reason": f"score {score:.4f} does not beat champion v{cur.version} "
                              f"({out['previous_score']:.4f}; lower is better)"}
    MlflowClient().set_registered_model_alias(name, CHAMPION, str(version))
    why = "no champion yet" if cur is None else f"beats v{cur.version} ({out['previous_score']:.4f})"
    return {**out, "promoted": True, "reason": f"score {score:.4f} {why}"}


def load_champion(name: str = DEFAULT_MODEL_NAME) -> Any:
    """The champion as an mlflow pyfunc model: `.predict(uint8 (N, H, W, 3)) -> (N, H, W)`."""
    import mlflow.pyfunc

    configure()
    return mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION}")
