"""dvc.yaml is generated from the registry: current, parseable by the CLI, with code deps."""
from __future__ import annotations

import shlex
from pathlib import Path

from salnas_core import cli
from salnas_core.steps import dvc_stages

REPO = Path(__file__).resolve().parents[2]


def test_committed_dvc_yaml_is_the_generated_one():
    assert (REPO / "dvc.yaml").read_text() == dvc_stages.dvc_yaml(), "run `salnas dvc-stages`"


def test_every_stage_command_parses_with_its_step_cli():
    import yaml

    stages = yaml.safe_load(dvc_stages.dvc_yaml())["stages"]
    parser = cli.build_parser()
    for name, st in stages.items():
        cmd = st["cmd"].replace("${data.dataset}", "osie").replace("${data.format}", "shared_json")
        argv = shlex.split(cmd)
        assert argv[0] == "salnas" and argv[1] == name.replace("_", "-")
        parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown flag


def test_code_deps_follow_the_imports():
    search = dvc_stages.stage("search")["deps"]
    assert "salnas_core/search" in search and "salnas_core/steps/search.py" in search
    assert "salnas_core/steps/train_supernet.py" not in search
    snap = dvc_stages.stage("snapshot")["deps"]
    assert "salnas_core/steps/snapshot.py" in snap and "salnas_core/search" not in snap
    for dep in dvc_stages.stage("train-supernet")["deps"]:
        assert dep == "data/ingested/${data.dataset}" or (REPO / dep).exists(), dep
