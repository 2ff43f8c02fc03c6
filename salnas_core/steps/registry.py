"""The one list of pipeline steps: each step's interface, once.

`salnas <step>` (salnas_core.cli), both Kubeflow component forms (components.factory), the
pipeline (pipelines/), and the DVC stages (dvc.yaml, written by salnas_core.steps.dvc_stages)
are all built from these rows. When a step's interface changes, change its row here and the
keywords of its module's `run()`; nothing else.
"""
from __future__ import annotations

from .spec import Art, OutParam, Param, StepDef

_DEVICE = Param("device", str, "--device", default="cpu",
                help="torch device: cpu | cuda | auto (the default on the command line and in DVC: cuda when present)")
_FORCE = Param("force", bool, action="store_true", default=False, kfp=False,
               help="run again even if OUT is complete for these params")
_RESUME = Param("resume", bool, action="store_true", default=False, kfp=False,
                help="continue from OUT's checkpoints/last.pt")

STEPS: tuple[StepDef, ...] = (
    StepDef(
        name="snapshot", module="salnas_core.steps.snapshot", pipeline=False,
        description="The raw data the pipeline versions: ../shared/data/<dataset> copied, or a generated dataset.",
        outputs=(Art("raw", "Dataset", "--out", help="raw snapshot folder (OUT/<dataset>/)"),),
        params=(Param("dataset", str, "--dataset", default=None, kfp=False,
                      help="osie | nus_scene | synthetic (default: params data.dataset)"),),
        section="data",
    ),
    StepDef(
        name="ingest", module="salnas_core.steps.ingest", section="ingest", progress=True,
        description="Read, validate and preprocess a saliency dataset (salnas ingest).",
        outputs=(Art("data", "Dataset", "--out", help="output folder; the dataset goes to OUT/<name>/"),),
        params=(Param("source", str, "--source", help="dataset folder or s3://bucket/prefix"),
                Param("fmt", str, "--format", default="shared_json",
                      help="reader: shared_json, osie, salicon, mit1003, cat2000, pascal_s, dut_omron, fiwi, "
                           "toronto, nus_scene"),
                Param("limit", int, "--limit", default=0, unset=0,       # 0: every image
                      help="ingest only the first N images (sorted by id; default: params ingest.limit)"),
                Param("name", str, "--name", default=None, kfp=False,
                      help="dataset name (default: from the format, or the source folder name)"),
                Param("working_size", int, "--working-size", default=None, kfp=False, nargs=2,
                      help="H W (default: params ingest.working_size)"),
                Param("protocol", str, "--protocol", default="", unset="", choices=("mit", "authors"),
                      help="sigmas, splits and scoring size: mit (MIT benchmark) or authors (the SalNAS "
                           "authors' code; docs/datasets.md); default: params ingest.protocol")),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="train-supernet", module="salnas_core.steps.train_supernet", section="train_supernet", gpu=True,
        distributed=True, progress=True,
        description="Train the weight-sharing supernet with the sandwich rule and Self-KD (salnas train-supernet).",
        inputs=(Art("data", "Dataset", "--data", help="ingested dataset folder (salnas ingest --out)"),),
        outputs=(Art("supernet", "Model", "--out",
                     help="run folder (supernet.pt, best.pt, checkpoints/, metrics.json, plots/)"),),
        params=(Param("preset", str, "--preset", default="cpu"),
                Param("epochs", int, "--epochs", default=0, unset=0,       # 0: params.yaml's
                      help="override params train_supernet.epochs"),
                Param("self_kd", bool, "--no-self-kd", action="store_false", default=None, kfp=False,
                      help="train without Self-KD (ablation)"),
                Param("init", str, "--init", default=None, kfp=False, nargs=2,
                      help="KIND PATH: start the encoder from a checkpoint; alphanet: an AlphaNet ImageNet "
                           "supernet (`salnas` space; params train_supernet.init: alphanet:PATH)"),
                Param("init_supernet", str, "--init-supernet", default=None, kfp=False,
                      help="start every weight from this trained supernet.pt (same space): fine-tune it on "
                           "--data (params train_supernet.init_supernet)"),
                _RESUME, _FORCE),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="search", module="salnas_core.steps.search", section="search", gpu=True, progress=True,
        description="Evolutionary search of subnets under cost constraints, one per budget (salnas search).",
        inputs=(Art("supernet", "Model", "--supernet", help="train-supernet run folder (or a supernet.pt file)"),
                Art("data", "Dataset", "--data", help="ingested dataset folder")),
        outputs=(Art("search", "Artifact", "--out",
                     help="search folder (candidates.json, pareto.json/png, variants.json)"),),
        # budgets: which named variants of params.yaml `search.budgets` to search (search.variants);
        # constraints: global limits for every budget (max_gmacs, max_mparams, max_latency_ms)
        params=(Param("preset", str, "--preset", default="cpu"),
                Param("budgets", list, style="set", key="variants", default=["XL", "M"]),
                Param("constraints", dict, style="set", default={}),
                _DEVICE, _FORCE),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="variants", module="salnas_core.steps.variants",
        description="The variants the search found, of the budgets asked for (the ParallelFor items).",
        inputs=(Art("search", "Artifact", "--search", help="search output folder (variants.json)"),),
        params=(Param("budgets", list, "--budgets", default=["XL", "M"], help="YAML list of the budgets asked for"),),
        out_params=(OutParam("names", list, "--names-out", returned=True),),
    ),
    StepDef(
        name="distill", module="salnas_core.steps.distill", section="distill", gpu=True, progress=True,
        description="Fine-tune one chosen subnet as a static network with Self-KD (salnas distill).",
        inputs=(Art("search", "Artifact", "--variants", suffix="/variants.json",
                    help="SEARCH_DIR/variants.json (or SEARCH_DIR)"),
                Art("supernet", "Model", "--supernet", help="train-supernet run folder (or supernet.pt)"),
                Art("data", "Dataset", "--data", help="ingested dataset folder")),
        outputs=(Art("model", "Model", "--out", help="distill folder: OUT/<variant>/model.pt, metrics.json, plots/"),),
        params=(Param("variant", str, "--variant", help="distill only this variant (default: all)",
                      default=None),
                Param("preset", str, "--preset", default="cpu"),
                Param("epochs", int, style="set", default=0, unset=0),      # 0: params.yaml's
                _DEVICE,
                Param("self_kd", bool, "--no-self-kd", action="store_false", default=None, kfp=False,
                      help="fine-tune on the ground truth only (ablation)"),
                _RESUME, _FORCE),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="evaluate", module="salnas_core.steps.evaluate", section="evaluate", progress=True,
        description="Saliency metrics and efficiency of a distilled model (salnas evaluate).",
        inputs=(Art("model", "Model", "--models", help="distill folder (DISTILL_DIR/<variant>/model.pt)"),
                Art("data", "Dataset", "--data", repeat=True, help="ingested dataset folder; repeat for more"),
                Art("search", "Artifact", "--search", required=False,
                    help="search folder, to add each variant's search costs")),
        outputs=(Art("evaluation", "Artifact", "--out", help="evaluate folder (metrics.json/.md, efficiency.json/.md)"),),
        params=(Param("preset", str, "--preset", default="cpu"),
                _DEVICE,
                Param("variant", str, "--variant", default=None, kfp=False, help="only this variant"),
                Param("efficiency", bool, "--no-efficiency", action="store_false", default=True, kfp=False,
                      help="skip the efficiency report")),
        extra_args=("--no-progress",),
    ),
    StepDef(
        name="publish", module="salnas_core.steps.publish", container=False,
        description="One variant's evaluation for the Kubeflow UI: its metrics table as KFP Metrics, the report "
                    "page as HTML (salnas publish).",
        inputs=(Art("evaluation", "Artifact", "--evaluation", help="evaluate folder (metrics.json, efficiency.json)"),
                Art("search", "Artifact", "--search", required=False, help="search folder (Pareto front)")),
        outputs=(Art("metrics", "Metrics", "--metrics-out", help="JSON file {name: value} (KFP Metrics)"),
                 Art("report", "HTML", "--report-out", help="the HTML page (salnas report)")),
    ),
    StepDef(
        name="gate", module="salnas_core.steps.gate", container=False, section="register",
        description="Pick the best evaluated variant and compare it with the registry's champion.",
        inputs=(Art("models", "Model", "--models", is_list=True, help="distill outputs, one per budget"),
                Art("evaluations", "Artifact", "--evaluations", is_list=True, help="evaluate outputs, same order")),
        outputs=(Art("candidate", "Model", "--out", help="candidate folder for `salnas register`"),),
        params=(Param("model_name", str, "--model-name", default="salnas", help="registered model name"),),
        # returned: kfp.local resolves a dsl.If condition on a task's return value only
        out_params=(OutParam("beats_champion", bool, "--beats-out", returned=True),
                    OutParam("candidate_score", float, "--score-out")),
    ),
    StepDef(
        name="register", module="salnas_core.steps.register", section="register",
        description="Register the candidate in the MLflow registry and move the champion alias (salnas register).",
        # the gate's candidate folder holds <variant>/model.pt and metrics.json: both flags point at it
        inputs=(Art("candidate", "Model", "--models", also=(("--evaluate", ""),),
                    help="distilled models (<variant>/model.pt) / the evaluate folder (metrics.json)"),
                Art("data", "Dataset", "--data", help="ingested dataset (its manifest version is recorded)")),
        outputs=(Art("registration", "Artifact", "--out", help="writes registered.json here"),),
        params=(Param("model_name", str, "--name", dest="name", default="salnas",
                      help="registered model name (default: params register.model_name)"),),
    ),
)

_BY_NAME = {d.name: d for d in STEPS}


def get_step(name: str) -> StepDef:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no pipeline step {name!r} (have: {sorted(_BY_NAME)})") from None


def pipeline_steps() -> tuple[StepDef, ...]:
    """The steps that are Kubeflow components."""
    return tuple(d for d in STEPS if d.pipeline)
