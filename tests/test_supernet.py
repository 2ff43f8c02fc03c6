"""The supernet: forward on any size, static extraction, persistence, BN recalibration,
pretrained EfficientNet-Lite0 encoder, and the paper's parameter/MAC counts."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import salnas_core
from salnas_core.spaces import SPACES
from salnas_core.supernet import (SalNASNet, SalNASSupernet, build_subnet, count_macs, count_params, create_supernet, load_model,
                                  recalibrate_bn, save_model)

SPACE_NAMES = sorted(SPACES)
MODES = ["max", "min", "random"]


def _randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)


@pytest.fixture(scope="module")
def supernets():
    torch.manual_seed(0)
    nets = {}
    for name in SPACE_NAMES:
        net = create_supernet(name, pretrained=name.startswith("lite"))  # lite, lite2: ImageNet weights
        if not name.startswith("lite"):
            _randomise_bn(net)
        nets[name] = net.eval()
    return nets


def _activate(net, mode, seed=3, resolution=None):
    cfg = {"max": net.sample_max_subnet, "min": net.sample_min_subnet,
           "random": lambda: net.sample_active_subnet(seed)}[mode]()
    if resolution:  # tests run at the small working resolution to stay fast
        cfg = net.set_active_subnet(dict(cfg, resolution=[resolution]))
    return cfg


def test_top_level_exports():
    assert salnas_core.create_supernet is create_supernet
    assert salnas_core.build_subnet is build_subnet and salnas_core.recalibrate_bn is recalibrate_bn


@pytest.mark.parametrize("name", SPACE_NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_any_input_size_and_static_twin_matches(supernets, name, mode):
    net = supernets[name]
    cfg = _activate(net, mode, resolution=256)
    sub = net.get_active_subnet(preserve_weight=True).eval()
    assert isinstance(sub, SalNASNet) and sub.config == cfg
    assert not any("Dynamic" in type(m).__name__ for m in sub.modules())
    torch.manual_seed(1)
    for shape, out_size in [((2, 3, 45, 131), None), ((1, 3, 64, 192), (48, 70))]:  # 96x256 inside
        x = torch.randn(*shape)
        with torch.no_grad():
            y, y_static = net(x, out_size=out_size), sub(x, out_size=out_size)
        assert y.shape == (shape[0], 1, *(out_size or shape[2:]))
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert (y - y_static).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_config_json_round_trip_and_save_load(supernets, name, tmp_path):
    net = supernets[name]
    cfg = net.set_active_subnet(dict(net.space.sample_config(11), resolution=[256]))
    sub = net.get_active_subnet().eval()
    rebuilt = build_subnet(json.loads(json.dumps(sub.config)))
    assert rebuilt.config == cfg
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sub.state_dict().items()}
    path = save_model(tmp_path / "m.pt", sub, meta={"note": "test", "score": 1.5})
    loaded = load_model(path)
    assert loaded.config == cfg and loaded.meta == {"note": "test", "score": 1.5} and not loaded.training
    x = torch.randn(1, 3, 32, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sub(x), rtol=0, atol=0)
    # build_from_config inherits weights and leaves the active subnet alone
    active = net.sample_min_subnet()
    twin = net.build_from_config(cfg).eval()
    assert net.config == active
    with torch.no_grad():
        torch.testing.assert_close(twin(x), sub(x), rtol=0, atol=0)


def test_bad_configs_and_bad_files(supernets, tmp_path):
    net = supernets["salnas"]
    cfg = net.space.max_config()
    cfg["width"][0] = 20
    with pytest.raises(ValueError, match=r"config\['width'\]\[0\] = 20"):
        net.set_active_subnet(cfg)
    with pytest.raises(FileNotFoundError, match="missing.pt: model file not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable model file"):
        load_model(tmp_path / "junk.pt")
    small = build_subnet(get_min := net.space.min_config())
    blob = {"config": net.space.max_config(), "state_dict": small.state_dict(), "meta": {}}
    torch.save(blob, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="mismatch.pt: weights do not match the config"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(TypeError, match="get_active_subnet"):
        save_model(tmp_path / "x.pt", net)
    assert get_min["space"] == "salnas"


def test_supernet_trains_shared_weights_of_the_active_subnet_only():
    torch.manual_seed(0)
    net = create_supernet("salnas", pretrained=False).train()
    net.sample_min_subnet()
    y = net(torch.randn(2, 3, 64, 96))
    y.mean().backward()
    assert net.stem.conv.weight.grad is not None
    assert net.stem.conv.weight.grad[:16].abs().sum() > 0 and net.stem.conv.weight.grad[16:].abs().sum() == 0
    assert net.stages[4][7].project.conv.weight.grad is None  # block beyond the active depth
    assert net.out.conv.weight.grad.abs().sum() > 0


def test_channels_last_gives_the_same_maps(supernets):
    net = supernets["lite"]
    net.set_active_subnet(dict(net.space.sample_config(4), resolution=[256]))
    sub = net.get_active_subnet().eval()
    x = torch.randn(1, 3, 96, 256)
    with torch.no_grad():
        ref = sub(x)
        out = sub.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)


def test_recalibrate_bn_is_the_same_for_supernet_and_extracted_subnet():
    torch.manual_seed(0)
    net = create_supernet("salnas", pretrained=False).eval()
    net.set_active_subnet(dict(net.space.sample_config(7), resolution=[256]))
    before = net.get_active_subnet().eval()
    g = torch.Generator().manual_seed(0)
    # 64x256 is already a working size: no resize, so the stem statistics can be checked by hand
    batches = [{"image": torch.randn(2, 3, 64, 256, generator=g), "id": ["a", "b"]} for _ in range(4)]
    recalibrate_bn(net, batches, n_batches=3)
    recalibrate_bn(before, (b["image"] for b in batches), n_batches=3)
    assert not net.training and not before.training
    assert all(m.momentum == 0.1 for m in before.modules() if isinstance(m, torch.nn.BatchNorm2d))
    after = net.get_active_subnet().eval()
    for k, v in before.state_dict().items():
        torch.testing.assert_close(after.state_dict()[k], v, rtol=1e-4, atol=1e-5, msg=k)
    with torch.no_grad():
        acts = [F.conv2d(b["image"], before.stem.conv.weight, stride=2, padding=1) for b in batches[:3]]
    expected_mean = torch.stack([a.mean((0, 2, 3)) for a in acts]).mean(0)
    expected_var = torch.stack([a.transpose(0, 1).flatten(1).var(1) for a in acts]).mean(0)
    torch.testing.assert_close(before.stem.bn.running_mean, expected_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(before.stem.bn.running_var, expected_var, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_bn(before, [], n_batches=2)


# ---- EfficientNet-Lite reference: an independent functional re-implementation -------------
# per stage (stride, repeats, out width), written from the papers' tables, not from spaces.lite
LITE_STAGES = {
    "lite0": [(1, 1, 16), (2, 2, 24), (2, 2, 40), (2, 3, 80), (1, 3, 112), (2, 4, 192), (1, 1, 320)],
    # Lite2 = Lite0 x1.1 width, x1.2 depth (stem, head, first/last repeats fixed)
    "lite2": [(1, 1, 16), (2, 3, 24), (2, 3, 48), (2, 4, 88), (1, 4, 120), (2, 5, 208), (1, 1, 352)],
}


def _lite_blocks(variant):
    """(stride, in, out) of every block, and the index of each stage's last block."""
    blocks, ends, cin = [], [], 32
    for stride, n, cout in LITE_STAGES[variant]:
        for j in range(n):
            blocks.append((stride if j == 0 else 1, cin, cout))
            cin = cout
        ends.append(len(blocks) - 1)
    return blocks, ends


def _ref_lite_features(sd, x, variant="lite0"):
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-3)

    def conv(t, w, stride=1, groups=1):  # TensorFlow SAME padding
        k = w.shape[-1]
        pads = []
        for size in (t.shape[-1], t.shape[-2]):
            total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(t, pads), w, None, stride, 0, 1, groups)

    blocks, stage_ends = _lite_blocks(variant)
    x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
    feats = [x]
    for i, (stride, cin, cout) in enumerate(blocks):
        p = f"_blocks.{i}."
        y = x
        if p + "_expand_conv.weight" in sd:
            y = F.relu6(bn(conv(y, sd[p + "_expand_conv.weight"]), p + "_bn0"))
        y = F.relu6(bn(conv(y, sd[p + "_depthwise_conv.weight"], stride, y.shape[1]), p + "_bn1"))
        y = bn(conv(y, sd[p + "_project_conv.weight"]), p + "_bn2")
        x = y + x if stride == 1 and cin == cout else y
        if i in stage_ends:
            feats.append(x)
    feats.append(F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1")))
    return feats


def test_lite_max_encoder_reproduces_efficientnet_lite0(supernets):
    from salnas_core.spaces.lite import lite0_weights_path

    sd = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    net = supernets["lite"]
    net.sample_max_subnet()
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, ref = net.encode(x), _ref_lite_features(sd, x)
        static = net.get_active_subnet().eval().encode(x)
    assert len(ours) == len(ref) == 9
    for i, (a, b, c) in enumerate(zip(ours, ref, static)):
        assert a.shape == b.shape, i
        assert (a - b).abs().max().item() <= 1e-4, f"feature {i}: {(a - b).abs().max().item()}"
        assert (c - b).abs().max().item() <= 1e-4
    assert torch.equal(net.stages[5][3].dw.conv.weight, sd["_blocks.14._depthwise_conv.weight"])
    small = build_subnet(SPACES["lite"].min_config(), pretrained=True)  # inherits sliced Lite0 weights
    assert torch.equal(small.stem.conv.weight, sd["_conv_stem.weight"][:16])
    assert torch.equal(small.stages[2][0].dw.conv.weight, sd["_blocks.3._depthwise_conv.weight"][:72, :, 1:4, 1:4])
    fresh = create_supernet("lite", pretrained=False).eval()
    with torch.no_grad():
        assert (fresh.encode(x)[-1] - ref[-1]).abs().max() > 1e-2  # the match is not a coincidence


def test_lite2_max_encoder_reproduces_efficientnet_lite2(supernets):
    from salnas_core.spaces.lite import LITE2, lite0_weights_path, load_pretrained, weights_path

    sd = torch.load(weights_path(LITE2), map_location="cpu", weights_only=True)
    assert sum(1 for k in sd if k.endswith("_project_conv.weight")) == 21  # Lite2's block count
    net = supernets["lite2"]
    net.sample_max_subnet()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, ref = net.encode(x), _ref_lite_features(sd, x, "lite2")
        static = net.get_active_subnet().eval().encode(x)
    assert len(ours) == len(ref) == 9
    for i, (a, b, c) in enumerate(zip(ours, ref, static)):
        assert a.shape == b.shape, i
        assert (a - b).abs().max().item() <= 1e-4, f"feature {i}: {(a - b).abs().max().item()}"
        assert (c - b).abs().max().item() <= 1e-4
    assert ref[-1].abs().max() > 0.1  # not a degenerate all-zero feature map
    assert torch.equal(net.stages[5][4].dw.conv.weight, sd["_blocks.19._depthwise_conv.weight"])
    # the wrong variant's file is refused, naming it, before anything is copied
    with pytest.raises(ValueError, match=r"lite0-57934424\.pth: _blocks\.3\._depthwise_conv\.weight has shape"):
        load_pretrained(LITE2, net, lite0_weights_path())
    assert torch.equal(net.stages[1][2].dw.conv.weight, sd["_blocks.3._depthwise_conv.weight"])


# ---- the paper's counts (AttentiveNAS static model, 288x384) --------------------------------
def _attentivenas_unused_shortcut_params(cfg):
    """AttentiveNAS builds a 1x1 shortcut conv in every block, also where the identity is used."""
    w, n = cfg["width"], 0
    for s, d in enumerate(cfg["depth"]):
        for j in range(d):
            cin = w[s] if j == 0 else w[s + 1]
            stride = SPACES["salnas"].stages[s].stride if j == 0 else 1
            if cin == w[s + 1] and stride == 1:
                n += cin * w[s + 1]
    return n


@pytest.mark.parametrize("mode,params_m,gmacs", [("max", 20.98, 3.80), ("min", 6.35, 0.55)])
def test_salnas_counts_match_the_paper(supernets, mode, params_m, gmacs):
    net = supernets["salnas"]
    cfg = _activate(net, mode)
    sub = net.get_active_subnet()
    ours = count_params(sub)
    assert round((ours + _attentivenas_unused_shortcut_params(cfg)) / 1e6, 2) == params_m
    assert round(count_macs(sub, (288, 384)) / 1e9, 2) == gmacs


def test_lite_skips_only_inside_stages_like_efficientnet():
    cfg = SPACES["lite"].min_config()
    assert cfg["width"][:2] == [16, 16]  # stem width == stage-1 width, still no skip in block 0
    sub = build_subnet(cfg)
    assert all(blocks[0].shortcut is None for blocks in sub.stages)
    assert all(isinstance(b.shortcut, torch.nn.Identity) for blocks in sub.stages for b in blocks[1:])


def test_kernel_transform_option_is_baked_into_the_static_subnet():
    import dataclasses

    torch.manual_seed(0)
    space = dataclasses.replace(SPACES["salnas"], kernel_transform=True)
    net = SalNASSupernet(space).eval()
    mats = [p for n, p in net.named_parameters() if n.endswith("t5to3")]
    assert len(mats) == sum(len(b) for b in net.stages)  # one per depthwise conv with kernels {3, 5}
    with torch.no_grad():
        for p in mats:
            p.add_(torch.randn_like(p) * 0.1)
    net.set_active_subnet(dict(space.min_config(), resolution=[256]))  # all kernels 3: transformed
    sub = net.get_active_subnet().eval()
    x = torch.randn(1, 3, 64, 256)
    with torch.no_grad():
        assert (net(x) - sub(x)).abs().max().item() <= 1e-5
        crop = net.stages[0][0].dw.conv.weight[:, :, 1:4, 1:4][:sub.stages[0][0].dw.conv.weight.shape[0]]
        assert not torch.allclose(sub.stages[0][0].dw.conv.weight, crop)
