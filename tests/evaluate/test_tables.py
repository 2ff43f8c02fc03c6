"""Evaluation tables: original-size scoring, blur, centre bias, sAUC negatives, markdown."""
import numpy as np
import pytest
import torch

from salnas_core.evaluate.baselines import CenterBias
from salnas_core.evaluate.tables import (_ground_truth, _other_fixations, evaluate_dataset, evaluate_maps,
                                         gaussian_blur, markdown_table)
from salnas_core.utils.io import read_json


def test_gaussian_blur_matches_scipy_reflect():
    from scipy.ndimage import convolve1d

    x = np.random.default_rng(0).random((1, 1, 20, 30)).astype(np.float64)
    got = gaussian_blur(torch.from_numpy(x)).numpy()[0, 0]
    t = np.arange(11) - 5
    k = np.exp(-0.5 * (t / 10.5) ** 2)
    k /= k.sum()
    # OpenCV's default border (reflect-101) is scipy's "mirror"
    ref = convolve1d(convolve1d(x[0, 0], k, axis=1, mode="mirror"), k, axis=0, mode="mirror")
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert got.sum() == pytest.approx(x.sum(), rel=0.05)


def test_center_bias_fit_and_map():
    rng = np.random.default_rng(0)
    h, w = 600, 800
    pts = np.stack([rng.normal(h / 2, 0.15 * h, 20000), rng.normal(w / 2, 0.1 * w, 20000)], 1)
    pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)]
    cb = CenterBias.fit([(pts, (h, w))])
    assert cb.sigma_y == pytest.approx(0.15, abs=0.005) and cb.sigma_x == pytest.approx(0.1, abs=0.005)
    m = cb.map((60, 80))
    assert m.sum() == pytest.approx(1.0) and np.unravel_index(m.argmax(), m.shape) in {(29, 39), (29, 40), (30, 39), (30, 40)}
    with pytest.raises(ValueError, match="no fixations"):
        CenterBias.fit([(np.zeros((0, 2)), (10, 10))])


def test_ground_truth_at_original_size_and_perfect_prediction(tiny_ingested):
    man = read_json(tiny_ingested / "manifest.json")
    gts = _ground_truth(tiny_ingested, man, "val", limit=3)
    for g in gts:
        assert g.fixations.shape == tuple(g.item["orig_size"])  # OSIE: 600x800, not the 96x128 working size
        assert g.density.sum() == pytest.approx(1.0, abs=1e-4)
    cb = CenterBias.fit_dataset(tiny_ingested, "train")
    # predicting the ground-truth density itself (given at working size: resized up) scores near-perfect CC/SIM
    perfect = evaluate_maps(lambda i: torch.from_numpy(gts[i].density)[None, None], gts, cb, blur=False,
                            n_other=2, progress=False)
    assert perfect["cc"] == pytest.approx(1.0, abs=1e-4) and perfect["sim"] == pytest.approx(1.0, abs=1e-3)
    assert perfect["kld"] < 1e-3 and perfect["n"] == 3
    flat = evaluate_maps(lambda i: torch.ones(1, 1, 24, 32), gts, cb, blur=True, n_other=2, progress=False)
    assert flat["auc_judd"] == pytest.approx(0.5, abs=0.02) and flat["nss"] == pytest.approx(0.0, abs=1e-6)


def test_other_fixations_come_from_other_images(tiny_ingested):
    man = read_json(tiny_ingested / "manifest.json")
    gts = _ground_truth(tiny_ingested, man, "train", limit=4)
    rng = np.random.default_rng(0)
    m = _other_fixations(gts, 0, 1, rng)
    assert m.shape == gts[0].fixations.shape and m.sum() > 0
    # with one other image chosen, the negatives are exactly one of the other images' fixation maps
    assert any(np.array_equal(m > 0, gts[j].fixations > 0) for j in (1, 2, 3))


class _Centre(torch.nn.Module):
    """A 'network' that outputs a fixed centred blob whatever the image (for the table plumbing)."""

    def forward(self, x):
        h, w = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        return torch.exp(-(yy ** 2 + xx ** 2) / 0.3).expand(x.shape[0], 1, h, w)


def test_evaluate_dataset_rows_and_markdown(tiny_ingested):
    rows = evaluate_dataset({"blob": (_Centre(), "imagenet", None)}, tiny_ingested, blur_options=(False, True),
                            limit=3, n_other=2, trained_on={"blob": "salicon"}, progress=False)
    assert [(r["model"], r["blur"]) for r in rows] == [("centre_bias", False), ("centre_bias", True),
                                                       ("spectral_residual_x_centre", False),
                                                       ("spectral_residual_x_centre", True),
                                                       ("blob", False), ("blob", True)]
    blob = rows[4]
    sr = rows[2]  # the classical baseline is a real map of the image: it differs from the centre bias alone
    assert sr["cross"] is False and sr["cc"] != rows[0]["cc"] and np.isfinite(sr["score"])
    assert blob["cross"] is True and blob["trained_on"] == "salicon" and blob["dataset"] == "osie"
    assert blob["score"] == pytest.approx((1 - blob["cc"]) + blob["kld"] + (1 - 1 / (1 + np.exp(-blob["nss"])))
                                          + (1 - blob["sim"]) + (1 - blob["auc_judd"]))
    assert blob["cc"] > 0.1  # a centred blob correlates with real fixations
    md = markdown_table(rows)
    assert md.count("### osie") == 2 and "| blob (cross) |" in md and "**" in md


def test_spectral_residual_finds_the_odd_one_out():
    """Hou & Zhang's residual: a small bright square on a regular texture is where the map peaks;
    the map is a density at the image's size."""
    from salnas_core.evaluate.baselines import CenterBias, spectral_residual, spectral_residual_x_centre

    yy, xx = np.mgrid[0:120, 0:160]
    img = np.repeat((127 + 60 * np.sin(xx / 2.0))[..., None], 3, axis=2)
    img[80:92, 30:42] = 255
    sr = spectral_residual(img.astype(np.uint8))
    assert sr.shape == (120, 160) and abs(sr.sum() - 1) < 1e-9 and (sr >= 0).all()
    peak = np.unravel_index(np.argmax(sr), sr.shape)
    assert 70 <= peak[0] <= 102 and 20 <= peak[1] <= 52
    both = spectral_residual_x_centre(img.astype(np.uint8), CenterBias(0.2, 0.2), (60, 80))
    assert both.shape == (60, 80) and abs(both.sum() - 1) < 1e-9


def test_cross_dataset_models_are_also_scored_with_the_targets_post_processing(tiny_ingested):
    """A net trained elsewhere gets a second row with its blur + centre prior refitted on this dataset's
    training split (the benchmark's practice): a net whose map is flat gains the prior there, the
    shipped model is left as it was, and a net trained on this dataset gets no such row."""
    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet

    torch.manual_seed(0)
    net = build_subnet(get_space("lite").min_config()).eval()
    torch.nn.init.zeros_(net.out.conv.weight)  # flat map: sees nothing
    models = {"flat": (net, "lite", (96, 128)), "home": (net, "lite", (96, 128))}
    rows = evaluate_dataset(models, tiny_ingested, limit=4, n_other=2, trained_on={"flat": "salicon", "home": "osie"},
                            adapt=["flat", "home"], adapt_images=8, progress=False)
    names = [r["model"] for r in rows]
    assert names == ["centre_bias", "spectral_residual_x_centre", "flat", "flat (pp fitted on osie train)", "home"]
    flat, adapted = rows[2], rows[3]
    assert adapted["cross"] is True and adapted["adapted_from"] == "flat"
    fit = adapted["postprocess_fit"]
    assert fit["fitted_on"].endswith(" train") and fit["n_images"] == 8
    assert fit["centre_weight"] > 0 or fit["centre_power"] > 0
    assert adapted["cc"] > flat["cc"] + 0.05  # the prior is what a flat map lacks
    assert net.postprocess is None  # the shipped model keeps its own post-processing
