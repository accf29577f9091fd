"""Safe extraction of uploaded zips: traversal, links, caps, junk, unwrapping, reuse."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from pipelines.data.safezip import extract_zip
from pipelines.errors import UserError
from tests.conftest_data import make_image_folder


def zip_folder(folder: Path, zip_path: Path, *, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return zip_path


def with_entry(zip_path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "a") as zf:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return zip_path


@pytest.fixture
def folder_zip(tmp_path) -> Path:
    folder = make_image_folder(tmp_path / "src", train=3, validation=2)
    return zip_folder(folder, tmp_path / "data.zip", prefix="my-data/")


def test_extracts_and_unwraps_the_single_top_folder(folder_zip, tmp_path):
    root, skipped = extract_zip(folder_zip, tmp_path / "out")
    assert root == tmp_path / "out" / "dataset" / "my-data"
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]
    assert len(list(root.rglob("*.*"))) == 2 * (3 + 2)
    assert skipped == []


def test_a_pool_zip_without_a_top_folder_is_not_unwrapped(tmp_path):
    folder = make_image_folder(tmp_path / "src", train=2, validation=None)
    root, _ = extract_zip(zip_folder(folder, tmp_path / "pool.zip"), tmp_path / "out")
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("../evil.png", "outside the archive"),
        ("my-data/train/../../../evil.png", "outside the archive"),
        ("/etc/evil.png", "absolute path"),
        ("C:/evil.png", "absolute path"),
        ("..\\evil.png", "outside the archive"),
    ],
)
def test_traversal_entries_refuse_the_whole_zip(folder_zip, tmp_path, name, message):
    with_entry(folder_zip, name)
    target = tmp_path / "sandbox" / "out"
    with pytest.raises(UserError, match=message):
        extract_zip(folder_zip, target)
    assert not (tmp_path / "evil.png").exists()
    assert not (tmp_path / "sandbox" / "evil.png").exists()
    assert not (target / "dataset").exists()


def test_symlink_entries_are_refused(folder_zip, tmp_path):
    with_entry(folder_zip, "my-data/train/cats/link.png", b"/etc/passwd", mode=0o120777)
    with pytest.raises(UserError, match="symbolic link"):
        extract_zip(folder_zip, tmp_path / "out")


def test_size_and_count_caps(folder_zip, tmp_path):
    with pytest.raises(UserError, match="holds 10 files; the limit is 9"):
        extract_zip(folder_zip, tmp_path / "a", max_files=9)
    with_entry(folder_zip, "my-data/train/cats/zeros.png", b"\0" * 200_000)  # compresses to ~200 B
    with pytest.raises(UserError, match="would expand to .* over the .* limit"):
        extract_zip(folder_zip, tmp_path / "b", max_bytes=150_000)
    assert not (tmp_path / "b" / "dataset").exists()


def test_mac_metadata_hidden_files_and_duplicates_are_skipped(folder_zip, tmp_path):
    with_entry(folder_zip, "__MACOSX/my-data/train/cats/._img000.png")
    with_entry(folder_zip, "__MACOSX/my-data/._train")
    with_entry(folder_zip, "my-data/train/cats/.DS_Store")
    with pytest.warns(UserWarning, match="Duplicate name"):
        with_entry(folder_zip, "my-data/train/cats/img000.png", b"second copy")
    root, skipped = extract_zip(folder_zip, tmp_path / "out")
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["__MACOSX/"] == "macOS metadata (2 entries)"
    assert reasons["train/cats/.DS_Store"] == "hidden file"  # relative to the root, as scan's
    assert "duplicate" in reasons["train/cats/img000.png"]
    assert (root / "train" / "cats" / "img000.png").read_bytes() != b"second copy"
    assert not (tmp_path / "out" / "dataset" / "__MACOSX").exists()
    assert root.name == "my-data"  # __MACOSX/ beside it does not stop the unwrapping


def test_a_corrupt_entry_is_skipped_not_fatal(tmp_path):
    zip_path = tmp_path / "crc.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("cats/a.png", b"A" * 100)
        zf.writestr("cats/b.png", b"B" * 100)
    raw = bytearray(zip_path.read_bytes())
    at = raw.index(b"A" * 100)
    raw[at : at + 100] = b"Z" * 100  # same length, wrong CRC
    zip_path.write_bytes(bytes(raw))
    root, skipped = extract_zip(zip_path, tmp_path / "out")
    assert [s.path for s in skipped] == ["cats/a.png"]
    assert "BadZipFile" in skipped[0].reason
    assert not (root / "cats" / "a.png").exists()
    assert (root / "cats" / "b.png").read_bytes() == b"B" * 100


def test_not_a_zip(tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not really")
    with pytest.raises(UserError, match="not a readable zip"):
        extract_zip(fake, tmp_path / "out")


def test_password_protected_is_refused(folder_zip, tmp_path):
    raw = bytearray(folder_zip.read_bytes())
    # Set the "encrypted" flag bit in the first local header and central directory entries.
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(sig)
        raw[at + offset] |= 0x1
    folder_zip.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="password"):
        extract_zip(folder_zip, tmp_path / "out")


def test_same_zip_reuses_its_extraction_and_a_new_one_replaces_it(folder_zip, tmp_path):
    target = tmp_path / "out"
    root, _ = extract_zip(folder_zip, target)
    marker = root / "train" / "cats" / "marker"
    marker.write_text("kept")
    again, _ = extract_zip(folder_zip, target)
    assert again == root and marker.exists()
    with_entry(folder_zip, "my-data/train/cats/extra.png", b"new")
    third, _ = extract_zip(folder_zip, target)
    assert not marker.exists() and (third / "train" / "cats" / "extra.png").exists()
