"""``tf.data`` input pipelines over in-memory ``uint8`` images: order, augmentation, scaling.

Determinism is the point: two pipelines built with the same arguments yield the same
batches in the same order with the same augmentation, epoch after epoch, whatever the
global TensorFlow seed. All randomness is stateless, keyed on ``(seed, epoch, batch)``.
Each full pass over the dataset object is one epoch; the pass number is the epoch
(a Python counter per object, so ``model.fit(ds, epochs=n)`` sees epochs 0..n-1), unless
``epoch`` pins it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import tensorflow as tf  # importing pipelines (the package) first selected Keras 2

from pipelines.backbones.pixels import check_scaling, scale_pixels

MAX_ROTATION_DEGREES = 10.0
MAX_ZOOM = 0.1


def make_tf_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    scaling: str,
    shuffle: bool,
    seed: int = 0,
    augment: bool = False,
    num_classes: int | None = None,
    epoch: int | None = None,
) -> tf.data.Dataset:
    """Batches ``(float32 images scaled as scaling says, int32 labels)``, prefetched.

    Labels stay class indices: train with a sparse categorical loss. The last batch of an
    epoch may be smaller. ``shuffle`` reorders each epoch; ``augment`` flips left-right,
    rotates by up to 10 degrees and zooms by up to 10 % (reflecting at the borders): use it
    for training data only. ``num_classes``, if given, is checked against ``labels``.
    """
    check_scaling(scaling)
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(labels):
        raise ValueError(
            f"need images (n, h, w, 3) and n labels, got {images.shape} and {labels.shape}"
        )
    if num_classes is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got {low}..{high}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(images)
    steps = math.ceil(n / batch_size)
    images_t = tf.constant(images, dtype=tf.uint8)
    labels_t = tf.constant(labels, dtype=tf.int32)

    def one_epoch(ep: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(ep, tf.int64)])
        order = tf.range(n, dtype=tf.int32)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=key)
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()

        def load(b: tf.Tensor, idx: tf.Tensor):
            x = tf.cast(tf.gather(images_t, idx), tf.float32)
            if augment:
                x = augment_batch(x, tf.random.experimental.stateless_fold_in(key, b))
            return scale_pixels(x, scaling), tf.gather(labels_t, idx)

        return batches.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    if epoch is not None or not (shuffle or augment):
        ds = one_epoch(tf.constant(epoch or 0, tf.int64))
    else:
        counter = itertools.count()
        epochs = tf.data.Dataset.from_generator(
            lambda: iter([next(counter)]), output_signature=tf.TensorSpec((), tf.int64)
        )
        ds = epochs.flat_map(one_epoch)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    return ds.prefetch(tf.data.AUTOTUNE)


def augment_batch(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random flip, rotation and zoom of float images ``(b, h, w, c)``, one draw per image,
    fully determined by the stateless ``seed`` (shape ``[2]``)."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    b = tf.shape(x)[0]
    h = tf.cast(tf.shape(x)[1], tf.float32)
    w = tf.cast(tf.shape(x)[2], tf.float32)
    flip = tf.random.stateless_uniform([b], seeds[0]) < 0.5
    x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    limit = MAX_ROTATION_DEGREES * math.pi / 180.0
    angle = tf.random.stateless_uniform([b], seeds[1], -limit, limit)
    zoom = tf.random.stateless_uniform([b], seeds[2], 1.0 - MAX_ZOOM, 1.0 + MAX_ZOOM)
    # Output pixel p samples the input at c + R(angle) (p - c) / zoom, c the centre.
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    zeros = tf.zeros_like(cos)
    transforms = tf.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, zeros, zeros],
        axis=1,
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.shape(x)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
