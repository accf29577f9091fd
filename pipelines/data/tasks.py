"""Data sets with several tasks: each image may carry one label per task, or none.

Two sources:

- a folder of images with a ``labels.csv`` beside them: a header ``path,<task>,<task>...``,
  one row per image (its path relative to the folder), one column per task, an empty cell
  where the image has no label for that task. Rows under ``train/`` and ``validation/``
  (or ``val/``, ``valid/``, ``test/``) keep that split; otherwise every row is pooled and a
  seeded validation split is taken from the pool (stratified by the row's labels);
- a named data set whose entry in ``assets/datasets.json`` names a ``tasks`` builder: the
  chest X-rays as ``chest_xray_pneumonia_tasks`` read their two tasks from the folder and
  file names (``NORMAL``/``PNEUMONIA`` -> ``normal_vs_pneumonia``; ``personN_bacteria_M`` /
  ``personN_virus_M`` -> ``bacterial_vs_viral``, NORMAL images unlabelled for it).

A bad ``labels.csv`` (no ``path`` column, unknown or duplicate paths, a task with one
class, a task without labelled images in a split) is refused with one message per problem;
rows left out (no label at all, an image that does not decode) are listed with the skipped
files. :func:`load_task_dataset` returns a :class:`~pipelines.data.dataset.Dataset` whose
``tasks`` hold each task's labels (``-1``: no label); its ``classes``/``*_labels`` are the
first task's.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.data import checked
from pipelines.data.scan import (
    IMAGE_SUFFIXES,
    LABELS_FILE,
    MAX_FILE_BYTES,
    VALIDATION_DIRS,
    ImageFile,
    SkippedFile,
    is_hidden,
    scan_folder,
)
from pipelines.data.sources import _data_root, _locate, named, resolve_source
from pipelines.data.subsets import per_class_subset, split_pool
from pipelines.errors import UserError

NO_LABEL = -1
TASK_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_CSV_BYTES = 64 * 2**20
CHEST_PATHOGEN_RE = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    """One task: its sorted ``classes`` and per-split labels (``int32``, -1 = no label)."""

    name: str
    classes: list[str]
    train_labels: np.ndarray
    val_labels: np.ndarray

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"train": {class: n, "(no label)": n}, "validation": {...}}``."""
        return {
            split: {
                **{c: int(np.sum(labels == i)) for i, c in enumerate(self.classes)},
                "(no label)": int(np.sum(labels == NO_LABEL)),
            }
            for split, labels in (("train", self.train_labels), ("validation", self.val_labels))
        }


@dataclass
class TaskTable:
    """A multi-task source before decoding: candidate files, each with ``labels[k]``
    (task -> class name or None), split from the folders (or ``pool``)."""

    root: Path
    shown: str
    tasks: list[str]
    files: list[ImageFile]
    labels: list[dict[str, str | None]]
    pooled: bool
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    description: str = ""


def has_tasks(dataset: str, data_root: Path | None = None) -> bool:
    """Whether ``dataset`` names a multi-task data set (a named one with a ``tasks``
    builder, or a folder holding ``labels.csv``); False for anything else, including names
    :func:`~pipelines.data.sources.resolve_source` would refuse (it says why)."""
    name = str(dataset).strip()
    if not name:
        return False
    if (entry := named(name)) is not None:
        return bool(entry.tasks)
    try:
        path = _locate(name, _data_root(data_root))
    except UserError:
        return False
    return path is not None and path.is_dir() and (path / LABELS_FILE).is_file()


def read_table(dataset: str, data_root: Path | None = None) -> TaskTable:
    """The :class:`TaskTable` of a multi-task ``dataset`` (see :func:`has_tasks`)."""
    source = resolve_source(dataset, data_root=data_root)
    entry = named(dataset)
    if entry is not None and entry.tasks:
        builder = _BUILDERS.get(entry.tasks)
        if builder is None:
            raise UserError(f"{entry.id}: unknown tasks builder {entry.tasks!r} in datasets.json")
        table = builder(source.root)
    else:
        table = read_labels_csv(source.root, shown=source.shown)
    table.description = source.description
    return table


# --- labels.csv ---------------------------------------------------------------------------


def read_labels_csv(root: Path, shown: str | None = None) -> TaskTable:
    """Read ``root/labels.csv``; raise :class:`UserError` naming every problem found."""
    root = Path(root)
    shown = shown or str(root)
    csv_path = root / LABELS_FILE
    where = f"{LABELS_FILE} in {shown}"
    if csv_path.stat().st_size > MAX_CSV_BYTES:
        raise UserError(f"{where} is larger than {MAX_CSV_BYTES >> 20} MB: split the data set")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{where} is not a readable UTF-8 CSV file ({e})") from None
    if not rows or not rows[0] or rows[0][0].strip().lower() != "path":
        raise UserError(
            f"{where} needs a header row starting with 'path', then one column per task "
            "(e.g. path,species,colour)"
        )
    tasks = [t.strip() for t in rows[0][1:]]
    if not tasks:
        raise UserError(f"{where} has no task columns: add one column per task after 'path'")
    bad = [t for t in tasks if not TASK_NAME_RE.match(t)]
    if bad:
        raise UserError(
            f"{where}: task name(s) {', '.join(repr(t) for t in bad)} are not allowed: use "
            "letters, digits and _ (starting with a letter), e.g. bacterial_vs_viral"
        )
    if len(set(tasks)) != len(tasks):
        raise UserError(f"{where}: each task column may appear once")

    problems: list[str] = []
    skipped: list[SkippedFile] = []
    seen: dict[str, list[int]] = {}
    unknown: list[tuple[str, int]] = []
    outside: list[tuple[str, int]] = []
    files: list[ImageFile] = []
    labels: list[dict[str, str | None]] = []
    for n, row in enumerate(rows[1:], start=2):  # n: the row's line in the file
        if not any(cell.strip() for cell in row):
            continue  # blank line
        rel = _clean_path(row[0])
        if rel is None:
            outside.append((row[0], n))
            continue
        seen.setdefault(rel, []).append(n)
        if len(seen[rel]) > 1:
            continue
        path = root / rel
        if not path.is_file():
            unknown.append((rel, n))
            continue
        cells = [c.strip() for c in row[1:]] + [""] * (len(tasks) - len(row) + 1)
        if len(row) - 1 > len(tasks) and any(c.strip() for c in row[len(tasks) + 1 :]):
            problems.append(f"{LABELS_FILE} row {n} has more cells than the header has columns")
            continue
        row_labels = {t: (cells[k] or None) for k, t in enumerate(tasks)}
        if all(v is None for v in row_labels.values()):
            skipped.append(SkippedFile(rel, f"{LABELS_FILE} row {n}: no label for any task"))
            continue
        file = _image_file(root, path, rel, skipped)
        if file is not None:
            files.append(file)
            labels.append(row_labels)

    dupes = {p: lines for p, lines in seen.items() if len(lines) > 1}
    if dupes:
        p, lines = next(iter(dupes.items()))
        problems.append(
            f"{LABELS_FILE} lists {len(dupes)} path(s) more than once, e.g. {p} (rows "
            f"{', '.join(map(str, lines))}): keep one row per image"
        )
    if unknown:
        p, n = unknown[0]
        problems.append(
            f"{LABELS_FILE} names {len(unknown)} path(s) that are not files in {shown}, e.g. "
            f"{p} (row {n}): paths are relative to the folder that holds {LABELS_FILE}"
        )
    if outside:
        p, n = outside[0]
        problems.append(
            f"{LABELS_FILE} has {len(outside)} path(s) that are empty or leave the folder, "
            f"e.g. {p!r} (row {n}): give paths relative to the folder, without '..'"
        )
    splits = {_split_of(f.relpath) for f in files}
    if "pool" in splits and len(splits) > 1:
        problems.append(
            f"{LABELS_FILE} mixes images under train/ or validation/ with images outside "
            "them: put all of them in train/ and validation/, or none (a validation split "
            "is then drawn from all)"
        )
    if problems:
        raise UserError("; ".join(problems))
    listed = set(seen)
    skipped += _unlisted_images(root, listed)
    pooled = splits <= {"pool"}
    files = [
        ImageFile(f.path, f.relpath, "", _split_of(f.relpath), f.size, f.mtime_ns) for f in files
    ]
    notes = [] if not pooled else [_POOL_NOTE]
    return TaskTable(root, shown, tasks, files, labels, pooled, skipped, notes)


_POOL_NOTE = (
    "no train/ and validation/ folders: validation is a seeded share of the rows, "
    "stratified by their labels"
)


def _clean_path(raw: str) -> str | None:
    """``raw`` as a POSIX path relative to the folder, or None if empty or leaving it."""
    text = raw.strip().replace("\\", "/")
    if not text:
        return None
    p = PurePosixPath(text)
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", text):
        return None
    return p.as_posix().removeprefix("./")


def _split_of(relpath: str) -> str:
    top = relpath.split("/", 1)[0]
    if "/" not in relpath:
        return "pool"
    if top == "train":
        return "train"
    return "validation" if top in VALIDATION_DIRS else "pool"


def _image_file(root: Path, path: Path, rel: str, skipped: list[SkippedFile]) -> ImageFile | None:
    st = path.stat()
    if st.st_size == 0:
        skipped.append(SkippedFile(rel, "empty file (0 bytes)"))
        return None
    if st.st_size > MAX_FILE_BYTES:
        skipped.append(SkippedFile(rel, f"file too large (limit {MAX_FILE_BYTES >> 20} MB)"))
        return None
    return ImageFile(path, rel, "", "pool", st.st_size, st.st_mtime_ns)


def _unlisted_images(root: Path, listed: set[str]) -> list[SkippedFile]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if is_hidden(name) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in listed:
                out.append(SkippedFile(rel, f"not in {LABELS_FILE}: no labels"))
    return out


# --- named data sets built from file names ------------------------------------------------


def chest_xray_tasks(root: Path) -> TaskTable:
    """The chest X-rays' two tasks from folder and file names (see the module docstring)."""
    scan = scan_folder(root)
    labels: list[dict[str, str | None]] = []
    unnamed = 0
    for f in scan.files:
        pneumonia = f.label.upper() == "PNEUMONIA"
        m = CHEST_PATHOGEN_RE.search(f.path.name) if pneumonia else None
        unnamed += pneumonia and m is None
        pathogen = None if m is None else ("bacterial" if m[1].lower() == "bacteria" else "viral")
        labels.append({"normal_vs_pneumonia": f.label, "bacterial_vs_viral": pathogen})
    notes = list(scan.notes)
    if unnamed:
        notes.append(f"{unnamed} PNEUMONIA file name(s) say neither bacteria nor virus: unlabelled")
    return TaskTable(
        scan.root,
        str(root),
        ["normal_vs_pneumonia", "bacterial_vs_viral"],
        scan.files,
        labels,
        scan.pooled,
        scan.skipped,
        notes,
    )


_BUILDERS = {"chest_xray_filenames": chest_xray_tasks}


# --- loading ------------------------------------------------------------------------------


def load_task_dataset(
    dataset: str,
    *,
    image_size: int | None,
    tasks: list[str] | None = None,
    train_per_class: int | None = None,
    seed: int = 0,
    validation_fraction: float = 0.2,
    data_root: Path | None = None,
    lazy: bool = False,
):
    """The multi-task ``dataset`` as a :class:`~pipelines.data.dataset.Dataset` with
    ``tasks`` (only those named in ``tasks``, default all). ``train_per_class`` keeps that
    many training images per combination of labels. ``image_size=None`` decodes to check
    only (no pixels kept). Raises :class:`UserError` with every problem found."""
    from pipelines.data import dataset as ds
    from pipelines.data import images as images_mod

    table = read_table(dataset, data_root)
    chosen = select_tasks(table.tasks, tasks, table.shown)
    files = tuple(table.files)
    decoded = checked.lookup(files) if lazy else None
    if decoded is None:
        if image_size is None:
            decoded = images_mod.decode_files([f.path for f in files], None)
        else:
            decoded = ds._decode_cached(files, image_size)
        checked.remember(files, decoded)
    skipped = list(table.skipped)
    skipped += [SkippedFile(files[i].relpath, reason) for i, reason in decoded.failures]
    ok = list(decoded.ok)  # indices into files; row k of decoded.images is files[ok[k]]
    # Rows without a label for any chosen task are not part of this experiment.
    usable = [k for k, i in enumerate(ok) if any(table.labels[i][t] for t in chosen)]
    combo = ["|".join(str(table.labels[ok[k]][t]) for t in chosen) for k in usable]
    keys = [files[ok[k]].relpath for k in usable]
    if table.pooled:
        tr, va = split_pool(combo, keys, validation_fraction, seed)
    else:
        tr = [j for j, k in enumerate(usable) if files[ok[k]].split == "train"]
        va = [j for j, k in enumerate(usable) if files[ok[k]].split == "validation"]
    picked = per_class_subset([combo[j] for j in tr], [keys[j] for j in tr], train_per_class, seed)
    train = [usable[tr[j]] for j in picked]
    val = [usable[j] for j in va]

    task_list, problems = [], []
    for t in chosen:
        classes = sorted({table.labels[ok[k]][t] for k in usable} - {None})
        index = {c: n for n, c in enumerate(classes)}

        def labels(sel: list[int], t=t, index=index) -> np.ndarray:
            return np.array(
                [index.get(table.labels[ok[k]][t], NO_LABEL) for k in sel], dtype=np.int32
            )

        task = Task(t, classes, labels(train), labels(val))
        task_list.append(task)
        if len(classes) < 2:
            problems.append(
                f"task {t!r} has {len(classes)} class ({', '.join(classes) or 'no labels'}) in "
                f"{table.shown}: a task needs at least 2; label images of another class, or "
                "leave the task out (config tasks)"
            )
            continue
        for split, lab in (("training", task.train_labels), ("validation", task.val_labels)):
            if not np.any(lab != NO_LABEL):
                problems.append(
                    f"task {t!r} has no labelled image in the {split} split: label some of "
                    "its images for it, or leave the task out (config tasks)"
                )
    if problems:
        raise UserError("; ".join(problems))

    skipped.sort(key=lambda s: s.path)

    def pixels() -> tuple[np.ndarray, np.ndarray]:
        images = decoded.images
        if images is None:
            images = ds._decode_cached(tuple(files[i] for i in ok), image_size).images
        return images[train], images[val]

    first = task_list[0]
    return ds.Dataset(
        classes=first.classes,
        train_labels=first.train_labels,
        train_paths=[files[ok[k]].path for k in train],
        val_labels=first.val_labels,
        val_paths=[files[ok[k]].path for k in val],
        train_digests=[decoded.digests[k] for k in train],
        val_digests=[decoded.digests[k] for k in val],
        _pixels=pixels,
        skipped=skipped,
        source=table.description,
        root=table.root,
        image_size=image_size or 0,
        fingerprint=_fingerprint(task_list, decoded, train, val, image_size),
        notes=table.notes,
        tasks=task_list,
    )


def select_tasks(available: list[str], wanted: list[str] | None, shown: str) -> list[str]:
    """``wanted`` (default: all of ``available``) in the data set's order; refuses names
    the data set does not have."""
    if not wanted:
        return list(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise UserError(
            f"tasks: {', '.join(repr(t) for t in unknown)} not in {shown}; its tasks are "
            f"{', '.join(available)}"
        )
    return [t for t in available if t in wanted]


def _fingerprint(tasks: list[Task], decoded, train, val, image_size) -> str:
    h = hashlib.sha256()
    h.update(f"tasks v1 {image_size} {[(t.name, t.classes) for t in tasks]}\n".encode())
    for split, sel in (("train", train), ("validation", val)):
        for n, k in enumerate(sel):
            lab = [int((t.train_labels if split == "train" else t.val_labels)[n]) for t in tasks]
            h.update(f"{split}\t{lab}\t{decoded.digests[k]}\n".encode())
    return h.hexdigest()[:32]


def _combo(tasks: list[Task], labels) -> str:
    """A row's labels as one name: ``PNEUMONIA · viral`` (``–``: no label)."""
    pairs = zip(tasks, labels, strict=True)
    return " · ".join(t.classes[k] if k != NO_LABEL else "–" for t, k in pairs)


def inspect_tasks(dataset: str, *, seed: int = 0, data_root: Path | None = None) -> dict:
    """The report ``python -m pipelines data`` prints for a multi-task data set."""
    problems: list[str] = []
    try:
        data = load_task_dataset(dataset, image_size=None, seed=seed, data_root=data_root)
    except UserError as e:
        return {
            "dataset": dataset,
            "classes": [],
            "splits": {"train": {}, "validation": {}},
            "tasks": {},
            "skipped": [],
            "problems": [str(e)],
        }
    splits = {}
    for split, attr in (("train", "train_labels"), ("validation", "val_labels")):
        rows = zip(*(getattr(t, attr) for t in data.tasks), strict=True)
        splits[split] = dict(sorted(Counter(_combo(data.tasks, r) for r in rows).items()))
    combos = sorted(set(splits["train"]) | set(splits["validation"]))
    splits = {split: {c: counts.get(c, 0) for c in combos} for split, counts in splits.items()}
    from pipelines.data.dataset import _size_stats

    decoded = checked.lookup(tuple(read_table(dataset, data_root).files))  # just remembered
    return {
        "dataset": dataset,
        "source": data.source,
        "root": str(data.root),
        "image_sizes": _size_stats(decoded.infos) if decoded else {"count": 0},
        # as a one-task report: "classes" are the combinations of labels (what
        # train_per_class counts), so callers that count images read it unchanged
        "classes": combos,
        "splits": splits,
        "layout": "several tasks (" + ", ".join(t.name for t in data.tasks) + ")",
        "tasks": {t.name: {"classes": t.classes, "splits": t.counts()} for t in data.tasks},
        "skipped": [s.to_dict() for s in data.skipped],
        "notes": data.notes,
        "problems": problems,
    }
