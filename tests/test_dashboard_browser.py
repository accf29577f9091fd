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
