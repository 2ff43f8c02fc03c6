"""`salnas export`: ONNX / TorchScript with BN folded, dynamic H/W, parity with PyTorch."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from salnas_core.runtime import fold_batchnorm, freeze_same_padding
from salnas_core.serve.export import FORMATS, run
from salnas_core.serve.models import resolve_model
from salnas_core.serve.predict import normalize


def _pytorch(model_path, x):
    lm = resolve_model(str(model_path))
    with torch.no_grad():
        return lm.net(normalize(x, lm.normalization)).numpy()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "onnx-int8"])  # int8: test_serve_engines
def test_export_parity_dynamic_sizes(fmt, lite_model, tmp_path):
    """The default space (TF-SAME padding, the harder case to export); both spaces' folding is
    checked in test_fold_batchnorm_copy."""
    from salnas_core.cli import main

    space_model = lite_model

    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", "--model", str(space_model), "--format", fmt, "--out", str(out)]) == 0
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["max_abs_diff"] <= 1e-4 and side["bn_folded"] == side["bn_total"] > 10
    # our own check, at a size the command did not try (portrait, another batch size)
    x = torch.rand(2, 3, 256, 96, generator=torch.Generator().manual_seed(7))
    ref = _pytorch(space_model, x)
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        proto = onnx.load(str(out))
        assert not [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["salnas.normalization"] == resolve_model(str(space_model)).normalization
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    else:
        ts = torch.jit.load(str(out))
        assert "batch_norm" not in str(ts.inlined_graph)
        with torch.no_grad():
            got = ts(x).numpy()
    assert got.shape == ref.shape == (2, 1, 256, 96)
    assert np.abs(got - ref).max() <= 1e-4


def test_failed_parity_leaves_no_file(lite_model, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        run(str(lite_model), out, "onnx", tolerance=-1.0)  # no model can pass: the check must refuse
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("space", ["lite", "salnas"])
def test_fold_batchnorm_copy(space, request):
    lm = resolve_model(str(request.getfixturevalue(f"{space}_model")))
    x = torch.rand(1, 3, 64, 96)  # the fully convolutional core takes any multiple of 32

    class Core(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net._core(x)

    core = Core(lm.net).eval()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in lm.net.modules())
    folded, n = fold_batchnorm(core, x)
    # lite: TF SAME padding at the stride-2 convolutions; salnas: PyTorch symmetric padding
    assert (freeze_same_padding(folded) > 0) == (space == "lite")
    assert n == n_bn and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in lm.net.modules()) == n_bn  # original untouched
    with torch.no_grad():
        a, b = core(x), folded(x)
    assert (a - b).abs().max() <= 1e-5
    # the folding is not a no-op: the BN statistics were non-trivial
    stem = folded.net.stem.conv
    assert not torch.allclose(lm.net.stem.conv.weight, stem[1].weight if isinstance(stem, torch.nn.Sequential) else stem.weight)


def test_export_unknown_model_is_a_clear_error(tmp_path, capsys):
    from salnas_core.cli import main

    assert main(["export", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err


@pytest.mark.parametrize("space,resolution,recorded", [
    ("lite", 256, [144, 192]), ("lite", 384, [150, 100]), ("lite", 384, None), ("salnas", 256, [144, 192]),
    ("salnas", 384, [97, 211])])
def test_export_and_predict_work_for_every_model_and_input_size(space, resolution, recorded, tmp_path):
    """Any space, resolution choice and recorded training size (distill records its input size, e.g.
    the cpu preset's 144x192, not a multiple of 32): the working size is the net's own rule for that
    aspect, export traces there, and ONNX agrees with PyTorch on odd, portrait, tiny and large inputs."""
    import onnxruntime as ort

    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet, save_model

    cfg = dict(get_space(space).min_config(), resolution=[resolution])
    torch.manual_seed(0)
    path = save_model(tmp_path / space / "model.pt", build_subnet(cfg).eval(),
                      meta={} if recorded is None else {"input_size": recorded})
    lm = resolve_model(str(path))
    assert all(s % 32 == 0 for s in lm.working_size) and max(lm.working_size) == resolution
    out = tmp_path / "m.onnx"
    run(str(path), out, "onnx")
    assert json.loads(out.with_name(out.name + ".json").read_text())["max_abs_diff"] <= 1e-4
    import torch.nn.functional as F

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    for b, h, w in ((1, 7, 9), (1, 301, 123), (2, 97, 211), (1, 640, 480)):
        x = torch.rand(b, 3, h, w, generator=gen)
        ref = _pytorch(path, x)
        # the exported graph's contract (its metadata's resize rule): resize to the working size for
        # this aspect, run, resize the map back, exactly what the eager forward does inside
        work = lm.net.space.working_size(h, w, resolution)
        xi = F.interpolate(x, size=work, mode="bilinear", align_corners=False, antialias=True)
        yo = torch.from_numpy(sess.run(None, {"image": xi.numpy()})[0])
        got = F.interpolate(yo, size=(h, w), mode="bilinear", align_corners=False).numpy()
        assert got.shape == ref.shape == (b, 1, h, w)
        assert np.abs(got - ref).max() <= 1e-4, (h, w)
