"""Engine access for the pages: cached stores, catalogue, block tables, data set reports,
models; and the one way engine errors reach the user.

Nothing here trains. Runs are started and stopped through :class:`pipelines.jobs.JobManager`
(worker processes); everything shown is read from :class:`pipelines.store.RunStore`.
Locations are read from :mod:`pipelines.settings` on every call, so the cache keys include
them (tests point them at temporary folders).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from pipelines import settings
from pipelines.config import ExperimentConfig
from pipelines.errors import UserError
from pipelines.jobs import JobManager
from pipelines.store import ACTIVE, RunStore

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
    return str(settings.runs_dir().resolve())


@st.cache_resource(show_spinner=False)
def _store(root: str) -> RunStore:
    return RunStore(Path(root))


@st.cache_resource(show_spinner=False)
def _jobs(root: str) -> JobManager:
    return JobManager(_store(root))


def store() -> RunStore:
    """The run store at ``RUNS_DIR`` (one per folder, shared by all sessions)."""
    return _store(_runs_root())


def store_or_stop() -> RunStore:
    """:func:`store`, or the reason it can't be opened shown and the page stopped."""
    try:
        return store()
    except Exception as e:  # noqa: BLE001 - e.g. RUNS_DIR is a file
        st.error(error_text(e))
        st.stop()


def start(config: ExperimentConfig) -> str:
    """Queue ``config`` and spawn its worker process; return the run id."""
    with _JOBS_LOCK:
        return _jobs(_runs_root()).start(config)


def status(run_id: str) -> dict[str, Any]:
    """The run from the store, after collecting exited workers this server started."""
    with _JOBS_LOCK:
        return _jobs(_runs_root()).status(run_id)


def kill(run_id: str) -> None:
    """SIGKILL the run's worker and mark it stopped (rows so far are kept)."""
    with _JOBS_LOCK:
        _jobs(_runs_root()).kill(run_id)


def selected_run() -> str | None:
    """The run to show: ``?run=`` in the URL, else this session's last, else the newest
    queued or running run. None when there is none (or it was deleted)."""
    s = store_or_stop()
    for candidate in (st.query_params.get("run"), st.session_state.get("current_run")):
        if candidate:
            try:
                s.get_run(candidate)
                return candidate
            except UserError:
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


def save_upload(name: str, data: bytes) -> Path:
    """Save an uploaded zip under ``RUNS_DIR/uploads/<sha256>/`` and extract it there
    (safely, see :mod:`pipelines.data.safezip`); return the data set's root folder."""
    from pipelines.data.safezip import extract_zip
    from pipelines.data.sources import uploads_dir

    digest = hashlib.sha256(data).hexdigest()
    target = uploads_dir() / digest
    target.mkdir(parents=True, exist_ok=True)
    zip_path = target / "upload.zip"
    if not zip_path.is_file() or zip_path.stat().st_size != len(data):
        zip_path.write_bytes(data)
    if not zipfile.is_zipfile(zip_path):
        raise UserError(f"{name} is not a zip file: zip a folder with one sub-folder per class")
    root, _skipped = extract_zip(zip_path, target, digest=digest)
    return root


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


def decode(data: bytes, size: int) -> np.ndarray:
    """An image file's bytes as a ``size`` x ``size`` uint8 RGB array; UserError if not."""
    from pipelines.data.images import BadImage, read_image

    try:
        pixels, _ = read_image(data, size)
    except BadImage as e:
        raise UserError(f"that file is not a usable image: {e}") from None
    return pixels


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
    from pipelines.export import model_dir

    folder = model_dir(_store(root), run_id, arm)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, Path("savedmodel") / file.relative_to(folder))
    return buffer.getvalue()


def onnx_export(run_id: str, arm: str) -> dict[str, Any]:
    """Convert the arm's model to ONNX once (kept in the run's folder) and return
    ``{"path", "parity_max_abs_diff", ...}`` from :func:`pipelines.export.export`."""
    import json

    from pipelines.export import export

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
