"""A backbone's own ImageNet classifier: top-k labels for images."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.backbones.pixels import scale_pixels
from pipelines.backbones.spec import ASSETS, BackboneSpec, resolve
from pipelines.errors import UserError
from pipelines.numerics import softmax


@lru_cache(maxsize=1)
def labels() -> list[str]:
    """The 1000 ImageNet class names, index = class id (from tensorflow-datasets, Apache-2.0)."""
    return (ASSETS / "imagenet_labels.txt").read_text().splitlines()


def read_image(path: str | Path, size: int) -> np.ndarray:
    """Decode ``path`` to a ``size`` x ``size`` RGB uint8 array the way the data layer does
    (:func:`pipelines.data.images.read_image`: the same size caps, EXIF orientation and
    transparency onto white); refuse anything else with a message naming the file."""
    from pipelines.data.images import BadImage
    from pipelines.data.images import read_image as decode
    from pipelines.data.scan import MAX_FILE_BYTES

    shown = str(path)
    try:
        file = Path(path)
        if file.is_dir():
            raise UserError(f"{shown!r} is a folder, not an image file")
        length = file.stat().st_size
        if length == 0:
            raise UserError(f"image {shown!r} is an empty file (0 bytes)")
        if length > MAX_FILE_BYTES:
            raise UserError(
                f"image {shown!r} is too large ({length / 2**20:.0f} MB; limit "
                f"{MAX_FILE_BYTES >> 20} MB)"
            )
        data = file.read_bytes()
    except FileNotFoundError:
        raise UserError(f"image {shown!r} does not exist") from None
    except OSError as e:
        raise UserError(f"cannot read image {shown!r}: {e.strerror or e}") from None
    try:
        array, _ = decode(data, size)
    except BadImage as e:
        raise UserError(f"{shown!r} is not a readable image: {e}") from None
    return array


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


def classify_files(backbone: str, paths: list[str], top: int = 5) -> list[dict]:
    """``[{"image": path, "top5": [{class_index, label, probability}, ...]}]`` per file."""
    spec = resolve(backbone)
    batch = np.stack([read_image(p, spec.input_size) for p in paths])
    return [
        {"image": str(p), "top5": row}
        for p, row in zip(paths, top_k(backbone, batch, top), strict=True)
    ]
