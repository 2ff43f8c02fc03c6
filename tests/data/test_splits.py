"""Deterministic splits; OSIE reproduces SalNAS's 500/200 split."""
import numpy as np
import pytest

from salnas_core.data.readers import get_reader
from salnas_core.data.splits import SPLIT_RULES, assign_splits, seeded_split


def test_osie_split_is_the_papers(osie_dir):
    ids = [r.id for r in get_reader("shared_json")(osie_dir).records]
    split = assign_splits("osie", ids[::-1], seed=42)  # input order must not matter
    names = sorted(ids)
    perm = np.random.RandomState(42).permutation(len(names))
    assert {names[i] for i in perm[-200:]} == {k for k, v in split.items() if v == "val"}
    assert sum(v == "train" for v in split.values()) == 500


def test_seeded_split_is_deterministic_and_seed_dependent():
    ids = [f"img{i:03d}" for i in range(100)]
    a, b = seeded_split(ids, 1), seeded_split(list(reversed(ids)), 1)
    assert a == b and sum(v == "val" for v in a.values()) == 20
    assert seeded_split(ids, 2) != a


def test_official_split_is_kept():
    ids = ["a", "b", "c"]
    assert assign_splits("salicon", ids, 0, {"a": "train", "b": "val", "c": "train"}) == {
        "a": "train", "b": "val", "c": "train"}
    # without official membership the dataset's seeded rule applies
    assert set(assign_splits("salicon", ids, 0).values()) <= {"train", "val"}


def test_every_rule_gives_train_and_val():
    ids = [str(i) for i in range(1000)]
    for name in SPLIT_RULES:
        s = assign_splits(name, ids, 0)
        assert 0 < sum(v == "val" for v in s.values()) < 1000, name


def test_holdout_is_a_deterministic_slice_of_train():
    from salnas_core.data.splits import holdout_ids

    ids = [f"im{i:03d}" for i in range(50)]
    h = holdout_ids(ids, 0.1, 42)
    assert len(h) == 5 and h <= set(ids)
    assert h == holdout_ids(list(reversed(ids)), 5, 42)  # order-free; a count or a fraction
    assert h != holdout_ids(ids, 5, 43)
    assert holdout_ids(ids, 0, 42) == set() and holdout_ids(ids, None, 42) == set()
    assert len(holdout_ids(ids[:2], 10, 0)) == 1  # at least one image left to train on
    with pytest.raises(ValueError, match="holdout"):
        holdout_ids(ids, 2.5, 0)
