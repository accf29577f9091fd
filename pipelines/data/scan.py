"""Walk an image-folder data set: find its splits and class folders, list candidate files.

Layouts (class folders are the sub-folders, sorted by name, at any depth below them):

- ``train/<class>/...`` plus ``validation/<class>/...`` (or ``val/``, ``valid/``, ``test/``);
- ``train/<class>/...`` alone, or ``<class>/...`` at the top: one pool, from which the
  loader takes a seeded, stratified validation split.

Scanning only looks at names and ``stat``: hidden files and folders, empty files and
over-large files are skipped here with a reason; whether a file is an image is decided when
it is decoded (:mod:`pipelines.data.images`). Files next to the class folders (a README) are
ignored unless they look like images, which are reported as outside any class folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.errors import UserError

VALIDATION_DIRS = ("validation", "val", "valid", "test")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_FILE_BYTES = 256 * 2**20
LABELS_FILE = "labels.csv"  # a multi-task data set's labels (pipelines.data.tasks)


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder left out of the data set, with why (``path`` relative to its root)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class ImageFile:
    """A candidate image: ``split`` is ``train``, ``validation`` or ``pool``."""

    path: Path
    relpath: str
    label: str
    split: str
    size: int
    mtime_ns: int


@dataclass
class Scan:
    """What :func:`scan_folder` found. ``classes`` are sorted; ``files`` in a stable order."""

    root: Path
    pooled: bool
    split_dirs: dict[str, str]
    classes: list[str]
    files: list[ImageFile]
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shown: str = ""  # what messages call the data set (default: its root)


def is_hidden(name: str) -> bool:
    """Dot files and folders, and macOS ``__MACOSX`` metadata folders."""
    return name.startswith(".") or name == "__MACOSX"


def scan_folder(root: Path, shown: str | None = None) -> Scan:
    """List the candidate images of the data set at ``root``; raise UserError if none can be.
    ``shown`` names it in messages (an uploaded zip's name rather than where it went)."""
    root = Path(root)
    shown = shown or str(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: give a folder with one sub-folder per class")
    skipped: list[SkippedFile] = []
    notes: list[str] = []
    train_dir = root / "train"
    val_name = next((n for n in VALIDATION_DIRS if (root / n).is_dir()), None)
    if train_dir.is_dir() and val_name:
        split_dirs = {"train": "train", "validation": val_name}
        unused = [n for n in VALIDATION_DIRS if n != val_name and (root / n).is_dir()]
        if unused:
            notes.append(f"{', '.join(n + '/' for n in unused)} not used: {val_name}/ validates")
    elif train_dir.is_dir():
        split_dirs = {"pool": "train"}
        notes.append("train/ has no validation/ beside it: the validation split comes from train/")
    else:
        split_dirs = {"pool": ""}

    found: dict[str, dict[str, list[ImageFile]]] = {}  # class -> split -> files
    present: set[str] = set()  # classes with at least one non-hidden file somewhere
    for split, dirname in split_dirs.items():
        for name, files, has_files in _scan_split(root, root / dirname, split, skipped):
            found.setdefault(name, {}).setdefault(split, []).extend(files)
            if has_files:
                present.add(name)

    if not found:
        loose = [s for s in skipped if s.reason == _LOOSE]
        hint = f" ({len(loose)} image files lie directly in it)" if loose else ""
        raise UserError(
            f"no class folders in {shown}{hint}: put the images in one sub-folder per class "
            "(e.g. cats/, dogs/), optionally inside train/ and validation/"
        )
    classes = sorted(name for name in found if name in present)
    for name in sorted(set(found) - present):
        for dirname in split_dirs.values():
            if (root / dirname / name).is_dir():
                skipped.append(SkippedFile(_rel(root / dirname / name, root) + "/", _EMPTY_CLASS))
    files = [f for name in classes for split in split_dirs for f in found[name].get(split, [])]
    return Scan(root, "pool" in split_dirs, split_dirs, classes, files, skipped, notes, shown)


def too_few_classes(scan: Scan) -> str | None:
    """Why a scan with fewer than 2 class folders can't train a classifier (naming the
    folders that were ignored), or None."""
    if len(scan.classes) >= 2:
        return None
    found = ", ".join(scan.classes) or "none with images"
    ignored = [f"{s.path} ({s.reason})" for s in scan.skipped if s.path.endswith("/")]
    more = f" (ignored: {'; '.join(ignored[:3])})" if ignored else ""
    return (
        f"{scan.shown or scan.root} has {len(scan.classes)} class folder ({found}); a "
        f"classifier needs at least 2: put each class's images in a sub-folder of its own{more}"
    )


_LOOSE = "image outside any class folder: move it into one"
_EMPTY_CLASS = "empty class folder: ignored"


def _scan_split(
    root: Path, split_dir: Path, split: str, skipped: list[SkippedFile]
) -> list[tuple[str, list[ImageFile], bool]]:
    """(class, candidate files, whether it holds any non-hidden file) per class folder."""
    out = []
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        if is_hidden(entry.name):
            if entry.is_dir():
                skipped.append(SkippedFile(_rel(entry, root) + "/", "hidden folder"))
            else:
                skipped.append(SkippedFile(_rel(entry, root), "hidden file"))
        elif entry.is_dir():
            files, has_files = _scan_class(root, entry, entry.name, split, skipped)
            out.append((entry.name, files, has_files))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            skipped.append(SkippedFile(_rel(entry, root), _LOOSE))
    return out


def _scan_class(
    root: Path, class_dir: Path, label: str, split: str, skipped: list[SkippedFile]
) -> tuple[list[ImageFile], bool]:
    files: list[ImageFile] = []
    has_files = False
    for dirpath, dirnames, filenames in os.walk(class_dir):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if is_hidden(d):
                skipped.append(SkippedFile(_rel(here / d, root) + "/", "hidden folder"))
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            path = here / name
            rel = _rel(path, root)
            if is_hidden(name):
                skipped.append(SkippedFile(rel, "hidden file"))
                continue
            has_files = True
            try:
                st = path.stat()
            except OSError as e:
                skipped.append(SkippedFile(rel, f"unreadable: {e.strerror or e}"))
                continue
            if st.st_size == 0:
                skipped.append(SkippedFile(rel, "empty file (0 bytes)"))
            elif st.st_size > MAX_FILE_BYTES:
                mb, limit = st.st_size / 2**20, MAX_FILE_BYTES >> 20
                skipped.append(SkippedFile(rel, f"file too large ({mb:.0f} MB; limit {limit} MB)"))
            else:
                files.append(ImageFile(path, rel, label, split, st.st_size, st.st_mtime_ns))
    return files, has_files


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
