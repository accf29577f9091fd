"""load_dataset and inspect_dataset on generated folders: splits, subsets, bad files,
refusals, fingerprints and the in-process decode cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.data import dataset as dataset_mod
from pipelines.data import images, inspect_dataset, load_dataset
from pipelines.errors import UserError
from tests.conftest_data import write_class_images


def test_loads_train_and_validation(tiny_image_folder):
    ds = load_dataset(str(tiny_image_folder), image_size=24)
    assert ds.classes == ["cats", "dogs"]
    assert ds.counts() == {"train": {"cats": 12, "dogs": 12}, "validation": {"cats": 4, "dogs": 4}}
    assert ds.train_images.shape == (24, 24, 24, 3) and ds.train_images.dtype == np.uint8
    assert ds.val_images.shape == (8, 24, 24, 3)
    assert ds.train_labels.dtype == np.int32 and ds.num_classes == 2
    assert ds.skipped == [] and ds.source.startswith("folder ")
    for paths, labels in ((ds.train_paths, ds.train_labels), (ds.val_paths, ds.val_labels)):
        assert [p.parent.name for p in paths] == [ds.classes[i] for i in labels]
        assert all(p.is_absolute() and p.exists() for p in paths)
    # Row k is the decoded file train_paths[k].
    k = 5
    expected, _ = images.read_image(ds.train_paths[k].read_bytes(), 24)
    np.testing.assert_array_equal(ds.train_images[k], expected)


def test_label_mapping_is_sorted_class_names(image_folder_factory):
    ds = load_dataset(
        str(image_folder_factory(classes=("zebra", "apple", "Mango"), train=3, validation=2)),
        image_size=8,
    )
    assert ds.classes == ["Mango", "apple", "zebra"]
    # pattern_image draws class 0 reddish, 1 bluish: "zebra" was written as label 0.
    zebra = ds.train_images[ds.train_labels == 2]
    assert zebra[..., 0].mean() > zebra[..., 2].mean()


def test_train_per_class_is_deterministic_nested_and_keeps_validation_whole(tiny_image_folder):
    def load(n, seed=0):
        return load_dataset(str(tiny_image_folder), image_size=8, train_per_class=n, seed=seed)

    five, five_again, eight, other_seed = load(5), load(5), load(8), load(5, seed=1)
    assert five.counts()["train"] == {"cats": 5, "dogs": 5}
    assert five.train_paths == five_again.train_paths
    assert five.fingerprint == five_again.fingerprint
    assert set(five.train_paths) < set(eight.train_paths)
    assert set(five.train_paths) != set(other_seed.train_paths)
    assert five.fingerprint != other_seed.fingerprint != eight.fingerprint
    for ds in (five, eight, other_seed):
        assert ds.val_paths == five.val_paths  # validation stays whole and the same
        assert not set(ds.train_paths) & set(ds.val_paths)
    too_many = load(50)
    assert too_many.counts()["train"] == {"cats": 12, "dogs": 12}
    assert any("train_per_class=50" in n for n in too_many.notes)
    with pytest.raises(UserError, match="at least 1"):
        load(0)


def test_pool_gets_a_seeded_stratified_disjoint_validation_split(image_folder_factory):
    root = str(image_folder_factory(validation=None, train=10))
    ds = load_dataset(root, image_size=8, validation_fraction=0.3)
    assert ds.counts() == {"train": {"cats": 7, "dogs": 7}, "validation": {"cats": 3, "dogs": 3}}
    assert not set(ds.train_paths) & set(ds.val_paths)
    again = load_dataset(root, image_size=8, validation_fraction=0.3)
    assert again.val_paths == ds.val_paths and again.fingerprint == ds.fingerprint
    other = load_dataset(root, image_size=8, validation_fraction=0.3, seed=4)
    assert other.val_paths != ds.val_paths
    few = load_dataset(root, image_size=8, validation_fraction=0.3, train_per_class=2)
    assert few.val_paths == ds.val_paths
    assert set(few.train_paths) < set(ds.train_paths)


def test_bad_files_are_reported_and_the_rest_trains(bad_image_folder):
    root, reasons = bad_image_folder
    ds = load_dataset(str(root), image_size=16)
    reported = {s.path: s.reason for s in ds.skipped}
    assert set(reported) == set(reasons)
    for path, word in reasons.items():
        assert word in reported[path], (path, reported[path])
    assert [s.path for s in ds.skipped] == sorted(reported)
    assert ds.classes == ["cats", "dogs"]
    assert ds.counts() == {"train": {"cats": 12, "dogs": 12}, "validation": {"cats": 4, "dogs": 4}}
    report = inspect_dataset(str(root))
    assert report["skipped"] == [s.to_dict() for s in ds.skipped]
    assert report["splits"] == ds.counts() and report["problems"] == []


def test_a_single_class_is_refused(image_folder_factory):
    root = image_folder_factory(classes=("only",), train=3, validation=2)
    with pytest.raises(UserError, match="1 class folder \\(only\\).*at least 2"):
        load_dataset(str(root), image_size=8)
    assert inspect_dataset(str(root))["problems"]


def test_a_class_without_usable_images_is_refused(tiny_image_folder):
    dogs = tiny_image_folder / "validation" / "dogs"
    for path in dogs.iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(UserError) as err:
        load_dataset(str(tiny_image_folder), image_size=8)
    message = str(err.value)
    assert "class 'dogs' has no usable image in validation/dogs/" in message
    assert "4 skipped, e.g. validation/dogs/img1000.png: not an image" in message
    report = inspect_dataset(str(tiny_image_folder))
    assert len(report["problems"]) == 1 and len(report["skipped"]) == 4


def test_a_class_missing_from_validation_is_refused(tiny_image_folder):
    shutil.rmtree(tiny_image_folder / "validation" / "dogs")
    with pytest.raises(UserError, match="'dogs' has no usable image in validation/dogs/"):
        load_dataset(str(tiny_image_folder), image_size=8)


def test_a_pool_class_needs_two_images(image_folder_factory):
    root = image_folder_factory(validation=None, train=4)
    for path in list((root / "dogs").iterdir())[1:]:
        path.unlink()
    with pytest.raises(UserError, match="'dogs' has 1 usable image.*needs 2"):
        load_dataset(str(root), image_size=8)


def test_parameters_are_checked(tiny_image_folder):
    with pytest.raises(UserError, match="image size must be a whole number of pixels"):
        load_dataset(str(tiny_image_folder), image_size=0)
    with pytest.raises(UserError, match="image size must be a whole number of pixels"):
        load_dataset(str(tiny_image_folder), image_size=8.5)
    with pytest.raises(UserError, match="validation_fraction"):
        load_dataset(str(tiny_image_folder), image_size=8, validation_fraction=1.0)
    with pytest.raises(UserError, match="seed"):
        load_dataset(str(tiny_image_folder), image_size=8, seed=-1)


def test_fingerprint_follows_content_and_size_not_location(tiny_image_folder, tmp_path):
    base = load_dataset(str(tiny_image_folder), image_size=8).fingerprint
    copy = shutil.copytree(tiny_image_folder, tmp_path / "copy")
    assert load_dataset(str(copy), image_size=8).fingerprint == base
    assert load_dataset(str(copy), image_size=12).fingerprint != base
    write_class_images(copy / "train" / "cats", 0, 1, start=500)
    assert load_dataset(str(copy), image_size=8).fingerprint != base


def test_decoding_happens_once_per_file_list_and_size(tiny_image_folder, monkeypatch):
    dataset_mod.clear_cache()
    calls = []
    real = images.decode_files

    def counting(paths, image_size, **kw):
        calls.append(image_size)
        return real(paths, image_size, **kw)

    monkeypatch.setattr(images, "decode_files", counting)
    first = load_dataset(str(tiny_image_folder), image_size=8)
    load_dataset(str(tiny_image_folder), image_size=8, train_per_class=3, seed=2)
    assert calls == [8]
    first.train_images[0, 0, 0] = 0  # the caller's copy is writable; the cache is not touched
    load_dataset(str(tiny_image_folder), image_size=10)
    assert calls == [8, 10]
    write_class_images(tiny_image_folder / "train" / "dogs", 1, 1, start=700)
    assert load_dataset(str(tiny_image_folder), image_size=8).counts()["train"]["dogs"] == 13
    assert calls == [8, 10, 8]


def test_memory_guard(tiny_image_folder, monkeypatch):
    class Tiny:
        available = 1000

    monkeypatch.setattr(dataset_mod.psutil, "virtual_memory", lambda: Tiny)
    with pytest.raises(UserError, match="need .* GB of memory"):
        load_dataset(str(tiny_image_folder), image_size=64)


def test_inspect_reports_sizes_and_layout(image_folder_factory):
    root = image_folder_factory(validation=None, train=5)
    (root / "cats" / "img000.png").unlink()
    Image.new("L", (40, 20)).save(root / "cats" / "wide.png")
    report = inspect_dataset(str(root))
    assert report["classes"] == ["cats", "dogs"]
    assert "one pool" in report["layout"] and "20%" in report["layout"]
    sizes = report["image_sizes"]
    assert sizes["count"] == 10
    assert sizes["width"] == {"min": 32, "max": 40, "mean": 32.8}
    assert sizes["most_common"][0] == {"size": "32x32", "count": 9}
    assert sizes["modes"] == {"RGB": 9, "L": 1}
    assert sizes["formats"] == {"PNG": 6, "JPEG": 4}
