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
import shlex
from typing import Any, Callable

from salnas_core.steps.spec import Art, OutParam, Param, StepDef

# One project image for every step; override with SALNAS_IMAGE or the `image` argument.
DEFAULT_IMAGE = os.environ.get("SALNAS_IMAGE", "ghcr.io/salnas/salnas:latest")
FORMS = ("container", "python")
_counter = itertools.count()


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
            f"    {'return ' if ret is not None else ''}run_step({defn.name!r}, {kwargs})\n")


def python_component(defn: StepDef, base_image: str | None = None):
    """The lightweight form (kfp.local's SubprocessRunner runs it in this interpreter)."""
    from kfp import dsl

    func = _exec_source(python_source(defn), defn, {})
    # The project image already has kfp and salnas: no pip install at run time.
    return dsl.component(func, base_image=base_image or DEFAULT_IMAGE, install_kfp_package=False)


def _placeholder_args(defn: StepDef, ph: dict[str, Any]) -> list[Any]:
    """The container argv, mirroring StepDef.argv with KFP placeholders."""
    from kfp import dsl

    args: list[Any] = []
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


def launcher_command(defn: StepDef) -> list[str]:
    """`salnas <step>` directly, or through a POSIX sh line that drops `--flag=<unset>` words
    (KFP placeholders cannot leave an argument out depending on its value)."""
    cli = ["salnas", *defn.command]
    drops = [shlex.quote(_unset_word(p)) for p in defn.kfp_params if p.has_unset]
    if not drops:
        return cli
    script = ('for a do shift; case "$a" in ' + "|".join(drops) + ') ;; *) set -- "$@" "$a";; esac; done; '
              f'exec {" ".join(cli)} "$@"')
    return ["sh", "-c", script, defn.name]


def container_component(defn: StepDef, image: str | None = None):
    """The container form over the project image."""
    from kfp import dsl

    if not defn.container:
        return python_component(defn, base_image=image)
    image = image or DEFAULT_IMAGE
    names = [a.name for a in (*defn.inputs, *defn.outputs)] + [o.name for o in defn.out_params] + \
            [p.name for p in defn.kfp_params]
    src = (f"def {signature_src(defn)}:\n"
           f'    """{defn.description}"""\n'
           f"    return _spec({{{', '.join(f'{n!r}: {n}' for n in names)}}})\n")

    def _spec(ph: dict[str, Any]):
        return dsl.ContainerSpec(image=image, command=launcher_command(defn), args=_placeholder_args(defn, ph))

    return dsl.container_component(_exec_source(src, defn, {"_spec": _spec}))


def build_components(form: str = "container", image: str | None = None, steps=None) -> dict[str, Any]:
    """{step name: component} for every step in the table, in one form."""
    from salnas_core.steps.registry import pipeline_steps

    if form not in FORMS:
        raise ValueError(f"component form must be one of {FORMS}, got {form!r}")
    make = container_component if form == "container" else (lambda d, image: python_component(d, image))
    return {d.name: make(d, image) for d in (steps or pipeline_steps())}


__all__ = ["Art", "OutParam", "Param", "StepDef", "build_components", "container_component",
           "python_component", "launcher_command", "signature_src", "DEFAULT_IMAGE", "FORMS"]


def container_source(defn: StepDef, image: str | None = None) -> str:
    """The container form as readable Python (what `container_component` builds): a reader sees
    the image, the command and every argument with its KFP placeholder."""
    if not defn.container:
        return python_source(defn)
    image = image or DEFAULT_IMAGE
    args: list[str] = []
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
