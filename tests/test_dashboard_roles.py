"""Roles (``dashboard/roles.py``): on a shared bind a session is a viewer until it enters the
presenter key; viewers get no controls that change things, and every state-changing door
of ``dashboard/state.py`` refuses them. Local binds keep one presenter, as before."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from dashboard import roles
from pipelines.runs import lifecycle
from tests.conftest_dashboard import APP_TIMEOUT_S, write_run

KEY = "seminar-key-7f3a"
RUNS_PAGE = "views/runs.py"
REFUSED = "Only the presenter can"


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def keys(at, kind: str) -> set[str]:
    return {w.key for w in getattr(at, kind) if w.key}


def labels(at, kind: str = "button") -> set[str]:
    return {w.label for w in getattr(at, kind)}


def page_text(at) -> str:
    """Every element of the page (main and sidebar) as its protobuf text."""
    nodes = [*_walk(at.main), *_walk(at.sidebar)]
    return "\n".join(str(getattr(node, "proto", "")) for node in nodes)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


@pytest.fixture
def shared(monkeypatch):
    """The app as if bound to every interface, with a known key and short delays."""
    from streamlit import config as st_config

    monkeypatch.setenv("CONFINE_PATHS", "")
    monkeypatch.setenv(roles.KEY_ENV, KEY)
    monkeypatch.setattr(roles, "BASE_DELAY_S", 0.002)
    monkeypatch.setattr(roles, "MAX_DELAY_S", 0.2)
    monkeypatch.setattr(roles, "_clients", {})
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", previous)


def enter(at, key: str):
    at.sidebar.text_input(key="roles.key").input(key)
    [submit] = [b for b in at.sidebar.button if b.label == "Present"]
    return ok(submit.click().run())


def test_a_local_bind_is_the_presenter_without_a_key(app):
    at = ok(app().run())
    assert "start" in keys(at, "button")
    assert "roles.key" not in keys(at, "text_input")
    assert [e.label for e in at.sidebar.expander] == ["Open to the room"]


def test_a_viewer_gets_no_controls_that_change_things(app, shared, dashboard_env):
    at = ok(app().run())
    assert os.environ["CONFINE_PATHS"] == "1"
    assert "start" not in keys(at, "button") and not at.file_uploader
    assert any("You are watching" in i.value for i in at.sidebar.info)
    assert any("The presenter sets up" in i.value for i in at.info)

    store = dashboard_env.store
    running = write_run(store, status="running")
    done = write_run(store, status="completed")

    at = ok(app(run=running).run())
    assert "Epoch points" in page_text(at)  # the live run is shown
    assert not {k for k in keys(at, "button") if k.startswith(("stop.", "kill."))}

    at = ok(app(run=done).run())
    assert "Confusion" in page_text(at) or at.tabs  # results are shown
    assert not at.file_uploader  # no "try your own image"
    assert not {k for k in keys(at, "button") if k.startswith("onnx.")}

    ok(at.switch_page(RUNS_PAGE).run())
    assert at.dataframe  # the runs table
    assert "Delete…" not in labels(at) and not any("Delete" in x for x in labels(at))


def test_viewer_calls_of_every_door_are_refused_and_change_nothing(app, shared, dashboard_env):
    """The engine side: whatever reaches the server, a viewer's call of a state-changing
    door is refused before it touches anything."""
    from streamlit.testing.v1 import AppTest

    store = dashboard_env.store
    running = write_run(store, status="running")
    done = write_run(store, status="completed")

    def script():
        import streamlit as st

        from dashboard import state
        from pipelines.training.config import ExperimentConfig

        run_id, done_id = st.session_state["ids"]
        calls = {
            "start": lambda: state.start(ExperimentConfig().validate()),
            "start_near_far": state.start_near_far,
            "request_stop": lambda: state.request_stop(run_id),
            "kill": lambda: state.kill(run_id),
            "delete_run": lambda: state.delete_run(done_id),
            "save_upload": lambda: state.save_upload("x.zip", b"PK\x05\x06" + bytes(18)),
            "model_dir": lambda: state.model_dir(done_id, "imagenet"),
            "savedmodel_zip": lambda: state.savedmodel_zip(done_id, "imagenet", "x"),
            "onnx_export": lambda: state.onnx_export(done_id, "imagenet"),
            "predict": lambda: state.predict(done_id, "imagenet", None),
            "imagenet_top5": lambda: state.imagenet_top5("efficientnet_lite0", b""),
            "backbone_problem": lambda: state.backbone_problem("/some/saved_model", 64),
            "stop_sweep": lambda: state.stop_sweep("sweep-none"),
            "force_stop_sweep": lambda: state.force_stop_sweep("sweep-none"),
        }
        for name, call in calls.items():
            st.text(f"{name}: {state.attempt(call).error}")

    at = AppTest.from_function(script, default_timeout=APP_TIMEOUT_S)
    at.session_state["ids"] = (running, done)
    ok(at.run())
    answers = dict(line.value.split(": ", 1) for line in at.text)
    assert len(answers) == 14
    for name, error in answers.items():
        assert error.startswith(REFUSED), (name, error)
        assert "presenter key" in error
    assert "Only the presenter can start runs" in answers["start"]
    assert "delete runs" in answers["delete_run"] and "upload files" in answers["save_upload"]
    runs = {r.run_id: r for r in store.list_runs()}
    assert set(runs) == {running, done}  # nothing started, nothing deleted
    assert runs[running].status == "running" and not runs[running].stop_requested
    assert not (dashboard_env.runs / "uploads").exists()
    assert not (dashboard_env.runs / done / "imagenet" / "savedmodel").exists()
    lifecycle.finish(store, running, "stopped")


def test_the_right_key_makes_a_presenter_and_is_never_shown(app, shared):
    at = ok(app().run())
    assert "start" not in keys(at, "button")
    at = enter(at, KEY)
    assert "start" in keys(at, "button")
    assert any("You are presenting" in s.value for s in at.sidebar.success)
    text = page_text(at)
    assert "Follow along" in text and "http://" in text and ":8501/" in text
    assert "imgs {" in text and ".png" in text  # the QR code, lossless
    assert KEY not in text
    assert KEY not in str(dict(at.query_params))
    assert "roles.key" not in at.session_state  # the field is gone, and its value

    # The same browser session stays presenter; another session is a viewer.
    ok(at.run())
    assert "start" in keys(at, "button")
    assert "start" not in keys(ok(app().run()), "button")

    ok([b for b in at.sidebar.button if b.label == "Stop presenting"][0].click().run())
    assert "start" not in keys(at, "button")


def test_the_follow_along_qr_code_encodes_the_url():
    from dashboard.components.presenter import qr_png

    png = qr_png("http://192.168.1.20:8501/")
    assert png.startswith(b"\x89PNG")
    import io

    from PIL import Image

    side = Image.open(io.BytesIO(png)).size[0]
    assert side >= 25 * 12  # version 2+ at 12 px a module: sharp when scaled up


def test_a_wrong_key_20_times_is_refused_each_time_and_slowed(app, shared, monkeypatch):
    """Each wrong key makes the client's next try wait longer (doubling, capped), however
    fast the tries come: a clock that only moves by the waits stands for a client that
    sends the next key the moment it may."""
    monkeypatch.setattr(roles, "BASE_DELAY_S", 0.5)
    monkeypatch.setattr(roles, "MAX_DELAY_S", 30.0)
    clock = [1000.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(roles, "_now", lambda: clock[0])
    monkeypatch.setattr(roles, "_wait", wait)
    at = ok(app().run())
    for attempt in range(1, 21):
        at = enter(at, f"guess-{attempt}")
        assert "start" not in keys(at, "button"), attempt
        assert [e.value for e in at.sidebar.error] == [
            f"Wrong key ({attempt} in a row); each further try waits longer."
        ]
        assert f"guess-{attempt}" not in page_text(at)
    assert waits == [roles.delay_after(n) for n in range(20)]
    assert waits[:4] == [0, 0.5, 1.0, 2.0] and waits[-1] == 30.0
    assert sum(waits) > 400  # 20 guesses cost 7 minutes

    # Another session (another client) is not held up by them.
    other = ok(app().run())
    other = enter(other, KEY)
    assert "start" in keys(other, "button") and waits[-1] == 0
    # The right key still works for the slowed session, after its wait.
    at = enter(at, KEY)
    assert "start" in keys(at, "button") and waits[-1] == 30.0


def test_the_wait_is_real_and_only_the_guessing_client_waits(app, shared, monkeypatch):
    """With the real clock: a session's quick second wrong key really waits (in its own
    script thread); another session's try right after is not booked behind it."""
    monkeypatch.setattr(roles, "BASE_DELAY_S", 10.0)
    monkeypatch.setattr(roles, "MAX_DELAY_S", 10.0)
    waits: list[float] = []
    real_wait = roles._wait

    def measured(seconds: float) -> None:
        waits.append(seconds)
        real_wait(seconds)

    monkeypatch.setattr(roles, "_wait", measured)
    slow = enter(ok(app().run()), "wrong")
    started = time.monotonic()
    enter(slow, "wrong again")
    assert time.monotonic() - started >= waits[-1] > 3.0  # 10 s less the run between
    other = enter(ok(app().run()), KEY)
    assert waits[-1] == 0 and "start" in keys(other, "button")


def test_delays_grow_and_are_capped():
    delays = [roles.delay_after(n) for n in range(0, 25)]
    assert delays[0] == 0 and delays[1] == roles.BASE_DELAY_S
    assert all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert max(delays) == roles.MAX_DELAY_S


def test_a_made_up_key_is_made_once_and_only_printed_to_the_log(monkeypatch, capsys):
    monkeypatch.delenv(roles.KEY_ENV, raising=False)
    monkeypatch.setattr(roles, "_configured_key", lambda: None)
    monkeypatch.setattr(roles, "_generated", None)
    first = roles.presenter_key()
    assert roles.presenter_key() == first and len(first) >= 12
    err = capsys.readouterr().err
    assert err.count(first) == 1 and "Presenter key" in err
    assert first not in os.environ.values()


def test_the_key_comes_from_secrets_toml(tmp_path, monkeypatch):
    import streamlit as st
    from streamlit import config as st_config

    secrets = tmp_path / "secrets.toml"
    secrets.write_text('presenter_key = "from-the-secrets-file"\n')
    monkeypatch.delenv(roles.KEY_ENV, raising=False)
    previous = st_config.get_option("secrets.files")
    st_config.set_option("secrets.files", [str(secrets)])
    st.secrets._reset()
    try:
        assert roles.presenter_key() == "from-the-secrets-file"
        assert roles.key_source() == "secrets"
        monkeypatch.setenv(roles.KEY_ENV, "from-the-environment")
        assert roles.presenter_key() == "from-the-environment"
    finally:
        st_config.set_option("secrets.files", previous)
        st.secrets._reset()
        os.environ.pop("presenter_key", None)  # Streamlit exports root-level secrets


def test_workers_do_not_inherit_the_key(monkeypatch, store):
    from pipelines.runs import pool

    monkeypatch.setenv("presenter_key", "secret-from-toml")
    env = pool.worker_env(store, 1)
    assert "presenter_key" not in env
    assert Path(sys.executable).exists()  # the rest is the usual environment
    assert env["RUNS_DIR"]


def test_every_door_that_queues_or_stops_work_is_presenter_only():
    """A new door of ``state.py`` that reaches the job manager (start, stop, delete, a
    series, a sweep ...) must carry ``presenter_only`` or ``guarded`` (or call
    ``require_presenter`` itself)."""
    import ast
    import inspect

    from dashboard import state

    tree = ast.parse(inspect.getsource(state))
    # Housekeeping, no user's action (_board polls like status: reaps, tops the pool up).
    reading = {"status", "_pool", "_jobs", "start_pool", "_board"}
    unchecked = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name in reading:
            continue
        names = {ast.unparse(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)}
        acts = "_jobs" in names or any(
            n.startswith("lifecycle.") and n != "lifecycle.reap" for n in names
        )
        checked = hasattr(getattr(state, node.name), "role_check") or (
            "require_presenter" in ast.unparse(node)
        )
        if acts and not checked:
            unchecked.append(node.name)
    assert not unchecked, unchecked
    for name in ("start", "start_near_far", "request_stop", "kill", "delete_run", "save_upload"):
        assert getattr(state, name).presenter_action, name
    for name in ("open_exercise", "close_exercise", "stop_group_run"):  # the exercise's
        assert getattr(state, name).presenter_action, name
    # Doors of work outside the job manager, and an uploaded image for the heat maps.
    for name in (
        "start_sweep",
        "stop_sweep",
        "force_stop_sweep",
        "start_lr_find",
        "stop_lr_find",
        "start_hydra",
    ):
        assert getattr(state, name).presenter_action, name
    assert state.decode.presenter_action == "upload"
