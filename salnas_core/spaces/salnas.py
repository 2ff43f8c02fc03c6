"""`salnas`: the search space of the SalNAS paper (AttentiveNAS MobileNetV3-style encoder,
Swish everywhere, SE in mb3/mb5/mb6/mb7, 1x1 expansion to 6x the mb7 width, input long side
256 or 384)."""
from __future__ import annotations

from .base import SpaceSpec, StageSpec

SALNAS = SpaceSpec(
    name="salnas",
    description="SalNAS paper space (AttentiveNAS-style MBConv encoder + SalNAS decoder)",
    normalization="imagenet",
    stem_widths=(16, 24),
    stages=(
        #         name   widths                 depths               kernels  expands    s  SE
        StageSpec("mb1", (16, 24), (1, 2), (3, 5), (1,), 1, False),
        StageSpec("mb2", (24, 32), (3, 4, 5), (3, 5), (4, 5, 6), 2, False),
        StageSpec("mb3", (32, 40), (3, 4, 5, 6), (3, 5), (4, 5, 6), 2, True),
        StageSpec("mb4", (64, 72), (3, 4, 5, 6), (3, 5), (4, 5, 6), 2, False),
        StageSpec("mb5", (112, 120, 128), (3, 4, 5, 6, 7, 8), (3, 5), (4, 5, 6), 1, True),
        StageSpec("mb6", (192, 200, 208, 216), (3, 4, 5, 6, 7, 8), (3, 5), (6,), 2, True),
        StageSpec("mb7", (216, 224), (1, 2), (3, 5), (6,), 1, True),
    ),
    resolutions=(256, 384),
    act="swish",
    decoder_act="swish",
    head_expand=6,
    shortcut="projection",
    padding="symmetric",
    bn_eps=1e-5,
)


def attentivenas_unused_shortcut_params(config: dict) -> int:
    """Parameters of the 1x1 shortcut convs that AttentiveNAS's static model builds in every block
    but never runs (identity residuals). The paper's counts (20.98 M / 6.35 M) include them; our
    static subnets do not build them. Used to reproduce the paper's numbers."""
    cfg = SALNAS.validate_config(config)
    w, n = cfg["width"], 0
    for s, st in enumerate(SALNAS.stages):
        for j in range(cfg["depth"][s]):
            cin, stride = (w[s], st.stride) if j == 0 else (w[s + 1], 1)
            if stride == 1 and cin == w[s + 1]:
                n += cin * w[s + 1]
    return n
