"""Backbones: the catalogue, built-in ImageNet models, any TF Hub handle, freeze depth and
random initialisation.

The engine uses three entry points:

* :func:`resolve` - catalogue id / URL / Kaggle handle / folder → :class:`BackboneSpec`
  (no TensorFlow, no network);
* :func:`feature_vector_handle` - a handle ``hub.KerasLayer`` can load now: a built-in
  materialised on demand, a local folder, or a remote URL that is reachable or cached;
* :func:`load_layer` - a validated :class:`BackboneLayer` with ImageNet or random weights
  and the top N blocks trainable.
"""

from __future__ import annotations

from pipelines.backbones.contract import Backbone
from pipelines.backbones.spec import BackboneSpec, builtin_ids, catalogue, resolve
from pipelines.errors import UserError

WEIGHTS = ("imagenet", "random")

__all__ = [
    "WEIGHTS",
    "Backbone",
    "BackboneSpec",
    "builtin_ids",
    "catalogue",
    "block_table",
    "block_widths",
    "call_failure",
    "check_cut",
    "classification_handle",
    "feature_vector_handle",
    "load_layer",
    "resolve",
]


def _as_spec(backbone: str | BackboneSpec) -> BackboneSpec:
    return backbone if isinstance(backbone, BackboneSpec) else resolve(backbone)


def _loadable(spec: BackboneSpec, kind: str, remote_handle: str | None) -> str:
    from pipelines.backbones import builtin, remote
    from pipelines.backbones.spec import hub_cache_has, is_remote

    if spec.builtin:
        return str(builtin.materialise(spec.id, spec.weights_package, kind))
    if remote_handle is None:
        raise UserError(f"backbone {spec.id!r} has no {kind.replace('_', ' ')} model")
    if is_remote(remote_handle) and not hub_cache_has(remote_handle):
        remote.ensure_reachable(remote_handle, builtins=builtin_ids())
    return remote_handle


def feature_vector_handle(backbone: str | BackboneSpec) -> str:
    """A handle for the backbone's feature-vector SavedModel that loads now."""
    spec = _as_spec(backbone)
    return _loadable(spec, "feature_vector", spec.handle)


def classification_handle(backbone: str | BackboneSpec) -> str:
    """A handle for the backbone's ImageNet classification SavedModel that loads now."""
    spec = _as_spec(backbone)
    return _loadable(spec, "classification", spec.classification_handle)


def block_table(backbone: str | BackboneSpec) -> list:
    """The backbone's blocks with parameter counts, for the layer map, without Keras.

    Built-ins read ``blocks.json``; other SavedModels are loaded once to read their
    variables (seconds; callers cache it). Feed the result to ``blocks.freeze_report``.
    """
    from pipelines.backbones.blocks import count_params, derive_blocks, read_manifest

    handle = feature_vector_handle(backbone)
    blocks = read_manifest(handle)
    if blocks is not None:
        return blocks
    import tensorflow as tf

    try:
        variables = list(tf.saved_model.load(handle).variables)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise UserError(f"could not load backbone {handle!r} as a SavedModel: {e}") from e
    blocks = derive_blocks([v.name for v in variables])
    count_params(blocks, variables)
    return blocks


def load_layer(
    backbone: str | BackboneSpec,
    *,
    weights: str = "imagenet",
    unfreeze_blocks: int | None = 0,
    bn_training: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    splittable: bool = False,
    reuse_blocks: int | None = None,
) -> Backbone:
    """Load ``backbone`` as a Keras layer with ``blocks``, checked to be an image model.

    By default a :class:`BackboneLayer` over the TF Hub SavedModel. ``splittable=True``
    gives built-ins as a :class:`KerasBackbone` (same weights, can be cut at a block
    boundary); other backbones ignore it. ``reuse_blocks`` (None: all) keeps only the lowest
    that many blocks (built-ins only; :func:`pipelines.backbones.blocks.check_reuse_blocks`
    refuses the rest). ``weights="random"`` re-initialises every variable by its role,
    seeded by ``seed``: the kept blocks get the same values as in the whole random network,
    since they come first in variable order. The layer is called once on a blank
    ``image_size`` image (default: the backbone's input size) so a wrong model or an
    impossible size fails here, with a clear message.
    """
    import numpy as np
    import tensorflow as tf

    from pipelines.backbones.keras_backbone import (
        mark_warm_size_checked,
        warm_random_values,
        warm_size_checked,
    )
    from pipelines.backbones.random_init import assign_values, random_values, reinitialise

    spec = _as_spec(backbone)
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if reuse_blocks is not None and not spec.builtin:
        check_cut(spec, reuse_blocks)
    if (splittable or reuse_blocks is not None) and spec.builtin:
        from pipelines.backbones.blocks import check_reuse_blocks
        from pipelines.backbones.keras_backbone import load_keras_backbone

        layer = load_keras_backbone(spec.weights_package, bn_training=bn_training)
        check_reuse_blocks(len(layer.blocks), reuse_blocks, backbone=spec.id)
        layer = layer.cut(reuse_blocks)
    else:
        from pipelines.backbones.layer import BackboneLayer

        handle = feature_vector_handle(spec)
        try:
            layer = BackboneLayer(handle, bn_training=bn_training)
        except (OSError, ValueError, tf.errors.OpError) as e:
            raise UserError(f"could not load backbone {spec.id!r} as a SavedModel: {e}") from e
    layer.set_unfreeze_blocks(unfreeze_blocks)
    size = image_size or spec.input_size
    if not warm_size_checked(layer, size):  # a warm process's kept blocks took it before
        try:
            out = layer(np.zeros((1, size, size, 3), np.float32))
        except Exception as e:  # noqa: BLE001 - any failure here means "not usable as given"
            raise UserError(
                f"backbone {spec.id!r} can't take a {size}x{size} RGB image "
                f"({call_failure(e)}). Give an image feature-vector model, or another image size"
            ) from e
        if len(out.shape) != 2:
            raise UserError(
                f"backbone {spec.id!r} returns shape {tuple(out.shape)}, not a feature vector "
                "[batch, features]; give an image feature-vector model"
            )
        mark_warm_size_checked(layer, size)
    if weights == "random":
        variables = list(layer.module_variables)
        values = warm_random_values(layer, seed, lambda: random_values(variables, seed)[0])
        if values is None:
            reinitialise(variables, seed)
        else:  # a warm process draws each seed's values once
            assign_values(variables, values)
    return layer


def check_cut(backbone: str | BackboneSpec, reuse_blocks: int | None) -> int | None:
    """Refuse ``reuse_blocks`` for a backbone that can't be cut, or beyond its blocks,
    without TensorFlow: only the built-ins (real Keras blocks) can be cut, and their block
    count comes from the weights file. Returns the kept block count (None: all)."""
    from pipelines.backbones.blocks import check_reuse_blocks

    if reuse_blocks is None:
        return None
    spec = _as_spec(backbone)
    if not spec.builtin:
        check_reuse_blocks(
            reuse_blocks, reuse_blocks, can_cut=False, backbone=spec.id, cuttable=builtin_ids()
        )
    from pipelines.backbones.builtin import block_widths

    count = len(block_widths(spec.weights_package))
    return check_reuse_blocks(count, reuse_blocks, backbone=spec.id)


def block_widths(backbone: str | BackboneSpec) -> list[int] | None:
    """Each block's output width (channels), input to output, for the built-ins (the
    feature width at a cut); None for backbones that can't be cut."""
    spec = _as_spec(backbone)
    if not spec.builtin:
        return None
    from pipelines.backbones import builtin

    return builtin.block_widths(spec.weights_package)


def call_failure(error: BaseException) -> str:
    """Why calling a model failed, in one short line: the input shape its signature takes
    when that is the reason, else the first line of the error that is not Keras' wrapper."""
    import re

    text = str(error)
    if m := re.search(r"to TensorSpec\(shape=(\([^)]*\))", text):
        return f"it takes inputs of shape {m.group(1)}"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("Exception encountered when calling layer")
    ]
    return (lines[0][:300].rstrip(".") if lines else "") or type(error).__name__
