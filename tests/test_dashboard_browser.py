"""End to end in a real headless browser: the dashboard served on localhost, a tiny
experiment set up through the form and started, the live chart gaining points.

Uses Debian's ``chromium`` (installed by ``.ci/run``) through Playwright; nothing is
downloaded. The screenshot is saved in the test's temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest_dashboard import APP, ROOT
from tests.conftest_data import make_image_folder
from tests.served import (
    CHROMIUM,
    CHROMIUM_ARGS,
    POINTS_JS,
    free_port,
    kill_workers,
    wait_until_serving,
)

EPOCHS = 4  # phase1.epochs 3 + phase2.epochs 1

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; "
        ".ci/run installs it)",
    ),
]


@pytest.fixture
def served_app(tmp_path: Path, lite0_handle: str):
    """The dashboard served by ``streamlit run`` on a free port, with its own store and an
    empty data-set folder; always terminated, with any worker it started."""
    runs = tmp_path / "runs"
    env = {
        **os.environ,
        "RUNS_DIR": str(runs),
        "DATASETS_DIR": str(tmp_path / "datasets"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PIPELINES_TEST_WORKLOAD", None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_serving(url, proc)
        yield url, runs
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()
        kill_workers(runs)


def fill(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    page.wait_for_timeout(700)


def test_start_a_tiny_experiment_and_watch_the_curves_grow(served_app, tmp_path):
    from playwright.sync_api import sync_playwright

    url, runs = served_app
    data = make_image_folder(tmp_path / "tiny", classes=("horses", "humans"), train=12)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text("Folder", exact=True).click()
            page.wait_for_timeout(700)
            fill(page, "Data set folder", str(data))
            fill(page, "Image size (px)", "32")
            fill(page, "Epochs (phase 1)", "3")
            fill(page, "Epochs (phase 2)", "1")
            fill(page, "Batch size", "8")
            page.get_by_text("4 epochs · 24 training images · 32 px").wait_for()
            page.get_by_role("button", name="Start").click()

            page.get_by_text("Epoch points").wait_for()
            run_id = page.url.split("run=")[1].split("&")[0]
            # A second tab without the run in its URL shows the same live run.
            second = browser.new_page(viewport={"width": 1400, "height": 900})
            second.goto(url)
            second.get_by_text(f"Run {run_id}").wait_for()
            second.close()
            seen: list[int] = []
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                n = page.evaluate(POINTS_JS)
                if n >= 0 and (not seen or n != seen[-1]):
                    seen.append(n)
                    if n == 1 or (n > 0 and len(seen) == 2):
                        page.screenshot(path=str(tmp_path / "live.png"))
                if n == EPOCHS:
                    break
                page.wait_for_timeout(250)
            assert seen and seen[-1] == EPOCHS, f"points seen: {seen}"
            assert len(seen) >= 2 and seen == sorted(seen), f"the chart did not grow: {seen}"

            page.get_by_text("After the run").wait_for(timeout=90_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
            assert page.locator("[data-testid='stException']").count() == 0
            assert f"run={run_id}" in page.url
            # What each arm learned: heat maps per arm, then the feature space.
            page.get_by_role("tab", name="Where each arm looks").click()
            page.get_by_text("Grad-CAM on head").first.wait_for(timeout=120_000)
            page.get_by_role("tab", name="Feature space").click()
            page.get_by_text("5-NN accuracy").first.wait_for(timeout=120_000)
            page.screenshot(path=str(tmp_path / "insight.png"), full_page=True)
            assert page.locator("[data-testid='stException']").count() == 0
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'live.png'} {tmp_path / 'finished.png'}")
    assert (tmp_path / "live.png").stat().st_size > 10_000


# A heat map's cells with an objective so far: the Sweep page's first chart, trace 0.
CELLS_JS = """() => {
  const plot = document.querySelector('.js-plotly-plot');
  if (!plot || !plot.data || !plot.data.length || plot.data[0].type !== 'heatmap') return -1;
  return plot.data[0].z.flat().filter(v => v !== null && v !== undefined).length;
}"""
# Cells coloured by a state (running, waiting, pruned, failed): the heat map's trace 1.
STATE_CELLS_JS = """() => {
  const plot = document.querySelector('.js-plotly-plot');
  if (!plot || !plot.data || plot.data.length < 2) return 0;
  return plot.data[1].z.flat().filter(v => v !== null && v !== undefined).length;
}"""


def keyed(page, key: str):
    """The element Streamlit wrapped for the widget with ``key`` (class ``st-key-…``)."""
    return page.locator(".st-key-" + "".join(c if c.isalnum() or c in "_-" else "-" for c in key))


def test_a_tiny_sweep_fills_its_heat_map_live(served_app, tmp_path):
    """Setup's fields give the fixed part (32 px, one epoch, batch 8); the Sweep page varies
    phase1.lr x train_per_class (2 x 2, no pruning) and starts it; the heat map's cells gain
    their values one trial after another, from real training in a sweep worker."""
    from playwright.sync_api import sync_playwright

    url, runs = served_app
    datasets = runs.parent / "datasets"
    make_image_folder(datasets / "horses-or-humans", classes=("horses", "humans"), train=12)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1900})
            page.set_default_timeout(60_000)
            page.goto(url)
            fill(page, "Image size (px)", "32")
            fill(page, "Epochs (phase 1)", "1")
            fill(page, "Epochs (phase 2)", "0")
            fill(page, "Batch size", "8")
            page.get_by_text("1 epochs · 24 training images · 32 px").wait_for()
            page.get_by_role("link", name="Sweep").click()  # same session: Setup's values
            page.get_by_text("Fixed part: the Setup's experiment").wait_for()
            for key, value in (("phase1.lr", "1e-02"), ("train_per_class", "5")):
                keyed(page, f"sweep.mode.{key}").get_by_role("radio", name="list").click()
                page.wait_for_timeout(700)
                choose = keyed(page, f"sweep.list.{key}").locator("input")
                choose.click()
                choose.press_sequentially(value)
                page.get_by_role("option", name=value, exact=True).click()
                page.keyboard.press("Escape")
                page.wait_for_timeout(700)
            keyed(page, "sweep.pruner").get_by_role("radio", name="none").click()
            page.get_by_text("4 trials").first.wait_for()
            page.get_by_role("button", name="Start sweep").click()

            page.get_by_text("Map of the space").wait_for()
            seen: list[int] = []
            states_seen = 0
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                n = page.evaluate(CELLS_JS)
                states_seen = max(states_seen, page.evaluate(STATE_CELLS_JS))
                if n >= 0 and (not seen or n != seen[-1]):
                    seen.append(n)
                    if n == 2:
                        page.screenshot(path=str(tmp_path / "sweep-live.png"))
                if n == 4:
                    break
                page.wait_for_timeout(250)
            assert seen and seen[-1] == 4, f"cells seen: {seen}"
            assert len(seen) >= 3 and seen == sorted(seen), f"the map did not grow: {seen}"
            assert states_seen >= 1  # running/waiting cells were shown as such
            page.get_by_text("finished").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(tmp_path / "sweep-finished.png"), full_page=True)
            assert page.locator("[data-testid='stException']").count() == 0
            assert "sweep=" in page.url
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'sweep-live.png'} {tmp_path / 'sweep-finished.png'}")
