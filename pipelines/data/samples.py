"""A few small pictures of a data set: thumbnails per class, and of single image files.

Plain functions, no UI; they never raise for a bad image file (the data set report lists
those), only for a data set that can't be found or read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES_PER_CLASS = 4
THUMB_PX = 112


def samples(
    dataset: str, per_class: int = SAMPLES_PER_CLASS, px: int = THUMB_PX
) -> dict[str, list[np.ndarray]]:
    """``{class: [uint8 RGB array, ...]}``: up to ``per_class`` training images of every
    class (in sorted class order), spread over the class's files, each at most ``px``
    pixels on its longer side. Unreadable files are left out, so a class may have fewer
    (or none). :class:`~pipelines.errors.UserError` if ``dataset`` can't be resolved."""
    from pipelines.data import resolve_source
    from pipelines.data.scan import scan_folder

    scan = scan_folder(resolve_source(dataset).root)
    out: dict[str, list[np.ndarray]] = {c: [] for c in scan.classes}
    for name in scan.classes:
        files = [f for f in scan.files if f.label == name and f.split != "validation"]
        step = max(len(files) // per_class, 1)
        for f in files[::step][:per_class]:
            if (thumb := thumbnail(f.path, px)) is not None:
                out[name].append(thumb)
    return out


def thumbnail(path: str | Path, px: int) -> np.ndarray | None:
    """The image file at ``path`` upright (EXIF orientation applied) as a uint8 RGB array at
    most ``px`` pixels on its longer side; None if it is gone or not a readable image."""
    from PIL import Image, ImageOps

    from pipelines.data.images import to_rgb

    try:
        with Image.open(path) as im:
            thumb = to_rgb(ImageOps.exif_transpose(im))
            thumb.thumbnail((px, px))
            return np.asarray(thumb)
    except Exception:  # noqa: BLE001 - a moved or unreadable file is just not shown
        return None
