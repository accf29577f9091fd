"""Decode image files once into RGB ``uint8`` arrays of one size; report the ones that fail.

:func:`read_image` is the one path every image takes: pixel cap on the header, full decode
(which is what catches truncated files), EXIF orientation, conversion to RGB, then a plain
bilinear resize to ``image_size`` x ``image_size`` (no crop: the aspect ratio is not kept).
:func:`decode_files` runs it on a thread pool; PIL releases the GIL while it decodes and
resizes, so this uses every core.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.errors import UserError

# A 50 MP RGB image decodes to 150 MB; above this a file is refused, not decoded. PIL's own
# decompression-bomb check (about 179 MP) stays in force for everything else in the process.
MAX_PIXELS = 50_000_000
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class BadImage(Exception):
    """A file that cannot be used as an image; ``str()`` is the reason shown to the user."""


@dataclass(frozen=True)
class ImageInfo:
    """An image as stored: its size, PIL mode and format."""

    width: int
    height: int
    mode: str
    format: str


@dataclass(frozen=True)
class Decoded:
    """The result of :func:`decode_files`.

    ``images[k]`` is the image of ``files[ok[k]]`` (``None`` when no size was asked for);
    ``infos`` and ``digests`` (BLAKE2b of the file's bytes) follow ``ok`` likewise;
    ``failures`` holds ``(index into files, reason)`` for the rest.
    """

    images: np.ndarray | None
    ok: tuple[int, ...]
    infos: tuple[ImageInfo, ...]
    digests: tuple[str, ...]
    failures: tuple[tuple[int, str], ...]


def read_image(
    data: bytes, image_size: int | None, *, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray | None, ImageInfo]:
    """Decode ``data`` fully; return its ``(size, size, 3)`` uint8 RGB array (or ``None``
    when ``image_size`` is ``None``) and its :class:`ImageInfo`. Raise :class:`BadImage`."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if data.startswith(_SIGNATURES):
            raise BadImage("corrupt image (its header cannot be read)") from None
        raise BadImage("not an image (no known image format)") from None
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise BadImage(f"image too large (over {limit:.0f} megapixels; a pixel bomb?)") from None
    except Exception as e:  # noqa: BLE001 - a bad file must never stop the run
        raise BadImage(f"corrupt or truncated image ({type(e).__name__}: {e})") from None
    with im:
        info = ImageInfo(im.width, im.height, im.mode, im.format or "?")
        if im.width * im.height > max_pixels:
            raise BadImage(
                f"image too large ({im.width}x{im.height} = {im.width * im.height / 1e6:.0f} "
                f"megapixels; limit {max_pixels / 1e6:.0f})"
            )
        try:
            if image_size and im.format == "JPEG":
                im.draft(None, (image_size, image_size))  # decode at a reduced scale
            im.load()
            if image_size is None:
                return None, info
            rgb = to_rgb(ImageOps.exif_transpose(im))
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), info
        except Exception as e:  # noqa: BLE001 - PIL raises many types on corrupt data
            raise BadImage(f"corrupt or truncated image ({type(e).__name__}: {e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited onto white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return Image.fromarray(_gray_to_uint8(im), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _gray_to_uint8(im: Image.Image) -> np.ndarray:
    """16-bit, 32-bit integer or float grayscale to 0..255 (PIL's own convert clips)."""
    a = np.asarray(im, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    if im.mode == "F" and top <= 1.0:
        a = a * 255.0
    elif im.mode.startswith("I;16") or top > 255.0:
        a = a / 257.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def decode_files(
    paths: Sequence[Path], image_size: int | None, *, workers: int | None = None
) -> Decoded:
    """Read and decode every file in ``paths`` (in parallel); never raises for a bad file."""
    n = len(paths)
    images = None if image_size is None else np.empty((n, image_size, image_size, 3), np.uint8)
    results: list[tuple[ImageInfo, str] | str] = [""] * n

    def work(i: int) -> None:
        try:
            data = Path(paths[i]).read_bytes()
        except OSError as e:
            results[i] = f"unreadable: {e.strerror or e}"
            return
        try:
            array, info = read_image(data, image_size)
        except BadImage as e:
            results[i] = str(e)
            return
        if images is not None:
            images[i] = array
        results[i] = (info, hashlib.blake2b(data, digest_size=16).hexdigest())

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(n)))
    ok = tuple(i for i, r in enumerate(results) if not isinstance(r, str))
    if images is not None and len(ok) < n:
        images = images[list(ok)]
    return Decoded(
        images=images,
        ok=ok,
        infos=tuple(results[i][0] for i in ok),  # type: ignore[index]
        digests=tuple(results[i][1] for i in ok),  # type: ignore[index]
        failures=tuple((i, r) for i, r in enumerate(results) if isinstance(r, str)),
    )


def read_image_file(path: str | Path, size: int) -> np.ndarray:
    """Decode the file ``path`` to a ``size`` x ``size`` RGB uint8 array as
    :func:`read_image` does (the same size caps, EXIF orientation and transparency onto
    white); refuse anything else with a :class:`UserError` naming the file."""
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
        array, _ = read_image(data, size)
    except BadImage as e:
        raise UserError(f"{shown!r} is not a readable image: {e}") from None
    return array
