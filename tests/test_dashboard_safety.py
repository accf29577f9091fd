"""Safe by default, as the dashboard is shipped: bound to localhost, XSRF protection on,
uploads capped at the size the page shows, uploaded data only under
``RUNS_DIR/uploads/<sha256>/``, and typed paths confined once the server is shared."""

from __future__ import annotations

import hashlib
import socket
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest_dashboard import PRESENTER_KEY, ROOT, as_presenter
from tests.conftest_data import make_image_folder, zip_bytes

CONFIG = ROOT / ".streamlit" / "config.toml"
OUTSIDE = "is outside the folders this shared dashboard may read"


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def shipped() -> dict:
    return tomllib.loads(CONFIG.read_text())


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def shared(monkeypatch):
    """The app as if bound to every interface (``server.address = 0.0.0.0``)."""
    from streamlit import config as st_config

    monkeypatch.setenv("CONFINE_PATHS", "")
    monkeypatch.setenv("PRESENTER_KEY", PRESENTER_KEY)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", previous)


def test_the_shipped_config_binds_localhost_with_xsrf_and_an_upload_cap():
    server = shipped()["server"]
    assert server["address"] == "localhost"
    assert server["enableXsrfProtection"] is True
    assert isinstance(server["maxUploadSize"], int) and 0 < server["maxUploadSize"] <= 1024


def test_the_page_shows_the_configured_upload_cap(app):
    from dashboard import state

    cap = shipped()["server"]["maxUploadSize"]
    at = ok(app().run())
    at.radio(key="dataset_source").set_value("upload")
    ok(at.run())
    uploader = at.file_uploader(key="dataset_zip")
    assert uploader.proto.max_upload_size_mb == cap  # what the browser enforces and shows
    assert f"up to {cap} MB" in uploader.help
    assert state.upload_cap_mb() == cap  # what the upload handler checks again


def test_an_upload_writes_only_under_runs_uploads_sha256(app, dashboard_env, tmp_path):
    data = zip_bytes(make_image_folder(tmp_path / "src" / "pets", train=20, validation=None))
    digest = hashlib.sha256(data).hexdigest()
    before = files_under(tmp_path)
    at = ok(app().run())
    at.radio(key="dataset_source").set_value("upload")
    ok(at.run())
    at.file_uploader(key="dataset_zip").upload("pets.zip", data, "application/zip")
    ok(at.run())
    target = (dashboard_env.runs / "uploads" / digest).absolute()
    new = files_under(tmp_path) - before
    assert new, "nothing was extracted"
    outside = sorted(str(p) for p in new if not p.absolute().is_relative_to(target))
    assert outside == [], outside
    assert (target / "upload.zip").read_bytes() == data
    assert Path(at.text_input(key="dataset").value).is_relative_to(target)
    assert not at.error and not at.button(key="start").disabled


def test_a_shared_dashboard_resolves_and_confines_typed_paths(app, dashboard_env, tmp_path, shared):
    outside = make_image_folder(tmp_path / "elsewhere", train=20)
    (dashboard_env.datasets / "sneaky").symlink_to(outside)
    at = as_presenter(ok(app().run()))
    at.radio(key="dataset_source").set_value("folder")
    ok(at.run())
    for typed in (
        str(outside),
        str(dashboard_env.datasets / "sneaky"),  # a symbolic link out of DATASETS_DIR
        str(dashboard_env.datasets / ".." / "elsewhere"),
    ):
        at.text_input(key="dataset").set_value(typed)
        ok(at.run())
        assert any(OUTSIDE in e.value for e in at.error), (typed, [e.value for e in at.error])
        assert at.button(key="start").disabled
    at.text_input(key="dataset").set_value(str(dashboard_env.datasets / "horses-or-humans"))
    ok(at.run())
    assert not at.error and not at.button(key="start").disabled


def test_a_shared_dashboard_loads_no_model_from_the_uploads(app, dashboard_env, shared):
    """Users' uploads are extracted under RUNS_DIR; a SavedModel there would run their code."""
    planted = dashboard_env.runs / "uploads" / "x" / "model"
    planted.mkdir(parents=True)
    (planted / "saved_model.pb").write_bytes(b"x")
    at = as_presenter(ok(app().run()))
    at.selectbox(key="backbone").set_value("custom")
    ok(at.run())
    at.text_input(key="backbone_custom").set_value(str(planted))
    ok(at.run())
    assert any(OUTSIDE in e.value for e in at.error), [e.value for e in at.error]


def _lan_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None."""
    import psutil

    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


@pytest.mark.slow
def test_the_served_app_listens_on_localhost_only_and_refuses_uploads_without_xsrf(
    tmp_path, lite0_handle
):
    from tests.served import Server

    env = {"RUNS_DIR": str(tmp_path / "runs"), "DATASETS_DIR": str(tmp_path / "datasets")}
    with Server(env, tmp_path / "streamlit.log", address=None) as server:  # config.toml's
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5) as r:
            assert r.status == 200
        if lan := _lan_address():
            with pytest.raises(OSError), socket.create_connection((lan, server.port), 2):
                pass
        request = urllib.request.Request(
            f"{server.url}/_stcore/upload_file/session/file",
            data=b"PK\x03\x04",
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 403
        assert b"XSRF" in refused.value.read()
