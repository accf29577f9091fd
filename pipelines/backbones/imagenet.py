"""A backbone's own ImageNet classifier: top-k labels for images."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from pipelines.backbones.pixels import scale_pixels
from pipelines.backbones.spec import ASSETS, BackboneSpec, resolve
from pipelines.errors import UserError
from pipelines.numerics import softmax


@lru_cache(maxsize=1)
def labels() -> list[str]:
    """The 1000 ImageNet class names, index = class id (from tensorflow-datasets, Apache-2.0)."""
    return (ASSETS / "imagenet_labels.txt").read_text().splitlines()


@lru_cache(maxsize=4)
def classifier(backbone: str):
    """``(spec, keras layer)`` for the backbone's ImageNet classification model."""
    import tensorflow_hub as hub

    from pipelines.backbones import classification_handle

    spec: BackboneSpec = resolve(backbone)
    handle = classification_handle(spec)
    try:
        return spec, hub.KerasLayer(handle)
    except Exception as e:  # noqa: BLE001 - protobuf, OS and TF errors all mean "not loadable"
        from pipelines.backbones import call_failure

        raise UserError(
            f"could not load backbone {spec.id!r} as a SavedModel: {call_failure(e)}"
        ) from e


def top_k(backbone: str, images: np.ndarray, k: int = 5) -> list[list[dict]]:
    """Top-``k`` ImageNet classes for uint8 ``images`` already at the backbone's size."""
    from pipelines.backbones import call_failure

    spec, layer = classifier(backbone)
    try:
        logits = np.asarray(layer(scale_pixels(images, spec.scaling)))
    except Exception as e:  # noqa: BLE001 - any failure here means "not an image classifier"
        size = images.shape[1]
        raise UserError(
            f"backbone {spec.id!r} can't classify a {size}x{size} RGB image "
            f"({call_failure(e)}); give an ImageNet image classification model"
        ) from e
    if logits.ndim == 2 and logits.shape[-1] == 1001:  # TF-Slim: "background" first
        logits = logits[:, 1:]
    if logits.ndim != 2 or logits.shape[-1] != 1000:
        raise UserError(
            f"backbone {spec.id!r} does not output the 1000 ImageNet classes (it returns shape "
            f"{tuple(logits.shape)}); give an ImageNet image classification model"
        )
    probs = softmax(logits)
    names = labels()
    return [
        [
            {"class_index": int(i), "label": names[i], "probability": float(p[i])}
            for i in np.argsort(-p)[:k]
        ]
        for p in probs
    ]
