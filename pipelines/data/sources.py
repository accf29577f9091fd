"""Resolve what the user names as a data set to a folder on disk.

``dataset`` may be:

- ``horses_or_humans`` (the default): ``<data root>/horses-or-humans/`` if it exists, where
  the data root is the ``data_root`` argument or else ``DATASETS_DIR``; otherwise the
  TensorFlow Datasets builder of that name (a local TFDS copy, or a download); otherwise a
  :class:`UserError` naming both ways to provide it;
- a folder, or a ``.zip`` of one (extracted safely, see :mod:`pipelines.data.safezip`);
  a relative name is also looked up in the data root (``flowers`` or ``flowers.zip``);
- a TensorFlow Datasets image-classification name, e.g. ``tf_flowers``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import settings
from pipelines.data import safezip, tfds_source
from pipelines.data.scan import SkippedFile
from pipelines.errors import UserError

DEFAULT_DATASET = "horses_or_humans"
HORSES_OR_HUMANS_DIR = "horses-or-humans"


@dataclass(frozen=True)
class Source:
    """A data set as a folder: its ``root``, a line saying where it came from, and the
    entries skipped while extracting it (zip sources only)."""

    root: Path
    description: str
    skipped: list[SkippedFile] = field(default_factory=list)


def resolve_source(
    dataset: str = DEFAULT_DATASET,
    *,
    data_root: Path | None = None,
    extract_dir: Path | None = None,
) -> Source:
    """Find ``dataset`` (see the module docstring). Zips go to ``extract_dir`` (default: a
    folder per zip content under the user cache). Raises :class:`UserError`."""
    name = str(dataset).strip()
    if not name:
        raise UserError("no data set given: name a folder, a .zip, or horses_or_humans")
    root = Path(data_root).expanduser() if data_root is not None else settings.datasets_dir()
    root = root.absolute() if root is not None else None
    if name in (DEFAULT_DATASET, HORSES_OR_HUMANS_DIR):
        return _horses_or_humans(root)
    given = Path(name).expanduser()
    if given.exists():
        return _from_path(given.absolute(), extract_dir)
    if root is not None and not given.is_absolute():
        for candidate in (root / name, root / f"{name}.zip"):
            if candidate.exists():
                return _from_path(candidate, extract_dir)
    if not tfds_source.NAME_RE.match(name):
        where = f" (nor in DATASETS_DIR={root})" if root is not None else ""
        raise UserError(f"no folder or zip at {name}{where}: check the path")
    try:
        folder, description = tfds_source.materialise(name)
    except tfds_source.TfdsUnavailable as e:
        raise UserError(
            f"{name!r} is not a folder or zip here, and {e}: download it on a machine with "
            "internet access, or give a folder or .zip of images"
        ) from None
    return Source(folder, description)


def _horses_or_humans(root: Path | None) -> Source:
    if root is not None:
        folder = root / HORSES_OR_HUMANS_DIR
        if folder.is_dir():
            return Source(folder, f"folder {folder}")
        missing = f"{root} (DATASETS_DIR) has no {HORSES_OR_HUMANS_DIR}/ folder"
    else:
        missing = "DATASETS_DIR is not set (nor datasets_dir in settings.toml)"
    try:
        folder, description = tfds_source.materialise(DEFAULT_DATASET)
    except tfds_source.TfdsUnavailable as e:
        raise UserError(
            f"Horses or Humans is not available: {missing}, and {e}. Either set DATASETS_DIR "
            f"to the folder that holds {HORSES_OR_HUMANS_DIR}/ (with train/ and validation/ "
            "unpacked from horse-or-human.zip and validation-horse-or-human.zip; e.g. "
            "DATASETS_DIR=../shared/datasets), or connect to the internet so TensorFlow "
            "Datasets can download horses_or_humans"
        ) from None
    return Source(folder, description)


def _from_path(path: Path, extract_dir: Path | None) -> Source:
    if path.is_dir():
        return Source(path, f"folder {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is neither a folder nor a .zip: give a folder of class folders")
    digest = safezip.file_sha256(path)
    target = extract_dir or settings.user_cache_dir() / "datasets" / "zips" / digest[:16]
    root, skipped = safezip.extract_zip(path, Path(target), digest=digest)
    return Source(root, f"zip {path} (extracted to {root})", skipped)
