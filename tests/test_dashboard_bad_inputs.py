"""Every bad input the seminar room can give the dashboard, through the real pages.

One table (:data:`CASES`): each case builds its bad input, drives the app under Streamlit's
``AppTest`` the way a person would (a folder typed, a zip or photo uploaded, a backbone
folder given, a link with ``?run=``), and names a fragment the message must contain. For
every case: no exception element (no traceback), the message shown as ``st.error`` or
``st.warning``, and nothing half-written: no run in the store, nothing left under
``RUNS_DIR/uploads`` by a refused upload, a broken store file left as it was. Setup
refusals also disable Start.

Outcomes (:class:`Case` ``outcome``):

* ``REFUSED`` - an ``st.error`` naming the problem.
* ``WARNED`` - an ``st.warning``: a value the widget can't hold was replaced (a learning
  rate of 0, NaN, 1e9), or a link names no run.
* ``CLAMPED`` - a number input outside its bounds holds the nearest bound (Streamlit
  clamps; nothing else can reach the config).
* ``REPORTED`` - bad files in a usable data set: each listed in the skipped-files table
  with its reason, Start enabled.

The command line's side of the same list is ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from tests.conftest_dashboard import write_run
from tests.conftest_data import (
    add_bad_files,
    declaring_size,
    make_image_folder,
    password_flagged,
    pattern_image,
    png_header_only,
    zip_with,
)

REFUSED, WARNED, CLAMPED, REPORTED = "refused", "warned", "clamped", "reported"
EXPERIMENT_PAGE, RUNS_PAGE, EXPLAIN_PAGE = (
    "views/experiment.py",
    "views/runs.py",
    "views/explain.py",
)
OUTSIDE = "is outside the folders this shared dashboard may read"


def _jpeg(size: int = 32) -> bytes:
    out = io.BytesIO()
    pattern_image(1, 7, size=size).save(out, "JPEG")
    return out.getvalue()


CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
TRUNCATED_JPEG = _jpeg(64)[: len(_jpeg(64)) // 2]


# --- the context a case drives ----------------------------------------------------------------


class Ctx:
    """A case's folders and app: ``open()`` starts the app, ``set()`` changes a widget and
    reruns; ``at`` is the app after the last run."""

    def __init__(self, app, env, tmp: Path, models: Callable[[str], str], monkeypatch) -> None:
        self.app, self.env, self.tmp, self.model = app, env, tmp, models
        self.monkeypatch = monkeypatch
        self.at = None
        self.setup = True  # a Setup form case: Start is disabled exactly when refused
        self.existing_runs = 0  # runs the case itself wrote into the store
        self.reasons: dict[str, str] = {}  # REPORTED: {skipped path: a word of its reason}

    def open(self, run: str | None = None, **session) -> None:
        at = self.app(run=run)
        for key, value in session.items():
            at.session_state[key] = value
        self.at = ok(at.run())

    def set(self, kind: str, key: str, value) -> None:
        getattr(self.at, kind)(key=key).set_value(value)
        ok(self.at.run())

    def data(self, name: str = "data", **kwargs) -> Path:
        """A small good data set: 2 classes x 3 train + 2 validation images."""
        kwargs.setdefault("train", 3)
        kwargs.setdefault("validation", 2)
        return make_image_folder(self.tmp / name, **kwargs)


def ok(at):
    """The app ran without an exception element; return it."""
    assert not at.exception, [e.value for e in at.exception]
    return at


# --- building bad inputs ----------------------------------------------------------------------


def class_of_only(filename: str, data: bytes = b"", *, sparse: int = 0):
    """A data set whose ``train/dogs/`` holds nothing but one bad file."""

    def make(ctx: Ctx) -> str:
        root = ctx.data()
        for p in (root / "train" / "dogs").iterdir():
            p.unlink()
        bad = root / "train" / "dogs" / filename
        if sparse:
            with open(bad, "wb") as f:
                f.truncate(sparse)  # huge by stat, no disk used
        else:
            bad.write_bytes(data)
        return str(root)

    return make


def pool(keep: tuple[str, ...] = ("cats", "dogs"), extra: Callable[[Path], object] | None = None):
    """A pool layout (class folders at the top), only the classes in ``keep`` filled."""

    def make(ctx: Ctx) -> str:
        root = ctx.data("pool", classes=keep, validation=None)
        if extra:
            extra(root)
        return str(root)

    return make


def without_validation_dogs(ctx: Ctx) -> str:
    root = ctx.data()
    for p in (root / "validation" / "dogs").iterdir():
        p.unlink()
    (root / "validation" / "dogs").rmdir()
    return str(root)


def loose_images(ctx: Ctx) -> str:
    folder = ctx.tmp / "loose"
    folder.mkdir()
    for i in range(2):
        pattern_image(0, i).save(folder / f"{i}.png")
    return str(folder)


def new_folder(*files: str):
    def make(ctx: Ctx) -> str:
        folder = ctx.tmp / "folder"
        folder.mkdir()
        for name in files:
            (folder / name).write_bytes(b"not a model")
        return str(folder)

    return make


def new_file(name: str, data: bytes = b"x"):
    def make(ctx: Ctx) -> str:
        (ctx.tmp / name).write_bytes(data)
        return str(ctx.tmp / name)

    return make


def zipped(*entries: tuple[str, bytes, int], base: bool = True, method=zipfile.ZIP_DEFLATED):
    """Zip bytes: a small pool data set (unless ``base`` is False) plus ``(name, data,
    mode)`` entries (see :func:`tests.conftest_data.zip_with`)."""

    def make(ctx: Ctx) -> bytes:
        folder = ctx.data("src", train=24, validation=None) if base else None
        return zip_with(folder, *entries, method=method)

    return make


def lying_zip(ctx: Ctx) -> bytes:
    """An entry that says it expands to 100 bytes and holds 5 MB (a lying zip bomb)."""
    name = "shapes/cats/bomb.png"
    return declaring_size(zipped((name, b"\0" * 5 * 2**20, 0))(ctx), name, 100)


def password_zip(ctx: Ctx) -> bytes:
    return password_flagged(zipped()(ctx))


def truncated_zip(ctx: Ctx) -> bytes:
    data = zipped()(ctx)
    return data[: len(data) // 2]


def noise(n: int) -> bytes:
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


# --- drivers: how a person gives the bad input -------------------------------------------------


def folder(make: Callable[[Ctx], str]):
    """Type the path ``make`` returns into the data set folder field."""

    def drive(ctx: Ctx) -> None:
        ctx.open()
        ctx.set("radio", "dataset_source", "folder")
        ctx.set("text_input", "dataset", make(ctx))

    return drive


def upload(make: Callable[[Ctx], bytes], name: str = "photos.zip"):
    """Upload the bytes ``make`` returns as a data set zip named ``name``."""

    def drive(ctx: Ctx) -> None:
        ctx.open()
        ctx.set("radio", "dataset_source", "upload")
        ctx.at.file_uploader(key="dataset_zip").upload(name, make(ctx), "application/zip")
        ok(ctx.at.run())

    return drive


def backbone(make: Callable[[Ctx], str], **values):
    """Choose the custom backbone, type the handle ``make`` returns, set ``values``."""

    def drive(ctx: Ctx) -> None:
        ctx.open()
        for key, value in values.items():
            ctx.set("number_input", key, value)
        ctx.set("selectbox", "backbone", "custom")
        ctx.set("text_input", "backbone_custom", make(ctx))

    return drive


def widgets(*changes: tuple[str, str, object]):
    """Set ``(kind, key, value)`` widgets one after another."""

    def drive(ctx: Ctx) -> None:
        ctx.open()
        for kind, key, value in changes:
            ctx.set(kind, key, value)

    return drive


def session(**values):
    """Open the app with these values already in Session State (what reaches a widget
    without the browser: a stale session, a crafted message)."""

    def drive(ctx: Ctx) -> None:
        ctx.open(**{k.replace("__", "."): v for k, v in values.items()})

    return drive


def try_image(data: bytes, name: str = "photo.jpg"):
    """Open a finished run's "Try your own image" tab and upload ``data``."""

    def drive(ctx: Ctx) -> None:
        images = ctx.env.datasets / "horses-or-humans" / "validation"
        run_id = write_run(ctx.env.store, status="completed", epochs_done=5, images=images)
        ctx.setup = False
        ctx.existing_runs = 1
        ctx.open(run=run_id)
        ctx.at.session_state["results.tab"] = "Try your own image"
        ok(ctx.at.run())
        ctx.at.file_uploader(key=f"try.{run_id}").upload(name, data, "image/jpeg")
        ok(ctx.at.run())

    return drive


def link(run_id: str):
    def drive(ctx: Ctx) -> None:
        ctx.setup = False
        ctx.open(run=run_id)

    return drive


def broken_store(content: bytes | None, page: str = EXPERIMENT_PAGE):
    """A ``runs.sqlite3`` that is ``content`` (None: ``RUNS_DIR`` itself is a file)."""

    def drive(ctx: Ctx) -> None:
        runs = ctx.env.runs
        ctx.env.store.close()
        for p in sorted(runs.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        runs.rmdir()
        if content is None:
            runs.write_text("not a folder")
        else:
            runs.mkdir()
            (runs / "runs.sqlite3").write_bytes(content)
        ctx.setup = False
        ctx.open()
        if page != EXPERIMENT_PAGE:
            ok(ctx.at.switch_page(page).run())

    return drive


def store_broken_later(page: str = EXPERIMENT_PAGE):
    """A store that worked when the page first opened and is garbage by the next rerun."""

    def drive(ctx: Ctx) -> None:
        ctx.setup = False
        ctx.open()
        if page != EXPERIMENT_PAGE:
            ok(ctx.at.switch_page(page).run())
        ctx.env.store.close()
        for suffix in ("", "-wal", "-shm"):
            (ctx.env.runs / f"runs.sqlite3{suffix}").unlink(missing_ok=True)
        (ctx.env.runs / "runs.sqlite3").write_bytes(b"PK\x03\x04 a zip, not a database" * 50)
        ok(ctx.at.run())

    return drive


def failed_run(error: str):
    """A run the worker failed with the engine's message (found only while loading)."""

    def drive(ctx: Ctx) -> None:
        run_id = write_run(ctx.env.store, status="running", epochs_done=0)
        lifecycle.finish(ctx.env.store, run_id, "failed", error)
        ctx.setup = False
        ctx.existing_runs = 1
        ctx.open(run=run_id)

    return drive


def confined(drive: Callable[[Ctx], None]):
    """``drive`` with path confinement on, as on a dashboard shared on a network."""

    def wrapped(ctx: Ctx) -> None:
        ctx.monkeypatch.setenv("CONFINE_PATHS", "1")
        drive(ctx)

    return wrapped


# --- test SavedModels -------------------------------------------------------------------------


def model(name: str):
    return lambda ctx: ctx.model(name)


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    drive: Callable[[Ctx], None]
    expect: str | tuple[str, ...]  # fragment(s) of the message (REPORTED: of skipped rows)
    outcome: str = REFUSED
    patch: dict[str, object] = field(default_factory=dict)  # "module.NAME": value
    option: dict[str, object] = field(default_factory=dict)  # Streamlit config options
    check: Callable[[Ctx], None] | None = None  # more assertions


def value_is(kind: str, key: str, expected):
    def check(ctx: Ctx) -> None:
        assert getattr(ctx.at, kind)(key=key).value == expected

    return check


def every_bad_file(ctx: Ctx) -> str:
    root = ctx.data("bad", train=20, validation=4)
    ctx.reasons = add_bad_files(root)
    return str(root)


def skipped_rows(at) -> list[str]:
    frames = [d.value for d in at.dataframe]
    return [" · ".join(map(str, row)) for f in frames for row in f.itertuples(index=False)]


def lists_every_bad_file(ctx: Ctx) -> None:
    rows = skipped_rows(ctx.at)
    for path, word in ctx.reasons.items():
        assert any(row.startswith(path) and word in row for row in rows), (path, word, rows)


ONE_MB_ZIPS = {"pipelines.data.safezip.MAX_BYTES": 2**20}
ZEROS_3MB = ("shapes/cats/zeros.png", b"\0" * 3 * 2**20, 0)

CASES = [
    # Data set folders: a class left with nothing usable refuses the data set, naming why.
    Case("corrupt-image", folder(class_of_only("x.png", CORRUPT_PNG)), "corrupt"),
    Case("truncated-image", folder(class_of_only("x.jpg", TRUNCATED_JPEG)), "truncated"),
    Case("non-image-file", folder(class_of_only("notes.txt", b"hello\n")), "not an image"),
    Case("html-named-jpg", folder(class_of_only("x.jpg", b"<html>")), "not an image"),
    Case("zero-byte-file", folder(class_of_only("x.png", b"")), "empty file (0 bytes)"),
    Case(
        "huge-image",
        folder(class_of_only("x.png", png_header_only(8000, 8000))),
        "image too large (8000x8000",
    ),
    Case(
        "pixel-bomb",
        folder(class_of_only("x.png", png_header_only(20000, 20000))),
        "a pixel bomb?",
    ),
    Case(
        "huge-file",
        folder(class_of_only("x.png", sparse=300 * 2**20)),
        "file too large (300 MB",
    ),
    Case("hidden-files-only", folder(class_of_only(".DS_Store", b"Bud1")), "hidden file"),
    Case(
        "macosx-folder-only",
        folder(pool(("cats",), lambda r: (r / "__MACOSX").mkdir())),
        "__MACOSX/ (hidden folder)",
    ),
    Case(
        "empty-class-folder",
        folder(pool(("cats",), lambda r: (r / "dogs").mkdir())),
        "dogs/ (empty class folder",
    ),
    Case("single-class", folder(pool(("cats",))), "has 1 class folder (cats)"),
    Case(
        "one-image-in-a-class",
        folder(pool(extra=lambda r: [p.unlink() for p in sorted((r / "dogs").iterdir())[1:]])),
        "class 'dogs' has 1 usable image; it needs 2",
    ),
    Case(
        "class-missing-in-validation",
        folder(without_validation_dogs),
        "class 'dogs' has no usable image in validation/dogs/",
    ),
    Case("loose-images-only", folder(loose_images), "(2 image files lie directly in it)"),
    Case("empty-folder", folder(new_folder()), "no class folders in"),
    Case("missing-folder", folder(lambda ctx: str(ctx.tmp / "nowhere")), "no folder or zip at"),
    Case("plain-file", folder(new_file("notes.txt", b"hi")), "neither a folder nor a .zip"),
    Case(
        "confined-folder-outside",
        confined(folder(lambda ctx: str(ctx.data("outside")))),
        OUTSIDE,
    ),
    # ... and in a usable data set the same files are skipped, each listed with its reason.
    Case(
        "every-bad-file-reported",
        folder(every_bad_file),
        (),
        REPORTED,
        check=lists_every_bad_file,
    ),
    # Uploaded zips: refused whole, nothing kept under RUNS_DIR/uploads.
    Case("upload-not-a-zip", upload(lambda ctx: b"PK not really"), "photos.zip is not a zip"),
    Case(
        "upload-photo-instead-of-zip",
        upload(lambda ctx: _jpeg(), name="IMG_0001.jpg"),
        "IMG_0001.jpg is not a zip file",
    ),
    Case("upload-truncated-zip", upload(truncated_zip), "not a zip file (or a damaged one)"),
    Case(
        "upload-zip-slip",
        upload(zipped(("../evil.png", b"x", 0))),
        "entry '../evil.png' points outside the archive",
    ),
    Case(
        "upload-zip-slip-nested",
        upload(zipped(("shapes/cats/../../../evil.png", b"x", 0))),
        "points outside the archive",
    ),
    Case(
        "upload-absolute-path",
        upload(zipped(("/tmp/evil.png", b"x", 0))),
        "entry '/tmp/evil.png' has an absolute path",
    ),
    Case(
        "upload-symlink",
        upload(zipped(("shapes/cats/link.png", b"/etc/passwd", 0o120777))),
        "is a symbolic link",
    ),
    Case("upload-password", upload(password_zip), "password-protected"),
    Case(
        "upload-zip-bomb",
        upload(zipped(ZEROS_3MB)),
        "photos.zip would expand to 3.1 MB, over the 1.0 MB limit",
        patch=ONE_MB_ZIPS,
    ),
    Case(
        "upload-zip-bomb-lying-header",  # only the declared 100 bytes are read: CRC fails
        upload(lying_zip),
        ("cats/bomb.png · cannot extract (BadZipFile: Bad CRC-32",),
        REPORTED,
    ),
    Case(
        "upload-too-many-files",
        upload(zipped(*[(f"shapes/cats/x{i}.png", b"x", 0) for i in range(5)])),
        "photos.zip holds 53 files; the limit is 50",
        patch={"pipelines.data.safezip.MAX_FILES": 50},
    ),
    Case(
        "upload-over-the-cap",
        upload(zipped(("shapes/cats/noise.png", noise(2 * 2**20), 0), method=zipfile.ZIP_STORED)),
        "over this dashboard's upload limit of 1 MB",
        option={"server.maxUploadSize": 1},
    ),
    Case("upload-empty-zip", upload(zipped(base=False)), "no class folders in"),
    Case(
        "upload-macosx-only",
        upload(zipped(("__MACOSX/shapes/._a.png", b"x", 0), base=False)),
        "no class folders in",
    ),
    Case(
        "upload-single-class",
        upload(zipped(("shapes/cats/a.png", _jpeg(), 0), base=False)),
        "has 1 class folder (cats)",
    ),
    # "Try your own image" after a run.
    Case("try-html-as-jpg", try_image(b"<html>"), "photo.jpg is not a usable image: not an image"),
    Case("try-text-file", try_image(b"hello\n", "notes.txt"), "notes.txt is not a usable image"),
    Case("try-zero-bytes", try_image(b""), "photo.jpg is an empty file (0 bytes)"),
    Case("try-truncated", try_image(TRUNCATED_JPEG), "truncated"),
    Case("try-pixel-bomb", try_image(png_header_only(20000, 20000), "bomb.png"), "too large"),
    # Backbones: hub handles and SavedModel folders.
    Case("backbone-unknown", backbone(lambda ctx: "resnet9000"), "unknown backbone 'resnet9000'"),
    Case("backbone-is-a-file", backbone(new_file("model.pb")), "is a file, not a SavedModel"),
    Case("backbone-empty-dir", backbone(new_folder()), "is empty: it is not a SavedModel"),
    Case(
        "backbone-no-saved-model-pb",
        backbone(new_folder("weights.h5")),
        "holds no saved_model.pb",
    ),
    Case("backbone-missing", backbone(lambda ctx: "./no/such/model"), "does not exist"),
    Case(
        "backbone-corrupt-saved-model",
        backbone(new_folder("saved_model.pb")),
        "could not load backbone",
    ),
    Case(
        "backbone-not-an-image-model",
        backbone(model("tabular"), image_size=32),
        "can't take a 32x32 RGB image (it takes inputs of shape (None, 7))",
    ),
    Case(
        "backbone-wrong-output-rank",
        backbone(model("feature_map"), image_size=32),
        "not a feature vector [batch, features]",
    ),
    Case(
        "image-size-the-backbone-cannot-take",
        backbone(model("fixed_224"), image_size=64),
        "can't take a 64x64 RGB image (it takes inputs of shape (None, 224, 224, 3))",
    ),
    Case(
        "confined-backbone-outside",
        confined(backbone(model("tabular"))),
        OUTSIDE,
    ),
    # Training settings.
    Case("lr-zero", session(phase1__lr=0.0), "phase1.lr: 0.0 is not a positive number", WARNED),
    Case("lr-negative", session(phase2__lr=-1e-4), "phase2.lr: -0.0001 is not a positive", WARNED),
    Case("lr-nan", session(phase1__lr=math.nan), "phase1.lr: nan is not a positive", WARNED),
    Case(
        "lr-huge",
        session(phase1__lr=1e9),
        "phase1.lr: 1e+09 is above the largest step; it is set to 5e-01",
        WARNED,
    ),
    Case(
        "epochs-zero-in-both-phases",
        widgets(("number_input", "phase1.epochs", 0), ("number_input", "phase2.epochs", 0)),
        "both 0: nothing would train",
    ),
    Case(
        "epochs-negative",
        session(phase1__epochs=-3),
        (),
        CLAMPED,
        check=value_is("number_input", "phase1.epochs", 0),
    ),
    Case(
        "batch-size-larger-than-the-data",
        widgets(("number_input", "batch_size", 64)),
        "batch_size: 64 is larger than the training set (40 images)",
    ),
    Case(
        "batch-size-zero",
        session(batch_size=0),
        (),
        CLAMPED,
        check=value_is("number_input", "batch_size", 1),
    ),
    Case(
        "image-size-below-the-minimum",
        session(image_size=8),
        (),
        CLAMPED,
        check=value_is("number_input", "image_size", 32),
    ),
    Case("no-arms", widgets(("pills", "arms", [])), "arms: choose at least one"),
    Case(
        "fine-tuning-nothing",
        widgets(("slider", "phase2.unfreeze_blocks", 0)),
        "phase2.unfreeze_blocks: fine-tuning (phase2.epochs > 0) needs at least one",
    ),
    # Runs and the store.
    Case("link-to-an-unknown-run", link("NOPE"), "No run with id 'NOPE'", WARNED),
    Case("link-with-a-bad-run-id", link("../../etc/passwd"), "No run with id '../../", WARNED),
    Case(
        "run-failed-while-loading",
        failed_run("batch_size: 1000 is larger than the training set (24 images); use at most 24"),
        "batch_size: 1000 is larger than the training set (24 images)",
    ),
    Case(
        "store-not-sqlite-experiment",
        broken_store(b"PK\x03\x04 a zip, not a database" * 50),
        "is not a SQLite database; move it away or set RUNS_DIR",
    ),
    Case(
        "store-not-sqlite-runs",
        broken_store(b"PK\x03\x04 a zip, not a database" * 50, RUNS_PAGE),
        "is not a SQLite database",
    ),
    Case(
        "store-not-sqlite-explain",
        broken_store(b"PK\x03\x04 a zip, not a database" * 50, EXPLAIN_PAGE),
        "is not a SQLite database",
    ),
    Case(
        "store-empty-garbage",
        broken_store(noise(4096)),
        "is not a SQLite database",
    ),
    Case(
        "store-broken-while-serving-experiment",
        store_broken_later(),
        "is not a SQLite database",
    ),
    Case(
        "store-broken-while-serving-runs",
        store_broken_later(RUNS_PAGE),
        "is not a SQLite database",
    ),
    Case("runs-dir-is-a-file", broken_store(None), "is a file; set RUNS_DIR to a folder"),
]


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


# --- running a case ---------------------------------------------------------------------------


def _store_snapshot(runs: Path) -> dict[str, str] | bytes | None:
    """``{run_id: status}``; the raw bytes of a store file that is not SQLite (or of a runs
    "folder" that is a file)."""
    db = runs / "runs.sqlite3"
    if runs.is_file():
        return runs.read_bytes()
    if db.is_file() and not db.read_bytes().startswith(b"SQLite format 3\0"):
        return db.read_bytes()
    if not db.is_file():
        return {}
    store = RunStore(runs)
    try:
        return {r.run_id: r.status for r in store.list_runs()}
    finally:
        store.close()


def _uploads(runs: Path) -> list[str]:
    folder = runs / "uploads"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []


@pytest.fixture
def st_options():
    """``set(name, value)`` a Streamlit config option for this test only."""
    from streamlit import config as st_config

    saved: dict[str, object] = {}

    def set_option(name: str, value: object) -> None:
        saved.setdefault(name, st_config.get_option(name))
        st_config.set_option(name, value)

    yield set_option
    for name, value in saved.items():
        st_config.set_option(name, value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_in_the_dashboard(
    case, app, dashboard_env, tmp_path, saved_models, monkeypatch, st_options
):
    for target, value in case.patch.items():
        monkeypatch.setattr(target, value)
    for name, value in case.option.items():
        st_options(name, value)
    ctx = Ctx(app, dashboard_env, tmp_path, saved_models, monkeypatch)
    case.drive(ctx)
    at = ok(ctx.at)
    expect = (case.expect,) if isinstance(case.expect, str) else case.expect
    errors = [e.value for e in at.error]
    warnings = [w.value for w in at.warning]
    shown = {REFUSED: errors, WARNED: warnings}.get(case.outcome) or skipped_rows(at)
    for fragment in expect:
        assert any(fragment in text for text in shown), (fragment, errors, warnings, shown)
    if case.outcome in (CLAMPED, REPORTED):
        assert not errors, errors
    assert not any("(0 images)" in e for e in errors), "a consequence shown, not the cause"
    if ctx.setup:
        assert at.button(key="start").disabled is (case.outcome == REFUSED), errors
    if case.check:
        case.check(ctx)
    # Nothing half-written.
    state = _store_snapshot(dashboard_env.runs)
    if isinstance(state, dict):
        assert len(state) == ctx.existing_runs, f"runs in the store: {state}"
    if case.outcome == REFUSED and case.id.startswith("upload-"):
        assert _uploads(dashboard_env.runs) == [], "a refused upload left files behind"
    assert not (tmp_path / "evil.png").exists() and not Path("/tmp/evil.png").exists()
