"""Bad input: every case gets a message naming the file, a count in report.json, and no silent change."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salnas_core.data import ground_truth as gt
from salnas_core.data.ingest import _orientation_point_map, ingest, load_image
from salnas_core.data.readers import get_reader

H, W = 30, 40


def _rgb(seed=0, hw=(H, W)):
    return np.random.RandomState(seed).randint(0, 255, size=(*hw, 3), dtype=np.uint8)


def _entry(name, hw=(H, W), pts=((5, 7), (10, 20), (29, 39))):
    """fixations.json entry; pts are pixel indices (row, col) -> MATLAB 1-based x/y."""
    return {"file": f"stimuli/{name}", "width": hw[1], "height": hw[0],
            "subjects": [{"subject": 0, "x": [c + 1.0 for r, c in pts], "y": [r + 1.0 for r, c in pts]}]}


def _dataset(root: Path, files: dict[str, bytes | Image.Image], entries: list[dict]) -> Path:
    (root / "stimuli").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        p = root / "stimuli" / name
        if isinstance(content, Image.Image):
            content.save(p)
        else:
            p.write_bytes(content)
    (root / "fixations.json").write_text(json.dumps({"dataset": "t", "images": entries}))
    return root


def _run(tmp_path, src):
    summary = ingest(src, "shared_json", tmp_path / "out", working_size=(15, 20), name="t", sigma=2.0,
                     progress=False, workers=1)
    out = tmp_path / "out" / "t"
    return summary, json.loads((out / "report.json").read_text()), json.loads((out / "manifest.json").read_text())


def _jpeg_bytes(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_every_problem_is_named_counted_and_isolated(tmp_path, caplog):
    good = _jpeg_bytes(_rgb(0))
    files = {
        "good.jpg": good,
        "truncated.jpg": good[: len(good) // 2],
        "garbage.jpg": b"this is not an image at all" * 10,
        "empty.jpg": b"",
        "nofix.jpg": _jpeg_bytes(_rgb(1)),
        "unlisted.jpg": _jpeg_bytes(_rgb(2)),
        "outside.jpg": _jpeg_bytes(_rgb(3)),
        "wrongsize.jpg": _jpeg_bytes(_rgb(4, (W, H))),
        "edge.jpg": _jpeg_bytes(_rgb(5)),
    }
    entries = [_entry("good.jpg"), _entry("truncated.jpg"), _entry("garbage.jpg"), _entry("empty.jpg"),
               {**_entry("nofix.jpg"), "subjects": []}, _entry("missing.jpg"),
               _entry("outside.jpg", pts=((5, 7), (-3, 4), (40, 2), (2, 80))), _entry("wrongsize.jpg"),
               _entry("edge.jpg", pts=((5, 7), (-0.6, 4), (29.8, 39.9)))]
    src = _dataset(tmp_path / "src", files, entries)
    with caplog.at_level("WARNING"):
        summary, report, man = _run(tmp_path, src)

    kinds = report["counts"]["by_kind"]
    assert kinds == {"corrupt_image": 3, "image_without_fixations": 2, "fixations_without_image": 1,
                     "fixation_outside_image": 1, "size_mismatch": 1, "fixation_on_edge": 1}
    by_file = {Path(p["file"]).name: p for p in report["problems"]}
    assert "truncated" in by_file["truncated.jpg"]["message"]
    assert by_file["empty.jpg"]["message"].startswith("empty image file")
    assert by_file["unlisted.jpg"]["kind"] == "image_without_fixations"
    assert by_file["nofix.jpg"]["kind"] == "image_without_fixations"
    assert by_file["fixations.json"]["kind"] == "fixations_without_image" and "missing" in by_file["fixations.json"]["message"]
    assert "3 of 4 fixations outside" in by_file["outside.jpg"]["message"]
    assert "declares 30x40" in by_file["wrongsize.jpg"]["message"]
    assert "2 of 3 fixations less than 1 px outside" in by_file["edge.jpg"]["message"]
    # every problem was logged with its file name
    for name in ("truncated.jpg", "garbage.jpg", "outside.jpg", "wrongsize.jpg", "unlisted.jpg"):
        assert any(name in r.getMessage() for r in caplog.records), name

    # the good items are there, with exactly their fixations
    assert [it["id"] for it in man["items"]] == ["edge", "good", "outside"]
    assert {it["id"]: it["n_fixations"] for it in man["items"]} == {"edge": 3, "good": 3, "outside": 1}
    edge = np.load(tmp_path / "out" / "t" / "fixations" / "edge.orig.npy").tolist()
    assert sorted(edge) == [[0, 4], [5, 7], [29, 39]]  # clipped onto the border pixels
    assert report["counts"]["ingested"] == 3 and report["counts"]["errors"] == 7
    assert report["counts"]["skipped"] == 6  # listed entries not ingested (unlisted.jpg was never an entry)


def _ingest_one(tmp_path, img: Image.Image, name="x.png", pts=((5, 7), (10, 20))):
    src = _dataset(tmp_path / "src", {name: img}, [_entry(name, hw=(img.height, img.width), pts=pts)])
    summary, report, man = _run(tmp_path, src)
    assert summary["images"] == 1, report["problems"]
    return report, man


def test_grayscale_is_replicated_not_altered(tmp_path):
    g = np.random.RandomState(0).randint(0, 255, size=(H, W), dtype=np.uint8)
    arr, _, warns = load_image(_save(tmp_path / "g.png", Image.fromarray(g, "L")))
    assert arr.shape == (H, W, 3) and all(np.array_equal(arr[:, :, c], g) for c in range(3))
    assert [w.kind for w in warns] == ["image_mode"] and "grayscale" in warns[0].message
    report, _ = _ingest_one(tmp_path, Image.fromarray(g, "L"))
    assert report["counts"]["by_kind"] == {"image_mode": 1}


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    im = Image.fromarray(a)  # mode I;16
    arr, _, warns = load_image(_save(tmp_path / "a.png", im))
    # Pillow's own convert("L") would clip 32896 and 65535 to 255; scaling keeps the tones
    assert arr[0, :, 0].tolist() == [0, 1, 128, 255]
    assert "16-bit" in warns[0].message


def _png48(a: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[r].astype(">u2").tobytes() for r in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_sixteen_bit_rgb_is_reported(tmp_path):
    a = np.array([[[0, 257, 65535], [32896, 1000, 60000]]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    p.write_bytes(_png48(a))
    arr, _, warns = load_image(p)
    assert arr.tolist() == [[[0, 1, 255], [128, 3, 234]]]  # within 1 of v * 255 / 65535
    assert [w.kind for w in warns] == ["image_mode"] and "16-bit per channel RGB" in warns[0].message


def test_rgba_cmyk_palette(tmp_path):
    rgb = _rgb(0)
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    arr, _, warns = load_image(_save(tmp_path / "opaque.png", Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(arr, rgb) and "fully opaque" in warns[0].message
    rgba[:10, :10, 3] = 0
    arr, _, warns = load_image(_save(tmp_path / "transp.png", Image.fromarray(rgba, "RGBA")))
    assert (arr[:10, :10] == 128).all() and np.array_equal(arr[20:, 20:], rgb[20:, 20:])
    assert "composited over grey" in warns[0].message
    cmyk = Image.fromarray(rgb).convert("CMYK")
    arr, _, warns = load_image(_save(tmp_path / "c.jpg", cmyk))
    assert arr.shape == (H, W, 3) and "CMYK" in warns[0].message
    pal = Image.fromarray(rgb).convert("P")
    arr, _, warns = load_image(_save(tmp_path / "p.png", pal))
    assert arr.shape == (H, W, 3) and warns == []  # palette expansion changes nothing


def _save(path: Path, im: Image.Image, **kw) -> Path:
    im.save(path, **kw)
    return path


def _exif(orientation: int):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotation_moves_fixations_with_the_pixels(tmp_path, orientation):
    raw = np.zeros((H, W, 3), np.uint8)
    marks = [(3, 5), (20, 33), (12, 2)]
    for k, (r, c) in enumerate(marks):
        raw[r, c] = (255, 60 * k, 0)
    path = _save(tmp_path / "r.png", Image.fromarray(raw), exif=_exif(orientation))
    pts = np.array(marks, dtype=float) + 0.5
    arr, moved, warns = load_image(path, pts, declared_hw=(H, W))
    idx = gt.to_indices(moved, arr.shape[:2])
    for k, (r, c) in enumerate(idx):
        assert tuple(arr[r, c]) == (255, 60 * k, 0)
    assert (orientation != 1) == any(w.kind == "exif_rotation" for w in warns)


def test_exif_rotated_item_is_ingested_with_its_fixations(tmp_path):
    raw = _rgb(0)
    raw[5, 7] = (255, 0, 255)
    img = Image.fromarray(raw)
    src = _dataset(tmp_path / "src", {}, [_entry("r.png", pts=((5, 7),))])
    img.save(src / "stimuli" / "r.png", exif=_exif(6))  # declared 30x40 = the stored (raw) size
    summary, report, man = _run(tmp_path, src)
    assert summary["images"] == 1 and report["counts"]["by_kind"] == {"exif_rotation": 1}
    it = man["items"][0]
    assert it["orig_size"] == [W, H]  # upright
    (r, c), = np.load(tmp_path / "out" / "t" / it["orig_fixations"]).tolist()
    upright = np.asarray(Image.open(src / "stimuli" / "r.png").transpose(Image.Transpose.ROTATE_270))
    assert tuple(upright[r, c]) == (255, 0, 255)


def test_exif_rotation_declared_in_displayed_frame(tmp_path):
    # annotations that declare the upright size were recorded on the upright image: points stay
    raw = np.zeros((H, W, 3), np.uint8)
    path = _save(tmp_path / "r.png", Image.fromarray(raw), exif=_exif(6))
    pts = np.array([[1.5, 2.5]])
    arr, same, warns = load_image(path, pts, declared_hw=(W, H))
    assert arr.shape[:2] == (W, H) and np.array_equal(same, pts)
    assert "already in the rotated frame" in warns[0].message


def test_orientation_point_map_is_a_bijection_on_pixels():
    h, w = 5, 7
    pts = np.stack(np.mgrid[0:h, 0:w], -1).reshape(-1, 2) + 0.5
    for o in range(2, 9):
        out = _orientation_point_map(o, h, w, pts)
        shape = (w, h) if o >= 5 else (h, w)
        idx = gt.to_indices(out, shape)
        assert gt.inside(out, shape).all() and len(set(map(tuple, idx.tolist()))) == h * w


@pytest.mark.parametrize("content,match", [(b"", "empty .mat"), (b"MATLAB 5.0 garbage" * 5, "malformed .mat")])
def test_empty_or_malformed_mat_names_the_file(tmp_path, content, match):
    (tmp_path / "stimuli").mkdir()
    (tmp_path / "fixations.mat").write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        get_reader("osie")(tmp_path)
    assert str(tmp_path / "fixations.mat") in str(e.value)


def test_mat_without_the_expected_variable(tmp_path):
    import scipy.io

    (tmp_path / "stimuli").mkdir()
    scipy.io.savemat(tmp_path / "fixations.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match=r"no variable 'fixations' .*has: \['other'\]"):
        get_reader("osie")(tmp_path)


def test_malformed_per_image_mat_is_counted_and_skipped(tmp_path):
    import scipy.io

    (tmp_path / "DUT-OMRON-image").mkdir()
    (tmp_path / "DUT-OMRON-eye-fixations" / "mat").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(_rgb(k)).save(tmp_path / "DUT-OMRON-image" / f"i{k}.jpg")
    scipy.io.savemat(tmp_path / "DUT-OMRON-eye-fixations" / "mat" / "i0.mat",
                     {"s": np.array([[W, H, 0], [3, 4, 1], [10, 11, 2]], float)})
    (tmp_path / "DUT-OMRON-eye-fixations" / "mat" / "i1.mat").write_bytes(b"")
    summary = ingest(tmp_path, "dut_omron", tmp_path / "out", working_size=(15, 20), progress=False, workers=1)
    report = json.loads((tmp_path / "out" / "dut_omron" / "report.json").read_text())
    assert summary["images"] == 1
    assert report["counts"]["by_kind"] == {"malformed_annotation": 1}
    assert report["problems"][0]["file"].endswith("i1.mat") and "empty .mat" in report["problems"][0]["message"]


@pytest.mark.parametrize("text,match", [("", "malformed JSON"), ("{\"images\": [", "malformed JSON"),
                                        ("[1, 2]", "'images' list")])
def test_empty_or_malformed_json_names_the_file(tmp_path, text, match):
    (tmp_path / "fixations.json").write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        get_reader("shared_json")(tmp_path)
    assert "fixations.json" in str(e.value)


def test_malformed_json_entry_is_counted(tmp_path):
    src = _dataset(tmp_path / "src", {"a.jpg": _jpeg_bytes(_rgb(0))},
                   [_entry("a.jpg"), {"file": "stimuli/b.jpg", "subjects": [{"x": [1, 2], "y": [1]}]}, {"nofile": 1}])
    summary, report, _ = _run(tmp_path, src)
    assert summary["images"] == 1 and report["counts"]["by_kind"] == {"malformed_annotation": 2}
    assert "different lengths" in " ".join(p["message"] for p in report["problems"])
