"""make_tf_dataset: pixel scaling, int labels, and batches that two arms see identically."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines.backbones.pixels import IMAGENET_MEAN, IMAGENET_STD, SCALINGS
from pipelines.data.pipeline import augment_batch, make_tf_dataset

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
LABELS = np.arange(10, dtype=np.int64) % 3


def epochs(ds: tf.data.Dataset, n: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [[(x.numpy(), y.numpy()) for x, y in ds] for _ in range(n)]


def pixel(value: int, scaling: str) -> np.ndarray:
    images = np.full((1, 2, 2, 3), value, np.uint8)
    ds = make_tf_dataset(images, [0], batch_size=1, scaling=scaling, shuffle=False)
    return next(iter(ds))[0].numpy()[0, 0, 0]


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
        make_tf_dataset(IMAGES, LABELS, batch_size=2, scaling="bogus", shuffle=False)


def test_unshuffled_batches_keep_order_and_types():
    ds = make_tf_dataset(IMAGES, LABELS, batch_size=4, scaling="raw_0_255", shuffle=False)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int32
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), IMAGES)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), LABELS)
    assert ds.cardinality().numpy() == 3


def arm(seed: int = 5, **kw) -> tf.data.Dataset:
    args = dict(batch_size=4, scaling="0_1", shuffle=True, seed=seed, augment=True)
    return make_tf_dataset(IMAGES, LABELS, **(args | kw))


def test_two_arms_see_identical_batches_epoch_after_epoch():
    tf.random.set_seed(1)
    first = epochs(arm(), 3)
    tf.random.set_seed(999)  # the global seed plays no part
    _ = tf.random.uniform([3])
    second = epochs(arm(), 3)
    for e1, e2 in zip(first, second, strict=True):
        for (x1, y1), (x2, y2) in zip(e1, e2, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    orders = [np.concatenate([y for _, y in e]) for e in first]
    assert all(sorted(o) == sorted(LABELS) for o in orders)
    flat = [np.concatenate([x for x, _ in e]) for e in first]
    assert not np.array_equal(flat[0], flat[1])  # a new order and new draws each epoch
    other_seed = np.concatenate([x for x, _ in epochs(arm(seed=6), 1)[0]])
    assert not np.array_equal(flat[0], other_seed)


def test_pinned_epoch_matches_that_pass_of_the_counting_dataset():
    counted = epochs(arm(), 3)
    pinned = epochs(arm(epoch=2), 1)[0]
    for (x1, y1), (x2, y2) in zip(counted[2], pinned, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_keras_fit_runs_one_epoch_per_pass():
    import tf_keras as keras

    ds = arm()
    model = keras.Sequential([keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    # The dataset's next pass is epoch 2, exactly as a fresh one's third pass.
    np.testing.assert_array_equal(
        np.concatenate([y for _, y in epochs(ds, 1)[0]]),
        np.concatenate([y for _, y in epochs(arm(), 3)[2]]),
    )


def test_augmentation_changes_only_what_it_should():
    x = tf.constant(IMAGES[:4], tf.float32)
    out = augment_batch(x, tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == x.shape and not np.array_equal(out, x.numpy())
    assert out.min() >= 0 and out.max() <= 255
    shuffled_only = epochs(arm(augment=False), 1)[0]
    values = np.sort(np.concatenate([x for x, _ in shuffled_only]).ravel())
    np.testing.assert_allclose(values, np.sort(IMAGES.ravel()) / 255.0, rtol=1e-6)


def test_argument_checks():
    with pytest.raises(ValueError, match="labels must lie in"):
        make_tf_dataset(IMAGES, LABELS, batch_size=2, scaling="0_1", shuffle=False, num_classes=2)
    with pytest.raises(ValueError, match="need images"):
        make_tf_dataset(IMAGES[..., 0], LABELS, batch_size=2, scaling="0_1", shuffle=False)
