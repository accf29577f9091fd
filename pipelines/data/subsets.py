"""Seeded, stratified selections: a validation split from a pool, N training images per class.

Each class is shuffled on its own, by a generator keyed on ``(seed, purpose, class name)``,
so a class's selection does not depend on the other classes, and for one seed the first
``N`` of a class are the same whatever ``N``: 10 images per class are a subset of 50.
Items within a class are ordered by their key (the file's relative path) before shuffling,
so the result does not depend on the order the file system lists them in.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np


def _class_order(keys: Sequence[str], idx: list[int], seed: int, purpose: int, name: str):
    idx = sorted(idx, key=lambda i: keys[i])
    rng = np.random.default_rng([seed, purpose, zlib.crc32(name.encode())])
    return [idx[j] for j in rng.permutation(len(idx))]


def _by_class(labels: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    return groups


def split_pool(
    labels: Sequence[str], keys: Sequence[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices ``(train, validation)``: ``round(fraction * n)`` of each class's ``n`` items,
    at least 1 and at most ``n - 1``, go to validation. Both lists are sorted."""
    train: list[int] = []
    val: list[int] = []
    for name, idx in _by_class(labels).items():
        order = _class_order(keys, idx, seed, 1, name)
        k = min(max(1, round(fraction * len(order))), len(order) - 1)
        val += order[:k]
        train += order[k:]
    return sorted(train), sorted(val)


def per_class_subset(
    labels: Sequence[str], keys: Sequence[str], n: int | None, seed: int
) -> list[int]:
    """Sorted indices of ``n`` items per class (all of a class that has fewer; all if None)."""
    if n is None:
        return list(range(len(labels)))
    chosen: list[int] = []
    for name, idx in _by_class(labels).items():
        chosen += _class_order(keys, idx, seed, 2, name)[:n]
    return sorted(chosen)
