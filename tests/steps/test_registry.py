"""The step registry is the command line: every step's options come from its row, one error policy."""
from __future__ import annotations

import subprocess
import sys

import pytest

from salnas_core import cli
from salnas_core.steps.registry import STEPS, get_step
from salnas_core.utils.params import parse_set

SALNAS = [sys.executable, "-m", "salnas_core.cli"]


def _salnas(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SALNAS, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _subparser(name: str):
    return cli.build_parser()._subparsers._group_actions[0].choices[name]


@pytest.mark.parametrize("defn", STEPS, ids=lambda d: d.name)
def test_each_step_is_a_command_whose_options_come_from_its_row(defn):
    p = _subparser(defn.name)
    known = {s for a in p._actions for s in a.option_strings}
    want = {f for a in (*defn.inputs, *defn.outputs) for f, _ in a.flags}
    want |= {x.cli_flag for x in defn.params if x.style == "flag"} | {o.flag for o in defn.out_params}
    if defn.section:
        want |= {"--params", "--preset", "--set"}
    if defn.progress:
        want.add("--no-progress")
    assert want <= known, sorted(want - known)
    assert not (known - want - {"-h", "--help"}), sorted(known - want)  # nothing declared elsewhere


def _required_argv(defn, path: str) -> list[str]:
    argv = [defn.name]
    for a in (*defn.inputs, *defn.outputs):
        if a.required:
            for flag, _ in a.flags:
                argv += [flag] + ([path, path] if a.is_list else [path])
    for p in defn.params:
        if p.required:
            argv += [p.cli_flag, path if p.name == "source" else "x"]
    return argv


@pytest.mark.parametrize("defn", [d for d in STEPS if d.inputs or d.name == "ingest"], ids=lambda d: d.name)
def test_a_missing_input_path_is_one_line_and_exit_2(defn, tmp_path):
    missing = str(tmp_path / "nope")
    r = _salnas(*_required_argv(defn, missing))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"salnas {defn.name}: error: {missing}: not found"), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("defn", [d for d in STEPS if d.section], ids=lambda d: d.name)
def test_a_mistyped_set_key_is_refused_with_the_valid_keys(defn, tmp_path):
    import yaml

    from salnas_core.utils.params import load_params

    section = load_params()[defn.section]
    for d in (*defn.inputs,):  # inputs that exist, so the --set check is what fails
        (tmp_path / d.name).mkdir(exist_ok=True)
    argv = [defn.name]
    for a in (*defn.inputs, *defn.outputs):
        for flag, _ in a.flags:
            argv += [flag] + ([str(tmp_path / a.name)] * (2 if a.is_list else 1))
    argv += [x for p in defn.params if p.required for x in (p.cli_flag, str(tmp_path))]
    r = _salnas(*argv, "--set", "not_a_key=1")
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and f"unknown key {defn.section}.not_a_key" in line, line
    assert all(k in line for k in section), line  # every valid key is listed
    assert yaml.safe_load(yaml.safe_dump(section)) == section


def test_set_has_one_rule_everywhere():
    assert parse_set(["latency.mode=measure", "population=3", "variants=[XL, M]", "input_size=null"]) == {
        "latency": {"mode": "measure"}, "population": 3, "variants": ["XL", "M"], "input_size": None}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["population"])


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """Only user mistakes are one line: an unexpected exception propagates (a traceback)."""
    import salnas_core.steps.snapshot as snap

    def broken(**kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(snap, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["snapshot", "--out", str(tmp_path)])


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    args = cli.build_parser().parse_args(["search", "--supernet", ".", "--data", ".", "--out", "x"])
    assert cli.step_options(get_step("search"), args)["progress"] is False  # pytest captures stderr
    args = cli.build_parser().parse_args(["search", "--supernet", ".", "--data", ".", "--out", "x", "--no-progress"])
    assert cli.step_options(get_step("search"), args)["progress"] is False
