"""Locations the engine reads and writes, each overridable by an environment variable.

=====================  ==========================================  =============================
variable               what                                        default
=====================  ==========================================  =============================
``DATASETS_DIR``       folder holding ``horses-or-humans/`` etc.   ``settings.toml``'s
                                                                   ``datasets_dir`` if it
                                                                   exists (else TFDS, then
                                                                   an error)
``BACKBONE_CACHE_DIR`` built-in backbones materialised as          ``<user cache>/backbones``
                       SavedModels
``FEATURE_CACHE_DIR``  cached backbone features                    ``<user cache>/features``
``RUNS_DIR``           the run store and its artefacts             ``./runs``
=====================  ==========================================  =============================

Values are read on every call, so tests and the dashboard can change them at run time.
``settings.toml`` in the repository root holds the project's defaults for a fresh clone.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import platformdirs

APP_NAME = "tl-dashboard"
SETTINGS_FILE = Path(__file__).resolve().parents[1] / "settings.toml"


def _file_setting(name: str) -> Path | None:
    """A path from ``settings.toml`` (relative to its folder), or None."""
    try:
        value = tomllib.loads(SETTINGS_FILE.read_text()).get(name)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return (SETTINGS_FILE.parent / value).resolve() if value else None


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def datasets_dir() -> Path | None:
    """``DATASETS_DIR`` if set (even to a missing folder, so the error names it); else
    ``settings.toml``'s ``datasets_dir`` when that folder exists; else None."""
    if "DATASETS_DIR" in os.environ:
        return _env_path("DATASETS_DIR")
    path = _file_setting("datasets_dir")
    return path if path is not None and path.is_dir() else None


def backbone_cache_dir() -> Path:
    return _env_path("BACKBONE_CACHE_DIR") or user_cache_dir() / "backbones"


def feature_cache_dir() -> Path:
    return _env_path("FEATURE_CACHE_DIR") or user_cache_dir() / "features"


def runs_dir() -> Path:
    return _env_path("RUNS_DIR") or Path("runs")
