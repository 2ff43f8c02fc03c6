"""params.yaml holds the values that run; presets are overlays of existing keys; typos are refused."""
from __future__ import annotations

import pytest

from salnas_core.errors import UserError
from salnas_core.steps.registry import STEPS
from salnas_core.utils.params import (check_keys, load_params, load_presets, preset_overlay, step_params)


def test_params_yaml_has_a_section_per_step_and_no_hidden_presets():
    params = load_params()
    for d in STEPS:
        if d.section:
            assert isinstance(params.get(d.section), dict), d.section
    for name, section in params.items():
        assert "presets" not in section and "preset" not in section, name


@pytest.mark.parametrize("preset", sorted(load_presets()))
def test_every_preset_key_exists_in_params_yaml(preset):
    params = load_params()
    for section, overlay in preset_overlay(preset).items():
        assert section in params, f"preset {preset}: no section {section}"
        check_keys(section, params[section], overlay, f"preset {preset}")  # raises on a typo


def test_preset_and_overrides_merge_over_the_section():
    base = step_params("search")
    tiny = step_params("search", "tiny", overrides={"population": 5, "latency": {"repeats": 7}})
    assert base["population"] == load_params()["search"]["population"]
    assert tiny["population"] == 5 and tiny["latency"]["repeats"] == 7 and tiny["latency"]["mode"] == "measure"
    assert tiny["parents"] == preset_overlay("tiny")["search"]["parents"] and tiny["preset"] == "tiny"
    # named budgets are the user's names: a new one is allowed, a typo elsewhere is not
    assert step_params("search", overrides={"budgets": {"XS": {"macs_frac": 0.3}}})["budgets"]["XS"]
    with pytest.raises(UserError, match=r"unknown key search\.latency\.moed .*mode"):
        step_params("search", overrides={"latency": {"moed": "lut"}})
    with pytest.raises(UserError, match="unknown preset 'fast'.*tiny"):
        step_params("search", "fast")


def test_the_paper_preset_trains_the_paper_space_with_the_authors_recipe():
    """train_salnas.py + configs/train_alphanet_models.yml (docs/training.md); tiny and cpu stay on lite."""
    p = step_params("train_supernet", "paper")
    assert p["space"] == "salnas" and p["resolutions"] is None and p["input_size"] is None
    assert p["train_limit"] is None and p["augment"] is True
    authors = {"epochs": 20, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-5,
               "t0": 10, "t_mult": 1, "grad_clip_value": 1.0, "n_random": 2, "dropout": 0.2, "drop_connect": 0.2,
               "self_kd": True, "alpha": 0.5, "amp": True, "seed": 3407}
    assert {k: p[k] for k in authors} == authors
    for preset in ("tiny", "cpu", None):
        assert step_params("train_supernet", preset)["space"] == "lite", preset
    assert step_params("train_supernet")["init"] is None and step_params("train_supernet")["init_supernet"] is None


def test_params_file_comes_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SALNAS_PARAMS", raising=False)
    with pytest.raises(UserError, match="params.yaml: params file not found"):
        step_params("search")
    (tmp_path / "params.yaml").write_text("search:\n  population: 3\n")
    assert step_params("search")["population"] == 3
    (tmp_path / "other.yaml").write_text("search:\n  population: 4\n")
    monkeypatch.setenv("SALNAS_PARAMS", str(tmp_path / "other.yaml"))
    assert step_params("search")["population"] == 4
    (tmp_path / "bad.yaml").write_text("search: [unclosed\n")
    with pytest.raises(UserError, match="bad.yaml: not valid YAML"):
        step_params("search", path=tmp_path / "bad.yaml")
