"""Components generated from the definition table: both forms, the same interface, the real CLIs."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from components import factory
from components.runtime import step_argv
from salnas_core.steps.registry import get_step, pipeline_steps
from salnas_core import cli

STEPS = pipeline_steps()
STEP_NAMES = [d.name for d in STEPS]


def _interface(comp) -> tuple[set, set]:
    spec = comp.component_spec
    return set(spec.inputs or {}), set(spec.outputs or {})


@pytest.mark.parametrize("name", STEP_NAMES)
def test_both_forms_share_one_interface(name):
    defn = get_step(name)
    py = factory.python_component(defn, base_image="example.org/salnas:test")
    box = factory.container_component(defn, image="example.org/salnas:test")
    for comp, form in ((py, "python"), (box, "container")):
        ins, outs = _interface(comp)
        # plus the Kubeflow run id every component takes (its MLflow runs nest under the run's parent)
        assert {a.name for a in defn.inputs} | {p.name for p in defn.kfp_params} | {factory.RUN_ID_INPUT} == ins
        # a `returned` output is the python form's return value, named "Output" (kfp.local loops need it)
        assert {a.name for a in defn.outputs} | {defn.output_key(o.name, form) for o in defn.out_params} == outs
    # the lightweight form calls the CLI through the runtime, in the project image, without pip
    impl = py.component_spec.implementation.container
    assert impl.image == "example.org/salnas:test"
    assert f"run_step({name!r}" in " ".join(impl.command)
    assert "pip install" not in " ".join(impl.command)


@pytest.mark.parametrize("defn", [d for d in STEPS if d.container], ids=lambda d: d.name)
def test_container_form_calls_the_step_cli_with_artifact_paths(defn):
    comp = factory.container_component(defn, image="ghcr.io/acme/salnas:1.0")
    c = comp.component_spec.implementation.container
    assert c.image == "ghcr.io/acme/salnas:1.0"
    args = [a._to_string() if hasattr(a, "_to_string") else a for a in c.args]  # placeholders -> IR text
    line = " ".join(c.command + args)
    assert f"salnas {' '.join(defn.command)}" in line
    for a in (*defn.inputs, *defn.outputs):
        for flag, _ in a.flags:
            assert flag in args
        kind = "inputs" if a in defn.inputs else "outputs"
        assert f"{{{{$.{kind}.artifacts['{a.name}'].path}}}}" in line


@pytest.mark.parametrize("defn", STEPS, ids=lambda d: d.name)
def test_every_flag_in_the_table_exists_in_the_step_cli(defn):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices
    assert defn.command[0] in sub, f"`salnas {defn.command[0]}` is not available (module missing?)"
    p = sub[defn.command[0]]
    for word in defn.command[1:]:
        p = [a for a in p._actions if a.dest.endswith("_command")][0].choices[word]
    known = {s for a in p._actions for s in a.option_strings}
    flags = [f for a in (*defn.inputs, *defn.outputs) for f, _ in a.flags]
    flags += [p_.flag for p_ in defn.params if p_.flag and p_.style == "flag"] + [o.flag for o in defn.out_params]
    flags += [x for x in defn.extra_args if x.startswith("--")]
    if any(p_.style == "set" for p_ in defn.params):
        flags.append("--set")
    missing = sorted(set(flags) - known)
    assert not missing, f"salnas {' '.join(defn.command)} has no {missing} (its options: {sorted(known)})"


def test_lightweight_argv_drops_unset_values_and_adds_suffixes():
    argv = step_argv("distill", {"search": "/a/search", "supernet": "/a/sn", "data": "/a/data", "model": "/a/out",
                                 "variant": "M", "preset": "tiny", "epochs": 0, "device": "cpu"})
    assert argv == ["distill", "--variants", "/a/search/variants.json", "--supernet", "/a/sn", "--data", "/a/data",
                    "--out", "/a/out", "--variant", "M", "--preset", "tiny", "--device", "cpu", "--no-progress"]
    argv = step_argv("distill", {"search": "/s", "supernet": "/n", "data": "/d", "model": "/o", "variant": "S",
                                 "preset": "tiny", "epochs": 2, "device": "cuda"})
    assert argv[-5:] == ["--set", "epochs=2", "--device", "cuda", "--no-progress"]
    argv = step_argv("train-supernet", {"data": "/d", "supernet": "/o", "preset": "cpu", "epochs": 3})
    assert argv[-3:] == ["--epochs", "3", "--no-progress"]


def test_container_launcher_drops_unset_words(tmp_path):
    """Run the generated `sh -c` line with a stand-in `salnas` that prints its argv."""
    fake = tmp_path / "salnas"
    fake.write_text('#!/bin/sh\nfor a do echo "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    cmd = factory.launcher_command(get_step("train-supernet"))
    assert cmd[:2] == ["sh", "-c"]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def run(*args):
        return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, check=True).stdout.split()

    assert run("--data", "/d", "--preset", "cpu", "--epochs=0") == ["train-supernet", "--data", "/d", "--preset", "cpu"]
    assert run("--data", "/d", "--epochs=12") == ["train-supernet", "--data", "/d", "--epochs=12"]
    # an argument that merely contains the unset text is kept
    assert run("--data", "--epochs=0x") == ["train-supernet", "--data", "--epochs=0x"]
    # a --set style parameter renders as one word, dropped the same way
    dcmd = factory.launcher_command(get_step("distill"))
    out = subprocess.run([*dcmd, "--variant", "M", "--set=epochs=0", "--set=epochs=5"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["distill", "--variant", "M", "--set=epochs=5"]


def test_returned_output_is_read_back_from_the_cli(tmp_path):
    """The lightweight `variants` step returns what `salnas variants` wrote (the loop items)."""
    from components.runtime import run_step
    from salnas_core.utils.io import atomic_write_json

    atomic_write_json(tmp_path / "search" / "variants.json", {"XL": {"config": {}}, "S": {"config": {}}})
    assert run_step("variants", search=str(tmp_path / "search"), budgets=["S", "M", "XL"]) == ["S", "XL"]
    with pytest.raises(RuntimeError, match="salnas variants failed"):
        run_step("variants", search=str(tmp_path / "search"), budgets=["M"])


def test_unknown_step_and_form_are_refused():
    with pytest.raises(KeyError, match="no pipeline step 'nope'"):
        get_step("nope")
    with pytest.raises(ValueError, match="component form"):
        factory.build_components("docker")


@pytest.mark.parametrize("defn", [d for d in STEPS if d.container], ids=lambda d: d.name)
def test_printed_container_source_is_the_component(defn):
    """`python -m components` prints source that, run, builds the same container component."""
    from typing import List  # noqa: F401

    from kfp import dsl
    from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output, OutputPath  # noqa: F401

    src = factory.container_source(defn, image="example.org/salnas:1")
    ns = dict(globals(), dsl=dsl, Input=Input, Output=Output, OutputPath=OutputPath, Artifact=Artifact,
              Dataset=Dataset, Model=Model, Metrics=Metrics, HTML=HTML, List=List)
    exec(compile(src, "<printed>", "exec", dont_inherit=True), ns)  # real annotations
    printed = ns[defn.func_name].component_spec
    built = factory.container_component(defn, image="example.org/salnas:1").component_spec
    assert printed.implementation.container == built.implementation.container
    assert printed.inputs == built.inputs and printed.outputs == built.outputs
