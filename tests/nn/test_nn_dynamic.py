"""Dynamic layers against plain torch ops and their static twins."""
import pytest
import torch
import torch.nn.functional as F

from salnas_core.nn import (ConvBnAct, DynamicBatchNorm2d, DynamicConv2d, DynamicConvBnAct, DynamicMBConv,
                            DynamicSE, MBConv, SqueezeExcite, make_divisible, same_pad_amounts)


def _randomise_bn(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_make_divisible_follows_mobilenet_rule():
    assert [make_divisible(v) for v in (16, 17, 20, 36, 100, 144, 120 * 4.5)] == [16, 16, 24, 40, 104, 144, 544]
    assert make_divisible(3, 8) == 8


@pytest.mark.parametrize("size,k,s,expected", [(8, 3, 2, (0, 1)), (8, 5, 2, (1, 2)), (7, 3, 2, (1, 1)),
                                               (8, 3, 1, (1, 1)), (9, 5, 1, (2, 2))])
def test_tf_same_padding_amounts(size, k, s, expected):
    assert same_pad_amounts(size, k, s) == expected


def test_kernel_centre_crop_and_channel_prefix():
    torch.manual_seed(0)
    conv = DynamicConv2d(8, 12, (3, 5, 7))
    x = torch.randn(2, 6, 11, 13)
    conv.active_kernel_size, conv.active_out_channels = 3, 5
    ref = F.conv2d(x, conv.weight[:5, :6, 2:5, 2:5], padding=1)
    torch.testing.assert_close(conv(x), ref, rtol=0, atol=0)
    conv.active_kernel_size = 7
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight[:5, :6], padding=3), rtol=0, atol=0)


def test_depthwise_follows_input_and_same_padding_is_asymmetric_at_stride_2():
    torch.manual_seed(0)
    conv = DynamicConv2d(16, 16, (3, 5), stride=2, depthwise=True, padding="same")
    x = torch.randn(1, 10, 8, 8)
    conv.active_kernel_size = 3
    y = conv(x)
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight[:10, :, 1:4, 1:4], stride=2, groups=10)
    assert y.shape == (1, 10, 4, 4)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


def test_kernel_transform_starts_as_crop_and_is_learnable():
    torch.manual_seed(0)
    conv = DynamicConv2d(4, 4, (3, 5, 7), depthwise=True, kernel_transform=True)
    crop = DynamicConv2d(4, 4, (3, 5, 7), depthwise=True)
    crop.weight.data.copy_(conv.weight.data)
    x = torch.randn(1, 4, 9, 9)
    for k in (3, 5):
        conv.active_kernel_size = crop.active_kernel_size = k
        torch.testing.assert_close(conv(x), crop(x))
    names = {n for n, _ in conv.named_parameters()}
    assert {"t7to5", "t5to3"} <= names
    with torch.no_grad():
        conv.t5to3.mul_(0.5)
    conv.active_kernel_size = crop.active_kernel_size = 3
    assert not torch.allclose(conv(x), crop(x))
    conv(x).sum().backward()
    assert conv.t5to3.grad is not None and conv.t7to5.grad is not None


def test_in_segments_pick_blocks_of_the_max_weight():
    torch.manual_seed(0)
    conv = DynamicConv2d(10, 4, (3,))  # max input = 6 (decoder) + 4 (skip)
    a, b = torch.randn(1, 3, 5, 5), torch.randn(1, 2, 5, 5)
    y = conv(torch.cat([a, b], 1), in_segments=[(0, 3), (6, 2)])
    ref = F.conv2d(a, conv.weight[:, :3], padding=1) + F.conv2d(b, conv.weight[:, 6:8], padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_dynamic_bn_slices_params_and_updates_only_the_slice(training):
    torch.manual_seed(0)
    bn = DynamicBatchNorm2d(8, momentum=0.5)
    _randomise_bn(bn, torch.Generator().manual_seed(1))
    before_mean, before_var = bn.running_mean.clone(), bn.running_var.clone()
    ref = torch.nn.BatchNorm2d(5, momentum=0.5)
    ref.load_state_dict({k: (v[:5] if v.dim() else v) for k, v in bn.state_dict().items()})
    bn.train(training), ref.train(training)
    x = torch.randn(4, 5, 6, 6)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean[:5], ref.running_mean)
    torch.testing.assert_close(bn.running_var[:5], ref.running_var)
    assert torch.equal(bn.running_mean[5:], before_mean[5:]) and torch.equal(bn.running_var[5:], before_var[5:])
    assert training == (not torch.equal(bn.running_mean[:5], before_mean[:5]))


def test_dynamic_se_equals_static_twin():
    torch.manual_seed(0)
    se = DynamicSE(96)
    x = torch.randn(2, 40, 7, 7)
    twin = SqueezeExcite(40)
    assert twin.reduce.out_channels == make_divisible(40 // 4, 8) == 16
    se.copy_to(twin)
    torch.testing.assert_close(se(x), twin(x))


def test_conv_bn_act_copy_to_static():
    torch.manual_seed(0)
    dyn = DynamicConvBnAct(16, 24, (3, 5), stride=2, act="relu6", padding="same")
    _randomise_bn(dyn, torch.Generator().manual_seed(2))
    dyn.conv.active_kernel_size, dyn.active_out_channels = 3, 20
    twin = ConvBnAct(12, 20, 3, 2, act="relu6", padding="same")
    dyn.copy_to(twin)
    x = torch.randn(2, 12, 16, 16)
    dyn.eval(), twin.eval()
    torch.testing.assert_close(dyn(x), twin(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shortcut,stride,se,c_in,c_out,e,k", [
    ("projection", 2, True, 24, 40, 4, 3),     # pooled + projected residual
    ("projection", 1, False, 16, 24, 1, 5),    # projection only, no expansion
    ("projection", 1, True, 32, 32, 5, 3),     # identity residual
    ("identity", 1, False, 40, 40, 3, 3),      # EfficientNet skip
    ("identity", 2, False, 24, 40, 6, 5),      # no residual
])
def test_mbconv_equals_static_twin(shortcut, stride, se, c_in, c_out, e, k):
    torch.manual_seed(0)
    exp = (1,) if e == 1 else (3, 4, 5, 6)
    dyn = DynamicMBConv((16, 24, 32, 40), (24, 32, 40), (3, 5), exp, stride, "swish", se, shortcut)
    _randomise_bn(dyn, torch.Generator().manual_seed(3))
    dyn.active_out_channels, dyn.active_expand_ratio, dyn.active_kernel_size = c_out, e, k
    mid = DynamicMBConv.mid_channels(c_in, e)
    twin = MBConv(c_in, c_out, mid, k, stride, "swish", se, shortcut)
    dyn.copy_to(twin)
    dyn.eval(), twin.eval()
    x = torch.randn(2, c_in, 16, 16)
    y = dyn(x)
    assert y.shape == (2, c_out, 16 // stride, 16 // stride)
    torch.testing.assert_close(y, twin(x), rtol=0, atol=1e-5)
    has_residual = twin.shortcut is not None
    assert has_residual == (shortcut == "projection" or (stride == 1 and c_in == c_out))
