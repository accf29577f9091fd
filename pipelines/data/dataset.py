"""Load a data set into memory for training (:func:`load_dataset`) or report on it
(:func:`inspect_dataset`); both apply the same checks and the same splits.

Labels are indices into the sorted class names. Validation is the ``validation/`` (or
``test/``) folder, or a seeded, stratified ``validation_fraction`` of a pool; it is always
whole: ``train_per_class`` only thins the training split.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

import numpy as np
import psutil

from pipelines.data import checked
from pipelines.data import images as images_mod
from pipelines.data import tasks as tasks_mod
from pipelines.data.scan import ImageFile, Scan, SkippedFile, scan_folder, too_few_classes
from pipelines.data.sources import DEFAULT_DATASET, Source, resolve_source
from pipelines.data.subsets import per_class_subset, split_pool
from pipelines.errors import UserError

# Part of every fingerprint: bump it when decoding or resizing changes the arrays.
PREPROCESSING_VERSION = 1


@dataclass
class Dataset:
    """A data set decoded to ``uint8`` RGB arrays of shape ``(n, image_size, image_size, 3)``.

    ``*_labels`` are ``int32`` indices into ``classes``; ``*_paths`` the absolute file paths,
    row for row. ``skipped`` lists files left out, with paths relative to the data set root.
    ``fingerprint`` is equal for two loads exactly when they hold the same image bytes with
    the same labels in the same splits and order, at the same size (``train_per_class`` and
    ``seed`` enter through the files they select).
    """

    classes: list[str]
    train_labels: np.ndarray
    train_paths: list[Path]
    val_labels: np.ndarray
    val_paths: list[Path]
    skipped: list[SkippedFile]
    source: str
    root: Path
    image_size: int
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    train_digests: list[str] = field(default_factory=list)  # BLAKE2b of each file's bytes
    val_digests: list[str] = field(default_factory=list)
    tasks: list = field(default_factory=list)  # several tasks: pipelines.data.tasks.Task each
    _pixels: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

    @functools.cached_property
    def _images(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pixels()

    @property
    def train_images(self) -> np.ndarray:
        """``uint8`` training images; decoded on first access when the load was lazy."""
        return self._images[0]

    @property
    def val_images(self) -> np.ndarray:
        return self._images[1]

    @property
    def decoded(self) -> bool:
        """True once the pixels are in memory (always, unless the load was lazy)."""
        return "_images" in self.__dict__

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"train": {class: n}, "validation": {class: n}}``."""
        return {
            split: {c: int(np.sum(labels == i)) for i, c in enumerate(self.classes)}
            for split, labels in (("train", self.train_labels), ("validation", self.val_labels))
        }


@dataclass
class _Prepared:
    source: Source
    scan: Scan
    usable: list[ImageFile]  # row k of decoded.images is usable[k]
    decoded: images_mod.Decoded
    skipped: list[SkippedFile]
    train: list[int]  # indices into usable
    val: list[int]
    problems: list[str]


def load_dataset(
    dataset: str = DEFAULT_DATASET,
    *,
    image_size: int,
    train_per_class: int | None = None,
    seed: int = 0,
    validation_fraction: float = 0.2,
    extract_dir: Path | None = None,
    data_root: Path | None = None,
    lazy: bool = False,
    tasks: list[str] | None = None,
) -> Dataset:
    """Resolve, check, decode (once per process and size) and split ``dataset``.

    ``image_size``: any whole number of pixels; the range an experiment may use is checked
    with the rest of its config (:class:`pipelines.training.config.ExperimentConfig`).

    ``lazy``: when every file was checked before (see :mod:`.checked`), skip decoding
    now and decode on first access to ``train_images``/``val_images``; labels, paths,
    digests, the skipped report and the fingerprint are the same either way.

    ``train_per_class``: keep only that many training images per class (seeded, nested:
    10 are among the 50 of the same seed); all of a class that has fewer.

    A data set with several tasks (:mod:`.tasks`) loads with ``tasks`` (default all) in
    :attr:`Dataset.tasks`. Raises
    :class:`UserError` for a data set that cannot be trained on.
    """
    image_size = _check_image_size(image_size)
    if train_per_class is not None and train_per_class < 1:
        raise UserError(f"train_per_class must be at least 1 (or all), not {train_per_class}")
    if tasks_mod.has_tasks(dataset, data_root):  # several tasks (labels.csv, named)
        return tasks_mod.load_task_dataset(
            dataset,
            image_size=image_size,
            tasks=tasks,
            train_per_class=train_per_class,
            seed=seed,
            validation_fraction=validation_fraction,
            data_root=data_root,
            lazy=lazy,
        )

    # Find the files, check (and unless lazy, decode) them, split train from validation.
    prep = _prepare(dataset, image_size, seed, validation_fraction, data_root, extract_dir, lazy)
    if prep.problems:
        raise UserError("; ".join(prep.problems))

    # Thin the training split to train_per_class per class; say which classes fall short.
    train = _thin_training_split(prep, train_per_class, seed)
    notes = list(prep.scan.notes) + _short_class_notes(prep, train_per_class)

    # The arrays: labels and paths now, pixels now or on first access.
    return _to_dataset(prep, train, image_size, notes)


def _check_image_size(image_size) -> int:
    """A whole, positive number of pixels (no range: see :func:`load_dataset`)."""
    if isinstance(image_size, bool) or not isinstance(image_size, Integral) or image_size < 1:
        raise UserError(
            f"image size must be a whole number of pixels, 1 or more, not {image_size!r}"
        )
    return int(image_size)


def _thin_training_split(prep: _Prepared, train_per_class: int | None, seed: int) -> list[int]:
    """Indices into ``prep.usable`` of the training images kept (all if ``None``)."""
    picked = per_class_subset(
        [prep.usable[i].label for i in prep.train],
        [prep.usable[i].relpath for i in prep.train],
        train_per_class,
        seed,
    )
    return [prep.train[j] for j in picked]


def _short_class_notes(prep: _Prepared, train_per_class: int | None) -> list[str]:
    """A note naming the classes with fewer training images than ``train_per_class``."""
    if train_per_class is None:
        return []
    have = Counter(prep.usable[i].label for i in prep.train)
    short = [f"{c} ({have[c]})" for c in prep.scan.classes if have[c] < train_per_class]
    if not short:
        return []
    return [
        f"train_per_class={train_per_class} is more than some classes have; "
        f"all of them are used: {', '.join(short)}"
    ]


def _to_dataset(prep: _Prepared, train: list[int], image_size: int, notes: list[str]) -> Dataset:
    """The :class:`Dataset` of ``train`` and ``prep.val``; pixels decode lazily if need be."""
    usable, val = prep.usable, prep.val
    index = {c: i for i, c in enumerate(prep.scan.classes)}

    def pixels() -> tuple[np.ndarray, np.ndarray]:
        images = prep.decoded.images
        if images is None:  # lazy: rows of the usable files' decode follow ``usable``
            images = _decode_cached(tuple(usable), image_size).images
        return images[train], images[val]

    def labels(sel: list[int]) -> np.ndarray:
        return np.array([index[usable[i].label] for i in sel], dtype=np.int32)

    return Dataset(
        classes=list(prep.scan.classes),
        train_labels=labels(train),
        train_paths=[usable[i].path for i in train],
        val_labels=labels(val),
        val_paths=[usable[i].path for i in val],
        train_digests=[prep.decoded.digests[i] for i in train],
        val_digests=[prep.decoded.digests[i] for i in val],
        _pixels=pixels,
        skipped=prep.skipped,
        source=prep.source.description,
        root=prep.scan.root,
        image_size=image_size,
        fingerprint=_fingerprint(prep, train, image_size),
        notes=notes,
    )


def inspect_dataset(
    dataset: str = DEFAULT_DATASET,
    *,
    seed: int = 0,
    validation_fraction: float = 0.2,
    extract_dir: Path | None = None,
    data_root: Path | None = None,
) -> dict:
    """Report on ``dataset`` without keeping pixels: every file is still fully decoded once,
    so corrupt and truncated files are found. JSON-ready; ``problems`` lists why it cannot
    be trained on (empty when it can)."""
    if tasks_mod.has_tasks(dataset, data_root):
        return tasks_mod.inspect_tasks(dataset, seed=seed, data_root=data_root)
    prep = _prepare(dataset, None, seed, validation_fraction, data_root, extract_dir)
    counts = {
        split: {c: sum(prep.usable[i].label == c for i in sel) for c in prep.scan.classes}
        for split, sel in (("train", prep.train), ("validation", prep.val))
    }
    if prep.scan.pooled:
        pool = prep.scan.split_dirs["pool"] or "the top folder"
        layout = (
            f"one pool ({pool}); validation is a stratified {validation_fraction:.0%} of it, "
            f"seed {seed}"
        )
    else:
        layout = " + ".join(f"{d}/" for d in prep.scan.split_dirs.values())
    return {
        "dataset": dataset,
        "source": prep.source.description,
        "root": str(prep.scan.root),
        "layout": layout,
        "classes": prep.scan.classes,
        "splits": counts,
        "skipped": [s.to_dict() for s in prep.skipped],
        "image_sizes": _size_stats(prep.decoded.infos),
        "notes": prep.scan.notes,
        "problems": prep.problems,
    }


def clear_cache() -> None:
    """Forget the decoded arrays kept for later loads in this process."""
    _decode_cached.cache_clear()


@functools.lru_cache(maxsize=3)
def _decode_cached(files: tuple[ImageFile, ...], image_size: int) -> images_mod.Decoded:
    """Decoded arrays per (files with their sizes and mtimes, size); read-only, shared."""
    _check_memory(len(files), image_size)
    decoded = images_mod.decode_files([f.path for f in files], image_size)
    if decoded.images is not None:
        decoded.images.flags.writeable = False
    return decoded


def _prepare(
    dataset: str,
    image_size: int | None,
    seed: int,
    fraction: float,
    data_root: Path | None,
    extract_dir: Path | None,
    lazy: bool = False,
) -> _Prepared:
    if not 0.0 < fraction < 1.0:
        raise UserError(f"validation_fraction must be between 0 and 1, not {fraction}")
    if seed < 0:
        raise UserError(f"seed must be 0 or more, not {seed}")
    source = resolve_source(dataset, data_root=data_root, extract_dir=extract_dir)
    scan = scan_folder(source.root, shown=source.shown)
    files = tuple(scan.files)
    decoded = checked.lookup(files) if lazy else None
    if decoded is None:
        if image_size is None:
            decoded = images_mod.decode_files([f.path for f in files], None)
        else:
            decoded = _decode_cached(files, image_size)
        checked.remember(files, decoded)
    usable = [files[i] for i in decoded.ok]
    skipped = list(source.skipped) + scan.skipped
    skipped += [SkippedFile(files[i].relpath, reason) for i, reason in decoded.failures]
    skipped.sort(key=lambda s: s.path)
    problems = _problems(scan, usable, skipped)
    if problems:
        return _Prepared(source, scan, usable, decoded, skipped, [], [], problems)
    if scan.pooled:
        labels = [f.label for f in usable]
        train, val = split_pool(labels, [f.relpath for f in usable], fraction, seed)
    else:
        train = [i for i, f in enumerate(usable) if f.split == "train"]
        val = [i for i, f in enumerate(usable) if f.split == "validation"]
    return _Prepared(source, scan, usable, decoded, skipped, train, val, problems)


def _problems(scan: Scan, usable: list[ImageFile], skipped: list[SkippedFile]) -> list[str]:
    """Why the data set cannot be trained on, one message each; empty if it can."""
    if problem := too_few_classes(scan):
        return [problem]
    problems = []
    need = 2 if scan.pooled else 1
    have = Counter((f.split, f.label) for f in usable)
    for split, dirname in scan.split_dirs.items():
        for c in scan.classes:
            if have[split, c] >= need:
                continue
            prefix = f"{dirname}/{c}/" if dirname else f"{c}/"
            bad = [s for s in skipped if s.path.startswith(prefix)]
            why = f" ({len(bad)} skipped, e.g. {bad[0].path}: {bad[0].reason})" if bad else ""
            if need == 2:
                what = f"class {c!r} has {have[split, c]} usable image{why}; it needs 2 "
                what += "(one to train on, one to validate)"
            else:
                what = f"class {c!r} has no usable image in {prefix}{why}"
            problems.append(f"{what}: add readable images, or remove the class")
    return problems


def _check_memory(n: int, image_size: int) -> None:
    need = n * image_size * image_size * 3
    available = psutil.virtual_memory().available
    if need > 0.8 * available:
        raise UserError(
            f"{n} images at {image_size}x{image_size} need {need / 2**30:.1f} GB of memory; "
            f"{available / 2**30:.1f} GB is free: use a smaller image size or fewer images"
        )


def _fingerprint(prep: _Prepared, train: list[int], image_size: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{PREPROCESSING_VERSION} {image_size} {prep.scan.classes}\n".encode())
    for split, sel in (("train", train), ("validation", prep.val)):
        for i in sel:
            f = prep.usable[i]
            h.update(f"{split}\t{f.label}\t{f.relpath}\t{prep.decoded.digests[i]}\n".encode())
    return h.hexdigest()[:32]


def _size_stats(infos: tuple[images_mod.ImageInfo, ...]) -> dict:
    if not infos:
        return {"count": 0}
    w = np.array([i.width for i in infos])
    h = np.array([i.height for i in infos])
    sizes = Counter(f"{i.width}x{i.height}" for i in infos)
    return {
        "count": len(infos),
        "width": {"min": int(w.min()), "max": int(w.max()), "mean": round(float(w.mean()), 1)},
        "height": {"min": int(h.min()), "max": int(h.max()), "mean": round(float(h.mean()), 1)},
        "most_common": [{"size": s, "count": n} for s, n in sizes.most_common(5)],
        "modes": dict(Counter(i.mode for i in infos).most_common()),
        "formats": dict(Counter(i.format for i in infos).most_common()),
    }
