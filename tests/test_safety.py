"""Safe by default: path confinement for a shared dashboard, where uploads go, and no
unsafe deserialisation anywhere in the engine or the dashboard."""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path

import pytest

from pipelines import settings
from pipelines.backbones import resolve
from pipelines.data import check_source, resolve_source
from pipelines.errors import UserError
from pipelines.runs.jobs import JobManager
from pipelines.runs.worker import EXIT_COMPLETED, run_worker
from tests.conftest_data import make_image_folder
from tests.conftest_engine import tiny_config

REPO = Path(__file__).resolve().parent.parent
OUTSIDE = "is outside the folders this shared dashboard may read"


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Confinement on; ``allowed/`` is DATASETS_DIR and ``runs/`` RUNS_DIR under tmp_path;
    ``other/`` is outside every root."""
    for name in ("allowed", "other", "runs"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("CONFINE_PATHS", "1")
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path / "allowed"))
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("ALLOWED_ROOTS", raising=False)
    return tmp_path


# --- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, on", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)]
)
def test_confinement_setting(value, on, monkeypatch):
    monkeypatch.setenv("CONFINE_PATHS", value)
    assert settings.confinement_enabled() is on


def test_confinement_is_off_by_default_and_a_typo_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("CONFINE_PATHS", raising=False)
    assert settings.confinement_enabled() is False
    assert settings.confine("/etc", "data set") == Path("/etc")
    monkeypatch.setenv("CONFINE_PATHS", "maybe")
    with pytest.raises(UserError, match="CONFINE_PATHS must be 1 or 0, not 'maybe'"):
        settings.confine(tmp_path, "data set")


@pytest.mark.parametrize(
    "address, local",
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("[::1]", True),
        ("", False),
        (None, False),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("seminar-room.example.org", False),
    ],
)
def test_server_is_local(address, local):
    assert settings.server_is_local(address) is local


# --- confine() --------------------------------------------------------------------------------


def test_inside_a_root_is_allowed_and_resolved(roots: Path):
    (roots / "allowed" / "flowers").mkdir()
    assert (
        settings.confine(roots / "allowed" / "flowers", "data set")
        == (roots / "allowed" / "flowers").resolve()
    )
    assert settings.confine(roots / "allowed" / "not-yet", "data set")  # existence is not asked
    assert settings.confine(roots / "runs" / "uploads" / "x", "data set")


@pytest.mark.parametrize(
    "path",
    [
        "other",  # outside every root
        "allowed/../other",  # a .. escape
        "allowed-sibling",  # a name that merely starts like a root
        "/etc/passwd",
    ],
)
def test_outside_every_root_is_refused(roots: Path, path: str):
    target = roots / path if not path.startswith("/") else Path(path)
    with pytest.raises(UserError, match=OUTSIDE) as err:
        settings.confine(target, "data set")
    assert "ask the host to add it to ALLOWED_ROOTS" in str(err.value)
    assert str(roots / "allowed") in str(err.value)


def test_symlinks_are_followed(roots: Path):
    (roots / "allowed" / "escape").symlink_to(roots / "other")
    with pytest.raises(UserError, match=OUTSIDE):
        settings.confine(roots / "allowed" / "escape", "data set")
    (roots / "other" / "inward").symlink_to(roots / "allowed")
    assert settings.confine(roots / "other" / "inward", "data set") == (roots / "allowed").resolve()


def test_allowed_roots_adds_folders(roots: Path, monkeypatch):
    third = roots / "third"
    monkeypatch.setenv("ALLOWED_ROOTS", f"{roots / 'other'}{os.pathsep}{third}")
    assert settings.confine(roots / "other" / "x", "data set") == (roots / "other" / "x")
    assert settings.confine(third, "data set") == third
    assert roots / "allowed" in settings.allowed_roots()  # the defaults stay


def test_models_may_not_come_from_the_uploads(roots: Path):
    """A SavedModel's graph runs on the server: never one a user uploaded."""
    upload = roots / "runs" / "uploads" / "abc" / "dataset" / "model"
    upload.mkdir(parents=True)
    (upload / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(UserError, match=OUTSIDE):
        resolve(str(upload))
    assert settings.confine(upload, "data set")  # as data it is fine


# --- where free-text paths enter ----------------------------------------------------------


def test_data_sets_are_confined(roots: Path, monkeypatch):
    inside = make_image_folder(roots / "allowed" / "shapes", train=2, validation=None)
    outside = make_image_folder(roots / "other" / "shapes", train=2, validation=None)
    assert resolve_source(str(inside)).root == inside.resolve()
    assert resolve_source("shapes").root == inside.resolve()  # a name in DATASETS_DIR
    for bad in (str(outside), "../other/shapes", str(roots / "allowed" / ".." / "other")):
        with pytest.raises(UserError, match=OUTSIDE):
            resolve_source(bad)
        with pytest.raises(UserError, match=OUTSIDE):
            check_source(bad)
    # A relative name is never looked up in the server's working folder.
    make_image_folder(roots / "other" / "cwd-only", train=2, validation=None)
    monkeypatch.chdir(roots / "other")
    with pytest.raises(UserError, match="no folder or zip at cwd-only"):
        resolve_source("cwd-only")
    # A path outside is refused whether or not it exists: nothing to probe with.
    with pytest.raises(UserError, match=OUTSIDE):
        resolve_source(str(roots / "other" / "no-such-thing"))


def test_backbone_folders_are_confined(roots: Path, monkeypatch):
    for where in ("allowed", "other"):
        (roots / where / "model").mkdir()
        (roots / where / "model" / "saved_model.pb").write_bytes(b"x")
    assert resolve(str(roots / "allowed" / "model")).handle == str(roots / "allowed" / "model")
    for bad in (roots / "other" / "model", roots / "other" / "missing", "/etc"):
        with pytest.raises(UserError, match=OUTSIDE):
            resolve(str(bad))
    monkeypatch.chdir(roots / "other")
    with pytest.raises(UserError, match=OUTSIDE):
        resolve("./model")
    assert resolve("efficientnet_lite0").builtin  # catalogue ids are not paths


def test_job_manager_refuses_before_creating_a_run(roots: Path, store):
    outside = make_image_folder(roots / "other" / "shapes", train=2, validation=None)
    jm = JobManager(store, max_running=1)
    for config in (
        tiny_config(str(outside)),
        tiny_config(str(roots / "allowed" / "missing")),
        tiny_config("horses_or_humans", f"backbone={roots / 'other'}"),
    ):
        with pytest.raises(UserError):
            jm.start(config)
    assert store.list_runs() == [] and jm._children == {}


# --- uploads live under the runs folder ----------------------------------------------------


def _zip(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(folder.rglob("*.*")):
            zf.write(p, "shapes/" + p.relative_to(folder).as_posix())
    return path


def test_a_zip_without_a_run_is_extracted_under_the_runs_folder(tmp_path, runs_dir):
    archive = _zip(
        make_image_folder(tmp_path / "src", train=3, validation=None), tmp_path / "a.zip"
    )
    source = resolve_source(str(archive))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert source.root == runs_dir.absolute() / "uploads" / digest / "dataset" / "shapes"
    assert source.shown == "a.zip"
    check_source(str(archive))  # checks the zip's directory only: extracts nothing more


def test_training_extracts_a_zip_into_its_own_run_folder(tmp_path, store, tiny_data, monkeypatch):
    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))  # test_training's is cold
    archive = _zip(Path(tiny_data), tmp_path / "tiny.zip")
    config = tiny_config(str(archive), "phase1.epochs=1", "phase2.epochs=0", "arms=imagenet")
    run_id = store.create_run(config)
    assert run_worker(run_id, store) == EXIT_COMPLETED
    data = store.artefact_dir(run_id) / "data" / "dataset" / "shapes"
    assert sorted(p.name for p in data.iterdir()) == ["train", "validation"]
    assert not (store.root / "uploads").exists()
    predictions = store.result(run_id, "imagenet")["predictions"]
    assert all(Path(p["path"]).is_relative_to(data) for p in predictions)


# --- no unsafe deserialisation ---------------------------------------------------------------

FORBIDDEN = {
    r"\bpickle\.loads?\(": "pickle.load",
    r"\bUnpickler\b": "a pickle Unpickler",
    r"allow_pickle\s*=\s*True": "allow_pickle=True",
    r"(?<![\w.])eval\(": "eval(",
    r"(?<![\w.])exec\(": "exec(",
    r"\b(marshal|dill|cloudpickle|shelve|joblib|torch|yaml)\.(loads?|open)\(": "a pickle-like load",
    r"\bread_pickle\(": "pandas.read_pickle",
    r"\bmodel_from_(json|yaml|config)\(": "Keras model_from_*",
    r"\blayers\.Lambda\(": "a Keras Lambda layer",
}
# The legacy-torch reader is the one Unpickler: it resolves an allow-list of globals only.
ALLOWED = {("pipelines/backbones/torch_legacy.py", "a pickle Unpickler")}


def _call_text(text: str, start: int) -> str:
    """The call starting at ``start`` up to its closing parenthesis."""
    depth, i = 0, text.index("(", start)
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return text[start : j + 1]
    return text[start:]


def test_nothing_deserialises_untrusted_pickles_or_keras_code():
    found = []
    files = sorted((REPO / "pipelines").rglob("*.py")) + sorted((REPO / "dashboard").rglob("*.py"))
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text()
        for pattern, what in FORBIDDEN.items():
            for m in re.finditer(pattern, text):
                if (rel, what) not in ALLOWED:
                    found.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {what}")
        for m in re.finditer(r"\bload_model\(", text):
            if "safe_mode=True" not in _call_text(text, m.start()):
                found.append(f"{rel}: load_model( without safe_mode=True")
        for m in re.finditer(r"\b(np|numpy)\.load\(", text):
            if "allow_pickle=False" not in _call_text(text, m.start()):
                found.append(f"{rel}: np.load( without allow_pickle=False")
    assert found == []
