"""Fixation and density maps: counts survive resizing, densities sum to 1, sigma scales sanely."""
import numpy as np
import pytest

from salnas_core.data import ground_truth as gt


def test_resize_keeps_every_fixation_including_repeats():
    rng = np.random.RandomState(0)
    pts = rng.uniform([0, 0], [600, 800], size=(500, 2))
    pts = np.vstack([pts, pts[:50]])  # 50 exact repeats (two viewers, same spot)
    for to in [(288, 384), (30, 40), (1, 1), (1200, 1600)]:
        idx = gt.resize_points(pts, (600, 800), to)
        assert idx.shape == (550, 2) and idx.dtype == np.int32
        assert (idx >= 0).all() and (idx[:, 0] < to[0]).all() and (idx[:, 1] < to[1]).all()
    # many fixations on one pixel after a strong downscale: all rows kept, map is still binary
    small = gt.resize_points(pts, (600, 800), (2, 2))
    assert len(small) == 550
    fmap = gt.fixation_map(small, (2, 2))
    assert set(np.unique(fmap)) <= {0.0, 1.0} and gt.fixation_counts(small, (2, 2)).sum() == 550


def test_resize_maps_pixel_centres():
    idx = np.array([[0, 0], [1, 1], [599, 799], [300, 401]], dtype=np.int32)
    assert gt.resize_points(idx, (600, 800), (300, 400)).tolist() == [[0, 0], [0, 0], [299, 399], [150, 200]]
    assert gt.resize_points(idx, (600, 800), (600, 800)).tolist() == idx.tolist()
    up = gt.resize_points(np.array([[0, 0], [2, 3]]), (3, 4), (30, 40))
    assert up.tolist() == [[5, 5], [25, 35]]  # centres of the 10x10 blocks


def test_inside_and_to_indices():
    pts = np.array([[0.0, 0.0], [29.99, 39.99], [30.0, 5.0], [-0.01, 3.0], [np.nan, 1.0], [5.0, 40.0]])
    assert gt.inside(pts, (30, 40)).tolist() == [True, True, False, False, False, False]
    assert gt.to_indices(pts[:2], (30, 40)).tolist() == [[0, 0], [29, 39]]


@pytest.mark.parametrize("sigma", [0.0, 1.0, 5.5, 19.0])
def test_density_sums_to_one(sigma):
    pts = np.array([[0, 0], [10, 10], [10, 10], [29, 39]])
    d = gt.density_map(pts, (30, 40), sigma)
    assert d.dtype == np.float32 and d.shape == (30, 40)
    assert abs(float(d.sum(dtype=np.float64)) - 1.0) < 1e-6 and (d >= 0).all()
    if sigma == 0:
        assert d[10, 10] == pytest.approx(0.5)  # a repeated fixation weighs twice
    if sigma < 10:  # mass peaks where fixations are (a wide blur of 4 points peaks in between)
        assert np.unravel_index(d.argmax(), d.shape) == (10, 10)


def test_density_without_fixations_is_an_error():
    with pytest.raises(ValueError, match="no fixations"):
        gt.density_map(np.zeros((0, 2), int), (5, 5), 2.0)


@pytest.mark.parametrize("shape,sigma", [((120, 90), 7.3), ((37, 300), 24.0), ((20, 20), 0.7)])
def test_fft_blur_equals_direct_blur(shape, sigma):
    rng = np.random.RandomState(1)
    counts = gt.fixation_counts(rng.randint(0, shape, size=(40, 2)), shape)
    direct = gt.gaussian_blur(counts, sigma, method="direct")
    fft = gt.gaussian_blur(counts, sigma)
    np.testing.assert_allclose(fft, direct, atol=1e-6 * direct.max())


def test_scale_sigma():
    assert gt.scale_sigma(24, (600, 800), (288, 384)) == pytest.approx(11.52)
    assert gt.scale_sigma(8, (256, 256), (256, 256)) == pytest.approx(8)
    assert gt.scale_sigma(10, (100, 100), (200, 200)) == pytest.approx(20)


def test_working_size_density_matches_downscaled_original(osie_dir):
    """Density built at 288x384 from mapped points ~= the original-size density, downscaled."""
    from salnas_core.data.readers import get_reader

    rec = next(r for r in get_reader("shared_json")(osie_dir).records if r.id == "1001")
    orig = gt.density_map(gt.to_indices(rec.points_rc, (600, 800)), (600, 800), 24.0)
    small = gt.density_map(gt.resize_points(rec.points_rc, (600, 800), (288, 384)), (288, 384),
                           gt.scale_sigma(24.0, (600, 800), (288, 384)))
    from PIL import Image

    down = np.asarray(Image.fromarray(orig.astype(np.float32), "F").resize((384, 288), Image.Resampling.BILINEAR))
    cc = np.corrcoef(down.ravel(), small.ravel())[0, 1]
    assert cc > 0.99
