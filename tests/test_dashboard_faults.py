"""Faults of a shared dashboard, for real: the server killed mid-run, and two browser tabs
pressing Start at the same instant.

``streamlit run`` serves the app; Debian's Chromium drives it through Playwright. Workers
run :func:`tests.served.epoch_workload` (epoch rows at a steady pace, no TensorFlow)
instead of training, so the timing is known; everything else - the form, Start, the job
manager, the worker's queue, the store, the live view - is the real thing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pipelines.runs.lifecycle import process_alive
from pipelines.runs.store import ACTIVE, RunStore
from tests.conftest_dashboard import HOH_CLASSES
from tests.conftest_data import make_image_folder
from tests.served import (
    CHROMIUM,
    POINTS_JS,
    STEP_S_ENV,
    STEPS_ENV,
    WORKLOAD,
    Server,
    kill_workers,
    launch_chromium,
    until,
)

EPOCHS = 5  # the form's defaults: phase1.epochs 3 + phase2.epochs 2
ARMS = 2
START_JS = "() => document.querySelector('.st-key-start button')?.disabled === false"
# Click Start at the browser's clock time ``at`` (ms): both tabs share one clock.
CLICK_AT_JS = """(at) => {
  const button = document.querySelector('.st-key-start button');
  setTimeout(() => button.click(), Math.max(0, at - Date.now()));
}"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium)"),
]


@pytest.fixture
def served_env(tmp_path: Path, lite0_handle: str):
    """``make(steps, step_s)`` -> the environment of a server whose form's defaults are
    ready to start (a tiny Horses or Humans in ``DATASETS_DIR``) and whose workers run
    the epoch workload; every worker still active at the end is killed."""
    runs = tmp_path / "runs"
    make_image_folder(
        tmp_path / "datasets" / "horses-or-humans", classes=HOH_CLASSES, train=20, validation=4
    )

    def make(steps: int, step_s: float) -> dict[str, str]:
        return {
            "RUNS_DIR": str(runs),
            "DATASETS_DIR": str(tmp_path / "datasets"),
            "PIPELINES_TEST_WORKLOAD": WORKLOAD,
            STEPS_ENV: str(steps),
            STEP_S_ENV: str(step_s),
            "MAX_RUNNING_EXPERIMENTS": "1",
        }

    yield make
    kill_workers(runs)


def _epoch_rows(store: RunStore, run_id: str) -> int:
    return len(store.curves(run_id, kind="epoch"))


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def _points(page) -> int:
    return page.evaluate(POINTS_JS)


def test_a_killed_server_leaves_the_worker_running_and_a_new_one_reattaches(served_env, tmp_path):
    from playwright.sync_api import sync_playwright

    env = served_env(steps=10, step_s=0.3)  # 6 s per epoch of both arms, 30 s in all
    runs = Path(env["RUNS_DIR"])
    server = Server(env, tmp_path / "streamlit.log")
    with sync_playwright() as p, server:
        browser = launch_chromium(p)
        try:
            page = _open(browser, server.url)
            page.wait_for_function(START_JS)
            page.locator(".st-key-start button").click()
            page.get_by_text("Epoch points").wait_for()
            run_id = page.url.split("run=")[1].split("&")[0]
            store = RunStore(runs)
            until(lambda: _epoch_rows(store, run_id) >= 1, 30, "the first epoch row")

            server.kill()
            run = store.get_run(run_id)
            assert run.status == "running", run
            assert process_alive(run.worker_pid, run.worker_started)
            rows = len(store.curves(run_id, kind="batch"))
            until(lambda: len(store.curves(run_id, kind="batch")) > rows, 10, "rows after the kill")

            server.start()  # same port, same runs folder, a fresh process
            fresh = _open(browser, server.url)  # no ?run=: the newest active run
            fresh.get_by_text(f"Run {run_id}").wait_for()
            assert f"run={run_id}" in fresh.url
            seen = until(lambda: max(_points(fresh), 0), 30, "the chart on the new server")
            assert _epoch_rows(store, run_id) < EPOCHS * ARMS, "the run ended too soon to see"
            until(lambda: _points(fresh) > seen, 30, f"the chart growing past {seen} points")
            fresh.screenshot(path=str(tmp_path / "reattached.png"))
            assert fresh.locator("[data-testid='stException']").count() == 0
            assert store.get_run(run_id).status == "running"
        finally:
            browser.close()
    print(f"screenshot: {tmp_path / 'reattached.png'}")


class StorePoller(threading.Thread):
    """Reads the store at ``hz`` until stopped: the most runs ever ``running`` at once,
    and every status each run was seen in."""

    def __init__(self, runs: Path, hz: float = 20.0) -> None:
        super().__init__(daemon=True)
        self.runs, self.period = runs, 1.0 / hz
        self.max_running = 0
        self.seen: dict[str, set[str]] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        store = RunStore(self.runs)
        try:
            while not self._stop_event.is_set():
                runs = store.list_runs()
                running = sum(r.status == "running" for r in runs)
                self.max_running = max(self.max_running, running)
                for r in runs:
                    self.seen.setdefault(r.run_id, set()).add(r.status)
                self.samples += 1
                time.sleep(self.period)
        finally:
            store.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def test_two_tabs_starting_at_the_same_instant_are_queued(served_env, tmp_path):
    from playwright.sync_api import sync_playwright

    env = served_env(steps=4, step_s=0.1)  # 4 s of epochs per run
    runs = Path(env["RUNS_DIR"])
    RunStore(runs).close()  # the poller's store exists before the first Start
    poller = StorePoller(runs)
    with sync_playwright() as p, Server(env, tmp_path / "streamlit.log") as server:
        browser = launch_chromium(p)
        try:
            tabs = [_open(browser, server.url) for _ in range(2)]
            for tab in tabs:
                tab.wait_for_function(START_JS)
            poller.start()
            at = tabs[0].evaluate("Date.now()") + 1000
            for tab in tabs:
                tab.evaluate(CLICK_AT_JS, at)
            for tab in tabs:
                tab.get_by_text("Epoch points").wait_for()
            ids = [tab.url.split("run=")[1].split("&")[0] for tab in tabs]
            assert ids[0] != ids[1], "both tabs show the same run: one Start was lost"
            store = RunStore(runs)
            until(
                lambda: all(store.get_run(i).status not in ACTIVE for i in ids),
                90,
                "both runs to finish",
            )
            for tab in tabs:
                tab.get_by_text("After the run").wait_for(timeout=30_000)
                assert tab.locator("[data-testid='stException']").count() == 0
        finally:
            poller.stop()
            browser.close()
    finished = {r.run_id: r for r in store.list_runs()}
    assert sorted(finished) == sorted(ids), finished.keys()
    created = sorted(r.created for r in finished.values())
    assert created[1] - created[0] < 2.0, "the Starts were not at the same instant"
    assert poller.samples > 50
    assert poller.max_running == 1, "two experiments ran at once"
    assert any("queued" in s and "running" in s for s in poller.seen.values()), poller.seen
    for run_id, run in finished.items():
        assert run.status == "completed", run
        epochs = store.curves(run_id, kind="epoch")
        assert len(epochs) == EPOCHS * ARMS, f"{run_id}: {len(epochs)} epoch rows"
        assert len(store.curves(run_id, kind="batch")) == EPOCHS * ARMS * 4
        for arm in ("imagenet", "random"):
            assert sorted(epochs[epochs["arm"] == arm]["epoch"]) == list(range(EPOCHS))
