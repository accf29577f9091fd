"""Every bad input the seminar room can produce, through the real command line.

One table (:data:`CASES`): each case builds its bad input in a fresh folder, runs one CLI
command, and names a fragment its message must contain. The expected outcomes:

* ``REFUSED`` - exit 2 and exactly one stderr line, ``error: ...``, naming the problem; no
  traceback; nothing half-written: no run created, no run left ``queued``/``running``, no
  extraction left behind, nothing written outside the case's folders.
* ``FAILED_RUN`` - ``train`` problems only loading can find (the depth beyond the blocks, an
  image size the model can't take, a model that is not an image model, a batch larger than
  the data set, a class whose every image is unreadable): exit 2, the last stderr line is
  ``error: run ... failed: ...``, and the store holds exactly one new run, ``failed``, with
  that reason - a complete record. Config, backbone and data set refusals found before
  training (:func:`pipelines.training.preflight.check_experiment`) create no run at all.
* ``REPORTED`` - a bad file in an otherwise usable data set: exit 0 and the file with its
  reason in the ``data`` report (it is skipped, never fatal).

Most cases call :func:`pipelines.__main__.main` in this process (TensorFlow is imported
once); the ones marked ``subprocess`` run ``python -m pipelines`` for real.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipelines.__main__ import main
from pipelines.runs.store import ACTIVE, RunStore
from tests.conftest_data import (
    declaring_size,
    make_image_folder,
    password_flagged,
    pattern_image,
    png_header_only,
    zip_with,
)
from tests.conftest_engine import TINY

REPO = Path(__file__).resolve().parent.parent
REFUSED, FAILED_RUN, REPORTED = "refused", "failed run", "reported"


# --- building bad inputs --------------------------------------------------------------------


class Ctx:
    """What a case's ``make`` gets: its own folder, the session's tiny data set, the
    module's test SavedModels, and the case's run store."""

    def __init__(self, tmp: Path, tiny: str, models: Callable[[str], str]) -> None:
        self.tmp, self.tiny, self.model = tmp, tiny, models

    def data(self, name: str = "data", **kwargs) -> Path:
        """A small good data set: 2 classes x 3 train + 2 validation images."""
        kwargs.setdefault("train", 3)
        kwargs.setdefault("validation", 2)
        return make_image_folder(self.tmp / name, **kwargs)

    def store(self) -> RunStore:
        return RunStore()


def _jpeg() -> bytes:
    out = io.BytesIO()
    pattern_image(1, 7).save(out, "JPEG")
    return out.getvalue()


CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TRUNCATED_JPEG = _jpeg()[: len(_jpeg()) // 2]


def class_of_only(filename: str, data: bytes | None = None, *, sparse: int = 0):
    """A data set whose ``train/dogs/`` holds nothing but one bad file."""

    def make(ctx: Ctx) -> str:
        root = ctx.data()
        for p in (root / "train" / "dogs").iterdir():
            p.unlink()
        bad = root / "train" / "dogs" / filename
        if sparse:
            with open(bad, "wb") as f:
                f.truncate(sparse)  # a sparse file: huge by stat, no disk used
        else:
            bad.write_bytes(data or b"")
        return str(root)

    return make


def with_extra(filename: str, data: bytes):
    """A usable data set plus one bad file in ``train/cats/``."""

    def make(ctx: Ctx) -> str:
        root = ctx.data()
        (root / "train" / "cats" / filename).write_bytes(data)
        return str(root)

    return make


def pool(*, keep: tuple[str, ...] = ("cats", "dogs"), extra: Callable[[Path], None] = None):
    """A pool layout (class folders at the top), only the classes in ``keep`` filled."""

    def make(ctx: Ctx) -> str:
        root = ctx.data("pool", classes=keep, train=3, validation=None)
        if extra:
            extra(root)
        return str(root)

    return make


def zip_of(*entries: tuple[str, bytes, int], base: bool = True, method=zipfile.ZIP_DEFLATED):
    """``upload.zip``: a small pool data set (unless ``base`` is False) plus ``(name, data,
    mode)`` entries (see :func:`tests.conftest_data.zip_with`)."""

    def make(ctx: Ctx) -> str:
        folder = ctx.data("src", train=3, validation=None) if base else None
        path = ctx.tmp / "upload.zip"
        path.write_bytes(zip_with(folder, *entries, method=method))
        return str(path)

    return make


def declaring(name: str, data: bytes, declared: int):
    """A zip whose entry ``name`` says it expands to ``declared`` bytes (a lying header)."""

    def make(ctx: Ctx) -> str:
        path = Path(zip_of((name, data, 0))(ctx))
        path.write_bytes(declaring_size(path.read_bytes(), name, declared))
        return str(path)

    return make


def password_zip(ctx: Ctx) -> str:
    path = Path(zip_of()(ctx))
    path.write_bytes(password_flagged(path.read_bytes()))
    return str(path)


def truncated_zip(ctx: Ctx) -> str:
    path = Path(zip_of()(ctx))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def random_zip(ctx: Ctx) -> str:
    """2 MB of incompressible bytes, stored: over a 1 MB cap as a file."""
    noise = np.random.default_rng(0).integers(0, 256, 2 * 2**20, dtype=np.uint8).tobytes()
    return zip_of(("shapes/cats/noise.png", noise, 0), method=zipfile.ZIP_STORED)(ctx)


def without(rel: str):
    def make(ctx: Ctx) -> str:
        root = ctx.data()
        shutil.rmtree(root / rel)
        return str(root)

    return make


def loose_images(ctx: Ctx) -> str:
    folder = ctx.tmp / "loose"
    folder.mkdir()
    for i in range(2):
        pattern_image(0, i).save(folder / f"{i}.png")
    return str(folder)


def empty_folder(ctx: Ctx) -> str:
    (ctx.tmp / "empty").mkdir()
    return str(ctx.tmp / "empty")


def file_with(name: str, data: bytes):
    def make(ctx: Ctx) -> str:
        (ctx.tmp / name).write_bytes(data)
        return str(ctx.tmp / name)

    return make


def folder_with(*files: str):
    def make(ctx: Ctx) -> str:
        folder = ctx.tmp / "folder"
        folder.mkdir()
        for name in files:
            (folder / name).write_bytes(b"not a model")
        return str(folder)

    return make


def model(name: str):
    return lambda ctx: ctx.model(name)


def existing_run(status: str = "completed", arms: str = "imagenet,random"):
    def make(ctx: Ctx) -> str:
        from pipelines.runs import lifecycle
        from pipelines.training.config import ExperimentConfig

        config = ExperimentConfig().with_overrides([f"dataset={ctx.tiny}", f"arms={arms}"])
        store = ctx.store()
        run_id = store.create_run(config)
        lifecycle.finish(store, run_id, status, "failed: test" if status == "failed" else None)
        return run_id

    return make


def not_sqlite(ctx: Ctx) -> str:
    from pipelines import settings

    settings.runs_dir().mkdir(parents=True, exist_ok=True)
    (settings.runs_dir() / "runs.sqlite3").write_bytes(b"PK\x03\x04 a zip, not a database" * 50)
    return ""


def runs_dir_is_a_file(ctx: Ctx) -> str:
    from pipelines import settings

    settings.runs_dir().parent.mkdir(parents=True, exist_ok=True)
    settings.runs_dir().write_text("not a folder")
    return ""


def outside_root(ctx: Ctx) -> str:
    return str(ctx.data("outside"))


def symlink_out_of_root(ctx: Ctx) -> str:
    target = ctx.data("outside")
    (ctx.tmp / "allowed" / "sneaky").symlink_to(target)
    return "sneaky"


def dotdot_out_of_root(ctx: Ctx) -> str:
    ctx.data("outside")
    return "../outside"


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Ctx], str] | None  # builds the bad input; returns what ``{x}`` becomes
    argv: list[str]  # ``{x}``, ``{tmp}`` and ``{tiny}`` are filled in
    expect: str  # a fragment of the message
    outcome: str = REFUSED
    env: dict[str, str] = field(default_factory=dict)
    patch: dict[str, object] = field(default_factory=dict)  # "module.NAME": value
    subprocess: bool = False


def data(*extra: str) -> list[str]:
    return ["data", "--dataset", "{x}", *extra]


def train(*sets: str, dataset: str = "{tiny}") -> list[str]:
    argv = ["train"]
    for item in (f"dataset={dataset}", *TINY, *sets):
        argv += ["--set", item]
    return argv


def near_far(cuts: str = "2,4", datasets: str = "{tiny}", *sets: str) -> list[str]:
    argv = ["near-far", "--cuts", cuts, "--datasets", datasets]
    for item in (*TINY, "phase2.epochs=0", *sets):
        argv += ["--set", item]
    return argv


def classify(backbone: str = "efficientnet_lite0", image: str = "{x}") -> list[str]:
    return ["classify", "--backbone", backbone, image]


FAST = ("phase2.epochs=0", "arms=imagenet")  # trains nothing that needs the backbone loaded
CONFINED = {"CONFINE_PATHS": "1", "DATASETS_DIR": "{tmp}/allowed"}
OUTSIDE = "is outside the folders this shared dashboard may read"
SMALL_CAPS = {"pipelines.data.safezip.MAX_ZIP_BYTES": 2**20, "pipelines.data.safezip.MAX_FILES": 10}

CASES = [
    # Data sets: bad files that leave a class with nothing usable are refused, naming why.
    Case("corrupt-image", class_of_only("x.png", CORRUPT_PNG), data(), "corrupt image"),
    Case("truncated-image", class_of_only("x.jpg", TRUNCATED_JPEG), data(), "truncated"),
    Case("non-image-file", class_of_only("notes.txt", b"hello\n"), data(), "not an image"),
    Case("image-suffix-text", class_of_only("x.jpg", b"<html>"), data(), "not an image"),
    Case("zero-byte-file", class_of_only("x.png", b""), data(), "empty file (0 bytes)"),
    Case(
        "huge-image",
        class_of_only("x.png", png_header_only(8000, 8000)),
        data(),
        "image too large (8000x8000 = 64 megapixels; limit 50)",
    ),
    Case(
        "pixel-bomb",
        class_of_only("x.png", png_header_only(20000, 20000)),
        data(),
        "a pixel bomb?",
    ),
    Case(
        "huge-file",
        class_of_only("x.png", sparse=300 * 2**20),
        data(),
        "file too large (300 MB; limit 256 MB)",
    ),
    Case("hidden-files-only", class_of_only(".DS_Store", b"Bud1"), data(), "hidden file"),
    Case(
        "macosx-folder-only",
        pool(keep=("cats",), extra=lambda r: (r / "__MACOSX").mkdir()),
        data(),
        "ignored: __MACOSX/ (hidden folder)",
    ),
    Case(
        "empty-class-folder",
        pool(keep=("cats",), extra=lambda r: (r / "dogs").mkdir()),
        data(),
        "ignored: dogs/ (empty class folder",
    ),
    Case("single-class", pool(keep=("cats",)), data(), "has 1 class folder (cats)"),
    Case(
        "one-image-in-a-pool-class",
        pool(extra=lambda r: [p.unlink() for p in sorted((r / "dogs").iterdir())[1:]]),
        data(),
        "class 'dogs' has 1 usable image; it needs 2",
    ),
    Case(
        "class-missing-in-validation",
        without("validation/dogs"),
        data(),
        "class 'dogs' has no usable image in validation/dogs/",
    ),
    Case("loose-images-only", loose_images, data(), "(2 image files lie directly in it)"),
    Case("empty-folder", empty_folder, data(), "no class folders in"),
    Case("missing-path", lambda ctx: str(ctx.tmp / "nowhere"), data(), "no folder or zip at"),
    Case("plain-file", file_with("notes.txt", b"hi"), data(), "neither a folder nor a .zip"),
    # ... and the same in a usable data set are skipped and reported, never fatal.
    Case("corrupt-image-reported", with_extra("x.png", CORRUPT_PNG), data(), "corrupt", REPORTED),
    Case("zero-byte-reported", with_extra("x.png", b""), data(), "empty file (0 bytes)", REPORTED),
    Case("ds-store-reported", with_extra(".DS_Store", b"Bud1"), data(), "hidden file", REPORTED),
    # Zips: refused whole, nothing extracted.
    Case("zip-slip", zip_of(("../evil.png", b"x", 0)), data(), "points outside the archive"),
    Case(
        "zip-slip-nested",
        zip_of(("shapes/cats/../../../evil.png", b"x", 0)),
        data(),
        "points outside the archive",
    ),
    Case("zip-absolute-path", zip_of(("/tmp/evil.png", b"x", 0)), data(), "has an absolute path"),
    Case(
        "zip-symlink",
        zip_of(("shapes/cats/link.png", b"/etc/passwd", 0o120777)),
        data(),
        "is a symbolic link",
    ),
    Case(
        "zip-bomb-declared-size",
        declaring("shapes/cats/bomb.png", b"\0" * 1000, 3 * 2**30),
        data(),
        "would expand to 3.0 GB, over the 2.0 GB limit",
    ),
    Case(
        "zip-bomb-lying-size",  # says 100 bytes, holds 5 MB: only 100 are read, then the CRC fails
        declaring("shapes/cats/bomb.png", b"\0" * 5 * 2**20, 100),
        data(),
        "cats/bomb.png: cannot extract (BadZipFile: Bad CRC-32",
        REPORTED,
    ),
    Case(
        "zip-too-many-files",
        zip_of(*[(f"shapes/cats/x{i}.png", b"x", 0) for i in range(5)]),
        data(),
        "holds 11 files; the limit is 10",
        patch=SMALL_CAPS,
    ),
    Case(
        "zip-over-size-cap",
        random_zip,
        data(),
        "is 2.0 MB, over the 1.0 MB limit for a data set zip",
        patch=SMALL_CAPS,
    ),
    Case("zip-password", password_zip, data(), "password-protected"),
    Case("not-a-zip", file_with("photos.zip", b"PK not really"), data(), "not a valid zip file"),
    Case("zip-truncated", truncated_zip, data(), "not a valid zip file"),
    Case("zip-empty", zip_of(base=False), data(), "no class folders in upload.zip:"),
    Case(
        "zip-macosx-only",
        zip_of(("__MACOSX/shapes/._a.png", b"x", 0), base=False),
        data(),
        "no class folders in upload.zip:",
    ),
    Case(
        "zip-single-class",
        zip_of(("shapes/cats/a.png", b"x", 0), base=False),
        data(),
        "upload.zip has 1 class folder (cats)",
    ),
    # The same refusals stop `train` before a run exists.
    Case("train-missing-dataset", None, train(dataset="{tmp}/nowhere"), "no folder or zip at"),
    Case("train-single-class", pool(keep=("cats",)), train(dataset="{x}"), "has 1 class folder"),
    Case(
        "train-zip-slip",
        zip_of(("../evil.png", b"x", 0)),
        train(dataset="{x}"),
        "points outside the archive",
    ),
    Case("train-not-a-zip", file_with("d.zip", b"nope"), train(dataset="{x}"), "not a valid zip"),
    Case(
        "train-unreadable-class",
        class_of_only("x.png", CORRUPT_PNG),
        train(*FAST, "batch_size=2", dataset="{x}"),
        "class 'dogs' has no usable image in train/dogs/",
        FAILED_RUN,
    ),
    # Backbones and hub handles.
    Case("unknown-backbone", file_with("a.png", b""), classify("resnet9000"), "unknown backbone"),
    Case(
        "backbone-is-a-file",
        file_with("model.pb", b"x"),
        train("backbone={x}"),
        "is a file, not a SavedModel folder",
    ),
    Case("backbone-empty-dir", folder_with(), train("backbone={x}"), "is empty: it is not a"),
    Case(
        "backbone-no-saved-model-pb",
        folder_with("weights.h5"),
        train("backbone={x}"),
        "holds no saved_model.pb",
    ),
    Case("backbone-missing", None, train("backbone=./no/such/model"), "does not exist"),
    Case(
        "backbone-corrupt-saved-model",
        folder_with("saved_model.pb"),
        train(*FAST, "backbone={x}"),
        "could not load backbone",
        FAILED_RUN,
    ),
    Case(
        "backbone-not-an-image-model",
        model("tabular"),
        train(*FAST, "backbone={x}"),
        "can't take a 32x32 RGB image (it takes inputs of shape (None, 7))",
        FAILED_RUN,
    ),
    Case(
        "backbone-wrong-output-rank",
        model("feature_map"),
        train(*FAST, "backbone={x}"),
        "not a feature vector [batch, features]",
        FAILED_RUN,
    ),
    Case(
        "image-size-the-backbone-cannot-take",
        model("fixed_224"),
        train(*FAST, "backbone={x}", "image_size=64"),
        "can't take a 64x64 RGB image (it takes inputs of shape (None, 224, 224, 3))",
        FAILED_RUN,
    ),
    Case(
        "depth-beyond-the-blocks",
        model("three_blocks"),
        train("arms=imagenet", "backbone={x}", "phase2.unfreeze_blocks=5"),
        "5 is more than this backbone's 3 blocks",
        FAILED_RUN,
    ),
    Case(
        "classify-not-an-image-model",
        model("tabular"),
        classify("{x}", "{tmp}/cat.png"),
        "can't classify a 224x224 RGB image (it takes inputs of shape (None, 7))",
    ),
    Case(
        "classify-wrong-output-rank",
        model("feature_map"),
        classify("{x}", "{tmp}/cat.png"),
        "does not output the 1000 ImageNet classes",
    ),
    Case(
        "classify-unreachable-hub-handle",
        None,
        classify("https://models.invalid/m/1", "{tmp}/cat.png"),
        "could not download the model",
    ),
    # Images given to classify.
    Case("image-not-an-image", file_with("cat.jpg", b"<html>"), classify(), "not an image"),
    Case("image-zero-bytes", file_with("cat.png", b""), classify(), "empty file (0 bytes)"),
    Case("image-truncated", file_with("cat.jpg", TRUNCATED_JPEG), classify(), "truncated"),
    Case(
        "image-pixel-bomb",
        file_with("cat.png", png_header_only(20000, 20000)),
        classify(),
        "image too large",
    ),
    Case("image-missing", None, classify(image="{tmp}/none.png"), "does not exist"),
    Case("image-is-a-folder", None, classify(image="{tmp}"), "is a folder, not an image"),
    # Config values (all refused before a run exists).
    Case("lr-zero", None, train("phase1.lr=0"), "phase1.lr: must be a positive number"),
    Case("lr-negative", None, train("phase2.lr=-1e-4"), "phase2.lr: must be a positive number"),
    Case("lr-nan", None, train("phase1.lr=nan"), "(got nan)"),
    Case("lr-huge", None, train("phase1.lr=1e9"), "up to 10 (got 1000000000.0)"),
    Case("lr-not-a-number", None, train("phase1.lr=fast"), "phase1.lr: 'fast' is not a valid"),
    Case(
        "zero-epochs-both-phases",
        None,
        train("phase1.epochs=0", "phase2.epochs=0"),
        "both 0: nothing would train",
    ),
    Case("epochs-negative", None, train("phase1.epochs=-1"), "between 0 and 1000"),
    Case("epochs-fractional", None, train("phase1.epochs=1.5"), "is not a valid int"),
    Case("batch-size-zero", None, train("batch_size=0"), "batch_size: must be at least 1"),
    Case(
        "batch-size-over-the-data",
        None,
        train(*FAST, "batch_size=1000"),
        "batch_size: 1000 is larger than the training set (24 images)",
        FAILED_RUN,
    ),
    Case("image-size-too-small", None, train("image_size=16"), "between 32 and 1024 pixels"),
    Case("image-size-not-a-number", None, train("image_size=big"), "is not a valid int"),
    Case("unfreeze-zero", None, train("phase2.unfreeze_blocks=0"), "needs at least one unfrozen"),
    Case("reuse-zero", None, train("reuse_blocks=0"), "reuse_blocks: must be at least 1"),
    Case("reuse-negative", None, train("reuse_blocks=-3"), "reuse_blocks: must be at least 1"),
    Case("reuse-not-a-number", None, train("reuse_blocks=half"), "is not a valid int or null"),
    Case(
        "reuse-beyond-the-blocks",
        None,
        train("reuse_blocks=30"),
        "reuse_blocks: 30 is more than efficientnet_lite0's 18 blocks; choose between 1 and 18",
    ),
    Case(
        "reuse-on-a-backbone-that-cannot-be-cut",
        model("three_blocks"),
        train("backbone={x}", "reuse_blocks=2"),
        "can't be cut at a block boundary (a TF Hub SavedModel's graph can't be split); only "
        "the built-in backbones (efficientnet_lite0, efficientnet_lite1, efficientnet_lite2) can",
    ),
    Case(
        "unfreeze-beyond-the-cut",
        None,
        train("reuse_blocks=3", "phase2.unfreeze_blocks=4"),
        "phase2.unfreeze_blocks: 4 is more than the 3 blocks taken over (reuse_blocks=3)",
    ),
    Case(
        "far-dataset-missing",
        None,
        train(dataset="chest_xray_pneumonia"),
        "has no chest-xray-pneumonia/ folder, and no download exists for it",
        env={"DATASETS_DIR": "{tmp}/allowed"},
    ),
    # The near-or-far series: every config is checked before the first run exists.
    Case(
        "near-far-unknown-dataset",
        None,
        near_far(datasets="{tiny},no_such_set"),
        "datasets: unknown data set 'no_such_set'; name one of horses_or_humans, "
        "chest_xray_pneumonia, chest_xray_pneumonia_tasks, or a folder or .zip of images",
    ),
    Case(
        "near-far-cut-beyond-the-blocks",
        None,
        near_far(cuts="3,19"),
        "reuse_blocks: 19 is more than efficientnet_lite0's 18 blocks",
    ),
    Case("near-far-cut-zero", None, near_far(cuts="0,3"), "reuse_blocks: must be at least 1"),
    Case("near-far-no-cuts", None, near_far(cuts=","), "cuts: give at least one cut point"),
    Case("near-far-no-datasets", None, near_far(datasets=" "), "give at least one data set"),
    Case("near-far-cut-not-a-number", None, near_far(cuts="3,six"), "--cuts: give whole numbers"),
    Case(
        "near-far-missing-folder",
        None,
        near_far(datasets="{tmp}/nowhere"),
        "no folder or zip at",
        subprocess=True,
    ),
    Case("near-far-bad-set", None, near_far("3", "{tiny}", "dropout=1"), "dropout: must be"),
    Case("dropout-one", None, train("dropout=1"), "dropout: must be at least 0 and below 1"),
    Case("unknown-arm", None, train("arms=cats"), "unknown arm 'cats'"),
    Case("no-arms", None, train("arms="), "choose at least one of imagenet, random"),
    Case("unknown-optimizer", None, train("optimizer=lbfgs"), "'lbfgs' is not one of"),
    Case("unknown-key", None, train("lr=0.1"), "unknown config key 'lr'"),
    Case("set-without-value", None, ["train", "--set", "phase1.lr"], "expects key=value"),
    Case("seed-negative", None, train("seed=-1"), "seed: must be 0 or more"),
    Case("train-per-class-zero", None, train("train_per_class=0"), "must be at least 1"),
    Case(
        "config-not-json",
        file_with("c.json", b"epochs: 3\n"),
        ["train", "--config", "{x}"],
        "is not valid JSON",
    ),
    Case("config-missing", None, ["train", "--config", "{tmp}/none.json"], "does not exist"),
    Case(
        "config-not-an-object",
        file_with("c.json", b"[1, 2]"),
        ["train", "--config", "{x}"],
        "must be a JSON object",
    ),
    Case(
        "config-unknown-field",
        file_with("c.json", b'{"phase1": {"learning_rate": 1}}'),
        ["train", "--config", "{x}"],
        "unknown config key 'phase1.learning_rate'",
    ),
    # Runs and the store.
    Case("show-unknown-run", None, ["runs", "show", "NOPE"], "no run with id 'NOPE'"),
    Case("delete-unknown-run", None, ["runs", "delete", "NOPE", "--yes"], "no run with id"),
    Case(
        "csv-unknown-run",
        None,
        ["runs", "export", "NOPE", "--csv", "{tmp}/m.csv"],
        "no run with id",
    ),
    Case("export-unknown-run", None, ["export", "NOPE", "{tmp}/m.onnx"], "no run with id"),
    Case("worker-unknown-run", None, ["worker", "NOPE"], "no run with id"),
    Case(
        "export-failed-run",
        existing_run("failed"),
        ["export", "{x}", "{tmp}/m.onnx"],
        "has no trained imagenet model yet (status failed)",
    ),
    Case(
        "export-arm-not-trained",
        existing_run(arms="imagenet"),
        ["export", "{x}", "--arm", "random", "{tmp}/m.onnx"],
        "has no random arm",
    ),
    Case(
        "csv-to-a-missing-folder",
        existing_run(),
        ["runs", "export", "{x}", "--csv", "{tmp}/no/such/dir/m.csv"],
        "cannot write CSV file",
    ),
    Case("store-not-sqlite", not_sqlite, ["runs", "list"], "is not a SQLite database"),
    Case("runs-dir-is-a-file", runs_dir_is_a_file, ["runs", "list"], "set RUNS_DIR to a folder"),
    # A shared dashboard's confinement of free-text paths (the CLI's is off by default).
    Case("confined-dataset-outside", outside_root, data(), OUTSIDE, env=CONFINED),
    Case("confined-dotdot-escape", dotdot_out_of_root, data(), OUTSIDE, env=CONFINED),
    Case("confined-symlink-escape", symlink_out_of_root, data(), OUTSIDE, env=CONFINED),
    Case(
        "confined-backbone-outside",
        model("tabular"),
        train("backbone={x}", dataset="{tmp}/allowed/d"),
        OUTSIDE,
        env=CONFINED,
    ),
    # ... and of remote backbones: the catalogue or ALLOWED_HANDLE_HOSTS, https only.
    Case(
        "confined-remote-handle-off-the-allow-list",
        None,
        train("backbone=https://models.invalid/m/1", dataset="{tmp}/allowed/d"),
        "is refused on this shared server",
        env=CONFINED,
    ),
    Case(
        "confined-remote-handle-plain-http",
        None,
        classify("http://tfhub.dev/google/m/1", "{tmp}/cat.png"),
        "only https:// models from the catalogue or from these hosts",
        env=CONFINED,
    ),
    Case(
        "confinement-setting-typo",
        lambda ctx: str(ctx.data()),
        data(),
        "CONFINE_PATHS must be 1 or 0, not 'ture'",
        env={"CONFINE_PATHS": "ture"},
    ),
    # Through a real process: one line, exit 2, no traceback.
    Case("cli-lr-zero", None, train("phase1.lr=0"), "phase1.lr: must be", subprocess=True),
    Case(
        "cli-zip-slip",
        zip_of(("../evil.png", b"x", 0)),
        data(),
        "points outside the archive",
        subprocess=True,
    ),
    Case("cli-unknown-run", None, ["runs", "show", "NOPE"], "no run with id", subprocess=True),
    Case(
        "cli-image-not-an-image",
        file_with("cat.jpg", b"<html>"),
        classify(),
        "not an image",
        subprocess=True,
    ),
]


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.subprocess for c in CASES) >= 3


# --- running a case -------------------------------------------------------------------------


def _prepare(case: Case, tmp: Path, tiny: str, models, monkeypatch) -> list[str]:
    (tmp / "allowed" / "d").mkdir(parents=True)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp))
    for target, value in case.patch.items():
        monkeypatch.setattr(target, value)
    pattern_image(0, 1, size=48).save(tmp / "cat.png")
    ctx = Ctx(tmp, tiny, models)
    x = case.make(ctx) if case.make else ""
    return [a.format(x=x, tmp=tmp, tiny=tiny) for a in case.argv]


def _store_state(runs: Path) -> dict[str, str] | bytes | None:
    """``{run_id: status}``, or the raw bytes of a store file that is not SQLite."""
    db = runs / "runs.sqlite3"
    if runs.is_file():
        return runs.read_bytes()
    if db.is_file() and not db.read_bytes().startswith(b"SQLite format 3\0"):
        return db.read_bytes()
    if not db.is_file():
        return {}
    store = RunStore(runs)
    try:
        return {r.run_id: r for r in store.list_runs()}
    finally:
        store.close()


def _check_nothing_half_written(case, before, after, tmp: Path, runs: Path, message: str):
    if not isinstance(before, dict):  # a broken store file is left exactly as it was
        assert after == before
        return
    new = {i: r for i, r in after.items() if i not in before}
    assert not [r for r in after.values() if r.status in ACTIVE], "a run left active"
    if case.outcome == FAILED_RUN:
        (run,) = new.values()
        assert run.status == "failed" and case.expect in run.error
        assert run.error in message
    else:
        assert new == {}, f"refused input created run(s) {list(new)}"
    assert not list(runs.rglob(".extracting")), "a half extraction was left behind"
    assert not (tmp / "evil.png").exists() and not (tmp.parent / "evil.png").exists()


@pytest.mark.parametrize("case", [c for c in CASES if not c.subprocess], ids=lambda c: c.id)
def test_bad_input_in_process(case, tmp_path, runs_dir, tiny_data, saved_models, monkeypatch):
    argv = _prepare(case, tmp_path, tiny_data, saved_models, monkeypatch)
    before = _store_state(runs_dir)
    out, err, code = _run_in_process(argv)
    assert "Traceback" not in err
    if case.outcome == REPORTED:
        assert code == 0, err
        assert case.expect in out
        return
    lines = err.splitlines()
    assert code == 2, err
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], err
    assert case.expect in lines[-1]
    if case.outcome == REFUSED:
        assert len(lines) == 1, err  # nothing but the one line
    else:
        assert lines[-1].startswith("error: run ") and " failed: " in lines[-1]
    _check_nothing_half_written(case, before, _store_state(runs_dir), tmp_path, runs_dir, err)


def _run_in_process(argv: list[str]) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(argv)
    finally:
        sys.stdout, sys.stderr = saved
    return out.getvalue(), err.getvalue(), code


@pytest.mark.parametrize("case", [c for c in CASES if c.subprocess], ids=lambda c: c.id)
def test_bad_input_through_a_real_process(
    case, tmp_path, runs_dir, tiny_data, saved_models, monkeypatch
):
    argv = _prepare(case, tmp_path, tiny_data, saved_models, monkeypatch)
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", *argv],
        cwd=REPO,
        env={**os.environ, "RUNS_DIR": str(runs_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert case.expect in done.stderr
    assert _store_state(runs_dir) in ({}, None)
