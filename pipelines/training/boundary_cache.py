"""Boundary activations on disk: the frozen bottom of a fine-tuned built-in, run once, ever.

Fine-tuning the top N blocks of a built-in trains only those blocks and the head on the
output of the frozen bottom (:meth:`pipelines.backbones.keras_backbone.KerasBackbone.split`).
With BatchNorm in inference mode that output depends only on what decides a feature
(:func:`pipelines.training.feature_cache.cache_key`: weights fingerprint, seeded random
weights, graph, cut point ``reuse_blocks``, image size, scaling, preprocessing) and on where
the bottom ends: the first trainable block (``first``) and the depth (``unfreeze_blocks``).
So the activations are stored per image (file content digest) under that key plus the
boundary, like the features, and a second fine-tuning run at the same depth on any subset of
the same images starts at once: no decoding, no bottom pass.

A feature pass computes the bottom's output on its way to the features, so when a run will
fine-tune later (or the process was told of more depths, :func:`keep_depths`: a sweep worker
names the depths its sweep will try), the arm's feature pass stores those boundaries too
(:meth:`pipelines.training.arms.Arm._feature_pass`) and fine-tuning runs no bottom pass.

Stored as float32 (the same numbers the full pass sees, so the curves are the same as the
in-memory boundary and the full forward pass): at 224 px on EfficientNet-Lite0 with the top 2
blocks trained, 36.8 KB per image (7 x 7 x 192), 46 MB for Horses or Humans' 1283 images.
The folder is ``settings.feature_cache_dir() / "boundary"``; deleting it is safe, and a failed
write only costs the recomputation next time (:meth:`FeatureCache.put`). Augmentation on: not
used (the arm runs the full forward pass, see :mod:`pipelines.training.arms`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines import settings
from pipelines.training.feature_cache import FeatureCache

BOUNDARY_VERSION = 1

_extra_depths: frozenset[int] = frozenset()  # what keep_depths said, for this process


def keep_depths(depths) -> None:
    """Fine-tuning depths (``unfreeze_blocks``) whose boundary activations every feature
    pass of this process should store as well, besides its own run's depth (a sweep
    worker's: the depths its trials will fine-tune at). Empty: only the run's own."""
    global _extra_depths
    _extra_depths = frozenset(int(d) for d in depths if d is not None and int(d) > 0)


def extra_depths() -> frozenset[int]:
    """The depths :func:`keep_depths` set (empty unless a sweep worker set them)."""
    return _extra_depths


def boundary_key(feature_key: str, *, first: int, unfreeze_blocks: int) -> str:
    """The key of one bottom's activations: the features' key (weights, graph, cut, image
    size, scaling, preprocessing) plus the boundary (first trainable block and depth)."""
    parts = {
        "version": BOUNDARY_VERSION,
        "features": feature_key,
        "first": int(first),
        "unfreeze_blocks": int(unfreeze_blocks),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def boundary_cache(key: str, root: Path | None = None) -> FeatureCache:
    """The on-disk store of one boundary's activations (per image digest)."""
    return FeatureCache(key, root=root or settings.feature_cache_dir() / "boundary")


def boundary_activations(
    key: str,
    dataset,
    bottom: Callable[[np.ndarray], np.ndarray],
    root: Path | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """``({"train": ..., "validation": ...}, note)``: each split's bottom activations, read
    from the disk cache where present, else ``bottom(images)`` over the missing images only
    (which decodes the split) and stored. ``note`` says how many came from disk
    (``"train 12/12, validation 8/8 from disk"``)."""
    cache = boundary_cache(key, root)
    out, notes = {}, []
    for split, digests in (("train", dataset.train_digests), ("validation", dataset.val_digests)):
        acts, missing = cache.get(digests)
        if acts is None:
            images = dataset.train_images if split == "train" else dataset.val_images
            computed = bottom(images[missing])
            cache.put([digests[i] for i in missing], computed)
            acts, _ = cache.get(digests)
            if acts is None:  # no digests (cannot happen for a usable data set)
                acts = computed.astype(np.float32)
        notes.append(f"{split} {len(digests) - len(missing)}/{len(digests)}")
        out[split] = acts
    return out, ", ".join(notes) + " from disk"
