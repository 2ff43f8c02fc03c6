"""Every reader, on small files written here in the dataset's real on-disk layout and formats.

Each builder writes two images (30x40 and 24x36 unless stated) and their fixations in the
format's own convention (MATLAB 1-based x/y, [y x] orders, 0-based indices, binary maps,
COCO-style JSON ...) from the same pixel indices, and the test checks the reader gives those
pixels back. The real ../shared/data files are read by the osie / nus_scene / shared_json
readers and compared against each other.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from salnas_core.data import ground_truth as gt
from salnas_core.data.ingest import ingest
from salnas_core.data.readers import READERS, get_reader

SIZES = {"a": (30, 40), "b": (24, 36)}
# pixel indices (row, col); "a" has a repeated fixation (two viewers on one pixel)
POINTS = {
    "a": np.array([[0, 0], [5, 7], [5, 7], [29, 39], [12, 20], [20, 3]]),
    "b": np.array([[1, 2], [23, 35], [10, 10], [11, 30]]),
}
BINARY_FORMATS = {"mit1003", "cat2000", "toronto"}  # store a binary map: repeats count once


def _img(path: Path, hw, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    Image.fromarray(rng.randint(0, 255, size=(*hw, 3), dtype=np.uint8)).save(path)


def _binary(key):
    m = np.zeros(SIZES[key], dtype=np.uint8)
    m[POINTS[key][:, 0], POINTS[key][:, 1]] = 1
    return m


def _subjects_xy(key):
    """Split the points over two viewers; MATLAB 1-based pixel-centre coordinates."""
    p = POINTS[key]
    halves = [p[: len(p) // 2], p[len(p) // 2:]]
    return [(h[:, 1] + 1.0, h[:, 0] + 1.0) for h in halves]  # (x, y)


def _nus_struct_cell(names):
    cells = np.empty((len(names), 1), dtype=object)
    for i, (key, fname) in enumerate(names):
        subs = np.empty((2, 1), dtype=object)
        for j, (x, y) in enumerate(_subjects_xy(key)):
            subs[j, 0] = {"fix_x": x[None, :], "fix_y": y[None, :], "fix_duration": np.full((1, len(x)), 200.0)}
        cells[i, 0] = {"img": fname, "subjects": subs}
    return cells


def build_shared_json(root: Path) -> dict:
    images = []
    for k, key in enumerate(SIZES):
        _img(root / "stimuli" / f"{key}.jpg", SIZES[key], k)
        subjects = [{"subject": j, "x": x.tolist(), "y": y.tolist(), "dur_ms": [200] * len(x)}
                    for j, (x, y) in enumerate(_subjects_xy(key))]
        images.append({"file": f"stimuli/{key}.jpg", "width": SIZES[key][1], "height": SIZES[key][0],
                       "subjects": subjects})
    (root / "fixations.json").write_text(json.dumps({"dataset": "t", "images": images}))
    return {"a": "a", "b": "b"}


def build_osie(root: Path) -> dict:
    # original repo layout: data/stimuli + data/eye/fixations.mat
    for k, key in enumerate(SIZES):
        _img(root / "stimuli" / f"{1001 + k}.jpg", SIZES[key], k)
    (root / "eye").mkdir()
    scipy.io.savemat(root / "eye" / "fixations.mat", {"fixations": _nus_struct_cell([("a", "1001.jpg"), ("b", "1002.jpg")])})
    return {"1001": "a", "1002": "b"}


def build_fiwi(root: Path) -> dict:
    for k, key in enumerate(SIZES):
        _img(root / "stimuli" / f"page{k}.png", SIZES[key], k)
    scipy.io.savemat(root / "fixations.mat", {"fixations": _nus_struct_cell([("a", "page0.png"), ("b", "page1.png")])})
    return {"page0": "a", "page1": "b"}


def build_nus_scene(root: Path) -> dict:
    for k, key in enumerate(SIZES):
        _img(root / "stimuli" / f"{k + 1:03d}.jpg", SIZES[key], k)
    cells = np.empty((2, 3), dtype=object)  # third subject slot empty, as in the release
    for i, key in enumerate(SIZES):
        for j, (x, y) in enumerate(_subjects_xy(key)):
            cells[i, j] = np.stack([y, x, np.arange(len(x)) * 0.3, np.full(len(x), 0.2)], axis=1)  # [y x on dur]
        cells[i, 2] = np.zeros((0, 0))
    scipy.io.savemat(root / "fixations.mat", {"fixations": cells})
    scipy.io.savemat(root / "imgInfo.mat", {"imgInfo": {"size": np.array([SIZES["a"], SIZES["b"]], dtype=np.uint16)}})
    return {"001": "a", "002": "b"}


def build_salicon(root: Path) -> dict:
    names = {"a": "COCO_train2014_000000000009", "b": "COCO_val2014_000000000042"}
    for k, (key, split) in enumerate((("a", "train"), ("b", "val"))):
        _img(root / "images" / split / f"{names[key]}.jpg", SIZES[key], k)
        gaze = np.empty((1, 2), dtype=[("location", "O"), ("timestamp", "O"), ("fixations", "O")])
        for j, (x, y) in enumerate(_subjects_xy(key)):
            xy = np.stack([x, y], axis=1)
            gaze[0, j] = (xy + 0.3, np.arange(len(x))[:, None] * 10.0, xy)
        (root / "fixations" / split).mkdir(parents=True)
        scipy.io.savemat(root / "fixations" / split / f"{names[key]}.mat",
                         {"image": names[key], "resolution": np.array([SIZES[key]]), "gaze": gaze})
    _img(root / "images" / "test" / "COCO_test2014_000000000001.jpg", (20, 20))
    (root / "maps" / "train").mkdir(parents=True)
    return {names["a"]: "a", names["b"]: "b"}


def build_salicon_json(root: Path) -> dict:
    names = {"a": "COCO_train2014_000000000009", "b": "COCO_val2014_000000000042"}
    for k, (key, split) in enumerate((("a", "train"), ("b", "val"))):
        _img(root / "images" / split / f"{names[key]}.jpg", SIZES[key], k)
        anns = [{"id": j, "image_id": 7 + k, "worker_id": j, "fixations": [[int(y), int(x)] for x, y in zip(*xy)]}
                for j, xy in enumerate(_subjects_xy(key))]  # 1-based [row, col]
        data = {"images": [{"id": 7 + k, "file_name": f"{names[key]}.jpg", "height": SIZES[key][0],
                            "width": SIZES[key][1]}], "annotations": anns}
        (root / f"fixations_{split}2014.json").write_text(json.dumps(data))
    return {names["a"]: "a", names["b"]: "b"}


def build_mit1003(root: Path) -> dict:
    for k, key in enumerate(SIZES):
        name = f"i{k}_static_street_p10{k}"
        _img(root / "ALLSTIMULI" / f"{name}.jpeg", SIZES[key], k)
        (root / "ALLFIXATIONMAPS").mkdir(exist_ok=True)
        # JPEG like the release: the compression smears each point, the reader must still find it
        Image.fromarray(_binary(key) * 255).save(root / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", quality=90)
        Image.fromarray(_binary(key) * 128).save(root / "ALLFIXATIONMAPS" / f"{name}_fixMap.jpg")
    return {"i0_static_street_p100": "a", "i1_static_street_p101": "b"}


def build_cat2000(root: Path) -> dict:
    for k, (key, cat) in enumerate((("a", "Action"), ("b", "Sketch"))):
        _img(root / "trainSet" / "Stimuli" / cat / "001.jpg", SIZES[key], k)
        (root / "trainSet" / "Stimuli" / cat / "Output").mkdir()
        (root / "trainSet" / "FIXATIONLOCS" / cat).mkdir(parents=True)
        scipy.io.savemat(root / "trainSet" / "FIXATIONLOCS" / cat / "001.mat", {"fixLocs": _binary(key).astype(bool)})
    return {"Action__001": "a", "Sketch__001": "b"}


def build_toronto(root: Path) -> dict:
    fd = root / "eyetrackingdata" / "fixdens"
    for k, key in enumerate(SIZES):
        _img(fd / "Original Image Set" / f"{k + 1}.jpg", SIZES[key], k)
    cells = np.empty((1, 2), dtype=object)
    cells[0, 0], cells[0, 1] = _binary("a").astype(float), _binary("b").astype(float)
    scipy.io.savemat(fd / "origfixdata.mat", {"white": cells})
    return {"1": "a", "2": "b"}


def build_dut_omron(root: Path) -> dict:
    for k, key in enumerate(SIZES):
        _img(root / "DUT-OMRON-image" / f"sun_{k}.jpg", SIZES[key], k)
        p = POINTS[key]
        subj = np.where(np.arange(len(p)) < len(p) // 2, 1, 2)
        s = np.vstack([[SIZES[key][1], SIZES[key][0], 0], np.stack([p[:, 1], p[:, 0], subj], axis=1)])  # [x y subj], 0-based
        (root / "DUT-OMRON-eye-fixations" / "mat").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "DUT-OMRON-eye-fixations" / "mat" / f"sun_{k}.mat", {"s": s.astype(float)})
    return {"sun_0": "a", "sun_1": "b"}


def build_pascal_s(root: Path) -> dict:
    for k, key in enumerate(SIZES):
        _img(root / "datasets" / "imgs" / "pascal" / f"{k + 1}.jpg", SIZES[key], k)
    cells = np.empty((1, 2), dtype=object)
    for i, key in enumerate(SIZES):
        rows = [np.stack([y, x, np.full(len(x), j + 1.0)], axis=1) for j, (x, y) in enumerate(_subjects_xy(key))]
        cells[0, i] = np.vstack(rows)  # [y x subject], 1-based
    (root / "datasets" / "fixations").mkdir(parents=True)
    scipy.io.savemat(root / "datasets" / "fixations" / "pascalFix.mat", {"fixCell": cells})
    return {"1": "a", "2": "b"}


BUILDERS = {
    "shared_json": ("shared_json", build_shared_json), "osie": ("osie", build_osie), "fiwi": ("fiwi", build_fiwi),
    "nus_scene": ("nus_scene", build_nus_scene), "salicon": ("salicon", build_salicon),
    "salicon_json": ("salicon", build_salicon_json), "mit1003": ("mit1003", build_mit1003),
    "cat2000": ("cat2000", build_cat2000), "toronto": ("toronto", build_toronto),
    "dut_omron": ("dut_omron", build_dut_omron), "pascal_s": ("pascal_s", build_pascal_s),
}


def test_every_registered_format_has_a_builder():
    assert {fmt for fmt, _ in BUILDERS.values()} == set(READERS)


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_reader_returns_the_written_fixations(tmp_path, case):
    fmt, build = BUILDERS[case]
    expected = build(tmp_path)
    res = get_reader(fmt)(tmp_path)
    assert res.problems == []
    got = {r.id: r for r in res.records}
    assert set(got) == set(expected)
    for rid, key in expected.items():
        rec = got[rid]
        assert rec.image is not None and rec.image.exists()
        idx = gt.to_indices(rec.points_rc, SIZES[key])
        want = POINTS[key]
        if fmt in BINARY_FORMATS:
            assert sorted(map(tuple, idx.tolist())) == sorted(set(map(tuple, want.tolist())))
        else:
            # every fixation, repeats included, lands back on its pixel, at the pixel centre
            assert sorted(map(tuple, idx.tolist())) == sorted(map(tuple, want.tolist()))
            np.testing.assert_allclose(np.sort(rec.points_rc, axis=0), np.sort(want + 0.5, axis=0), atol=1e-6)
    if case.startswith("salicon"):
        assert {r.split for r in res.records} == {"train", "val"}


@pytest.mark.parametrize("case", sorted(BUILDERS))
def test_ingest_every_format(tmp_path, case):
    fmt, build = BUILDERS[case]
    expected = build(tmp_path / "src")
    summary = ingest(tmp_path / "src", fmt, tmp_path / "out", working_size=(15, 20), name="t", sigma=2.0,
                     progress=False, workers=1)
    assert summary["images"] == 2 and summary["errors"] == 0
    man = json.loads((tmp_path / "out" / "t" / "manifest.json").read_text())
    for it in man["items"]:
        key = expected[it["id"]]
        n = len(set(map(tuple, POINTS[key].tolist()))) if fmt in BINARY_FORMATS else len(POINTS[key])
        assert it["n_fixations"] == n and it["orig_size"] == list(SIZES[key])
        assert len(np.load(tmp_path / "out" / "t" / it["fixations"])) == n
        d = np.load(tmp_path / "out" / "t" / it["density"])
        assert d.shape == (15, 20) and abs(float(d.sum()) - 1) < 1e-5
    if case.startswith("salicon"):
        assert {it["id"]: it["split"] for it in man["items"]} == {
            "COCO_train2014_000000000009": "train", "COCO_val2014_000000000042": "val"}


def test_mit1003_point_detection_survives_heavier_jpeg(tmp_path):
    build_mit1003(tmp_path)
    name = "i0_static_street_p100"
    Image.fromarray(_binary("a") * 255).save(tmp_path / "ALLFIXATIONMAPS" / f"{name}_fixPts.jpg", quality=60)
    rec = {r.id: r for r in get_reader("mit1003")(tmp_path).records}[name]
    got = set(map(tuple, gt.to_indices(rec.points_rc, SIZES["a"]).tolist()))
    assert got == set(map(tuple, POINTS["a"].tolist()))


# --- the real data: two readers of two files of the same release must agree -------------------

def test_real_osie_mat_matches_fixations_json(osie_dir):
    mat = {r.id: r for r in get_reader("osie")(osie_dir).records}
    js = {r.id: r for r in get_reader("shared_json")(osie_dir).records}
    assert len(mat) == len(js) == 700
    assert sum(r.n_fixations for r in mat.values()) == 98321
    for rid in ("1001", "1350", "1700"):
        np.testing.assert_allclose(mat[rid].points_rc, js[rid].points_rc, atol=0.006)  # JSON keeps 2 decimals


def test_real_scene_mat_matches_fixations_json(scene_dir):
    mat = {r.id: r for r in get_reader("nus_scene")(scene_dir).records}
    js = {r.id: r for r in get_reader("shared_json")(scene_dir).records}
    assert len(mat) == len(js) == 500
    assert sum(r.n_fixations for r in mat.values()) == 43894
    for rid in ("001", "003", "250", "500"):
        assert mat[rid].size_hw == js[rid].size_hw
        np.testing.assert_allclose(np.sort(mat[rid].points_rc, 0), np.sort(js[rid].points_rc, 0), atol=0.006)
