"""The dashboard served for real: ``streamlit run`` on a free port, Debian's Chromium for
Playwright, and a test workload that writes epoch rows at a steady pace.

Plain helpers (no fixtures), shared by the browser and fault tests and by
``scripts/load_test.py``. Worker processes import :func:`epoch_workload` by name through
``PIPELINES_TEST_WORKLOAD``, so this module must stay importable without pytest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The first plotly chart of the run view is the side-by-side curves; its first trace is
# the ImageNet arm's train loss, one point per finished epoch.
POINTS_JS = """() => {
  const plots = document.querySelectorAll('.js-plotly-plot');
  if (!plots.length || !plots[0].data || !plots[0].data.length) return -1;
  return (plots[0].data[0].x || []).length;
}"""
WORKLOAD = "tests.served:epoch_workload"
STEPS_ENV = "SERVED_STEPS"
STEP_S_ENV = "SERVED_STEP_S"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not serve {url} within {timeout:.0f} s")


class Server:
    """``streamlit run dashboard/app.py`` in its own session, logging to ``log``.

    ``env`` is added to this process's environment; ``options`` are ``--name value`` pairs
    (the repo's ``.streamlit/config.toml`` applies to the rest, as the server runs in the
    repository root). ``address=None`` leaves ``server.address`` to that file."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        port: int | None = None,
        address: str | None = "127.0.0.1",
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
        self.log_path = log
        self.port = port or free_port()
        self.options = {"server.headless": "true", "browser.gatherUsageStats": "false"}
        if address is not None:
            self.options["server.address"] = address
        self.options.update(options or {})
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Server:
        args = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(self.port)]
        for name, value in self.options.items():
            args += [f"--{name}", value]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_serving(self.url, self.proc, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL the server process alone, as a crash would (its workers live on)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the server's process group if it is still running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def kill_workers(runs: Path) -> None:
    """Workers outlive the server by design; SIGKILL the active ones under ``runs``."""
    from pipelines.runs.lifecycle import process_alive
    from pipelines.runs.store import ACTIVE, RunStore

    if not (runs / "runs.sqlite3").exists():
        return
    store = RunStore(runs)
    try:
        for run in store.list_runs():
            pid = run.worker_pid
            if run.status in ACTIVE and pid and process_alive(pid, run.worker_started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    finally:
        store.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def until(
    predicate: Callable[[], object],
    timeout: float = 60.0,
    what: str = "condition",
    every: float = 0.05,
):
    """``predicate()``'s first truthy value within ``timeout`` s, else TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def epoch_workload(run_id: str, config, store, should_stop) -> dict:
    """Stands in for training (no TensorFlow): epoch by epoch, each arm writes
    ``SERVED_STEPS`` batch rows (default 4) ``SERVED_STEP_S`` s apart (default 0.05), its
    progress, then its epoch row, like the trainer's lockstep; then a result per arm."""
    steps = int(os.environ.get(STEPS_ENV, "4"))
    step_s = float(os.environ.get(STEP_S_ENV, "0.05"))
    total = config.phase1.epochs + config.phase2.epochs
    for epoch in range(total):
        phase = "feature_extraction" if epoch < config.phase1.epochs else "fine_tuning"
        for arm in config.arms:
            for step in range(steps):
                if should_stop():
                    return {"stopped": True}
                time.sleep(step_s)
                loss = 1.0 / (epoch + 1 + step / steps)
                store.log_batch(
                    run_id, arm, phase, epoch, step, loss, 0.5, 0.0, global_step=epoch * steps
                )
                store.set_progress(
                    run_id,
                    arm,
                    {
                        "phase": phase,
                        "epoch": epoch,
                        "epochs_total": total,
                        "step": step + 1,
                        "steps_per_epoch": steps,
                    },
                )
            val = 0.6 + 0.05 * epoch if arm == "imagenet" else 0.5
            store.log_epoch(
                run_id, arm, phase, epoch, 0.5, val, 0.6, val, steps * step_s, 10.0 / step_s
            )
    for arm in config.arms:
        store.save_result(run_id, arm, {"classes": ["a", "b"], "confusion": [[1, 0], [0, 1]]})
    return {"stopped": False}
