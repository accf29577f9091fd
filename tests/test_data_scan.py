"""Folder layouts, class discovery and the cheap per-file checks of pipelines.data.scan."""

from __future__ import annotations

import pytest

from pipelines.data.scan import scan_folder
from pipelines.errors import UserError


def test_train_validation_layout(tiny_image_folder):
    scan = scan_folder(tiny_image_folder)
    assert not scan.pooled
    assert scan.split_dirs == {"train": "train", "validation": "validation"}
    assert scan.classes == ["cats", "dogs"]
    by_split = {(f.split, f.label) for f in scan.files}
    assert by_split == {(s, c) for s in ("train", "validation") for c in ("cats", "dogs")}
    assert len(scan.files) == 2 * (12 + 4)
    assert scan.skipped == []


def test_test_folder_is_the_validation_split(image_folder_factory):
    root = image_folder_factory()
    (root / "validation").rename(root / "test")
    scan = scan_folder(root)
    assert scan.split_dirs == {"train": "train", "validation": "test"}
    assert sum(f.split == "validation" for f in scan.files) == 8


def test_pool_layout_and_train_only(image_folder_factory):
    pool = scan_folder(image_folder_factory("pool", validation=None))
    assert pool.pooled and pool.split_dirs == {"pool": ""}
    assert {f.split for f in pool.files} == {"pool"}
    assert pool.files[0].relpath == "cats/img000.png"

    root = image_folder_factory("train_only")
    (root / "validation").rename(root / "elsewhere")
    scan = scan_folder(root)
    assert scan.pooled and scan.split_dirs == {"pool": "train"}
    assert any("validation split comes from train/" in n for n in scan.notes)


def test_class_order_is_sorted_and_nested_folders_count(image_folder_factory):
    root = image_folder_factory(classes=("zebra", "Apple", "mango"), validation=None)
    (root / "mango" / "more").mkdir()
    (root / "mango" / "img000.png").rename(root / "mango" / "more" / "deep.png")
    scan = scan_folder(root)
    assert scan.classes == sorted(["zebra", "Apple", "mango"]) == ["Apple", "mango", "zebra"]
    assert "mango/more/deep.png" in {f.relpath for f in scan.files if f.label == "mango"}


def test_cheap_checks_report_hidden_empty_and_loose_files(bad_image_folder):
    root, reasons = bad_image_folder
    scan = scan_folder(root)
    reported = {s.path: s.reason for s in scan.skipped}
    for path in [
        "train/cats/.DS_Store",
        "validation/dogs/._img1001.jpg",
        "train/__MACOSX/",
        "train/dogs/empty.png",
        "train/stray.png",
        "train/birds/",
        "validation/birds/",
    ]:
        assert reasons[path] in reported[path]
    assert scan.classes == ["cats", "dogs"]  # the empty birds/ folders are no class
    # Content problems are for the decoder: those files are still candidates here.
    candidates = {f.relpath for f in scan.files}
    assert {"train/cats/corrupt.png", "train/cats/notes.txt", "train/dogs/bomb.png"} <= candidates
    assert "train/cats/.DS_Store" not in candidates


def test_a_readme_beside_the_splits_is_ignored(tiny_image_folder):
    (tiny_image_folder / "README.md").write_text("about\n")
    (tiny_image_folder / "train" / "LICENSE").write_text("CC BY 2.0\n")
    assert scan_folder(tiny_image_folder).skipped == []


def test_no_class_folders_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(UserError, match="no class folders.*1 image files lie directly"):
        scan_folder(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        scan_folder(tmp_path / "missing")
