"""The fitted post-processing (blur + centre prior): part of the model wherever it runs, fitted on
training images only."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from salnas_core.data.dataset import SaliencyDataset
from salnas_core.evaluate.baselines import CenterBias
from salnas_core.evaluate.postprocess import fit_postprocess
from salnas_core.nn.postprocess import Postprocess
from salnas_core.spaces import get_space
from salnas_core.supernet import build_subnet, load_model, save_model


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return build_subnet(get_space("lite").min_config()).eval()


def test_identity_blur_and_centre():
    y = torch.rand(2, 1, 24, 32)
    assert torch.equal(Postprocess()(y), y)
    c = Postprocess(centre_weight=1.0, centre_sigma=(0.2, 0.3))(y)
    # all prior: every map is the centred Gaussian, peak 1 at the centre
    assert torch.allclose(c[0], c[1]) and c.amax().item() == pytest.approx(1.0)
    assert c[0, 0, 11:13, 15:17].min() > c[0, 0, 0, 0] * 5
    b = Postprocess(blur_px=3.0)(y)
    assert b.std() < y.std() and b.amax(dim=(2, 3)).flatten().tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="centre_weight"):
        Postprocess(centre_weight=1.5)


def test_saved_model_keeps_its_postprocess_in_every_door(tmp_path):
    from salnas_core.serve.predict import Predictor

    net = _net().set_postprocess({"blur_px": 2.0, "centre_weight": 0.3, "centre_sigma": [0.22, 0.27]})
    x = torch.rand(1, 3, 96, 128)
    with torch.inference_mode():
        want = net(x)
        plain = _net()(x)
    assert not torch.allclose(want, plain)
    path = save_model(tmp_path / "m.pt", net, meta={"variant": "t"})
    back = load_model(path)
    # a dict without centre_power (models saved before it existed) loads as power 0
    assert back.meta["postprocess"] == {"blur_px": 2.0, "centre_weight": 0.3, "centre_sigma": [0.22, 0.27],
                                        "centre_power": 0.0}
    with torch.inference_mode():
        assert torch.allclose(back(x), want, atol=1e-6)
    # predict (and the pyfunc, which wraps it) runs the same map
    rgb = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    m = Predictor(path, device="cpu").predict_arrays([rgb])[0]
    assert m.max() == pytest.approx(1.0, abs=1e-3)  # post-processed maps peak at 1
    # removing it is saved too
    back.set_postprocess(None)
    assert "postprocess" not in load_model(save_model(tmp_path / "n.pt", back, meta=back.meta)).meta


def test_fit_takes_the_centre_prior_for_a_net_that_sees_nothing(tiny_ingested):
    """A net whose map is flat learns nothing: on real fixations the fit must weigh in the prior;
    the score it reports is what the chosen post-processing scores."""
    net = _net()
    torch.nn.init.zeros_(net.out.conv.weight)  # flat output: sigmoid of the bias
    ds = SaliencyDataset(tiny_ingested, "train", normalization="lite", size=(96, 128))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    centre = CenterBias.fit_dataset(tiny_ingested, "train")
    fit = fit_postprocess(net, loader, (centre.sigma_y, centre.sigma_x))
    assert (fit["centre_weight"] > 0 or fit["centre_power"] > 0) and fit["score"] < fit["score_without"]
    assert net.postprocess is None  # the fit leaves the model as it was
    # blur x (mixed-in weight | multiplied-in power): one way of weighing the prior at a time
    assert len(fit["grid"]) == 25 + 20 and min(t["score"] for t in fit["grid"]) == fit["score"]
    assert not any(t["centre_weight"] > 0 and t["centre_power"] > 0 for t in fit["grid"])


def test_centre_power_multiplies_the_map_by_the_prior():
    """power p: map x prior^p, then peak 1; a flat map becomes the prior^p, a peaked map keeps its
    peak where the prior is high and loses it where the prior is low."""
    pp = Postprocess(centre_power=0.5, centre_sigma=(0.2, 0.3))
    flat = torch.ones(1, 1, 24, 32)
    prior = Postprocess(centre_weight=1.0, centre_sigma=(0.2, 0.3))(flat)  # the prior, peak 1
    assert torch.allclose(pp(flat), prior ** 0.5, atol=1e-6)
    y = torch.zeros(1, 1, 24, 32)
    y[0, 0, 12, 16], y[0, 0, 1, 1] = 1.0, 1.0  # equal peaks at the centre and in a corner
    out = pp(y)
    assert out[0, 0, 12, 16] == pytest.approx(1.0) and out[0, 0, 1, 1] < 0.5 and out[0, 0, 5, 5] == 0
    with pytest.raises(ValueError, match="centre_power"):
        Postprocess(centre_power=-1.0)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exports_carry_the_postprocess(tmp_path, fmt):
    """Export checks parity with the eager model (post-processing included) at every check size."""
    from salnas_core.serve import export

    net = _net().set_postprocess({"blur_px": 3.0, "centre_weight": 0.3, "centre_sigma": [0.22, 0.27],
                                  "centre_power": 0.3})
    path = save_model(tmp_path / "m.pt", net, meta={"variant": "t"})
    r = export.run(str(path), tmp_path / f"m.{fmt}", fmt)
    assert r["max_abs_diff"] < export.TOLERANCE
