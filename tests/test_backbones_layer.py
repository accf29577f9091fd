"""Freeze depth: exactly the top N blocks train, BN stays in inference mode; random init."""

import numpy as np
import pytest

from pipelines.backbones import builtin, load_layer
from pipelines.backbones.random_init import role_of
from pipelines.errors import UserError

SIZE = 48


def _snapshot(layer):
    return {v.name: v.numpy().copy() for v in layer.module_variables}


def _train_step(layer, steps=1, seed=0):
    import tf_keras as keras

    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(2)(layer(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(
        keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)
    model.fit(x, np.array([0, 1] * 4), epochs=steps, batch_size=8, verbose=0)
    return model


def _changed(before, layer):
    return {v.name for v in layer.module_variables if not np.array_equal(before[v.name], v.numpy())}


@pytest.fixture(scope="module")
def tiny_savedmodel(tmp_path_factory):
    """A small CNN saved as a TF Hub reusable SavedModel with no blocks.json."""
    import tf_keras as keras

    x = inputs = keras.Input((None, None, 3))
    for i in (1, 2, 3):
        x = keras.layers.Conv2D(4 * i, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, x)
    path = tmp_path_factory.mktemp("tiny") / "savedmodel"
    module, serving = builtin.hub_module(model)
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures={"serving_default": serving})
    return str(path)


@pytest.mark.parametrize("depth", [0, 2, 5])
def test_builtin_only_top_blocks_change(lite0_handle, depth):
    layer = load_layer("efficientnet_lite0", unfreeze_blocks=depth, image_size=SIZE)
    report = layer.freeze_report()
    top = {n for b in layer.blocks[len(layer.blocks) - depth :] for n in b.variables}
    before = _snapshot(layer)
    _train_step(layer)
    changed = _changed(before, layer)
    trainable = {v.name for v in layer.trainable_weights}
    assert changed == trainable
    assert trainable <= top
    if depth:
        # every kernel, gamma and beta of the top blocks moved...
        assert {n for n in top if "moving_" not in n} == changed
    else:
        assert changed == set()
    # ...but BN statistics did not: BatchNorm stays in inference mode while fine-tuning
    assert not any("moving_" in n for n in changed)
    assert report["block_count"] == 18
    assert report["trainable_params"] == sum(int(np.prod(v.shape)) for v in layer.trainable_weights)
    assert sum(r["trainable"] for r in report["blocks"]) == depth


def test_bn_training_updates_statistics_when_asked(lite0_handle):
    layer = load_layer("efficientnet_lite0", unfreeze_blocks=18, bn_training=True, image_size=SIZE)
    before = _snapshot(layer)
    _train_step(layer)
    changed = _changed(before, layer)
    assert any("moving_mean" in n for n in changed)


def test_depth_beyond_blocks_is_refused(lite0_handle):
    with pytest.raises(UserError, match="between 0 and 18"):
        load_layer("efficientnet_lite0", unfreeze_blocks=19, image_size=SIZE)


def test_any_savedmodel_gets_blocks_and_freezes(tiny_savedmodel):
    layer = load_layer(tiny_savedmodel, unfreeze_blocks=1, image_size=SIZE)
    assert [b.name for b in layer.blocks] == ["block1", "block2", "block3"]
    before = _snapshot(layer)
    _train_step(layer)
    assert _changed(before, layer) == {
        "block3_conv/kernel:0",
        "block3_bn/gamma:0",
        "block3_bn/beta:0",
    }


def test_random_init_same_shapes_new_values_sane_statistics(lite0_handle):
    imagenet = load_layer("efficientnet_lite0", image_size=SIZE)
    random = load_layer("efficientnet_lite0", weights="random", seed=3, image_size=SIZE)
    again = load_layer("efficientnet_lite0", weights="random", seed=3, image_size=SIZE)
    other = load_layer("efficientnet_lite0", weights="random", seed=4, image_size=SIZE)
    pairs = zip(imagenet.module_variables, random.module_variables, strict=True)
    for a, b in pairs:
        assert a.shape == b.shape and a.name == b.name
        value = b.numpy()
        role = role_of(b.name, tuple(b.shape))
        if role == "ones":
            assert np.all(value == 1)
        elif role == "zeros":
            assert np.all(value == 0)
        else:
            assert not np.allclose(a.numpy(), value)
            kh, kw, cin, _ = b.shape
            fan_in = kh * kw * (1 if role == "he_depthwise" else cin)
            assert abs(value.mean()) < 0.1 * np.sqrt(2 / fan_in) + 0.01
            assert value.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.2)
    for a, b in zip(random.module_variables, again.module_variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # seeded
    kernel = random.module_variables[0]
    assert not np.array_equal(kernel.numpy(), other.module_variables[0].numpy())
    # A random network still runs and gives finite features.
    out = random(np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32))
    assert np.isfinite(out.numpy()).all()


def test_random_init_of_any_savedmodel(tiny_savedmodel):
    layer = load_layer(tiny_savedmodel, weights="random", seed=0, image_size=SIZE)
    kernel = next(v for v in layer.module_variables if v.name == "block2_conv/kernel:0")
    assert kernel.numpy().std() == pytest.approx(np.sqrt(2 / (3 * 3 * 4)), rel=0.3)


def test_not_an_image_model_is_refused(tmp_path):
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.Input((7,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    module = tf.__internal__.tracking.AutoTrackable()
    module.variables = list(model.variables)
    module.trainable_variables = list(model.trainable_variables)
    module.regularization_losses = []
    module.__call__ = tf.function(
        lambda x, training=False: model(x),
        input_signature=[tf.TensorSpec([None, 7], tf.float32)],
    )
    tf.saved_model.save(module, str(tmp_path / "tabular"))
    with pytest.raises(UserError, match="can't take a 48x48 RGB image"):
        load_layer(str(tmp_path / "tabular"), image_size=SIZE)


def test_wrong_output_rank_is_refused(tmp_path):
    import tf_keras as keras

    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 3, name="block1_conv")(x)  # a feature map, not a vector
    module, serving = builtin.hub_module(keras.Model(inputs, x))
    import tensorflow as tf

    tf.saved_model.save(module, str(tmp_path / "map"), signatures={"serving_default": serving})
    with pytest.raises(UserError, match="not a feature vector"):
        load_layer(str(tmp_path / "map"), image_size=SIZE)


def test_keras_backbone_matches_the_savedmodel_and_splits(lite0_handle):
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    for weights in ("imagenet", "random"):
        hub_layer = load_layer("efficientnet_lite0", weights=weights, seed=5, image_size=64)
        keras_layer = load_layer(
            "efficientnet_lite0", weights=weights, seed=5, image_size=64, splittable=True
        )
        assert [b.name for b in keras_layer.blocks] == [b.name for b in hub_layer.blocks]
        assert [v.name for v in keras_layer.module_variables] == [
            v.name for v in hub_layer.module_variables
        ]
        expected = hub_layer(x).numpy()
        assert np.abs(keras_layer(x).numpy() - expected).max() < 1e-4
        bottom, top = keras_layer.split(16)
        assert np.abs(top(bottom(x)).numpy() - expected).max() < 1e-4


def test_keras_backbone_freezes_like_the_hub_layer(lite0_handle):
    layer = load_layer("efficientnet_lite0", unfreeze_blocks=2, image_size=SIZE, splittable=True)
    top = {n for b in layer.blocks[-2:] for n in b.variables}
    assert {v.name for v in layer.trainable_weights} == {n for n in top if "moving_" not in n}
    before = _snapshot(layer)
    _train_step(layer)
    changed = _changed(before, layer)
    assert changed == {n for n in top if "moving_" not in n}
    assert (
        layer.freeze_report()
        == load_layer("efficientnet_lite0", unfreeze_blocks=2, image_size=SIZE).freeze_report()
    )


def test_both_backbones_satisfy_the_contract_and_say_whether_they_split(
    lite0_handle, tiny_savedmodel
):
    from pipelines.backbones import Backbone

    hub_layer = load_layer(tiny_savedmodel, image_size=SIZE)
    keras_chain = load_layer("efficientnet_lite0", image_size=SIZE, splittable=True)
    assert isinstance(hub_layer, Backbone) and isinstance(keras_chain, Backbone)
    assert (hub_layer.can_split, keras_chain.can_split) == (False, True)
    bottom, top = keras_chain.split(len(keras_chain.blocks) - 1)
    assert bottom.variables and top.variables
    with pytest.raises(TypeError, match="split"):
        hub_layer.split(1)
