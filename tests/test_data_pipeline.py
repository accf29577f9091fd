"""The batches training draws: epoch order, pixel scaling and seeded augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines.backbones.pixels import IMAGENET_MEAN, IMAGENET_STD, SCALINGS
from pipelines.data.pipeline import augment_batch, epoch_order, image_batch

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)


def batch(images=IMAGES, scaling="0_1", *, augment=True, seed=5, epoch=0, step=0) -> np.ndarray:
    return image_batch(images, scaling, augment=augment, seed=seed, epoch=epoch, step=step).numpy()


def pixel(value: int, scaling: str) -> np.ndarray:
    return batch(np.full((1, 2, 2, 3), value, np.uint8), scaling, augment=False)[0, 0, 0]


@pytest.mark.parametrize(
    "scaling, at_0, at_255",
    [
        ("minus1_1", [-1.0] * 3, [1.0] * 3),
        ("0_1", [0.0] * 3, [1.0] * 3),
        (
            "imagenet_mean_std",
            [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
            [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)],
        ),
        ("raw_0_255", [0.0] * 3, [255.0] * 3),
    ],
)
def test_each_scaling(scaling, at_0, at_255):
    np.testing.assert_allclose(pixel(0, scaling), at_0, rtol=1e-6)
    np.testing.assert_allclose(pixel(255, scaling), at_255, rtol=1e-6)


def test_every_catalogue_scaling_is_covered():
    assert set(SCALINGS) == {"minus1_1", "0_1", "imagenet_mean_std", "raw_0_255"}
    with pytest.raises(ValueError, match="unknown pixel scaling"):
        batch(scaling="bogus", augment=False)


def test_epoch_order_is_a_seeded_permutation_per_epoch():
    np.random.seed(1)  # the global NumPy seed plays no part
    first = [epoch_order(5, e, 10) for e in range(3)]
    np.random.seed(999)
    assert all(np.array_equal(a, epoch_order(5, e, 10)) for e, a in enumerate(first))
    assert all(sorted(o) == list(range(10)) for o in first)
    assert not np.array_equal(first[0], first[1])  # a new order each epoch
    assert not np.array_equal(first[0], epoch_order(6, 0, 10))  # and per seed


def test_unaugmented_batches_are_the_images_as_float32():
    out = batch(IMAGES[:4], "raw_0_255", augment=False)
    assert out.dtype == np.float32 and out.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(out, IMAGES[:4])


def test_augmentation_draws_follow_seed_epoch_and_step_only():
    tf.random.set_seed(1)
    first = batch()
    tf.random.set_seed(999)  # the global seed plays no part
    _ = tf.random.uniform([3])
    np.testing.assert_array_equal(first, batch())  # what a second arm is handed
    assert not np.array_equal(first, batch(step=1))
    assert not np.array_equal(first, batch(epoch=1))
    assert not np.array_equal(first, batch(seed=6))


def test_augmentation_changes_only_what_it_should():
    x = tf.constant(IMAGES[:4], tf.float32)
    out = augment_batch(x, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == x.shape and not np.array_equal(out, x.numpy())
    assert out.min() >= 0 and out.max() <= 255
    scaled = batch(augment=True)
    assert scaled.shape == IMAGES.shape and scaled.min() >= 0 and scaled.max() <= 1
