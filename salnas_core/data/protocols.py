"""Data and evaluation protocols: which ground truth, splits and scoring size a number comes from.

Two protocols, one table each (ingest and evaluate read them; docs/datasets.md and docs/metrics.md
explain them):

- `mit` (default): the MIT saliency benchmark's practice. Densities rebuilt from fixations with
  each dataset's published sigma (data.ingest.DATASET_SIGMA), this project's splits
  (data.splits.SPLIT_RULES), metrics at each image's original size, blur as params say.
- `authors`: the SalNAS authors' code (github chakkritte/SalNAS, `download.py`, `data.py`,
  `train_salnas.py`), for numbers comparable with the paper's tables: their sigmas, split sizes and
  CAT2000 stratification, predictions and ground truth at 384x384 (480x640 for SALICON) with the
  11x11, sigma 10.5 blur always on, fixation maps resized bilinearly and thresholded at 0.5.
  Not reproduced: the released maps of SALICON, MIT1003, CAT2000 and PASCAL-S (densities are rebuilt
  from fixations with the published sigmas; docs/datasets.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from salnas_core.errors import UserError

from .splits import SplitRule


def category_of(item_id: str) -> str:
    """CAT2000 ids are "<Category>__<NNN>" (data.readers.cat2000)."""
    return item_id.split("__", 1)[0]


@dataclass(frozen=True)
class Protocol:
    """One protocol's departures from the defaults (empty tables: the defaults hold)."""

    name: str
    # dataset -> (sigma px, at image size (H, W), source): overrides ingest.DATASET_SIGMA and the
    # sigma a dataset's own fixations.json declares
    sigma: dict[str, tuple[float, tuple[int, int], str]] = field(default_factory=dict)
    splits: dict[str, SplitRule] = field(default_factory=dict)  # overrides splits.SPLIT_RULES
    # evaluation size (H, W) per dataset ("*": any other); None: each image's original size
    eval_size: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    blur: bool | None = None  # None: the evaluate params' blur list; True/False: always that
    fixation_threshold: float | None = None  # resized binary fixation maps: > this is a fixation

    def eval_size_for(self, dataset: str) -> tuple[int, int] | None:
        return self.eval_size.get(dataset, self.eval_size.get("*"))


_AUTHORS = "authors' code, github chakkritte/SalNAS"
PROTOCOLS: dict[str, Protocol] = {
    "mit": Protocol("mit"),
    "authors": Protocol(
        "authors",
        sigma={  # gaussian_filter on the 600x800 / 300x400 / 768x1360 binary maps
            "osie": (16.0, (600, 800), f"{_AUTHORS}, download.py L291"),
            "dut_omron": (16.0, (300, 400), f"{_AUTHORS}, download.py L358"),
            "fiwi": (30.0, (768, 1360), f"{_AUTHORS}, download.py L406"),
        },
        splits={  # the seed-42 shuffle of the sorted names, the authors' validation sizes (data.py)
            "osie": SplitRule(n_val=200),                      # 500/200, L482-483 (= mit)
            "mit1003": SplitRule(n_val=200),                   # 803/200, L213-214
            "cat2000": SplitRule(val_fraction=0.2, stratify=category_of),  # 80/20 per category, L295-320
            "pascal_s": SplitRule(n_val=200),                  # 650/200, L400-401
            "dut_omron": SplitRule(n_val=1000),                # 4168/1000, L564-565
            "fiwi": SplitRule(n_val=50),                       # 99/50, L646-647
        },
        eval_size={"salicon": (480, 640), "*": (384, 384)},
        blur=True,
        fixation_threshold=0.5,
    ),
}
DEFAULT_PROTOCOL = "mit"


def get_protocol(name: str | None) -> Protocol:
    """The protocol called `name` (None: the default); a one-line error for an unknown one."""
    name = name or DEFAULT_PROTOCOL
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r} (have: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]
