"""Both KFP component forms of a step, generated from its `StepDef`.

- container form: `salnas <step> --flag <artifact path> ...` over the project image (what a
  Kubeflow cluster runs; `kfp.local` cannot run it);
- lightweight form: a Python function that calls the same CLI in-process through
  `components.runtime.run_step` (what `kfp.local.SubprocessRunner` runs; on a cluster it runs in
  the same project image).

KFP reads a component's interface from a function signature and ships a lightweight component's
*source*, so we generate that source from the definition, register it with `linecache` (so
`inspect.getsource` finds it) and exec it. One signature, two bodies.
"""
from __future__ import annotations

import itertools
import json
import linecache
import os
import re
import shlex
from typing import Any, Callable

from salnas_core.errors import UserError
from salnas_core.steps.spec import Art, OutParam, Param, StepDef

# One project image for every step: `--image`, else $SALNAS_IMAGE, else this repository tagged
# with the git commit (what `docker build -t ...:$(git rev-parse --short=12 HEAD)` produces).
IMAGE_REPOSITORY = "ghcr.io/salnas/salnas"
FORMS = ("container", "python")
# Every component takes the Kubeflow run id (the pipeline passes dsl.PIPELINE_JOB_ID_PLACEHOLDER);
# the step sees it as $SALNAS_KFP_RUN_ID, and its MLflow run nests under the run's parent.
RUN_ID_INPUT = "kfp_run_id"
RUN_ID_ENV = "SALNAS_KFP_RUN_ID"
RUN_ID_FLAG = "--kfp-run-id"
_counter = itertools.count()
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_tag(ref: str) -> str | None:
    """The tag of an image reference (None: untagged); a digest reference returns its digest."""
    if _DIGEST.search(ref):
        return ref.rsplit("@", 1)[1]
    last = ref.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def is_immutable(ref: str) -> bool:
    """A digest, or a tag other than `latest` (a tag can still be re-pushed: prefer digests)."""
    tag = image_tag(ref)
    return tag is not None and tag != "latest"


def check_image(ref: str, allow_mutable: bool = False) -> str:
    """Refuse an untagged or `:latest` image for a cluster run (the run could not be reproduced)."""
    if not ref:
        raise UserError("no project image: give --image REPO:TAG or REPO@sha256:DIGEST (or set SALNAS_IMAGE)")
    if not is_immutable(ref) and not allow_mutable:
        raise UserError(f"image {ref!r} is mutable ({'untagged' if image_tag(ref) is None else ':latest'}): "
                        "reference it by digest (REPO@sha256:...) or by a release / git-commit tag "
                        "(REPO:<git rev-parse --short=12 HEAD>), or pass --allow-mutable-image")
    return ref


def default_image() -> str:
    """$SALNAS_IMAGE, else IMAGE_REPOSITORY:<git commit, 12 hex> of a clean checkout; a dirty or
    unknown tree has no image it could match: UserError (give --image)."""
    if os.environ.get("SALNAS_IMAGE"):
        return os.environ["SALNAS_IMAGE"]
    from salnas_core.tracking.mlflow_utils import git_commit

    commit = git_commit()
    if commit in ("", "unknown") or commit.endswith("-dirty"):
        raise UserError(f"no --image and no SALNAS_IMAGE, and the checkout's commit is {commit!r} (no image is "
                        "tagged with uncommitted changes): build and push the image, then give "
                        "--image REPO@sha256:DIGEST or REPO:TAG")
    return f"{IMAGE_REPOSITORY}:{commit[:12]}"


DEFAULT_IMAGE = os.environ.get("SALNAS_IMAGE", f"{IMAGE_REPOSITORY}:dev")  # a label only for kfp.local


def _json_text(v: Any) -> str:
    """How KFP renders a parameter value into a placeholder: JSON for lists/dicts/bools."""
    return json.dumps(v) if isinstance(v, (list, dict, bool)) else str(v)


def _unset_word(p: Param) -> str:
    """The one argv word a parameter renders to when it holds its `unset` value."""
    if p.style == "set":
        return f"--set={p.key or p.name}={_json_text(p.unset)}"
    return f"{p.flag or '--' + p.name.replace('_', '-')}={_json_text(p.unset)}"


def _type_src(t: type) -> str:
    return {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}[t]


def _art_annotation(a: Art, direction: str) -> str:
    inner = f"List[{a.kind}]" if a.is_list else a.kind
    return f"{direction}[{inner}]"


def signature_src(defn: StepDef, form: str = "container") -> str:
    """`name(arg: Type, ...)` for both forms; required arguments first, as Python wants. The
    python form returns its `returned` output parameter instead of taking an OutputPath."""
    parts: list[str] = []
    for a in defn.inputs:
        parts.append(f"{a.name}: {_art_annotation(a, 'Input')}")
    for a in defn.outputs:
        parts.append(f"{a.name}: {_art_annotation(a, 'Output')}")
    ret = defn.returned if form == "python" else None
    for o in defn.out_params:
        if o is not ret:
            parts.append(f"{o.name}: OutputPath({_type_src(o.type)})")
    required = [p for p in defn.kfp_params if p.required]
    optional = [p for p in defn.kfp_params if not p.required]
    for p in required:
        parts.append(f"{p.name}: {_type_src(p.type)}")
    for p in optional:
        parts.append(f"{p.name}: {_type_src(p.type)} = {p.default!r}")
    parts.append(f"{RUN_ID_INPUT}: str = ''")  # every form: the Kubeflow run id (empty: none)
    returns = f" -> {_type_src(ret.type)}" if ret is not None else ""
    return f"{defn.func_name}({', '.join(parts)}){returns}"


def _exec_source(src: str, defn: StepDef, extra: dict[str, Any]) -> Callable:
    from typing import List, NamedTuple  # noqa: F401 (used by generated annotations)

    from kfp import dsl
    from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output, OutputPath

    filename = f"<salnas-component-{defn.name}-{next(_counter)}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns: dict[str, Any] = {"dsl": dsl, "Input": Input, "Output": Output, "OutputPath": OutputPath,
                          "Artifact": Artifact, "Dataset": Dataset, "Model": Model, "Metrics": Metrics,
                          "HTML": HTML, "List": List, "NamedTuple": NamedTuple, **extra}
    exec(compile(src, filename, "exec", dont_inherit=True), ns)  # real annotations, not strings
    return ns[defn.func_name]


def python_source(defn: StepDef) -> str:
    """The lightweight component's source: the signature, and a body that calls the CLI."""
    ret = defn.returned
    names = [a.name for a in (*defn.inputs, *defn.outputs)] + \
            [o.name for o in defn.out_params if o is not ret] + [p.name for p in defn.kfp_params]
    kwargs = ", ".join(f"{n}={n}" for n in names)
    doc = defn.description.replace('"""', "'")
    return (f"def {signature_src(defn, 'python')}:\n"
            f'    """{doc}"""\n'
            f"    from components.runtime import run_step\n"
            f"    {'return ' if ret is not None else ''}run_step({defn.name!r}, {kwargs}, {RUN_ID_INPUT}={RUN_ID_INPUT})\n")


def python_component(defn: StepDef, base_image: str | None = None):
    """The lightweight form (kfp.local's SubprocessRunner runs it in this interpreter)."""
    from kfp import dsl

    func = _exec_source(python_source(defn), defn, {})
    # The project image already has kfp and salnas: no pip install at run time.
    return dsl.component(func, base_image=base_image or DEFAULT_IMAGE, install_kfp_package=False)


def _placeholder_args(defn: StepDef, ph: dict[str, Any]) -> list[Any]:
    """The container argv, mirroring StepDef.argv with KFP placeholders."""
    from kfp import dsl

    args: list[Any] = [dsl.ConcatPlaceholder([f"{RUN_ID_FLAG}=", ph[RUN_ID_INPUT]])]  # read by the launcher
    for a in (*defn.inputs, *defn.outputs):
        if a.flags and a.is_list:
            raise ValueError(f"{defn.name}: list artifact {a.name!r} has no container form")
        for flag, suffix in a.flags:
            path = ph[a.name].path
            args += [flag, dsl.ConcatPlaceholder([path, suffix]) if suffix else path]
    for p in defn.kfp_params:
        v = ph[p.name]
        if p.style == "set" and p.has_unset:  # one word, so the launcher can drop it
            args.append(dsl.ConcatPlaceholder([f"--set={p.key or p.name}=", v]))
        elif p.style == "set":
            args += ["--set", dsl.ConcatPlaceholder([f"{p.key or p.name}=", v])]
        else:
            flag = p.flag or f"--{p.name.replace('_', '-')}"
            # `--flag=VALUE` in one word, so the launcher script can drop it when VALUE is `unset`
            args.append(dsl.ConcatPlaceholder([f"{flag}=", v]) if p.has_unset else [flag, v])
    for o in defn.out_params:
        args += [o.flag, ph[o.name]]
    return [x for a in args for x in (a if isinstance(a, list) else [a])] + list(defn.extra_args)


def torchrun_prefix(nproc: int) -> list[str]:
    """One node, `nproc` processes (one per GPU): torchrun sets RANK/LOCAL_RANK/WORLD_SIZE, the
    trainer joins the group (salnas_core.train.distributed) and rank 0 writes the outputs."""
    return ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={nproc}", "--no-python"]


def launcher_command(defn: StepDef, nproc: int = 1) -> list[str]:
    """A POSIX sh line that exports `--kfp-run-id=ID` as $SALNAS_KFP_RUN_ID, drops `--flag=<unset>`
    words (KFP placeholders cannot leave an argument out depending on its value), and execs
    `salnas <step> "$@"`, under torchrun with `nproc` processes for a distributed step."""
    cli = ["salnas", *defn.command]
    if nproc > 1:
        if not defn.distributed:
            raise ValueError(f"{defn.name} runs one process: it cannot use {nproc} processes")
        cli = torchrun_prefix(nproc) + cli
    drops = [shlex.quote(_unset_word(p)) for p in defn.kfp_params if p.has_unset]
    cases = f'{RUN_ID_FLAG}=*) export {RUN_ID_ENV}="${{a#{RUN_ID_FLAG}=}}";; '
    if drops:
        cases += "|".join(drops) + ") ;; "
    script = (f'for a do shift; case "$a" in {cases}*) set -- "$@" "$a";; esac; done; '
              f'exec {" ".join(cli)} "$@"')
    return ["sh", "-c", script, defn.name]


def container_component(defn: StepDef, image: str | None = None, nproc: int = 1):
    """The container form over the project image (`nproc` > 1: under torchrun, one process per GPU)."""
    from kfp import dsl

    if not defn.container:
        return python_component(defn, base_image=image)
    image = image or DEFAULT_IMAGE
    names = [a.name for a in (*defn.inputs, *defn.outputs)] + [o.name for o in defn.out_params] + \
            [p.name for p in defn.kfp_params] + [RUN_ID_INPUT]
    src = (f"def {signature_src(defn)}:\n"
           f'    """{defn.description}"""\n'
           f"    return _spec({{{', '.join(f'{n!r}: {n}' for n in names)}}})\n")

    def _spec(ph: dict[str, Any]):
        return dsl.ContainerSpec(image=image, command=launcher_command(defn, nproc), args=_placeholder_args(defn, ph))

    return dsl.container_component(_exec_source(src, defn, {"_spec": _spec}))


def build_components(form: str = "container", image: str | None = None, steps=None,
                     nproc: dict[str, int] | None = None) -> dict[str, Any]:
    """{step name: component} for every step in the table, in one form; `nproc`: {step: processes}
    for distributed steps of the container form (one per GPU the task requests)."""
    from salnas_core.steps.registry import pipeline_steps

    if form not in FORMS:
        raise ValueError(f"component form must be one of {FORMS}, got {form!r}")
    nproc = nproc or {}
    if form == "container":
        return {d.name: container_component(d, image, nproc.get(d.name, 1)) for d in (steps or pipeline_steps())}
    return {d.name: python_component(d, image) for d in (steps or pipeline_steps())}


__all__ = ["Art", "OutParam", "Param", "StepDef", "build_components", "container_component",
           "python_component", "launcher_command", "signature_src", "DEFAULT_IMAGE", "FORMS", "check_image",
           "default_image", "RUN_ID_INPUT", "RUN_ID_ENV"]


def container_source(defn: StepDef, image: str | None = None) -> str:
    """The container form as readable Python (what `container_component` builds): a reader sees
    the image, the command and every argument with its KFP placeholder."""
    if not defn.container:
        return python_source(defn)
    image = image or DEFAULT_IMAGE
    args: list[str] = [f"dsl.ConcatPlaceholder([{f'{RUN_ID_FLAG}='!r}, {RUN_ID_INPUT}])"]
    for a in (*defn.inputs, *defn.outputs):
        for flag, suffix in a.flags:
            path = f"{a.name}.path"
            args += [repr(flag), f"dsl.ConcatPlaceholder([{path}, {suffix!r}])" if suffix else path]
    for p in defn.kfp_params:
        key = p.key or p.name
        if p.style == "set" and p.has_unset:
            args.append(f"dsl.ConcatPlaceholder([{f'--set={key}='!r}, {p.name}])")
        elif p.style == "set":
            args += ["'--set'", f"dsl.ConcatPlaceholder([{f'{key}='!r}, {p.name}])"]
        elif p.has_unset:
            args.append(f"dsl.ConcatPlaceholder([{f'{p.cli_flag}='!r}, {p.name}])")
        else:
            args += [repr(p.cli_flag), p.name]
    for o in defn.out_params:
        args += [repr(o.flag), o.name]
    args += [repr(x) for x in defn.extra_args]
    body = ",\n            ".join(args)
    return (f"@dsl.container_component\n"
            f"def {signature_src(defn)}:\n"
            f'    """{defn.description}"""\n'
            f"    return dsl.ContainerSpec(\n"
            f"        image={image!r},\n"
            f"        command={launcher_command(defn)!r},\n"
            f"        args=[\n            {body},\n        ])\n")


def component_sources(form: str = "container", image: str | None = None, names: list[str] | None = None) -> str:
    """Every step's component in `form`, as source text (`python -m components`)."""
    from salnas_core.steps.registry import get_step, pipeline_steps

    steps = [get_step(n) for n in names] if names else list(pipeline_steps())
    make = (lambda d: container_source(d, image)) if form == "container" else python_source
    return "\n\n".join(make(d) for d in steps)
