"""Inference for "try your own image": decode an uploaded file, run an arm's SavedModel.

Plain functions, no UI. An arm's inference SavedModel (see :mod:`pipelines.training.export`)
is loaded once per process and kept (:func:`inference_model`, an LRU keyed by the folder and
its ``saved_model.pb``'s modification time, so a rebuilt model is loaded afresh).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import UserError

MODELS_KEPT = 8
IMAGE_HINT = "upload a photo (JPEG, PNG, WebP, BMP or GIF)"


def decode(data: bytes, size: int, name: str = "that file") -> np.ndarray:
    """An image file's bytes as a ``size`` x ``size`` uint8 RGB array; :class:`UserError`
    naming ``name`` and the reason (empty, not an image, truncated, too large) if not."""
    from pipelines.data.images import BadImage, read_image

    if not data:
        raise UserError(f"{name} is an empty file (0 bytes): {IMAGE_HINT}")
    try:
        pixels, _ = read_image(data, size)
    except BadImage as e:
        raise UserError(f"{name} is not a usable image: {e}; {IMAGE_HINT}") from None
    return pixels


def inference_model(model_dir: str | Path) -> Any:
    """The SavedModel in ``model_dir``, loaded once and kept (up to :data:`MODELS_KEPT`)
    while its ``saved_model.pb`` is unchanged. OSError if there is none."""
    path = Path(model_dir)
    return _load(str(path), (path / "saved_model.pb").stat().st_mtime)


@functools.lru_cache(maxsize=MODELS_KEPT)
def _load(path: str, mtime: float) -> Any:
    import tensorflow as tf

    import pipelines  # noqa: F401 - Keras 2 before TensorFlow

    return tf.saved_model.load(path)


def predict(model_dir: str | Path, image: np.ndarray) -> list[float]:
    """Class probabilities (in the arm's class order, summing to 1) of one uint8 RGB
    ``image`` already at the model's size, from the inference SavedModel in ``model_dir``."""
    import tensorflow as tf

    model = inference_model(model_dir)
    batch = tf.constant(image[None].astype(np.float32))
    return [float(p) for p in model.serve(batch)["probabilities"].numpy()[0]]


def imagenet_top5(backbone: str, image_bytes: bytes) -> list[dict[str, Any]]:
    """The backbone's own ImageNet top-5 (``{label, probability}``, most likely first) for
    an image file's bytes; :class:`UserError` for a file that is not an image or a backbone
    that is no ImageNet classifier."""
    from pipelines.backbones import resolve
    from pipelines.backbones.imagenet import top_k

    size = resolve(backbone).input_size
    return top_k(backbone, decode(image_bytes, size)[None], 5)[0]
