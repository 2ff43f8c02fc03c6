"""The vocabulary of a step definition: artifacts in/out, parameters, output parameters.

A `StepDef` says how one pipeline step maps onto its CLI (`salnas <step> --flag ...`). From it
`components.factory` generates both component forms and `components.runtime` builds the argv of
the lightweight form, so a flag is written down exactly once. No kfp import here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# KFP artifact classes a step may use (names in kfp.dsl)
ARTIFACT_KINDS = ("Artifact", "Dataset", "Model", "Metrics", "HTML")
_REQUIRED = object()


@dataclass(frozen=True)
class Art:
    """An artifact: a folder (or file) the CLI reads or writes at `path + suffix`."""

    name: str
    kind: str = "Artifact"
    flag: str | None = None          # CLI flag; None: not passed (e.g. an input only for ordering)
    suffix: str = ""                 # e.g. "/variants.json": a file inside the artifact folder
    is_list: bool = False            # a dsl.Collected fan-in (lightweight form only)
    also: tuple[tuple[str, str], ...] = ()   # more (flag, suffix) pairs for the same artifact

    @property
    def flags(self) -> tuple[tuple[str, str], ...]:
        return (((self.flag, self.suffix),) if self.flag else ()) + self.also

    def __post_init__(self) -> None:
        if self.kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact {self.name}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Param:
    """A parameter. `unset`: a value meaning "not given, use params.yaml/the preset"; the
    flag is then left out. `style="set"` passes it as `--set NAME=<json>` (the steps read YAML)."""

    name: str
    type: type
    flag: str | None = None
    default: Any = _REQUIRED
    unset: Any = _REQUIRED
    style: str = "flag"              # "flag": FLAG VALUE | "set": --set KEY=JSON
    key: str | None = None           # the params.yaml key for style="set" (default: name)

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def has_unset(self) -> bool:
        return self.unset is not _REQUIRED

    def render(self, value: Any) -> list[str]:
        """argv for one value (the lightweight form; the container form mirrors it in placeholders)."""
        if self.has_unset and value == self.unset:
            return []
        if self.style == "set":
            return ["--set", f"{self.key or self.name}={json.dumps(value)}"]
        if self.type is bool:
            raise TypeError(f"{self.name}: bool flags cannot be rendered in a container command; use style='set'")
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        return [self.flag or f"--{self.name.replace('_', '-')}", text]


@dataclass(frozen=True)
class OutParam:
    """A scalar output: the CLI writes its value (JSON text) into the file given by `flag`.

    `returned`: the lightweight form *returns* it (KFP names it "Output"), because kfp.local can
    fan a ParallelFor out over a task's return value only; the container form keeps `name`."""

    name: str
    type: type
    flag: str
    returned: bool = False


@dataclass(frozen=True)
class StepDef:
    """One pipeline step = one CLI command."""

    name: str                                # component name, e.g. "train-supernet"
    command: tuple[str, ...]                 # argv after `salnas`, e.g. ("train-supernet",)
    description: str
    inputs: tuple[Art, ...] = ()
    outputs: tuple[Art, ...] = ()
    params: tuple[Param, ...] = ()
    out_params: tuple[OutParam, ...] = ()
    gpu: bool = False                        # gets the accelerator settings on a cluster
    container: bool = True                   # False: the lightweight form is used on a cluster too
    extra_args: tuple[str, ...] = field(default=())  # fixed flags, e.g. ("--no-progress",)

    @property
    def func_name(self) -> str:
        return self.name.replace("-", "_")

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
            v = values[a.name]
            paths = v if a.is_list else [v]
            for flag, suffix in a.flags:
                out += [flag, *[f"{p}{suffix}" for p in paths]]
        for p in self.params:
            out += p.render(values[p.name] if p.name in values else p.default)
        for o in self.out_params:
            out += [o.flag, str(values[o.name])]
        return out + list(self.extra_args)
