"""Decoding: every PIL mode to RGB, resizing, and a reason for every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipelines.data import images
from pipelines.data.images import BadImage, decode_files, read_image, to_rgb
from tests.conftest_data import pattern_image, png_header_only


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png16(pixels: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG (PIL cannot write 16-bit RGB) of ``pixels`` (h, w) or (h, w, c)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def first_pixel(data: bytes, size: int = 4) -> list[int]:
    array, _ = read_image(data, size)
    assert array.shape == (size, size, 3) and array.dtype == np.uint8
    return array[0, 0].tolist()


@pytest.mark.parametrize(
    "mode, colour, expected",
    [
        ("RGB", (10, 20, 30), [10, 20, 30]),
        ("RGBA", (10, 20, 30, 255), [10, 20, 30]),  # opaque alpha, as in Horses or Humans
        ("RGBA", (0, 0, 0, 0), [255, 255, 255]),  # transparent: composited onto white
        ("LA", (100, 255), [100, 100, 100]),
        ("L", 77, [77, 77, 77]),
        ("1", 1, [255, 255, 255]),
        ("CMYK", (0, 255, 255, 0), [255, 0, 0]),
    ],
)
def test_modes_become_rgb(mode, colour, expected):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    got = first_pixel(encode(Image.new(mode, (8, 8), colour), fmt))
    tolerance = 3 if fmt == "JPEG" else 0
    assert np.abs(np.array(got) - expected).max() <= tolerance


def test_palette_with_and_without_transparency():
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert first_pixel(encode(p)) == [200, 100, 50]
    assert first_pixel(encode(p, transparency=1)) == [255, 255, 255]


def test_sixteen_bit_images_keep_their_range():
    gray = np.full((4, 4), 0x8080, dtype=np.uint16)  # 32896 / 257 = 128
    assert first_pixel(png16(gray, colour_type=0)) == [128, 128, 128]
    rgb = np.zeros((4, 4, 3), dtype=np.uint16)
    rgb[..., 0], rgb[..., 2] = 0xFFFF, 0x4040
    assert first_pixel(png16(rgb, colour_type=2)) == [255, 0, 64]


def test_float_and_int32_grayscale():
    assert to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32), "F")).getpixel((0, 0)) == (
        128,
        128,
        128,
    )
    assert to_rgb(Image.fromarray(np.full((2, 2), 65535, np.int32), "I")).getpixel((0, 0)) == (
        255,
        255,
        255,
    )


def test_resizes_to_a_square_and_reports_the_stored_size():
    array, info = read_image(encode(pattern_image(0, 0, size=40).resize((40, 20))), 16)
    assert array.shape == (16, 16, 3)
    assert (info.width, info.height, info.mode, info.format) == (40, 20, "RGB", "PNG")
    none, info = read_image(encode(Image.new("RGBA", (5, 7))), None)
    assert none is None and (info.width, info.height, info.mode) == (5, 7, "RGBA")


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (8, 4), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 4, 4))  # left half blue, right half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    array, info = read_image(encode(im, "JPEG", exif=exif, quality=95), 4)
    assert (info.width, info.height) == (8, 4)
    assert array[0, 0, 2] > 200 and array[-1, 0, 2] < 50  # blue now on top


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"hello, not an image", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "corrupt"),
        (encode(pattern_image(1, 0), "JPEG")[:300], "truncated"),
        (encode(pattern_image(1, 0))[:-40], "truncated"),
        (png_header_only(20000, 20000), "too large"),
        (png_header_only(8000, 8000), "too large"),
    ],
)
def test_bad_data_raises_bad_image_with_a_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        read_image(data, 8)
    with pytest.raises(BadImage, match=reason):
        read_image(data, None)  # the inspection path finds the same problems


def test_pixel_cap_is_configurable():
    data = encode(Image.new("RGB", (30, 30)))
    with pytest.raises(BadImage, match="30x30"):
        read_image(data, 8, max_pixels=800)
    assert read_image(data, 8, max_pixels=900)[0].shape == (8, 8, 3)


def test_decode_files_keeps_order_and_reports_failures(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        if i in (1, 4):
            path.write_bytes(b"broken")
        else:
            pattern_image(i % 2, i).save(path)
        paths.append(path)
    paths.append(tmp_path / "gone.png")
    decoded = decode_files(paths, 8, workers=2)
    assert decoded.ok == (0, 2, 3, 5)
    assert [i for i, _ in decoded.failures] == [1, 4, 6]
    assert "unreadable" in decoded.failures[-1][1]
    assert decoded.images.shape == (4, 8, 8, 3)
    single, _ = read_image(paths[3].read_bytes(), 8)
    np.testing.assert_array_equal(decoded.images[2], single)
    assert len(set(decoded.digests)) == 4
    assert decode_files(paths, None).images is None


def test_max_pixels_default_is_under_pils_own_limit():
    assert images.MAX_PIXELS <= Image.MAX_IMAGE_PIXELS
