"""The dashboard's one door to the engine, and the engine functions behind it.

Components and views (``dashboard/components``, ``dashboard/views``) reach the engine only
through ``dashboard/state.py``: they import nothing from ``pipelines``, never hold the store,
and show a failure only through ``state.shown_errors`` / ``state.attempt``. The work they
used to do inside the Streamlit server is plain engine code, tested here without Streamlit:
uploads (``pipelines.data.uploads``), sample thumbnails (``pipelines.data.samples``),
inference (``pipelines.training.predict``) and the ONNX export cache
(``pipelines.training.export``).
"""

from __future__ import annotations

import ast
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import UserError
from tests.conftest_data import CLASSES, make_image_folder, zip_bytes, zip_with

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
DOOR_USERS = sorted((DASHBOARD / "components").glob("*.py")) + sorted(
    (DASHBOARD / "views").glob("*.py")
)
# What a component may not ask the state module for: the store itself.
STORE_HANDLES = {"store", "store_or_stop", "_store", "_jobs"}
BROAD = {"Exception", "BaseException"}


def _violations(source: str, name: str) -> list[str]:
    """What in ``source`` (the file ``name``) goes around the door."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [
                f"{where} imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] == "pipelines"
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] == "pipelines":
                found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "state"
                and node.attr in STORE_HANDLES
            ):
                found.append(f"{where} uses state.{node.attr}")
        elif isinstance(node, ast.ExceptHandler):
            caught = node.type
            names = (
                [caught]
                if caught is None or not isinstance(caught, ast.Tuple)
                else list(caught.elts)
            )
            for name in names:
                if name is None or (isinstance(name, ast.Name) and name.id in BROAD):
                    text = "except:" if name is None else f"except {name.id}"
                    found.append(f"{where} catches on its own ({text}); use state.attempt")
    return found


def test_components_and_views_use_only_the_state_door():
    assert len(DOOR_USERS) >= 6, DOOR_USERS  # the scan sees the files
    problems = [
        v
        for path in DOOR_USERS
        for v in _violations(path.read_text(), str(path.relative_to(DASHBOARD.parent)))
    ]
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_forbids():
    source = (
        "import pipelines.settings\n"
        "from pipelines.runs.store import ACTIVE\n"
        "from dashboard import state\n"
        "state.store().events('x')\n"
        "try:\n    pass\nexcept (ValueError, Exception):\n    pass\n"
        "try:\n    pass\nexcept:\n    pass\n"
    )
    found = _violations(source, "probe.py")
    assert len(found) == 5, found


def test_attempt_returns_the_value_or_the_message_shown():
    from dashboard import state

    assert state.attempt(lambda x: x + 1, 1) == (2, None)

    def refuse():
        raise UserError("dataset: no such folder")

    def crash():
        raise ValueError("boom")

    assert state.attempt(refuse) == (None, "dataset: no such folder")
    assert state.attempt(crash).error == "ValueError: boom"


# --- uploads ---------------------------------------------------------------------------------


@pytest.fixture
def runs_env(tmp_path, monkeypatch) -> Path:
    runs = tmp_path / "runs"
    monkeypatch.setenv("RUNS_DIR", str(runs))
    return runs


def _uploaded(runs: Path) -> list[Path]:
    folder = runs / "uploads"
    return sorted(folder.rglob("*")) if folder.exists() else []


def test_a_good_zip_is_extracted_under_runs_uploads(runs_env, tmp_path):
    from pipelines.data.uploads import save_upload, upload_skipped

    folder = make_image_folder(tmp_path / "shapes", train=3, validation=1)
    data = zip_with(folder, ("__MACOSX/shapes/._x.png", b"junk", 0))
    root = save_upload("shapes.zip", data, cap_mb=10)
    assert root.is_relative_to(runs_env.absolute() / "uploads")
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASSES)
    assert len(list((root / "train" / CLASSES[0]).iterdir())) == 3
    assert [s["path"] for s in upload_skipped(str(root))] == ["__MACOSX/"]
    assert save_upload("again.zip", data, cap_mb=10) == root  # the same bytes: reused
    assert upload_skipped(str(folder)) == []  # not an upload


def test_a_zip_over_the_cap_is_refused_with_nothing_left(runs_env, tmp_path):
    from pipelines.data.uploads import save_upload

    folder = make_image_folder(tmp_path / "shapes", train=2, validation=1)
    big = zip_with(folder, ("shapes/noise.bin", os.urandom(2 * 2**20), 0))
    with pytest.raises(UserError, match="over this dashboard's upload limit of 1 MB"):
        save_upload("big.zip", big, cap_mb=1)
    assert _uploaded(runs_env) == []


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("notes.zip", lambda folder: b"just text", "is not a zip file"),
        ("one.zip", lambda folder: zip_bytes(folder / "train" / CLASSES[0]), "class"),
    ],
    ids=["not-a-zip", "one-class"],
)
def test_refused_uploads_leave_nothing(runs_env, tmp_path, name, make, message):
    from pipelines.data.uploads import save_upload

    folder = make_image_folder(tmp_path / "shapes", train=2, validation=1)
    with pytest.raises(UserError, match=message):
        save_upload(name, make(folder), cap_mb=10)
    assert _uploaded(runs_env) == []


# --- samples ---------------------------------------------------------------------------------


def test_samples_are_a_few_thumbnails_per_class(tmp_path):
    from pipelines.data.samples import samples, thumbnail

    root = make_image_folder(tmp_path / "shapes", train=6, validation=2)
    (root / "train" / CLASSES[1] / "broken.png").write_bytes(b"not a png")
    thumbs = samples(str(root), per_class=3, px=16)
    assert list(thumbs) == sorted(CLASSES)
    assert [len(v) for v in thumbs.values()] == [3, 2]  # the broken file is left out
    for image in (i for images in thumbs.values() for i in images):
        assert image.dtype == np.uint8 and image.shape[2] == 3 and max(image.shape[:2]) <= 16
    assert thumbnail(root / "train" / CLASSES[1] / "broken.png", 16) is None
    assert thumbnail(tmp_path / "gone.png", 16) is None


# --- inference and exports of a finished run ---------------------------------------------------


def _validation_image(store, run_id: str, arm: str) -> tuple[np.ndarray, list[float]]:
    from PIL import Image

    first = store.result(run_id, arm)["predictions"][0]
    with Image.open(first["path"]) as im:
        pixels = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR))
    return pixels, first["probabilities"]


def test_predict_loads_the_arm_model_once_and_returns_its_probabilities(finished_run):
    from pipelines.training import predict
    from pipelines.training.export import model_dir

    store, run_id = finished_run
    folder = model_dir(store, run_id, "imagenet")
    image, stored = _validation_image(store, run_id, "imagenet")
    probs = predict.predict(folder, image)
    assert len(probs) == len(CLASSES) and abs(sum(probs) - 1) < 1e-5
    assert np.abs(np.array(probs) - np.array(stored)).max() < 1e-3
    kept = predict.inference_model(folder)
    assert predict.inference_model(str(folder)) is kept  # loaded once, not per call


def test_decode_names_the_file_and_the_reason():
    from pipelines.training.predict import decode

    with pytest.raises(UserError, match=r"photo\.jpg is an empty file \(0 bytes\)"):
        decode(b"", 32, "photo.jpg")
    with pytest.raises(UserError, match=r"notes\.txt is not a usable image: "):
        decode(b"hello, not an image", 32, "notes.txt")
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), (200, 10, 10)).save(buffer, "PNG")
    pixels = decode(buffer.getvalue(), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_onnx_is_converted_once_and_then_read_back(finished_run, monkeypatch):
    from pipelines.training import export

    store, run_id = finished_run
    assert export.onnx_ready(store, run_id, "random") is None
    first = export.onnx_cached(store, run_id, "random")
    assert Path(first["path"]).is_file() and first["parity_max_abs_diff"] < 1e-4
    assert Path(first["path"]).is_relative_to(store.artefact_dir(run_id) / "exports" / "random")

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(export, "to_onnx", no_second_conversion)
    assert export.onnx_cached(store, run_id, "random") == first
    assert export.onnx_ready(store, run_id, "random") == first


def test_savedmodel_zip_and_metrics_csv_are_bytes(finished_run):
    from pipelines.training import export

    store, run_id = finished_run
    with zipfile.ZipFile(io.BytesIO(export.savedmodel_zip(store, run_id, "imagenet"))) as zf:
        assert "savedmodel/saved_model.pb" in zf.namelist()
    csv = export.metrics_csv(store, run_id).decode()
    assert "val_accuracy" in csv.splitlines()[0] and len(csv.splitlines()) > 1
