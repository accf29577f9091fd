"""Seeded stratified selections: deterministic, nested, independent of listing order."""

from __future__ import annotations

from collections import Counter

from pipelines.data.subsets import per_class_subset, split_pool

LABELS = ["a"] * 30 + ["b"] * 20 + ["c"] * 5
KEYS = [f"{label}/{i:03d}.png" for i, label in enumerate(LABELS)]


def test_subset_is_stratified_deterministic_and_seeded():
    chosen = per_class_subset(LABELS, KEYS, 10, seed=0)
    assert Counter(LABELS[i] for i in chosen) == {"a": 10, "b": 10, "c": 5}
    assert chosen == per_class_subset(LABELS, KEYS, 10, seed=0) == sorted(chosen)
    assert chosen != per_class_subset(LABELS, KEYS, 10, seed=1)
    assert per_class_subset(LABELS, KEYS, None, seed=3) == list(range(len(LABELS)))


def test_smaller_subsets_are_nested_in_larger_ones():
    small, large = (set(per_class_subset(LABELS, KEYS, n, seed=7)) for n in (3, 12))
    assert small < large


def test_selection_ignores_listing_order_and_other_classes():
    order = list(reversed(range(len(LABELS))))
    shuffled = per_class_subset([LABELS[i] for i in order], [KEYS[i] for i in order], 4, seed=2)
    assert sorted(KEYS[order[i]] for i in shuffled) == sorted(
        KEYS[i] for i in per_class_subset(LABELS, KEYS, 4, seed=2)
    )
    without_c = per_class_subset(LABELS[:50], KEYS[:50], 4, seed=2)
    assert without_c == [i for i in per_class_subset(LABELS, KEYS, 4, seed=2) if i < 50]


def test_pool_split_is_stratified_disjoint_and_seeded():
    train, val = split_pool(LABELS, KEYS, 0.2, seed=0)
    assert Counter(LABELS[i] for i in val) == {"a": 6, "b": 4, "c": 1}
    assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
    assert (train, val) == split_pool(LABELS, KEYS, 0.2, seed=0)
    assert val != split_pool(LABELS, KEYS, 0.2, seed=1)[1]
    tiny_train, tiny_val = split_pool(["x", "x", "y", "y"], ["1", "2", "3", "4"], 0.9, seed=0)
    assert len(tiny_train) == len(tiny_val) == 2  # always at least one of each class each side
