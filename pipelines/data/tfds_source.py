"""TensorFlow Datasets image-classification sets, written out once as an image folder.

A TFDS builder's encoded images are copied, without decoding, into
``<user cache>/datasets/tfds/<name>/<version>/dataset/{train,validation}/<class>/``, so the
rest of the data layer treats them like any other folder (TFDS ``test`` becomes
``validation`` when there is no ``validation`` split; with ``train`` only, the folder is a
pool). ``tensorflow_datasets`` is imported only here, and only when needed: it is slow.

Without a local TFDS copy the builder would download; offline, that is found out in
seconds by a connection check instead of waiting on the download's retries.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from pathlib import Path

from pipelines import settings
from pipelines.errors import UserError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_DONE = ".complete"


class TfdsUnavailable(Exception):
    """The builder has no local copy and the network is unreachable; ``str()`` says so."""


def network_available(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)  # getaddrinfo has no timeout
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def export_dir(builder) -> Path:
    name = builder.info.full_name  # e.g. horses_or_humans/3.0.0 or glue/cola/2.0.0
    return settings.user_cache_dir() / "datasets" / "tfds" / Path(*name.split("/"))


def materialise(name: str) -> tuple[Path, str]:
    """Return ``(folder, description)`` for TFDS data set ``name``, downloading if needed.

    Raises :class:`TfdsUnavailable` when it must download and cannot, :class:`UserError`
    for a name TFDS does not know, a data set that is not image classification, or a
    failed download.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception:  # noqa: BLE001 - DatasetNotFoundError, or a malformed name
        raise UserError(
            f"{name!r} is not a folder, a .zip, or a TensorFlow Datasets name: give a folder "
            "with one sub-folder per class, a zip of one, or a TFDS image-classification "
            "name such as tf_flowers"
        ) from None
    image_key, label_key = _keys(builder, name)
    target = export_dir(builder)
    out = target / "dataset"
    description = f"TensorFlow Datasets {builder.info.full_name} (exported to {out})"
    if (target / _DONE).is_file() and out.is_dir():
        return out, description
    if not builder.is_prepared():
        if not network_available():
            raise TfdsUnavailable(
                f"TensorFlow Datasets has no local copy of {name!r} and cannot reach "
                f"{DOWNLOAD_HOST[0]} to download it"
            )
        try:
            builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 - network and parsing failures alike
            raise UserError(f"downloading {name!r} with TensorFlow Datasets failed: {e}") from e
    _export(builder, image_key, label_key, target)
    return out, description


def _keys(builder, name: str) -> tuple[str, str]:
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    image_key, label_key = keys
    if not (
        isinstance(_feature(features, image_key), tfds.features.Image)
        and isinstance(_feature(features, label_key), tfds.features.ClassLabel)
    ):
        raise UserError(
            f"TFDS data set {name!r} is not image classification (it needs an image and a "
            "class label): pick an image-classification data set such as tf_flowers"
        )
    return image_key, label_key


def _feature(features, key: str):
    try:
        return features[key]
    except (KeyError, TypeError):
        return None


def split_names(builder) -> list[str]:
    return list(builder.info.splits.keys())


def _export(builder, image_key: str, label_key: str, target: Path) -> None:
    import tensorflow_datasets as tfds

    splits = split_names(builder)
    val = next((s for s in ("validation", "test") if s in splits), None)
    if "train" in splits:
        plan = {"train": "train", val: "validation"} if val else {"train": ""}
    elif splits:
        plan = {splits[0]: ""}
    else:
        raise UserError(f"TFDS data set {builder.info.full_name} lists no splits")
    names = [_safe(n, i) for i, n in enumerate(builder.info.features[label_key].names)]
    staging = target / ".exporting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for split, dirname in plan.items():
        ds = builder.as_dataset(
            split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()}
        )
        for i, example in enumerate(tfds.as_numpy(ds)):
            data = example[image_key]
            folder = staging / dirname / names[int(example[label_key])]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}{_suffix(data)}").write_bytes(data)
    out = target / "dataset"
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    (target / _DONE).write_text(builder.info.full_name + "\n")


def _safe(name: str, index: int) -> str:
    name = re.sub(r"[\\/\x00]", "_", str(name)).strip().lstrip(".")
    return name or f"class_{index}"


def _suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".img"
