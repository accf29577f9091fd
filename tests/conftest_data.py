"""Data fixtures: tiny generated image data sets (no network, no real data).

Registered from ``conftest.py``. The helpers are plain functions too, for tests that
need a variant: ``from tests.conftest_data import make_image_folder``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pipelines  # noqa: F401 - selects Keras 2 before anything imports TensorFlow
from pipelines import settings

CLASSES = ("cats", "dogs")


def pattern_image(label: int, index: int, size: int = 32) -> Image.Image:
    """A learnable RGB image: class 0 has reddish horizontal stripes, class 1 bluish
    vertical ones; ``index`` shifts the stripes and seeds a little noise."""
    rng = np.random.default_rng([label, index])
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((yy if label == 0 else xx) + index) // 4 % 2
    base = np.array([200, 60, 40] if label == 0 else [40, 80, 200], dtype=np.float64)
    pixels = base * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_class_images(folder: Path, label: int, count: int, start: int = 0) -> None:
    """``count`` images of class ``label``, alternating PNG and JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        ext = "png" if i % 2 == 0 else "jpg"
        pattern_image(label, i).save(folder / f"img{i:03d}.{ext}")


def make_image_folder(
    root: Path,
    *,
    classes: tuple[str, ...] = CLASSES,
    train: int = 12,
    validation: int | None = 4,
) -> Path:
    """``root/train/<class>/`` and ``root/validation/<class>/``; with ``validation=None``, a
    pool ``root/<class>/`` of ``train`` images per class. Returns ``root``."""
    for label, name in enumerate(classes):
        if validation is None:
            write_class_images(root / name, label, train)
        else:
            write_class_images(root / "train" / name, label, train)
            write_class_images(root / "validation" / name, label, validation, start=1000)
    return root


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` but holds almost no data (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def add_bad_files(root: Path) -> dict[str, str]:
    """Add one of each bad case to a train/validation folder from :func:`make_image_folder`;
    return ``{relative path: a word its skip reason must contain}``."""
    good = io.BytesIO()
    pattern_image(0, 99).save(good, "JPEG")
    cats = root / "train" / "cats"
    bad = {
        "train/cats/corrupt.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt"),
        "train/cats/truncated.jpg": (good.getvalue()[: len(good.getvalue()) // 2], "truncated"),
        "train/cats/notes.txt": (b"not an image at all\n", "not an image"),
        "train/dogs/empty.png": (b"", "empty"),
        "train/dogs/bomb.png": (png_header_only(20000, 20000), "too large"),
        "train/dogs/huge.png": (png_header_only(8000, 8000), "too large"),
        "train/cats/.DS_Store": (b"\x00\x00\x00\x01Bud1", "hidden"),
        "validation/dogs/._img1001.jpg": (b"\x00\x05\x16\x07", "hidden"),
        "train/stray.png": (good.getvalue(), "outside any class folder"),
    }
    for rel, (data, _) in bad.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "train" / "__MACOSX" / "cats").mkdir(parents=True)
    (root / "train" / "__MACOSX" / "cats" / "._img000.png").write_bytes(b"\x00\x05\x16\x07")
    (root / "train" / "birds").mkdir()  # an empty class folder: ignored, reported
    (root / "validation" / "birds").mkdir()
    assert cats.is_dir()
    reasons = {rel: word for rel, (_, word) in bad.items()}
    reasons["train/__MACOSX/"] = "hidden folder"
    reasons["train/birds/"] = "empty class folder"
    reasons["validation/birds/"] = "empty class folder"
    return reasons


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """2 classes (cats, dogs) x 12 train + 4 validation images, 32x32, PNG and JPEG."""
    return make_image_folder(tmp_path / "tiny")


@pytest.fixture
def image_folder_factory(tmp_path: Path):
    """``factory(name, **make_image_folder kwargs)`` -> a fresh folder under tmp_path."""

    def factory(name: str = "data", **kwargs) -> Path:
        return make_image_folder(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def bad_image_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """:func:`tiny_image_folder` plus every bad-file case; ``(root, {path: reason word})``."""
    root = make_image_folder(tmp_path / "bad")
    return root, add_bad_files(root)


@pytest.fixture
def isolated_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DATASETS_DIR, and user caches and TFDS data under tmp_path."""
    monkeypatch.delenv("DATASETS_DIR", raising=False)
    monkeypatch.setattr(settings, "SETTINGS_FILE", tmp_path / "no-settings.toml")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr("pipelines.settings.user_cache_dir", lambda: tmp_path / "cache")
    return tmp_path


def zip_bytes(folder: Path) -> bytes:
    """A zip of ``folder``'s files, their names starting with the folder's own name (as an
    upload of that folder would have them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


# --- hostile zips, as bytes -------------------------------------------------------------------


def zip_with(
    folder: Path | None,
    *entries: tuple[str, bytes, int],
    method: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A zip of ``folder``'s files under ``shapes/`` (none for None) plus ``(name, data,
    mode)`` entries, written as given (``..`` and absolute names included); ``mode`` sets
    the Unix file type bits, e.g. ``0o120777`` for a symbolic link."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        if folder is not None:
            for p in sorted(folder.rglob("*.*")):
                zf.write(p, "shapes/" + p.relative_to(folder).as_posix())
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            if mode:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()


def declaring_size(raw: bytes, name: str, declared: int) -> bytes:
    """``raw`` with entry ``name``'s central directory header claiming ``declared`` bytes
    uncompressed (a lying zip bomb)."""
    out, at = bytearray(raw), 0
    while (at := raw.index(b"PK\x01\x02", at + 1)) >= 0:
        length = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46 : at + 46 + length] == name.encode():
            struct.pack_into("<I", out, at + 24, declared)
            return bytes(out)
    raise AssertionError(name)


def password_flagged(raw: bytes) -> bytes:
    """``raw`` with its first entry flagged as encrypted, in both headers."""
    out = bytearray(raw)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        out[out.index(sig) + offset] |= 0x1
    return bytes(out)
