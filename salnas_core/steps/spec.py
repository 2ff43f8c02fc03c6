"""The vocabulary of a step definition: artifacts in and out, parameters, output parameters.

A `StepDef` is the one place a pipeline step's interface is written down. From it:
- `salnas_core.cli` builds the step's argparse (`StepDef.add_arguments`) and calls `run(**kwargs)`;
- `components.factory` generates both Kubeflow component forms, `components.runtime` the argv of
  the lightweight form (`StepDef.argv`);
- `salnas_core.steps.dvc_stages` writes the DVC stage (`dvc.yaml`).
So a flag is named once. No kfp, torch or argparse import at module level: importing the
registry is cheap.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# KFP artifact classes a step may use (names in kfp.dsl)
ARTIFACT_KINDS = ("Artifact", "Dataset", "Model", "Metrics", "HTML")
_REQUIRED = object()


def yaml_value(text: str) -> Any:
    """A command-line value read as YAML (lists, mappings, numbers, booleans)."""
    import yaml

    return yaml.safe_load(text)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Art:
    """An artifact: a folder (or file) the step reads or writes at `path + suffix`."""

    name: str
    kind: str = "Artifact"
    flag: str | None = None          # CLI flag; None: not passed (e.g. an input only for ordering)
    suffix: str = ""                 # e.g. "/variants.json": a file inside the artifact folder
    is_list: bool = False            # a dsl.Collected fan-in (lightweight form only)
    also: tuple[tuple[str, str], ...] = ()   # more (flag, suffix) pairs for the same artifact
    help: str = ""
    required: bool = True            # on the command line (a pipeline always passes it)
    repeat: bool = False             # CLI: the flag may be given several times (a list of paths)

    @property
    def flags(self) -> tuple[tuple[str, str], ...]:
        return (((self.flag, self.suffix),) if self.flag else ()) + self.also

    def __post_init__(self) -> None:
        if self.kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact {self.name}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Param:
    """A parameter of the step's `run()`.

    `unset`: a value meaning "not given, use params.yaml"; the flag is then left out of the argv.
    `style="set"` passes it as `--set KEY=<json>` (a params.yaml key, validated like any --set).
    `kfp=False`: a command-line option only (resume, force, ...), not a component input.
    `action`: "store_true" / "store_false" for switches (command line only)."""

    name: str
    type: type
    flag: str | None = None
    default: Any = _REQUIRED
    unset: Any = _REQUIRED
    style: str = "flag"              # "flag": FLAG VALUE | "set": --set KEY=JSON
    key: str | None = None           # the params.yaml key for style="set" (default: name)
    help: str = ""
    kfp: bool = True
    action: str | None = None
    dest: str | None = None          # run()'s keyword (default: name)
    nargs: int | str | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def has_unset(self) -> bool:
        return self.unset is not _REQUIRED

    @property
    def cli_flag(self) -> str:
        return self.flag or f"--{self.name.replace('_', '-')}"

    def render(self, value: Any) -> list[str]:
        """argv for one value (the lightweight form; the container form mirrors it in placeholders)."""
        if self.has_unset and value == self.unset:
            return []
        if self.style == "set":
            return ["--set", f"{self.key or self.name}={json.dumps(value)}"]
        if self.type is bool:
            raise TypeError(f"{self.name}: bool flags cannot be rendered in a container command; use style='set'")
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        if self.nargs is not None and isinstance(value, (list, tuple)):
            return [self.cli_flag, *[str(v) for v in value]]
        return [self.cli_flag, text]


@dataclass(frozen=True)
class OutParam:
    """A scalar output: the step writes its value (JSON text) into the file given by `flag`.

    `returned`: the lightweight form *returns* it (KFP names it "Output"), because kfp.local can
    fan a ParallelFor out over a task's return value only; the container form keeps `name`."""

    name: str
    type: type
    flag: str
    returned: bool = False


@dataclass(frozen=True)
class StepDef:
    """One pipeline step: its interface, the module whose `run()` does it, its params section."""

    name: str                                # command and component name, e.g. "train-supernet"
    module: str                              # e.g. "salnas_core.steps.train_supernet" (has run())
    description: str
    inputs: tuple[Art, ...] = ()
    outputs: tuple[Art, ...] = ()
    params: tuple[Param, ...] = ()
    out_params: tuple[OutParam, ...] = ()
    section: str | None = None               # its params.yaml section: --params/--preset/--set
    progress: bool = False                   # has a progress bar: --no-progress
    gpu: bool = False                        # gets the accelerator settings on a cluster
    distributed: bool = False                # runs under torchrun, one process per GPU (DDP)
    container: bool = True                   # False: the lightweight form is used on a cluster too
    extra_args: tuple[str, ...] = field(default=())  # fixed flags in components, e.g. ("--no-progress",)
    pipeline: bool = True                    # a Kubeflow component (False: CLI/DVC only)

    @property
    def command(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def func_name(self) -> str:
        return self.name.replace("-", "_")

    @property
    def kfp_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.kfp)

    @property
    def returned(self) -> "OutParam | None":
        r = [o for o in self.out_params if o.returned]
        if len(r) > 1:
            raise ValueError(f"{self.name}: at most one returned output parameter")
        return r[0] if r else None

    def output_key(self, name: str, form: str) -> str:
        """The KFP output name of output parameter `name` in component form `form`."""
        r = self.returned
        python_form = form == "python" or not self.container  # container=False: python in both
        return "Output" if (python_form and r is not None and r.name == name) else name

    def argv(self, values: dict[str, Any]) -> list[str]:
        """The CLI argv (after `salnas`) for concrete values: artifact inputs/outputs are paths
        (lists of paths for `is_list`), output parameters are file paths."""
        out: list[str] = [*self.command]
        for a in (*self.inputs, *self.outputs):
            if a.name not in values and not a.required:
                continue
            v = values[a.name]
            paths = v if a.is_list else [v]
            for flag, suffix in a.flags:
                out += [flag, *[f"{p}{suffix}" for p in paths]]
        for p in self.kfp_params:
            out += p.render(values[p.name] if p.name in values else p.default)
        for o in self.out_params:
            if o.name in values:
                out += [o.flag, str(values[o.name])]
        return out + list(self.extra_args)

    # ------------------------------------------------------------------ the command line

    def add_arguments(self, parser: Any) -> None:
        """This step's argparse: one option per artifact flag, parameter and output parameter,
        plus --params/--preset/--set for a step with a params section and --no-progress."""
        for a in (*self.inputs, *self.outputs):
            for i, (flag, _suffix) in enumerate(a.flags):
                kw: dict[str, Any] = {"dest": _dest(flag), "help": a.help or f"{a.kind.lower()} {a.name}"}
                if a.is_list:
                    kw["nargs"] = "+"
                elif a.repeat:
                    kw["action"] = "append"
                kw["required"] = a.required
                if not a.required:
                    kw["default"] = None
                parser.add_argument(flag, **kw)
        for p in self.params:
            if p.style == "set" or (self.section and p.cli_flag == "--preset"):
                continue  # a params key (given with --set KEY=VALUE), or the common --preset below
            kw = {"dest": p.dest or p.name, "help": p.help}
            if p.action:
                kw["action"] = p.action
                kw["default"] = None if p.required else p.default
            else:
                # not given -> None -> run()'s own default (params.yaml); YAML for lists and dicts
                kw["type"] = yaml_value if p.type in (list, dict) else p.type
                if p.nargs is not None:
                    kw["nargs"] = p.nargs
                if p.choices:
                    kw["choices"] = p.choices
                if p.required:
                    kw["required"] = True
                else:
                    kw["default"] = None
            parser.add_argument(p.cli_flag, **kw)
        for o in self.out_params:
            parser.add_argument(o.flag, dest=o.name, default=None, help=f"file to write {o.name} into (JSON)")
        if self.section:
            parser.add_argument("--params", dest="params_path", default=None, metavar="FILE",
                                help="params file (default: $SALNAS_PARAMS, else ./params.yaml)")
            parser.add_argument("--preset", default=None, metavar="NAME",
                                help="merge a named preset over the params section (tiny | cpu | paper)")
            parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                                help=f"override a `{self.section}:` key of the params file (YAML value; "
                                     "dotted keys nest: latency.mode=measure); unknown keys are refused")
        if self.progress:
            parser.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                                help="no progress bar (none anyway when stderr is not a terminal)")
