"""Deterministic train/val/test splits, one rule per dataset (config table SPLIT_RULES).

Every rule sorts the ids by name first, so the split depends only on the set of names and the
seed, never on file-system order. OSIE follows SalNAS: numpy.random.RandomState(42).permutation
over the 700 sorted names, the last 200 are validation, the other 500 training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class SplitRule:
    """Seeded permutation of the sorted ids; the last `n_val` (or `val_fraction`) go to val.

    A dataset that ships its own split (the reader sets Record.split, e.g. SALICON) keeps it.
    `stratify`: id -> group; the rule then applies within each group (CAT2000's categories).
    """

    n_val: int | None = None
    val_fraction: float = 0.2
    stratify: Callable[[str], str] | None = None


SPLIT_RULES: dict[str, SplitRule] = {
    "osie": SplitRule(n_val=200),                 # SalNAS: 500 train / 200 val
    "nus_scene": SplitRule(val_fraction=0.2),     # no official split: 400 / 100
    "salicon": SplitRule(),  # official images/train, images/val kept (test has no public fixations)
    "mit1003": SplitRule(n_val=100),              # common 903 / 100 protocol (no official split)
    "cat2000": SplitRule(val_fraction=0.2),       # official test set has no public fixations
    "pascal_s": SplitRule(val_fraction=0.2),
    "dut_omron": SplitRule(val_fraction=0.2),
    "fiwi": SplitRule(val_fraction=0.2),
    "toronto": SplitRule(val_fraction=0.2),
    "synthetic": SplitRule(val_fraction=0.25),
}
DEFAULT_RULE = SplitRule(val_fraction=0.2)


def seeded_split(ids: list[str], seed: int, n_val: int | None = None, val_fraction: float = 0.2) -> dict[str, str]:
    """id -> "train" | "val": sorted ids, RandomState(seed).permutation, last n_val are val."""
    names = sorted(ids)
    if len(set(names)) != len(names):
        raise ValueError("split: duplicate ids")
    n = len(names)
    if n_val is None:
        n_val = int(round(val_fraction * n))
    n_val = max(0, min(n_val, n))
    perm = np.random.RandomState(seed).permutation(n)
    val = set(perm[n - n_val:].tolist()) if n_val else set()
    return {name: ("val" if i in val else "train") for i, name in enumerate(names)}


def assign_splits(dataset: str, ids: list[str], seed: int, official: dict[str, str | None] | None = None,
                  rules: dict[str, SplitRule] | None = None) -> dict[str, str]:
    """Split membership for `ids` under the dataset's rule: `rules` (a protocol's, data.protocols)
    over SPLIT_RULES."""
    rule = (rules or {}).get(dataset) or SPLIT_RULES.get(dataset, DEFAULT_RULE)
    official = official or {}
    if ids and all(official.get(i) for i in ids):
        return {i: official[i] for i in ids}
    if rule.stratify is None:
        return seeded_split(ids, seed, rule.n_val, rule.val_fraction)
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(rule.stratify(i), []).append(i)
    out: dict[str, str] = {}
    for members in groups.values():  # the same rule inside each group
        out.update(seeded_split(members, seed, rule.n_val, rule.val_fraction))
    return out


def holdout_ids(train_ids: list[str], holdout: int | float | None, seed: int) -> set[str]:
    """The slice of the training split that search and distill score on (never trained on).

    `holdout`: a number of images (int >= 1) or a fraction of the training ids (0 < x < 1); 0 or
    None: none. Sorted ids, `RandomState(seed + 1).permutation`, the first n: deterministic, and
    independent of the train/val permutation (seed) it is carved from.
    """
    if not holdout:
        return set()
    h = float(holdout)
    if h < 0 or (h >= 1 and h != int(h)):
        raise ValueError(f"holdout: a number of images (int >= 1) or a fraction in (0, 1), got {holdout!r}")
    names = sorted(set(train_ids))
    n = int(round(h * len(names))) if h < 1 else int(h)
    n = max(0, min(n, len(names) - 1))  # leave at least one image to train on
    perm = np.random.RandomState(seed + 1).permutation(len(names))
    return {names[i] for i in perm[:n].tolist()}
