"""Locations the engine reads and writes, each overridable by an environment variable.

=====================  ==========================================  =============================
variable               what                                        default
=====================  ==========================================  =============================
``DATASETS_DIR``       folder holding ``horses-or-humans/`` etc.   none (then TFDS, then error)
``BACKBONE_CACHE_DIR`` built-in backbones materialised as          ``<user cache>/backbones``
                       SavedModels
``FEATURE_CACHE_DIR``  cached backbone features                    ``<user cache>/features``
``RUNS_DIR``           the run store and its artefacts             ``./runs``
=====================  ==========================================  =============================

Values are read on every call, so tests and the dashboard can change them at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "tl-dashboard"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def datasets_dir() -> Path | None:
    return _env_path("DATASETS_DIR")


def backbone_cache_dir() -> Path:
    return _env_path("BACKBONE_CACHE_DIR") or user_cache_dir() / "backbones"


def feature_cache_dir() -> Path:
    return _env_path("FEATURE_CACHE_DIR") or user_cache_dir() / "features"


def runs_dir() -> Path:
    return _env_path("RUNS_DIR") or Path("runs")
