"""Resolve what the user names as a data set to a folder on disk.

``dataset`` may be:

- a named data set from ``assets/datasets.json`` (:func:`named_datasets`):
  ``horses_or_humans`` (the default) or ``chest_xray_pneumonia`` (far from ImageNet):
  ``<data root>/<its folder>/`` if it exists, where the data root is the ``data_root``
  argument or else ``DATASETS_DIR``; otherwise, for Horses or Humans, the TensorFlow
  Datasets builder of that name (a local TFDS copy, or a download); otherwise a
  :class:`UserError` naming where it was looked for and how to provide it;
- a folder, or a ``.zip`` of one (extracted safely, see :mod:`pipelines.data.safezip`);
  a relative name is also looked up in the data root (``flowers`` or ``flowers.zip``);
- a TensorFlow Datasets image-classification name, e.g. ``tf_flowers``.

With path confinement on (:func:`pipelines.settings.confinement_enabled`, a shared
dashboard), paths must lie inside the allowed folders and relative names are looked up in
the data root only.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipelines import settings
from pipelines.data import safezip, tfds_source
from pipelines.data.scan import LABELS_FILE, SkippedFile, scan_folder, too_few_classes
from pipelines.errors import UserError

DEFAULT_DATASET = "horses_or_humans"
HORSES_OR_HUMANS_DIR = "horses-or-humans"
NAMED_FILE = Path(__file__).resolve().parents[2] / "assets" / "datasets.json"


@dataclass(frozen=True)
class NamedDataset:
    """A data set known by name (``assets/datasets.json``): its ``folder`` in the data root,
    the TFDS builder that serves it when the folder is missing (None: none does), and what
    the Setup page shows about it (``notes`` per language)."""

    id: str
    folder: str
    title: str
    tfds: str | None = None
    hint: str = "with train/ and validation/ inside"
    domain: str = ""
    citation: str = ""
    licence: str = ""
    notes: dict = field(default_factory=dict)
    tasks: str | None = None  # a builder of several tasks (pipelines.data.tasks), or None


@lru_cache(maxsize=1)
def named_datasets() -> dict[str, NamedDataset]:
    """The named data sets by id, in file order (the default first)."""
    data = json.loads(NAMED_FILE.read_text(encoding="utf-8"))
    known = NamedDataset.__dataclass_fields__
    return {
        e["id"]: NamedDataset(**{k: v for k, v in e.items() if k in known})
        for e in data["datasets"]
    }


def named(name: str) -> NamedDataset | None:
    """The named data set ``name`` (its id or its folder name) stands for, or None."""
    name = str(name).strip()
    return next((d for d in named_datasets().values() if name in (d.id, d.folder)), None)


def names_text() -> str:
    """The named data sets' ids, for messages: ``horses_or_humans, chest_xray_pneumonia``."""
    return ", ".join(named_datasets())


@dataclass(frozen=True)
class Source:
    """A data set as a folder: its ``root``, a line saying where it came from, the
    entries skipped while extracting it and the zip's name for messages (zip sources only)."""

    root: Path
    description: str
    skipped: list[SkippedFile] = field(default_factory=list)
    shown: str | None = None


def resolve_source(
    dataset: str = DEFAULT_DATASET,
    *,
    data_root: Path | None = None,
    extract_dir: Path | None = None,
) -> Source:
    """Find ``dataset`` (see the module docstring). Zips go to ``extract_dir`` (default:
    :func:`uploads_dir` ``/<sha256 of the zip>``). Paths typed by the user pass through
    :func:`pipelines.settings.confine`. Raises :class:`UserError`."""
    name = str(dataset).strip()
    if not name:
        raise UserError(f"no data set given: name a folder, a .zip, or one of {names_text()}")
    root = _data_root(data_root)
    if (entry := named(name)) is not None:
        return _named(entry, root)
    path = _locate(name, root)
    if path is not None:
        return _from_path(path, extract_dir)
    try:
        folder, description = tfds_source.materialise(name)
    except tfds_source.TfdsUnavailable as e:
        raise UserError(
            f"{name!r} is not a folder or zip here, and {e}: download it on a machine with "
            "internet access, or give a folder or .zip of images"
        ) from None
    return Source(folder, description)


def check_source(dataset: str = DEFAULT_DATASET, *, data_root: Path | None = None) -> None:
    """Refuse, as :func:`resolve_source` would, a data set that can't be found, a path
    outside the allowed folders, a folder with fewer than two class folders, a file that is
    not a zip, or a zip that would be refused (caps, traversal, links) - without
    extracting, downloading or decoding anything. TFDS names and named data sets with a
    TFDS fallback (Horses or Humans) pass: only fetching them tells; a named data set
    without one (the chest X-rays) must be in the data root."""
    name = str(dataset).strip()
    if not name:
        raise UserError(f"no data set given: name a folder, a .zip, or one of {names_text()}")
    if (entry := named(name)) is not None:
        if entry.tfds is None:
            _named(entry, _data_root(data_root))
        return
    path = _locate(name, _data_root(data_root))
    if path is None:
        return
    if path.is_dir():
        if (path / LABELS_FILE).is_file():
            return  # several tasks: labels.csv is read when loading
        problem = too_few_classes(scan_folder(path))  # names and stat only: fast
        if problem:
            raise UserError(problem)
        return
    _check_zip(path)
    try:
        with zipfile.ZipFile(path) as zf:
            safezip.check_entries(zf, path.name)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"{path.name} is not a readable zip file ({e})") from None


def known_here(dataset: str, *, data_root: Path | None = None) -> bool:
    """Whether ``dataset`` is a named data set or a folder/zip found here (confined as
    :func:`resolve_source` confines it) - not a TFDS name that only a download would tell.
    :class:`UserError` for a path that is neither (as :func:`check_source` says)."""
    name = str(dataset).strip()
    if not name:
        return False
    return named(name) is not None or _locate(name, _data_root(data_root)) is not None


def _data_root(data_root: Path | None) -> Path | None:
    root = Path(data_root).expanduser() if data_root is not None else settings.datasets_dir()
    return root.absolute() if root is not None else None


def _locate(name: str, root: Path | None) -> Path | None:
    """The (confined) local folder or file ``name`` names, or None for a TFDS name;
    :class:`UserError` if it is neither."""
    given = Path(name).expanduser()
    # Confined (a shared dashboard), a relative name is only looked up in the data root:
    # the server's working folder is nobody's business.
    if given.is_absolute() or (given.exists() and not settings.confinement_enabled()):
        path = settings.confine(given, "data set")
        if path.exists():
            return path
    if root is not None and not given.is_absolute():
        for candidate in (root / name, root / f"{name}.zip"):
            path = settings.confine(candidate, "data set")  # before exists(): no probing
            if path.exists():
                return path
    if not tfds_source.NAME_RE.match(name):
        where = (
            f" (nor in DATASETS_DIR={root})" if root is not None and not given.is_absolute() else ""
        )
        raise UserError(f"no folder or zip at {name}{where}: check the path")
    return None


def _named(entry: NamedDataset, root: Path | None) -> Source:
    """``<root>/<entry.folder>``, else its TFDS builder, else a :class:`UserError` saying
    where it was looked for and what to do."""
    if root is not None:
        folder = root / entry.folder
        if folder.is_dir():
            return Source(folder, f"folder {folder}")
        missing = f"{root} (DATASETS_DIR) has no {entry.folder}/ folder"
    else:
        missing = "DATASETS_DIR is not set (nor datasets_dir in settings.toml)"
    put_it_there = (
        f"set DATASETS_DIR to the folder that holds {entry.folder}/ ({entry.hint}; e.g. "
        "DATASETS_DIR=../shared/datasets)"
    )
    if entry.tfds is None:
        raise UserError(
            f"{entry.title} ({entry.id}) is not available: {missing}, and no download "
            f"exists for it (it is not in TensorFlow Datasets). {put_it_there[0].upper()}"
            f"{put_it_there[1:]}, or give the path of a copy of that folder as the data set"
        )
    try:
        folder, description = tfds_source.materialise(entry.tfds)
    except tfds_source.TfdsUnavailable as e:
        raise UserError(
            f"{entry.title} is not available: {missing}, and {e}. Either {put_it_there}, "
            f"or connect to the internet so TensorFlow Datasets can download {entry.tfds}"
        ) from None
    return Source(folder, description)


def uploads_dir() -> Path:
    """Where zips are extracted when no run folder is given: ``<runs>/uploads/``, so
    uploaded and extracted data lives under the runs folder (as the dashboard's uploads)."""
    return settings.runs_dir().absolute() / "uploads"


def _from_path(path: Path, extract_dir: Path | None) -> Source:
    if path.is_dir():
        return Source(path, f"folder {path}")
    _check_zip(path)
    digest = safezip.file_sha256(path)
    target = extract_dir or uploads_dir() / digest
    root, skipped = safezip.extract_zip(path, Path(target), digest=digest)
    return Source(root, f"zip {path} (extracted to {root})", skipped, shown=path.name)


def _check_zip(path: Path) -> None:
    """Refuse a file that is not a zip (saying so for a ``.zip`` name) or is over the cap."""
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() == ".zip":
            raise UserError(
                f"{path.name} is not a valid zip file (damaged, truncated or renamed): "
                "zip the data set folder again"
            )
        raise UserError(f"{path} is neither a folder nor a .zip: give a folder of class folders")
    safezip.check_zip_size(path)
