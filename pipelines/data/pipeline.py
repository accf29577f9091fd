"""The batches training draws from in-memory ``uint8`` images: order, augmentation, scaling.

Determinism is the point: every arm of an experiment gets the same batches in the same
order with the same augmentation draws, epoch after epoch, whatever the global NumPy or
TensorFlow seed. The order is a permutation seeded by ``(seed, epoch)``
(:func:`epoch_order`); augmentation is stateless, keyed on ``(seed, epoch, step)``
(:func:`image_batch`). :mod:`pipelines.training.loop` draws each batch once and hands it
to every arm.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf  # importing pipelines (the package) first selected Keras 2

from pipelines.backbones.pixels import scale_pixels

MAX_ROTATION_DEGREES = 10.0
MAX_ZOOM = 0.1


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training images' order in ``epoch``: a seeded permutation, the same for all arms."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def image_batch(
    images: np.ndarray, scaling: str, *, augment: bool, seed: int, epoch: int, step: int
) -> tf.Tensor:
    """``uint8`` ``images`` ``(b, h, w, 3)`` as the float32 batch a backbone eats.

    With ``augment``, each image is flipped, rotated and zoomed (:func:`augment_batch`) by
    draws fixed by ``(seed, epoch, step)``; then the pixels are scaled as ``scaling`` says.
    """
    x = tf.cast(tf.constant(images), tf.float32)
    if augment:
        x = augment_batch(x, tf.constant([seed * 1_000_003 + epoch, step], tf.int64))
    return scale_pixels(x, scaling)


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
