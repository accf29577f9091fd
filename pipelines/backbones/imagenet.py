"""A backbone's own ImageNet classifier: top-k labels for images."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.backbones.spec import ASSETS, BackboneSpec, resolve
from pipelines.errors import UserError
from pipelines.pixels import scale_pixels


@lru_cache(maxsize=1)
def labels() -> list[str]:
    """The 1000 ImageNet class names, index = class id (from tensorflow-datasets, Apache-2.0)."""
    return (ASSETS / "imagenet_labels.txt").read_text().splitlines()


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` to a ``size`` x ``size`` RGB uint8 array; refuse non-images clearly."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    except FileNotFoundError:
        raise UserError(f"image {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise UserError(f"{str(path)!r} is not a readable image: {e}") from None


@lru_cache(maxsize=4)
def classifier(backbone: str):
    """``(spec, keras layer)`` for the backbone's ImageNet classification model."""
    import tensorflow_hub as hub

    from pipelines.backbones import classification_handle

    spec: BackboneSpec = resolve(backbone)
    return spec, hub.KerasLayer(classification_handle(spec))


def top_k(backbone: str, images: np.ndarray, k: int = 5) -> list[list[dict]]:
    """Top-``k`` ImageNet classes for uint8 ``images`` already at the backbone's size."""
    spec, layer = classifier(backbone)
    logits = np.asarray(layer(scale_pixels(images, spec.scaling)))
    if logits.shape[-1] == 1001:  # TF-Slim classifiers put "background" first
        logits = logits[:, 1:]
    if logits.shape[-1] != 1000:
        raise UserError(f"backbone {spec.id!r} does not output the 1000 ImageNet classes")
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    names = labels()
    return [
        [
            {"class_index": int(i), "label": names[i], "probability": float(p[i])}
            for i in np.argsort(-p)[:k]
        ]
        for p in probs
    ]


def classify_files(backbone: str, paths: list[str], top: int = 5) -> list[dict]:
    """``[{"image": path, "top5": [{class_index, label, probability}, ...]}]`` per file."""
    spec = resolve(backbone)
    batch = np.stack([read_image(p, spec.input_size) for p in paths])
    return [
        {"image": str(p), "top5": row}
        for p, row in zip(paths, top_k(backbone, batch, top), strict=True)
    ]
