"""SaliencyDataset / make_loader / load_original_ground_truth on a real ingested OSIE subset."""
import numpy as np
import pytest
import torch

from salnas_core.data import ground_truth as gt
from salnas_core.data.dataset import SaliencyDataset, load_manifest, load_original_ground_truth, make_loader
from salnas_core.data.transforms import NORMALIZATIONS, ColorJitter, PairedAugment, _shift_hue, augment_for


def test_tiny_ingested_has_both_splits(tiny_ingested):
    man = load_manifest(tiny_ingested)
    assert man["working_size"] == [96, 128]
    assert man["splits"]["train"] > 0 and man["splits"]["val"] > 0
    assert man["splits"]["train"] + man["splits"]["val"] == len(man["items"]) == 24


@pytest.mark.parametrize("norm", sorted(NORMALIZATIONS))
def test_item_shapes_and_ground_truth(tiny_ingested, norm):
    ds = SaliencyDataset(tiny_ingested, "train", normalization=norm)
    d = ds[0]
    assert d["image"].shape == (3, 96, 128) and d["image"].dtype == torch.float32
    assert d["density"].shape == (1, 96, 128) and d["fixations"].shape == (1, 96, 128)
    assert abs(float(d["density"].sum()) - 1.0) < 1e-4
    assert set(torch.unique(d["fixations"]).tolist()) <= {0.0, 1.0}
    # the fixation map is exactly the stored points
    pts = np.load(tiny_ingested / ds.items[0]["fixations"])
    assert int(d["fixations"].sum()) == len({tuple(p) for p in pts.tolist()})
    # normalisation is invertible back to the stored 8-bit image
    x = NORMALIZATIONS[norm].inverse(d["image"])
    assert float(x.min()) >= -1e-5 and float(x.max()) <= 1 + 1e-5


def test_lite_normalization_formula():
    x = torch.rand(3, 4, 5)
    assert torch.allclose(NORMALIZATIONS["lite"](x), (x * 255 - 127) / 128, atol=1e-5)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(NORMALIZATIONS["imagenet"](x[None])[0], (x - mean[:, None, None]) / std[:, None, None])


@pytest.mark.parametrize("norm", sorted(NORMALIZATIONS))
def test_numpy_and_torch_normalization_agree(norm):
    x = torch.rand(2, 3, 4, 5)
    assert np.allclose(NORMALIZATIONS[norm](x[0].numpy()), NORMALIZATIONS[norm](x)[0].numpy(), atol=1e-6)


def test_paired_augment_keeps_maps_aligned_with_pixels():
    rng = np.random.default_rng(0)
    img = np.zeros((3, 6, 8), np.float32)
    img[:, 2, 1] = 1.0  # a bright pixel with a fixation on it
    dens = np.zeros((1, 6, 8), np.float32)
    dens[0, 2, 1] = 1.0
    fix = dens.copy()
    flipped = 0
    for _ in range(20):
        a, d, f = PairedAugment(hflip_p=0.5, jitter=ColorJitter(0.3, 0.3, 0.3))(img, dens, fix, rng)
        r, c = np.argwhere(f[0] == 1)[0]
        assert d[0, r, c] == 1 and a[:, r, c].min() == a.max()  # still the brightest pixel
        flipped += c == 6
        assert 0 <= a.min() and a.max() <= 1
    assert 0 < flipped < 20


def test_loader_batches(tiny_ingested):
    dl = make_loader(tiny_ingested, "val", batch_size=4, normalization="lite")
    b = next(iter(dl))
    assert b["image"].shape[1:] == (3, 96, 128) and b["density"].shape[1:] == (1, 96, 128)
    assert torch.allclose(b["density"].sum(dim=(1, 2, 3)), torch.ones(len(b["id"])), atol=1e-4)
    assert len(make_loader(tiny_ingested, "train", 2, limit=3).dataset) == 3


def test_resize_on_the_fly_keeps_fixations(tiny_ingested):
    ds = SaliencyDataset(tiny_ingested, "val", size=(48, 64))
    d = ds[0]
    assert d["image"].shape == (3, 48, 64) and abs(float(d["density"].sum()) - 1) < 1e-4
    pts = np.load(tiny_ingested / ds.items[0]["fixations"])
    small = gt.resize_points(pts, (96, 128), (48, 64))
    assert len(small) == len(pts)
    assert int(d["fixations"].sum()) == len({tuple(p) for p in small.tolist()})


def test_augmentation_flips_all_three_together(tiny_ingested):
    flip = PairedAugment(hflip_p=1.0, jitter=None)
    plain = SaliencyDataset(tiny_ingested, "train", normalization="none")
    aug = SaliencyDataset(tiny_ingested, "train", normalization="none", augment=flip)
    a, b = plain[1], aug[1]
    for k in ("image", "density", "fixations"):
        assert torch.equal(b[k], a[k].flip(-1)), k
    # colour jitter changes the image only
    jit = SaliencyDataset(tiny_ingested, "train", normalization="none",
                          augment=PairedAugment(hflip_p=0.0, jitter=ColorJitter(0.4, 0.4, 0.4)), seed=3)
    c = jit[1]
    assert not torch.equal(c["image"], a["image"])
    assert torch.equal(c["density"], a["density"]) and torch.equal(c["fixations"], a["fixations"])


def test_hue_rotation_turns_the_colour_circle():
    red = np.zeros((3, 2, 2), np.float32)
    red[0] = 1.0
    green = _shift_hue(red, 1 / 3)
    np.testing.assert_allclose(green[:, 0, 0], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(_shift_hue(red, -1 / 3)[:, 0, 0], [0, 0, 1], atol=1e-6)
    img = np.random.default_rng(0).random((3, 5, 7), dtype=np.float32)
    np.testing.assert_allclose(_shift_hue(img, 0.0), img, atol=1e-6)
    np.testing.assert_allclose(_shift_hue(_shift_hue(img, 0.2), -0.2), img, atol=1e-5)
    gray = np.full((3, 4, 4), 0.3, np.float32)
    np.testing.assert_allclose(_shift_hue(gray, 0.2), gray, atol=1e-6)  # no hue to turn


def test_training_augmentation_per_dataset_is_the_authors():
    """SALICON: flips + ColorJitter(0.4, 0.4, 0.4, hue=0.2); every other dataset: flips only."""
    assert augment_for("salicon") == PairedAugment(0.5, ColorJitter(0.4, 0.4, 0.4, hue=0.2))
    for name in ("osie", "mit1003", "cat2000", "nus_scene", "synthetic", None):
        assert augment_for(name) == PairedAugment(0.5, None), name


def test_dataset_trains_with_its_own_augmentation(tiny_ingested, tmp_path):
    import json
    import shutil

    def images(root):
        plain = SaliencyDataset(root, "train", normalization="none")
        aug = SaliencyDataset(root, "train", normalization="none", augment=True, seed=0)
        return [(plain[i]["image"], aug[i]["image"]) for i in range(len(plain)) for _ in range(2)]

    pairs = images(tiny_ingested)  # OSIE (or the synthetic stand-in): flips only, colours untouched
    assert all(torch.equal(b, a) or torch.equal(b, a.flip(-1)) for a, b in pairs)
    assert any(torch.equal(b, a.flip(-1)) for a, b in pairs) and any(torch.equal(b, a) for a, b in pairs)
    sal = tmp_path / "salicon"
    shutil.copytree(tiny_ingested, sal)
    man = json.loads((sal / "manifest.json").read_text())
    (sal / "manifest.json").write_text(json.dumps({**man, "dataset": "salicon"}))
    assert SaliencyDataset(sal, "train", augment=True).augment.jitter.hue == 0.2
    pairs = images(sal)  # SALICON: colours jittered as well
    assert all(not torch.equal(b, a) and not torch.equal(b, a.flip(-1)) for a, b in pairs)


def test_original_ground_truth(tiny_ingested):
    man = load_manifest(tiny_ingested)
    it = man["items"][0]
    fmap, dens = load_original_ground_truth(tiny_ingested, it["id"])
    assert fmap.shape == dens.shape == tuple(it["orig_size"]) == (600, 800)
    assert abs(float(dens.sum()) - 1) < 1e-4
    orig = np.load(tiny_ingested / it["orig_fixations"])
    assert len(orig) == it["n_fixations"]
    assert fmap.sum() == len({tuple(p) for p in orig.tolist()})


def test_empty_split_is_a_clear_error(tiny_ingested):
    with pytest.raises(ValueError, match="split 'test' is empty"):
        SaliencyDataset(tiny_ingested, "test")


def test_holdout_slice_is_disjoint_from_training_images(tiny_ingested):
    """`train` is the training split minus the holdout slice that model selection scores on."""
    man = load_manifest(tiny_ingested)
    train = set(SaliencyDataset(tiny_ingested, "train").ids)
    held = set(SaliencyDataset(tiny_ingested, "holdout").ids)
    val = set(SaliencyDataset(tiny_ingested, "val").ids)
    assert held and not held & train and not held & val
    assert train | held == {it["id"] for it in man["items"] if it["split"] == "train"}
    assert sorted(held) == man["holdout"]["ids"] and man["splits"]["holdout"] == len(held)
