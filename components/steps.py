"""The definition table: one row per pipeline step, mirroring its CLI flags.

Both component forms and the lightweight argv come from these rows (components.factory,
components.runtime). When a step's CLI changes, change its row here and nothing else.
"""
from __future__ import annotations

from .spec import Art, OutParam, Param, StepDef

STEPS: tuple[StepDef, ...] = (
    StepDef(
        name="ingest", command=("ingest",),
        description="Read, validate and preprocess a saliency dataset (salnas ingest).",
        outputs=(Art("data", "Dataset", "--out"),),
        params=(Param("source", str, "--source"),
                Param("fmt", str, "--format", default="shared_json"),
                Param("limit", int, "--limit", default=0, unset=0)),       # 0: every image
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="train-supernet", command=("train-supernet",), gpu=True,
        description="Train the weight-sharing supernet with the sandwich rule and Self-KD (salnas train-supernet).",
        inputs=(Art("data", "Dataset", "--data"),),
        outputs=(Art("supernet", "Model", "--out"),),
        params=(Param("preset", str, "--preset", default="cpu"),
                Param("epochs", int, "--epochs", default=0, unset=0)),     # 0: the preset's
    ),
    StepDef(
        name="search", command=("search",), gpu=True,
        description="Evolutionary search of subnets under cost constraints, one per budget (salnas search).",
        inputs=(Art("supernet", "Model", "--supernet"), Art("data", "Dataset", "--data")),
        outputs=(Art("search", "Artifact", "--out"),),
        # budgets: which named variants of params.yaml `search.budgets` to search (search.variants);
        # constraints: global limits for every budget (max_gmacs, max_mparams, max_latency_ms)
        params=(Param("preset", str, "--preset", default="cpu"),
                Param("budgets", list, style="set", key="variants", default=["XL", "M"]),
                Param("constraints", dict, style="set", default={}),
                Param("device", str, "--device", default="cpu")),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="variants", command=("variants",),
        description="The variants the search found, of the budgets asked for (the ParallelFor items).",
        inputs=(Art("search", "Artifact", "--search"),),
        params=(Param("budgets", list, "--budgets", default=["XL", "M"]),),
        out_params=(OutParam("names", list, "--names-out", returned=True),),
    ),
    StepDef(
        name="distill", command=("distill",), gpu=True,
        description="Fine-tune one chosen subnet as a static network with Self-KD (salnas distill).",
        inputs=(Art("search", "Artifact", "--variants", suffix="/variants.json"),
                Art("supernet", "Model", "--supernet"), Art("data", "Dataset", "--data")),
        outputs=(Art("model", "Model", "--out"),),
        params=(Param("variant", str, "--variant"),
                Param("preset", str, "--preset", default="cpu"),
                Param("epochs", int, style="set", default=0, unset=0),      # 0: the preset's
                Param("device", str, "--device", default="cpu")),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="evaluate", command=("evaluate",),
        description="Saliency metrics and efficiency of a distilled model (salnas evaluate).",
        inputs=(Art("model", "Model", "--models"), Art("data", "Dataset", "--data"),
                Art("search", "Artifact", "--search")),
        outputs=(Art("evaluation", "Artifact", "--out"),),
        params=(Param("preset", str, "--preset", default="cpu"),
                Param("device", str, "--device", default="cpu")),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="gate", command=("gate",), container=False,
        description="Pick the best evaluated variant and compare it with the registry's champion.",
        inputs=(Art("models", "Model", "--models", is_list=True),
                Art("evaluations", "Artifact", "--evaluations", is_list=True)),
        outputs=(Art("candidate", "Model", "--out"),),
        params=(Param("model_name", str, "--model-name", default="salnas"),),
        # returned: kfp.local resolves a dsl.If condition on a task's return value only
        out_params=(OutParam("beats_champion", bool, "--beats-out", returned=True),
                    OutParam("candidate_score", float, "--score-out")),
    ),
    StepDef(
        name="register", command=("register",),
        description="Register the candidate in the MLflow registry and move the champion alias (salnas register).",
        # the gate's candidate folder holds <variant>/model.pt and metrics.json: both flags point at it
        inputs=(Art("candidate", "Model", "--models", also=(("--evaluate", ""),)), Art("data", "Dataset", "--data")),
        outputs=(Art("registration", "Artifact", "--out"),),
        params=(Param("model_name", str, "--name", default="salnas"),),
    ),
)

_BY_NAME = {d.name: d for d in STEPS}


def get_step(name: str) -> StepDef:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no pipeline step {name!r} (have: {sorted(_BY_NAME)})") from None
