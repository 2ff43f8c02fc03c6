"""The deployed runtime's core: a SalNAS net exported in memory runs in ONNX Runtime as the net
does in PyTorch, at the working size predict feeds it."""
import numpy as np
import pytest
import torch

from salnas_core import runtime


@pytest.fixture(scope="module")
def net():
    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet

    torch.manual_seed(0)
    return build_subnet(get_space("lite").min_config()).eval()


def test_working_size_is_the_space_rule(net):
    r = net.config["resolution"][0]
    assert runtime.working_size(net, (288, 384)) == net.space.working_size(288, 384, r)
    assert max(runtime.working_size(net, (288, 384))) == r
    assert runtime.working_size(torch.nn.Conv2d(3, 1, 1), (30, 40)) == (30, 40)  # not a SalNAS net: as given


def test_in_memory_export_matches_the_net(net):
    x = torch.rand(1, 3, 64, 96)
    graph = runtime.export_onnx(runtime.prepare(runtime.core_module(net), x), x)
    assert isinstance(graph, bytes)
    sess = runtime.session(graph, threads=1)
    assert sess.get_session_options().intra_op_num_threads == 1
    x2 = torch.rand(2, 3, 96, 64)  # dynamic batch, height and width
    with torch.no_grad():
        ref = net._core(x2).numpy()
    got = runtime.run(sess, x2)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4


def test_resolve_engine():
    assert runtime.resolve_engine("auto", "cpu") == "onnx" and runtime.resolve_engine("auto", "cuda:0") == "eager"
    assert runtime.resolve_engine("int8", "cpu") == "int8"
    with pytest.raises(ValueError):
        runtime.resolve_engine("tensorrt")
