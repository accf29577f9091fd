"""Engine access for the pages: cached stores, catalogue, block tables, data set reports,
models; and the one way engine errors reach the user.

Nothing here trains. Runs are started and stopped through :class:`pipelines.runs.jobs.JobManager`
(worker processes); everything shown is read from :class:`pipelines.runs.store.RunStore`.
Locations are read from :mod:`pipelines.settings` on every call, so the cache keys include
them (tests point them at temporary folders).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from pipelines import settings
from pipelines.errors import UserError
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import ACTIVE, RunStore
from pipelines.training.config import ExperimentConfig

SAMPLES_PER_CLASS = 4
THUMB_PX = 112
# The job manager is shared by every session's thread; it keeps a dict of its children.
_JOBS_LOCK = threading.Lock()


def error_text(error: BaseException) -> str:
    """A user's error as its message; anything else as ``Type: message``."""
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {error}"


@contextmanager
def shown_errors(where: Any = None) -> Iterator[None]:
    """Run a block of engine calls; show a failure with ``st.error`` instead of a traceback.

    Streamlit's own control flow (``st.rerun``, ``st.stop``) derives from BaseException and
    passes through.
    """
    try:
        yield
    except Exception as e:  # noqa: BLE001 - every failure becomes a message in the UI
        (where or st).error(error_text(e))


def _runs_root() -> str:
    return _resolved(str(settings.runs_dir()), os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str, cwd: str) -> str:
    # Every live refresh of every session asks for the store; resolving is a realpath()
    # walk of system calls, so it is done once per setting and working folder.
    return str(Path(cwd, path).resolve())


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(Path(root))


@st.cache_resource(show_spinner=False)
def _jobs(root: str) -> JobManager:
    return JobManager(_store(root))


def store() -> RunStore:
    """The run store at ``RUNS_DIR`` (one per folder, shared by all sessions)."""
    return _store(_runs_root())


def store_problem() -> str | None:
    """Why the run store can't be read now (``RUNS_DIR`` is a file, its database is not
    SQLite, ...), or None. ``app.py`` shows it on every page. One small query, so a file
    broken while the server runs is noticed too (the store object itself is cached)."""
    try:
        store().runs_with_status("running")
    except Exception as e:  # noqa: BLE001 - every failure becomes a message in the UI
        return error_text(e)
    return None


def store_or_stop() -> RunStore:
    """:func:`store`, or the page stopped if it can't be read (``app.py`` has shown why)."""
    if store_problem() is not None:
        st.stop()
    return store()


def start(config: ExperimentConfig) -> str:
    """Queue ``config`` and spawn its worker process; return the run id."""
    with _JOBS_LOCK:
        return _jobs(_runs_root()).start(config)


def status(run_id: str) -> dict[str, Any]:
    """The run from the store, after collecting exited workers this server started - unless
    another session is doing that right now: every watching session asks every second, and
    none should wait for another."""
    if _JOBS_LOCK.acquire(blocking=False):
        try:
            return _jobs(_runs_root()).status(run_id)
        finally:
            _JOBS_LOCK.release()
    return store().get_run(run_id)


def curves(run_id: str, kind: str = "epoch") -> pd.DataFrame:
    """:meth:`RunStore.curves` with plain object columns for text: pandas' Arrow-backed
    strings make every per-arm comparison of a small frame cost milliseconds."""
    frame = store().curves(run_id, kind=kind)
    text = [c for c in ("arm", "phase") if c in frame.columns]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


def kill(run_id: str) -> None:
    """SIGKILL the run's worker and mark it stopped (rows so far are kept)."""
    with _JOBS_LOCK:
        _jobs(_runs_root()).kill(run_id)


def selected_run() -> str | None:
    """The run to show: ``?run=`` in the URL, else this session's last, else the newest
    queued or running run. None when there is none (or it was deleted). A ``?run=`` that
    names no run is left in ``st.session_state["missing_run"]`` for the page to say so."""
    s = store_or_stop()
    wanted = st.query_params.get("run")
    for candidate in (wanted, st.session_state.get("current_run")):
        if candidate:
            try:
                s.get_run(candidate)
                return candidate
            except UserError:
                if candidate == wanted:
                    st.session_state["missing_run"] = wanted
                continue
    active = [r for r in s.list_runs() if r["status"] in ACTIVE]
    return active[0]["run_id"] if active else None


@st.cache_data(show_spinner=False)
def catalogue() -> list[dict[str, Any]]:
    """The backbone catalogue as dicts (``offline`` included), built-ins first."""
    from pipelines.backbones import catalogue as engine_catalogue

    return [spec.to_dict() for spec in engine_catalogue()]


@st.cache_data(show_spinner=False, max_entries=16)
def block_table(backbone: str, cache_dir: str) -> list:
    """The backbone's blocks (see ``pipelines.backbones.block_table``). A built-in that is
    built already is read without TensorFlow; the first call for one builds it (seconds).
    ``cache_dir`` is part of the key."""
    from pipelines.backbones import block_table as engine_block_table

    return engine_block_table(backbone)


def blocks_for(backbone: str) -> list:
    return block_table(backbone, str(settings.backbone_cache_dir()))


@st.cache_data(show_spinner=False, max_entries=16)
def block_widths(backbone: str) -> list[int] | None:
    """Each block's output width for a backbone that can be cut (the built-ins), read from
    the weights without TensorFlow; None for one that can't (``reuse_blocks``)."""
    from pipelines.backbones import block_widths as engine_block_widths

    return engine_block_widths(backbone)


def named_dataset(dataset: str) -> dict[str, Any] | None:
    """Title, citation, licence and notes of a named data set (``assets/datasets.json``),
    or None for a folder or zip."""
    from dataclasses import asdict

    from pipelines.data.sources import named

    entry = named(dataset)
    return asdict(entry) if entry is not None else None


@st.cache_data(show_spinner=False, ttl=600, max_entries=32)
def inspect(dataset: str, datasets_dir: str) -> dict[str, Any]:
    """``pipelines.data.inspect_dataset`` report; ``datasets_dir`` is part of the key."""
    from pipelines.data import inspect_dataset

    return inspect_dataset(dataset)


def inspect_current(dataset: str) -> dict[str, Any]:
    return inspect(dataset, str(settings.datasets_dir() or ""))


@st.cache_data(show_spinner=False, ttl=600, max_entries=16)
def samples(
    dataset: str, datasets_dir: str, per_class: int = SAMPLES_PER_CLASS
) -> dict[str, list[np.ndarray]]:
    """A few training images per class as small RGB arrays, spread over the class's files."""
    from pipelines.data import resolve_source
    from pipelines.data.scan import scan_folder

    scan = scan_folder(resolve_source(dataset).root)
    out: dict[str, list[np.ndarray]] = {c: [] for c in scan.classes}
    for name in scan.classes:
        files = [f for f in scan.files if f.label == name and f.split != "validation"]
        step = max(len(files) // per_class, 1)
        for f in files[::step][:per_class]:
            _add_thumbnail(out[name], f.path)
    return out


def _add_thumbnail(out: list[np.ndarray], path: Path) -> None:
    from PIL import Image, ImageOps

    from pipelines.data.images import to_rgb

    try:
        with Image.open(path) as im:
            thumb = to_rgb(ImageOps.exif_transpose(im))
            thumb.thumbnail((THUMB_PX, THUMB_PX))
            out.append(np.asarray(thumb))
    except Exception:  # noqa: BLE001 - a bad file is in the skipped report, not here
        pass


def samples_current(dataset: str) -> dict[str, list[np.ndarray]]:
    return samples(dataset, str(settings.datasets_dir() or ""))


def upload_cap_mb() -> int:
    """The upload limit in MB: Streamlit's ``server.maxUploadSize`` (``.streamlit/
    config.toml``). The browser refuses bigger files; :func:`save_upload` checks again."""
    return int(st.get_option("server.maxUploadSize"))


def save_upload(name: str, data: bytes) -> Path:
    """Save an uploaded zip under ``RUNS_DIR/uploads/<sha256>/`` and extract it there
    (safely, see :mod:`pipelines.data.safezip`); return the data set's root folder.

    Refused (:class:`UserError`, nothing left under ``uploads/``): over :func:`upload_cap_mb`,
    not a zip, entries the zip checks refuse (``..``, absolute paths, links, passwords,
    too many files or bytes declared), a zip that expands past the cap while written, and
    one without two class folders. Bad images inside are the data set report's business."""
    from pipelines.data import safezip
    from pipelines.data.scan import scan_folder, too_few_classes
    from pipelines.data.sources import uploads_dir

    cap = upload_cap_mb()
    if len(data) > cap * 2**20:
        raise UserError(
            f"{name} is {len(data) / 2**20:.1f} MB, over this dashboard's upload limit of "
            f"{cap} MB: zip fewer or smaller images (the host sets the limit, "
            "server.maxUploadSize)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            safezip.check_entries(zf, name)  # before anything is written
    except (zipfile.BadZipFile, OSError, EOFError):
        raise UserError(
            f"{name} is not a zip file (or a damaged one): zip a folder with one sub-folder "
            "per class and upload that"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    target = uploads_dir() / digest
    fresh = not target.exists()  # an earlier upload of the same bytes is kept
    try:
        target.mkdir(parents=True, exist_ok=True)
        zip_path = target / "upload.zip"
        if not zip_path.is_file() or zip_path.stat().st_size != len(data):
            zip_path.write_bytes(data)
        root, _skipped = safezip.extract_zip(zip_path, target, digest=digest)
        if problem := too_few_classes(scan_folder(root, shown=name)):
            raise UserError(problem)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return root


def upload_skipped(dataset: str) -> list[dict[str, str]]:
    """The entries left out when the uploaded zip that ``dataset`` lies in was extracted
    (hidden files, ``__MACOSX/``, entries that fail to decompress) as ``{path, reason}``;
    [] for a data set that is not an upload. Read back from the finished extraction."""
    from pipelines.data import safezip
    from pipelines.data.sources import uploads_dir

    uploads = uploads_dir()
    try:
        digest = Path(dataset).relative_to(uploads).parts[0]
    except (ValueError, IndexError):
        return []
    zip_path = uploads / digest / "upload.zip"
    if not zip_path.is_file():
        return []
    try:
        _root, skipped = safezip.extract_zip(zip_path, uploads / digest, digest=digest)
    except Exception:  # noqa: BLE001 - the data set report says what is wrong with it
        return []
    return [s.to_dict() for s in skipped]


def is_builtin(backbone: str) -> bool:
    """Whether ``backbone`` is a built-in catalogue id (a known image model)."""
    return any(b["id"] == backbone and b.get("builtin") for b in catalogue())


@st.cache_data(show_spinner=False, max_entries=16)
def _backbone_problem(backbone: str, image_size: int | None, mtime: float) -> str | None:
    from pipelines.backbones import load_layer

    try:
        load_layer(backbone, image_size=image_size)
    except Exception as e:  # noqa: BLE001 - the reason is what the form shows
        return error_text(e)
    return None


def backbone_problem(backbone: str, image_size: int | None) -> str | None:
    """Why a backbone outside the built-ins can't train on ``image_size`` images (the
    engine's own check: it is loaded and called on one blank image - not an image model,
    wrong output rank, a size its signature refuses), or None. Built-ins are not loaded.
    Cached per backbone, size and the folder's modification time."""
    if is_builtin(backbone):
        return None
    path = Path(backbone).expanduser()
    mtime = path.stat().st_mtime if path.is_dir() else 0.0
    return _backbone_problem(backbone, image_size, mtime)


@st.cache_resource(show_spinner=False, max_entries=8)
def _savedmodel(path: str, mtime: float) -> Any:
    import tensorflow as tf

    import pipelines  # noqa: F401 - Keras 2 before TensorFlow

    return tf.saved_model.load(path)


def predict(model_dir: Path, image: np.ndarray) -> list[float]:
    """Class probabilities of one uint8 RGB image (already at the model's size)."""
    path = Path(model_dir)
    model = _savedmodel(str(path), (path / "saved_model.pb").stat().st_mtime)
    import tensorflow as tf

    batch = tf.constant(image[None].astype(np.float32))
    return [float(p) for p in model.serve(batch)["probabilities"].numpy()[0]]


def imagenet_top5(backbone: str, image_bytes: bytes) -> list[dict[str, Any]]:
    """The backbone's own ImageNet top-5 for an image file's bytes."""
    from pipelines.backbones import resolve
    from pipelines.backbones.imagenet import top_k

    size = resolve(backbone).input_size
    return top_k(backbone, decode(image_bytes, size)[None], 5)[0]


def decode(data: bytes, size: int, name: str = "that file") -> np.ndarray:
    """An image file's bytes as a ``size`` x ``size`` uint8 RGB array; UserError naming
    ``name`` and the reason (empty, not an image, truncated, too large) if not."""
    from pipelines.data.images import BadImage, read_image

    if not data:
        raise UserError(f"{name} is an empty file (0 bytes): {_IMAGE_HINT}")
    try:
        pixels, _ = read_image(data, size)
    except BadImage as e:
        raise UserError(f"{name} is not a usable image: {e}; {_IMAGE_HINT}") from None
    return pixels


_IMAGE_HINT = "upload a photo (JPEG, PNG, WebP, BMP or GIF)"


@st.cache_data(show_spinner=False, max_entries=16)
def metrics_csv(run_id: str, root: str, updated: float) -> bytes:
    """All metric rows of a run as CSV bytes (``updated`` keys the cache)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.csv"
        _store(root).export_csv(run_id, path)
        return path.read_bytes()


@st.cache_data(show_spinner=False, max_entries=8)
def savedmodel_zip(run_id: str, arm: str, root: str) -> bytes:
    """The arm's inference SavedModel folder as zip bytes."""
    from pipelines.training.export import model_dir

    folder = model_dir(_store(root), run_id, arm)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, Path("savedmodel") / file.relative_to(folder))
    return buffer.getvalue()


def onnx_export(run_id: str, arm: str) -> dict[str, Any]:
    """Convert the arm's model to ONNX once (kept in the run's folder) and return
    ``{"path", "parity_max_abs_diff", ...}`` from :func:`pipelines.training.export.export`."""
    import json

    from pipelines.training.export import export

    s = store()
    folder = s.artefact_dir(run_id) / "exports" / arm
    done = folder / "onnx.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if Path(info["path"]).is_file():
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    info = export(s, run_id, arm, "onnx", folder / f"{run_id}-{arm}.onnx")
    done.write_text(json.dumps(info))
    return info


def onnx_ready(run_id: str, arm: str) -> dict[str, Any] | None:
    """The ONNX export made earlier for this arm, if any."""
    import json

    done = store().artefact_dir(run_id, create=False) / "exports" / arm / "onnx.json"
    if not done.is_file():
        return None
    info = json.loads(done.read_text())
    return info if Path(info["path"]).is_file() else None
