"""`--init alphanet PATH`: the `salnas` encoder from an AlphaNet ImageNet supernet checkpoint in the
authors' format (AttentiveNAS naming, `{"state_dict": ...}`, DDP's `module.` prefix)."""
import pytest
import torch

from salnas_core.errors import UserError
from salnas_core.spaces.salnas import alphanet_key_map, load_alphanet
from salnas_core.supernet import create_supernet

# max width, max depth, max kernel, max expand ratio, SE of mb1..mb7 (configs/train_alphanet_models.yml)
ALPHANET_STAGES = [(24, 2, 5, 1, False), (32, 5, 5, 6, False), (40, 6, 5, 6, True), (72, 6, 5, 6, False),
                   (128, 8, 5, 6, True), (216, 8, 5, 6, True), (224, 2, 5, 6, True)]


def _div8(v):  # AttentiveNAS make_divisible(v, 8)
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


def alphanet_encoder_shapes() -> dict[str, tuple]:
    """Every encoder tensor of an AlphaNet supernet checkpoint, from AttentiveNAS's construction
    rules (attentive_nas_dynamic_model.py, modules/dynamic_layers.py, dynamic_ops.py), written out
    here independently of this project's modules: the format a real checkpoint has."""
    shapes: dict[str, tuple] = {}

    def conv_bn(prefix, out_c, in_c, k, depthwise=False):
        shapes[f"{prefix}.conv.conv.weight"] = (out_c, 1 if depthwise else in_c, k, k)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.bn.{leaf}"] = (out_c,)
        shapes[f"{prefix}.bn.bn.num_batches_tracked"] = ()
        for t in (0, 1):  # AttentiveNAS's affine-free BN copies "to track the largest and smallest net"
            shapes[f"{prefix}.bn.bn_tracking.{t}.running_mean"] = (out_c,)
            shapes[f"{prefix}.bn.bn_tracking.{t}.running_var"] = (out_c,)
            shapes[f"{prefix}.bn.bn_tracking.{t}.num_batches_tracked"] = ()

    conv_bn("first_conv", 24, 3, 3)
    feat, i = 24, 0
    for c, d, k, t, se in ALPHANET_STAGES:
        for _ in range(d):
            b = f"blocks.{i}"
            mid = round(feat * t)
            if t != 1:
                conv_bn(f"{b}.mobile_inverted_conv.inverted_bottleneck", mid, feat, 1)
            conv_bn(f"{b}.mobile_inverted_conv.depth_conv", mid, mid, k, depthwise=True)
            if se:
                r = _div8(mid // 4)
                shapes[f"{b}.mobile_inverted_conv.depth_conv.se.fc.reduce.weight"] = (r, mid, 1, 1)
                shapes[f"{b}.mobile_inverted_conv.depth_conv.se.fc.reduce.bias"] = (r,)
                shapes[f"{b}.mobile_inverted_conv.depth_conv.se.fc.expand.weight"] = (mid, r, 1, 1)
                shapes[f"{b}.mobile_inverted_conv.depth_conv.se.fc.expand.bias"] = (mid,)
            conv_bn(f"{b}.mobile_inverted_conv.point_linear", c, mid, 1)
            shapes[f"{b}.shortcut.conv.conv.weight"] = (c, feat, 1, 1)
            feat, i = c, i + 1
    conv_bn("last_conv.final_expand_layer", feat * 6, feat, 1)
    return shapes


def write_alphanet(path, shapes, seed=0, prefix="module.", extra=True):
    g = torch.Generator().manual_seed(seed)
    sd = {prefix + k: (torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
                       else torch.randn(s, generator=g)) for k, s in shapes.items()}
    if extra:  # what an AlphaNet file holds beyond the encoder: ImageNet classifier, feature mix
        sd[prefix + "classifier.linear.linear.weight"] = torch.randn(1000, 1984)
        sd[prefix + "last_conv.feature_mix_layer.conv.conv.weight"] = torch.randn(1984, 1344, 1, 1)
    torch.save({"epoch": 360, "state_dict": sd}, path)
    return sd


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_supernet("salnas", pretrained=False)


def test_key_map_covers_every_alphanet_encoder_tensor_with_its_shape(net):
    """Every encoder tensor the authors copy (bar BN counters) has one place of the same shape:
    the project builds a shortcut conv in all 37 blocks, as AttentiveNAS does."""
    shapes = alphanet_encoder_shapes()
    mapping = alphanet_key_map(net)
    wanted = {k for k in shapes if "num_batches_tracked" not in k and "bn_tracking" not in k}
    assert set(mapping.values()) == wanted
    own = net.state_dict()
    assert all(tuple(own[dst].shape) == shapes[src] for dst, src in mapping.items())
    assert sum(1 for k in mapping.values() if k.endswith("shortcut.conv.conv.weight")) == 37
    assert not any(k.startswith(("up.", "refine.", "out.")) for k in mapping)  # the decoder stays


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_load_copies_every_encoder_tensor_and_leaves_the_decoder(net, tmp_path, prefix):
    path = tmp_path / "alphanet_pretrained.pth.tar"
    src = write_alphanet(path, alphanet_encoder_shapes(), prefix=prefix)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n = load_alphanet(net, path)
    mapping = alphanet_key_map(net)
    assert n == len(mapping)
    after = net.state_dict()
    for dst, key in mapping.items():
        torch.testing.assert_close(after[dst], src[prefix + key], rtol=0, atol=0, msg=dst)
    untouched = [k for k in after if k not in mapping]
    assert untouched and all(torch.equal(after[k], before[k]) for k in untouched)  # decoder, BN counters


def _error(net, path):
    with pytest.raises(UserError) as e:
        load_alphanet(net, path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_a_mismatched_shape_or_missing_key_is_a_one_line_error(net, tmp_path):
    shapes = alphanet_encoder_shapes()
    bad = dict(shapes)
    bad["blocks.30.mobile_inverted_conv.point_linear.conv.conv.weight"] = (200, 1296, 1, 1)
    write_alphanet(tmp_path / "shape.pth", bad)
    msg = _error(net, tmp_path / "shape.pth")
    assert "blocks.30.mobile_inverted_conv.point_linear.conv.conv.weight (200, 1296, 1, 1)" in msg
    assert "(216, 1296, 1, 1)" in msg
    gone = {k: v for k, v in shapes.items() if k != "blocks.5.shortcut.conv.conv.weight"}
    write_alphanet(tmp_path / "missing.pth", gone)
    msg = _error(net, tmp_path / "missing.pth")
    assert "1 encoder keys missing" in msg and "blocks.5.shortcut.conv.conv.weight" in msg
    torch.save({"state_dict": {"x": 1}}, tmp_path / "junk.pth")
    _error(net, tmp_path / "junk.pth")
    _error(net, tmp_path / "absent.pth")


def test_only_the_salnas_space_takes_alphanet_weights(tmp_path):
    path = tmp_path / "a.pth"
    write_alphanet(path, alphanet_encoder_shapes())
    msg = _error(create_supernet("lite", pretrained=False), path)
    assert "salnas" in msg
