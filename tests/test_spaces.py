"""Search-space tables and configs, parametrised over the registry."""
import json
import random

import numpy as np
import pytest

from salnas_core.spaces import DEFAULT_SPACE, SPACES, get_space

SPACE_NAMES = sorted(SPACES)


def test_registry_default_and_errors():
    assert DEFAULT_SPACE == "lite" and get_space().name == "lite"
    assert {"lite", "salnas"} <= set(SPACES)
    with pytest.raises(ValueError, match="unknown search space 'nope'"):
        get_space("nope")


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_configs_are_json_and_valid(name):
    sp = get_space(name)
    for cfg in (sp.max_config(), sp.min_config(), sp.sample_config(0), sp.sample_config(np.random.default_rng(0))):
        assert cfg["space"] == name
        back = json.loads(json.dumps(cfg))
        assert back == cfg == sp.validate_config(back)
        n = len(sp.stages)
        assert [len(cfg[k]) for k in ("width", "depth", "kernel_size", "expand_ratio", "resolution")] == \
            [n + 1, n, n, n, 1]
    assert sp.normalization in ("lite", "imagenet")


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_sampling_is_seeded_and_covers_choices(name):
    sp = get_space(name)
    assert sp.sample_config(random.Random(5)) == sp.sample_config(random.Random(5))
    seen = [set() for _ in sp.stages]
    rng = random.Random(0)
    for _ in range(200):
        for s, d in enumerate(sp.sample_config(rng)["depth"]):
            seen[s].add(d)
    assert [sorted(x) for x in seen] == [sorted(st.depths) for st in sp.stages]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_validate_names_the_problem(name):
    sp = get_space(name)
    bad = sp.max_config()
    bad["depth"][0] = 99
    with pytest.raises(ValueError, match=r"config\['depth'\]\[0\] = 99"):
        sp.validate_config(bad)
    cfg = sp.max_config()
    del cfg["kernel_size"]
    with pytest.raises(ValueError, match="misses key 'kernel_size'"):
        sp.validate_config(cfg)
    other = next(n for n in SPACE_NAMES if n != name)
    with pytest.raises(ValueError, match=f"config is for space '{other}'"):
        sp.validate_config(get_space(other).max_config())


def test_salnas_table_is_the_papers():
    sp = get_space("salnas")
    rows = [(st.widths, (min(st.depths), max(st.depths)), st.kernels, st.expands, st.stride, st.se)
            for st in sp.stages]
    assert sp.stem_widths == (16, 24)
    assert rows == [
        ((16, 24), (1, 2), (3, 5), (1,), 1, False),
        ((24, 32), (3, 5), (3, 5), (4, 5, 6), 2, False),
        ((32, 40), (3, 6), (3, 5), (4, 5, 6), 2, True),
        ((64, 72), (3, 6), (3, 5), (4, 5, 6), 2, False),
        ((112, 120, 128), (3, 8), (3, 5), (4, 5, 6), 1, True),
        ((192, 200, 208, 216), (3, 8), (3, 5), (6,), 2, True),
        ((216, 224), (1, 2), (3, 5), (6,), 1, True),
    ]
    assert sp.resolutions == (256, 384) and sp.head_channels(224) == 1344 and sp.normalization == "imagenet"


def test_lite_max_is_efficientnet_lite0():
    sp = get_space("lite")
    cfg = sp.max_config()
    assert cfg["width"] == [32, 16, 24, 40, 80, 112, 192, 320]
    assert cfg["depth"] == [1, 2, 2, 3, 3, 4, 1]
    assert cfg["kernel_size"] == [3, 3, 5, 3, 5, 5, 3]
    assert cfg["expand_ratio"] == [1, 6, 6, 6, 6, 6, 6]
    assert [st.stride for st in sp.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert sp.head_channels(320) == 1280 and sp.act == "relu6" and sp.padding == "same"
    assert sp.normalization == "lite"


@pytest.mark.parametrize("hw,res,expected", [((288, 384), 384, (288, 384)), ((288, 384), 256, (192, 256)),
                                             ((600, 800), 384, (288, 384)), ((100, 61), 256, (256, 160)),
                                             ((10, 1000), 256, (32, 256))])
def test_working_size_keeps_aspect_in_multiples_of_32(hw, res, expected):
    assert get_space("salnas").working_size(*hw, res) == expected


@pytest.mark.parametrize("name", [n for n in SPACE_NAMES if n.startswith("lite")])
def test_lite_max_config_is_read_off_the_shipped_weights(name):
    """Stage widths, depths, kernels and expand ratios of the max subnet equal what the shipped
    EfficientNet-Lite state_dict holds (blocks grouped into stages by output width)."""
    import torch

    from salnas_core.spaces.lite import LITE0, LITE2, weights_path

    sp = get_space(name)
    sd = torch.load(weights_path({"lite": LITE0, "lite2": LITE2}[name]), map_location="cpu", weights_only=True)
    stages, cin = [], sd["_conv_stem.weight"].shape[0]
    for i in range(sum(1 for k in sd if k.endswith("_project_conv.weight"))):
        cout = sd[f"_blocks.{i}._project_conv.weight"].shape[0]
        dw = sd[f"_blocks.{i}._depthwise_conv.weight"]
        if not stages or stages[-1][0] != cout:
            stages.append([cout, 0, dw.shape[-1], dw.shape[0] // cin])
        stages[-1][1] += 1
        cin = cout
    cfg = sp.max_config()
    assert cfg["width"] == [sd["_conv_stem.weight"].shape[0]] + [s[0] for s in stages]
    assert cfg["depth"] == [s[1] for s in stages]
    assert cfg["kernel_size"] == [s[2] for s in stages]
    assert cfg["expand_ratio"] == [s[3] for s in stages]
    assert sp.head_channels(cfg["width"][-1]) == sd["_conv_head.weight"].shape[0] == 1280
    assert sp.normalization == "lite" and sp.act == "relu6" and sp.padding == "same"
