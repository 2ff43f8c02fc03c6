"""Fixtures for the serve tests: real small subnets and a folder of awkward real images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread for these small nets: on a busy 2-core runner torch's 2-thread pool
    spins and costs several times the CPU (measured 1.7 s vs 0.25 s per forward); restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn(net, seed: int = 0) -> None:
    """Non-trivial BN statistics, so folding them into convolutions is really exercised."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_((torch.rand(n, generator=gen) - 0.5) * 0.2)
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            m.weight.data.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
            m.bias.data.copy_((torch.rand(n, generator=gen) - 0.5) * 0.2)


def make_model(space: str, out: Path, seed: int = 0, meta: dict | None = None) -> Path:
    """The min subnet of a real space (random init, randomised BN), saved with save_model."""
    import torch

    from salnas_core.spaces import get_space
    from salnas_core.supernet import build_subnet, save_model

    torch.manual_seed(seed)
    sub = build_subnet(get_space(space).min_config()).eval()
    _randomise_bn(sub, seed)
    return save_model(out, sub, meta={"variant": f"{space}-min", "note": "random weights, test only", **(meta or {})})


@pytest.fixture(scope="session")
def lite_model(tmp_path_factory) -> Path:
    """`lite` min subnet (the default space): the model most serve tests run."""
    return make_model("lite", tmp_path_factory.mktemp("serve_models") / "lite" / "model.pt")


@pytest.fixture(scope="session")
def salnas_model(tmp_path_factory) -> Path:
    return make_model("salnas", tmp_path_factory.mktemp("serve_models") / "salnas" / "model.pt")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present: {path}")
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Real OSIE / NUS Scene photos in the forms users have them, plus two broken files."""
    from PIL import Image

    osie = _need(SHARED / "osie" / "stimuli")
    scene = _need(SHARED / "nus_scene" / "stimuli")
    d = tmp_path_factory.mktemp("user_images")
    shutil.copy(osie / "1001.jpg", d / "photo.jpg")                      # 800x600 JPEG
    shutil.copy(scene / "135.jpg", d / "wide.jpg")                       # 288x172, odd aspect
    rgb = Image.open(osie / "1002.jpg").convert("RGB")
    gray = rgb.convert("L")
    gray.save(d / "gray.png")
    Image.fromarray((np.asarray(gray).astype(np.uint16) * 257)).save(d / "deep16.png")  # 16-bit grey
    rgba = Image.open(osie / "1003.jpg").convert("RGBA")
    alpha = np.tile(np.linspace(64, 255, rgba.width).astype(np.uint8), (rgba.height, 1))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(d / "rgba.png")
    Image.open(osie / "1004.jpg").convert("CMYK").save(d / "cmyk.jpg")
    rot = Image.open(osie / "1005.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    rot.save(d / "rotated.jpg", exif=exif)
    (d / "sub").mkdir()
    shutil.copy(scene / "047.jpg", d / "sub" / "photo.jpg")              # same stem, other folder
    data = (osie / "1006.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])            # corrupt: cut short
    (d / "notes.png").write_text("this is not an image\n")               # corrupt: wrong content
    return d
