"""A real dashboard bound to ``0.0.0.0``, reached through ``127.0.0.1`` only: a websocket
client that replays the presenter's widget messages (Start, Stop) in a viewer's session
changes nothing in the run store; the same messages in the presenter's session do (so the
replay is one that works). The role follows the server's bind address, not the client's.

The client speaks Streamlit's own protocol, as ``scripts/ws_watchers.py`` does: a
``rerun_script`` back message carrying widget states, the page's elements read from the
forward messages until the script has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipelines.runs.store import RunStore
from tests.conftest_dashboard import HOH_CLASSES, PRESENTER_KEY
from tests.conftest_data import make_image_folder
from tests.served import STEP_S_ENV, STEPS_ENV, WORKLOAD, Server, kill_workers, until

pytestmark = pytest.mark.slow
RUN_TIMEOUT_S = 60


@dataclass
class Page:
    """What one script run drew: widgets by their id, with their labels."""

    widgets: dict[str, str] = field(default_factory=dict)  # id -> label
    texts: list[str] = field(default_factory=list)
    query: str = ""

    def widget(self, suffix: str = "", label: str = "") -> str:
        found = [
            wid
            for wid, text in self.widgets.items()
            if (not suffix or wid.endswith(suffix)) and (not label or text == label)
        ]
        assert len(found) == 1, (suffix, label, self.widgets)
        return found[0]

    def has(self, suffix: str) -> bool:
        return any(wid.endswith(suffix) for wid in self.widgets)


class Session:
    """One browser-less session on ``ws://127.0.0.1:PORT/_stcore/stream``."""

    def __init__(self, url: str) -> None:
        assert url.startswith("http://127.0.0.1:"), url  # loopback only, whatever the bind
        self.ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.ws = None
        self.page_hash = ""

    async def __aenter__(self) -> Session:
        import websockets

        self.ws = await websockets.connect(self.ws_url, subprotocols=["streamlit"], max_size=None)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def rerun(self, widgets: list[dict] | None = None, query: str = "") -> Page:
        """Ask for a script run with these widget states (``{"id", "trigger"}`` or
        ``{"id", "text"}``); return what it drew."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        rerun = msg.rerun_script
        rerun.query_string = query
        rerun.page_script_hash = self.page_hash
        for state in widgets or []:
            proto = rerun.widget_states.widgets.add()
            proto.id = state["id"]
            if "trigger" in state:
                proto.trigger_value = True
            else:
                proto.string_value = state["text"]
        await self.ws.send(msg.SerializeToString())
        return await asyncio.wait_for(self._page(query), RUN_TIMEOUT_S)

    async def _page(self, query: str) -> Page:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        page = Page(query=query)
        async for data in self.ws:
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = msg.new_session.page_script_hash or self.page_hash
            elif kind == "page_info_changed":
                page.query = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                which = element.WhichOneof("type")
                inner = getattr(element, which)
                if hasattr(inner, "id") and inner.id:
                    page.widgets[inner.id] = getattr(inner, "label", "")
                if which in ("markdown", "alert"):
                    page.texts.append(inner.body)
            elif kind == "script_finished":
                return page
        raise AssertionError("the server closed the session")


@pytest.fixture
def served(tmp_path: Path, lite0_handle: str):
    """A server on every interface with a known presenter key, whose workers run the test
    workload (20 s per run, so Stop has a running run to act on)."""
    runs = tmp_path / "runs"
    make_image_folder(
        tmp_path / "datasets" / "horses-or-humans", classes=HOH_CLASSES, train=20, validation=4
    )
    env = {
        "RUNS_DIR": str(runs),
        "DATASETS_DIR": str(tmp_path / "datasets"),
        "PIPELINES_TEST_WORKLOAD": WORKLOAD,
        STEPS_ENV: "20",
        STEP_S_ENV: "0.1",
        "MAX_RUNNING_EXPERIMENTS": "1",
        "WARM_WORKERS": "0",
        "PRESENTER_KEY": PRESENTER_KEY,
        "CONFINE_PATHS": "",
    }
    # No welcome message: on a wildcard bind Streamlit would look up the machine's
    # external address on the internet to print it.
    options = {"logger.hideWelcomeMessage": "true"}
    server = Server(env, tmp_path / "streamlit.log", address="0.0.0.0", options=options)
    try:
        yield server.start()
    finally:
        server.stop()
        kill_workers(runs)
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_a_viewer_replaying_the_presenters_widget_messages_changes_nothing(served, tmp_path):
    store = RunStore(tmp_path / "runs")
    asyncio.run(_scenario(served.url, store))
    store.close()


async def _scenario(url: str, store: RunStore) -> None:
    async with Session(url) as presenter, Session(url) as viewer:
        # Both start as viewers: bound to 0.0.0.0, reached from 127.0.0.1.
        first = await presenter.rerun()
        assert not first.has("-start") and first.has("roles.key")
        page = await presenter.rerun(
            [
                {"id": first.widget("roles.key"), "text": PRESENTER_KEY},
                {"id": first.widget(label="Present"), "trigger": True},
            ]
        )
        assert page.has("-start"), page.widgets
        start_id = page.widget("-start")
        assert not any(PRESENTER_KEY in text for text in page.texts)

        seen = await viewer.rerun()
        assert not seen.has("-start") and start_id not in seen.widgets
        for _ in range(3):  # the Start button's message, as the presenter's browser sends it
            await viewer.rerun([{"id": start_id, "trigger": True}])
        time.sleep(1.0)
        assert store.list_runs() == [], "a viewer's Start message started a run"

        # The same message in the presenter's session starts a run: the replay is real.
        await presenter.rerun([{"id": start_id, "trigger": True}])
        [run] = until(store.list_runs, 30, "the presenter's run")
        run_id = run.run_id
        until(lambda: store.get_run(run_id).status == "running", 60, "the run to be running")
        watched = await presenter.rerun(query=f"run={run_id}")
        stop_id = watched.widget(f"-stop.{run_id}")

        seen = await viewer.rerun(query=f"run={run_id}")
        assert not seen.has(f"-stop.{run_id}") and any("Epoch points" in t for t in seen.texts)
        for _ in range(3):
            await viewer.rerun([{"id": stop_id, "trigger": True}], query=f"run={run_id}")
        time.sleep(1.0)
        run = store.get_run(run_id)
        assert run.status == "running" and not run.stop_requested, run
        assert len(store.list_runs()) == 1

        # A wrong key from the viewer's session: still a viewer.
        form = await viewer.rerun(query=f"run={run_id}")
        page = await viewer.rerun(
            [
                {"id": form.widget("roles.key"), "text": "not-the-key"},
                {"id": form.widget(label="Present"), "trigger": True},
            ],
            query=f"run={run_id}",
        )
        assert any("Wrong key" in t for t in page.texts) and not page.has(f"-stop.{run_id}")

        # The presenter's Stop works.
        await presenter.rerun([{"id": stop_id, "trigger": True}], query=f"run={run_id}")
        until(lambda: store.get_run(run_id).stop_requested, 10, "the presenter's stop")
        with contextlib.suppress(TimeoutError):
            until(lambda: not store.get_run(run_id).active, 30, "the run to stop")
