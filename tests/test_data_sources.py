"""Where data sets come from: the resolver's order, zips, names in DATASETS_DIR, TFDS."""

from __future__ import annotations

import time
import zipfile

import pytest

from pipelines import settings
from pipelines.data import load_dataset, resolve_source, tfds_source
from pipelines.errors import UserError
from tests.conftest_data import make_image_folder


def no_tfds(name):
    raise AssertionError(f"TFDS must not be asked for {name}")


def offline(name):
    raise tfds_source.TfdsUnavailable("TFDS is unreachable (test)")


def test_horses_or_humans_comes_from_datasets_dir_first(isolated_data_env, monkeypatch):
    data_root = isolated_data_env / "datasets"
    make_image_folder(data_root / "horses-or-humans", classes=("horses", "humans"), train=2)
    monkeypatch.setenv("DATASETS_DIR", str(data_root))
    monkeypatch.setattr(tfds_source, "materialise", no_tfds)
    source = resolve_source()
    assert source.root == data_root / "horses-or-humans"
    assert resolve_source("horses-or-humans").root == source.root
    # An explicit data root (a setting) wins over the variable.
    other = isolated_data_env / "other"
    make_image_folder(other / "horses-or-humans", classes=("horses", "humans"), train=2)
    assert resolve_source(data_root=other).root == other / "horses-or-humans"


def test_then_tensorflow_datasets(isolated_data_env, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(isolated_data_env / "empty"))
    folder = make_image_folder(isolated_data_env / "exported", classes=("horses", "humans"))
    asked = []

    def fake(name):
        asked.append(name)
        return folder, "TensorFlow Datasets horses_or_humans (fake)"

    monkeypatch.setattr(tfds_source, "materialise", fake)
    assert resolve_source().root == folder
    monkeypatch.delenv("DATASETS_DIR")
    assert resolve_source().root == folder
    assert asked == ["horses_or_humans", "horses_or_humans"]


def test_then_a_clear_error_naming_both_ways(isolated_data_env, monkeypatch):
    monkeypatch.setenv("DATASETS_DIR", str(isolated_data_env / "nowhere"))
    monkeypatch.setattr(tfds_source, "materialise", offline)
    with pytest.raises(UserError) as err:
        resolve_source()
    message = str(err.value)
    assert "nowhere (DATASETS_DIR) has no horses-or-humans/" in message
    assert "set DATASETS_DIR to the folder that holds horses-or-humans/" in message
    assert "connect to the internet" in message and "TFDS is unreachable" in message
    monkeypatch.delenv("DATASETS_DIR")
    with pytest.raises(UserError, match="DATASETS_DIR is not set"):
        resolve_source()


def test_the_far_data_set_comes_from_datasets_dir_by_name(isolated_data_env, monkeypatch):
    from pipelines.data import check_source
    from pipelines.data.sources import named, named_datasets

    data_root = isolated_data_env / "datasets"
    folder = make_image_folder(
        data_root / "chest-xray-pneumonia", classes=("NORMAL", "PNEUMONIA"), train=2
    )
    monkeypatch.setenv("DATASETS_DIR", str(data_root))
    monkeypatch.setattr(tfds_source, "materialise", no_tfds)
    assert list(named_datasets()) == [
        "horses_or_humans",
        "chest_xray_pneumonia",
        "chest_xray_pneumonia_tasks",
    ]
    assert resolve_source("chest_xray_pneumonia").root == folder
    assert resolve_source("chest-xray-pneumonia").root == folder
    check_source("chest_xray_pneumonia")
    entry = named("chest_xray_pneumonia")
    assert entry.tfds is None and "CC BY 4.0" in entry.licence and "Kermany" in entry.citation
    assert set(entry.notes) == {"en", "de"}
    assert load_dataset("chest_xray_pneumonia", image_size=32).classes == ["NORMAL", "PNEUMONIA"]


def test_the_far_data_set_missing_says_where_and_what_to_do(isolated_data_env, monkeypatch):
    from pipelines.data import check_source

    monkeypatch.setenv("DATASETS_DIR", str(isolated_data_env / "nowhere"))
    monkeypatch.setattr(tfds_source, "materialise", no_tfds)  # no TFDS fallback exists
    for call in (resolve_source, check_source):  # refused before a run exists, too
        with pytest.raises(UserError) as err:
            call("chest_xray_pneumonia")
        message = str(err.value)
        assert "nowhere (DATASETS_DIR) has no chest-xray-pneumonia/ folder" in message
        assert "not in TensorFlow Datasets" in message
        assert "Set DATASETS_DIR to the folder that holds chest-xray-pneumonia/" in message
    monkeypatch.delenv("DATASETS_DIR")
    with pytest.raises(UserError, match="DATASETS_DIR is not set"):
        resolve_source("chest_xray_pneumonia")


def test_offline_the_real_tfds_path_fails_fast(isolated_data_env, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(UserError, match="no local copy of 'horses_or_humans' and cannot reach"):
        resolve_source()
    assert time.monotonic() - start < 30
    assert not (isolated_data_env / "cache" / "datasets" / "tfds").exists()


def test_network_check_gives_up_quickly():
    start = time.monotonic()
    assert not tfds_source.network_available(("127.0.0.1", 9), timeout=1.0)
    assert not tfds_source.network_available(("host.invalid", 443), timeout=1.0)
    assert time.monotonic() - start < 5


def test_tfds_builder_is_exported_as_a_folder(isolated_data_env, monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)
    monkeypatch.setattr(tfds_source, "split_names", lambda builder: ["train", "test"])
    with tfds.testing.mock_data(num_examples=6):
        ds = load_dataset("horses_or_humans", image_size=16)
    assert ds.classes == ["horses", "humans"]
    assert sum(ds.counts()["train"].values()) == 6
    assert sum(ds.counts()["validation"].values()) == 6
    assert ds.source.startswith("TensorFlow Datasets horses_or_humans/3.0.0")
    assert ds.root == isolated_data_env / "cache/datasets/tfds/horses_or_humans/3.0.0/dataset"
    assert {p.suffix for p in ds.train_paths} == {".png"}
    # Exported once: later loads need neither TFDS data nor the network.
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    assert resolve_source().root == ds.root


def test_tfds_names_that_are_not_image_classification(isolated_data_env):
    with pytest.raises(UserError, match="not a folder, a .zip, or a TensorFlow Datasets name"):
        resolve_source("no_such_dataset_anywhere")
    with pytest.raises(UserError, match="not image classification"):
        resolve_source("imdb_reviews")


def test_paths_zips_and_names_in_the_data_root(isolated_data_env, monkeypatch, tiny_image_folder):
    monkeypatch.setattr(tfds_source, "materialise", no_tfds)
    assert resolve_source(str(tiny_image_folder)).root == tiny_image_folder
    with pytest.raises(UserError, match="no folder or zip at .*missing"):
        resolve_source(str(isolated_data_env / "missing"))
    with pytest.raises(UserError, match="no folder or zip at flowers.zip"):
        resolve_source("flowers.zip")
    not_zip = isolated_data_env / "notes.txt"
    not_zip.write_text("hi")
    with pytest.raises(UserError, match="neither a folder nor a .zip"):
        resolve_source(str(not_zip))

    data_root = isolated_data_env / "datasets"
    make_image_folder(data_root / "pets", train=2)
    archive = data_root / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((data_root / "pets").rglob("*.*")):
            zf.write(path, "zipped/" + path.relative_to(data_root / "pets").as_posix())
    monkeypatch.setenv("DATASETS_DIR", str(data_root))
    assert resolve_source("pets").root == data_root / "pets"
    zipped = resolve_source("zipped")
    assert zipped.root.name == "zipped" and zipped.description.startswith("zip ")
    # Extracted under the runs folder, like the dashboard's uploads, not in a user cache.
    assert zipped.root.is_relative_to(settings.runs_dir().absolute() / "uploads")


def test_zip_extracts_into_the_given_folder_and_loads(tiny_image_folder, tmp_path):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tiny_image_folder.rglob("*.*")):
            zf.write(path, "tiny/" + path.relative_to(tiny_image_folder).as_posix())
        zf.writestr("__MACOSX/tiny/._train", b"x")
        zf.writestr("tiny/train/cats/broken.png", b"not a png")
    run_dir = tmp_path / "runs" / "run-1"
    ds = load_dataset(str(archive), image_size=8, extract_dir=run_dir)
    assert ds.root == run_dir / "dataset" / "tiny"
    assert ds.counts() == load_dataset(str(tiny_image_folder), image_size=8).counts()
    assert {s.path: s.reason for s in ds.skipped} == {
        "__MACOSX/": "macOS metadata (1 entry)",
        "train/cats/broken.png": "not an image (no known image format)",
    }
    assert ds.fingerprint == load_dataset(str(tiny_image_folder), image_size=8).fingerprint


def test_settings_file_supplies_the_data_root_for_a_fresh_clone(
    isolated_data_env, monkeypatch, tmp_path
):
    from pipelines import settings
    from tests.conftest_data import make_image_folder

    make_image_folder(tmp_path / "data" / "horses-or-humans", train=2, validation=1)
    (tmp_path / "settings.toml").write_text('datasets_dir = "data"\n')
    monkeypatch.setattr(settings, "SETTINGS_FILE", tmp_path / "settings.toml")
    assert resolve_source().root == tmp_path / "data" / "horses-or-humans"
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "elsewhere"))  # the env var wins
    assert settings.datasets_dir() == tmp_path / "elsewhere"
    (tmp_path / "settings.toml").write_text('datasets_dir = "missing"\n')
    monkeypatch.delenv("DATASETS_DIR")
    assert settings.datasets_dir() is None  # a folder that isn't there is ignored
