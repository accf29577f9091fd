"""The real Horses or Humans and chest X-ray copies beside the repo (``DATASETS_DIR``), when
there are ones."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import settings
from pipelines.data import inspect_dataset, load_dataset

EXPECTED = {
    "train": {"horses": 500, "humans": 527},
    "validation": {"horses": 128, "humans": 128},
}


@pytest.fixture(scope="module")
def real_root():
    root = settings.datasets_dir()
    if root is None:
        pytest.skip("DATASETS_DIR is not set (e.g. DATASETS_DIR=../shared/datasets)")
    if not (root / "horses-or-humans").is_dir():
        pytest.skip(f"no horses-or-humans/ in DATASETS_DIR={root}")
    return root


def test_report_has_the_exact_counts_and_skips_nothing(real_root):
    report = inspect_dataset("horses_or_humans")
    assert report["classes"] == ["horses", "humans"]
    assert report["splits"] == EXPECTED
    assert report["skipped"] == [] and report["problems"] == []
    sizes = report["image_sizes"]
    assert sizes["most_common"] == [{"size": "300x300", "count": 1283}]
    assert sizes["modes"] == {"RGBA": 1283}


def test_loads_every_image_as_rgb(real_root):
    ds = load_dataset("horses_or_humans", image_size=32)
    assert ds.counts() == EXPECTED
    assert ds.train_images.shape == (1027, 32, 32, 3)
    assert ds.val_images.shape == (256, 32, 32, 3)
    assert ds.skipped == []
    # Opaque RGBA renders: nothing turned white by the alpha compositing.
    assert ds.train_images.mean() < 200
    few = load_dataset("horses_or_humans", image_size=32, train_per_class=10)
    assert few.counts()["train"] == {"horses": 10, "humans": 10}
    assert few.val_paths == ds.val_paths


FAR_EXPECTED = {
    "train": {"NORMAL": 1340, "PNEUMONIA": 1340},
    "validation": {"NORMAL": 231, "PNEUMONIA": 387},
}


@pytest.fixture(scope="module")
def far_root():
    root = settings.datasets_dir()
    if root is None:
        pytest.skip("DATASETS_DIR is not set (e.g. DATASETS_DIR=../shared/datasets)")
    if not (root / "chest-xray-pneumonia").is_dir():
        pytest.skip(f"no chest-xray-pneumonia/ in DATASETS_DIR={root}")
    return root


def test_far_data_set_report_has_the_exact_counts(far_root):
    report = inspect_dataset("chest_xray_pneumonia")
    assert report["classes"] == ["NORMAL", "PNEUMONIA"]
    assert report["splits"] == FAR_EXPECTED
    assert report["skipped"] == [] and report["problems"] == []
    assert report["image_sizes"]["most_common"] == [{"size": "224x224", "count": 3298}]


def test_far_data_set_loads_with_the_expected_counts(far_root):
    ds = load_dataset("chest_xray_pneumonia", image_size=32)
    assert ds.counts() == FAR_EXPECTED
    assert ds.train_images.shape == (2680, 32, 32, 3)
    assert ds.val_images.shape == (618, 32, 32, 3)
    # Greyscale stored as RGB: the three channels are equal.
    sample = ds.train_images[:50].astype(int)
    assert np.abs(sample[..., 0] - sample[..., 1]).max() <= 2
