"""Start, stop and watch experiments, each in a worker process.

Where a live warm pool serves the store (:mod:`pipelines.runs.pool`), :meth:`JobManager.start`
only queues the run and a pool worker takes it. Otherwise each run gets its own worker,
``python -m pipelines worker RUN_ID``, in a new session (it outlives the process that started
it, e.g. the dashboard server), logging to ``<runs>/<run_id>/worker.log``. Workers queue
themselves through the store: at most ``max_running`` run at once, in order of creation.
Everything is in the store, so any process can watch or stop any run; :class:`JobManager`
only adds spawning and signalling, keeps the pool at ``warm_workers`` processes (replacing
dead ones whenever it polls runs), and reaps (see :func:`pipelines.runs.lifecycle.reap`)
before it answers, so a run whose worker died reads ``interrupted``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from pipelines import settings
from pipelines.errors import UserError
from pipelines.runs import lifecycle, pool
from pipelines.runs.run import ACTIVE, Run
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig
from pipelines.training.preflight import check_experiment

MAX_RUNNING_ENV = "MAX_RUNNING_EXPERIMENTS"
DEFAULT_MAX_RUNNING = 1
WORKER_LOG = "worker.log"
SUPERVISE_EVERY_S = 1.0  # how often polling runs also tops the pool up


def max_running_from_env() -> int:
    """``MAX_RUNNING_EXPERIMENTS`` (a whole number >= 1), default 1."""
    return settings.whole_number_env(MAX_RUNNING_ENV, DEFAULT_MAX_RUNNING, 1)


class JobManager:
    """Spawns workers for new runs (or queues them for a live pool), keeps the pool at
    ``warm_workers`` processes (``WARM_WORKERS``, default 0: one process per run) and stops
    runs; reads everything else from ``store``."""

    def __init__(
        self,
        store: RunStore | None = None,
        max_running: int | None = None,
        warm_workers: int | None = None,
    ) -> None:
        self.store = store or RunStore()
        self.max_running = max_running if max_running is not None else max_running_from_env()
        if self.max_running < 1:
            raise UserError("max_running must be at least 1")
        self.warm_workers = (
            warm_workers if warm_workers is not None else pool.warm_workers_from_env()
        )
        self._children: dict[str, subprocess.Popen] = {}
        self._pool: list[subprocess.Popen] = []
        self._supervised = 0.0

    def ensure_pool(self, size: int | None = None) -> int:
        """Keep ``size`` (default ``warm_workers``) live pool workers: forget dead ones and
        spawn replacements. Returns how many were spawned."""
        self._poll_children()
        self._supervised = time.monotonic()
        spawned = pool.ensure_pool(
            self.store, self.warm_workers if size is None else size, self.max_running
        )
        self._pool.extend(spawned)
        return len(spawned)

    def stop_pool(self) -> int:
        """Ask every pool worker to exit once its current run has ended; the count."""
        return lifecycle.retire_pool_workers(self.store)

    def start(
        self,
        config: ExperimentConfig,
        *,
        sweep_id: str | None = None,
        trial: int | None = None,
        create: Callable[[ExperimentConfig], str] | None = None,
    ) -> str:
        """Queue a run of ``config`` and return the run id at once: a live pool's worker
        takes it, else a worker process spawned for it alone. ``sweep_id``/``trial`` tag it
        as a trial of a series or sweep. ``create(config)``, if given, records the queued
        run in the store instead of :meth:`RunStore.create_run` and returns its id (a group
        exercise checks its rules in the same transaction, :mod:`pipelines.runs.exercise`).

        A config, backbone or data set refused by
        :func:`pipelines.training.preflight.check_experiment` raises :class:`UserError` and
        creates no run."""
        check_experiment(config)
        lifecycle.reap(self.store)
        if self.warm_workers:
            self.ensure_pool()
        if create is not None:
            run_id = create(config)
        else:
            run_id = self.store.create_run(config, sweep_id=sweep_id, trial=trial)
        if pool.live(self.store):
            return run_id  # the oldest unclaimed queued run goes to the next free pool worker
        log_path = self.store.artefact_dir(run_id) / WORKER_LOG
        env = pool.worker_env(self.store, self.max_running)
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pipelines", "worker", run_id],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # survives the server; no Ctrl-C from its terminal
                )
        except OSError as e:
            lifecycle.finish(self.store, run_id, "failed", f"could not start a worker process: {e}")
            raise UserError(f"could not start a worker process for run {run_id}: {e}") from None
        self._children[run_id] = proc
        # Record the pid now, so a worker that dies before claiming the run is reaped.
        with contextlib.suppress(UserError):  # it already claimed the run, and even finished
            lifecycle.claim_worker(self.store, run_id, proc.pid)
        return run_id

    def stop(self, run_id: str, timeout: float = 10.0) -> str:
        """Ask the run to stop after its current batch and wait up to ``timeout`` s for it.

        If it is still going then, send SIGTERM (which stops a worker at once once its
        flag is set) and wait a little more. Returns the status reached; ``running`` means
        it did not stop (see :meth:`kill`).
        """
        run = self.status(run_id)
        if not run.active:
            return run.status
        lifecycle.request_stop(self.store, run_id)
        if lifecycle.drop_unclaimed(self.store, run_id):  # still waiting for the pool
            return "stopped"
        status = self._wait_status(run_id, timeout)
        if status in ACTIVE:
            self._signal(self.store.get_run(run_id), signal.SIGTERM)
            status = self._wait_status(run_id, 5.0)
        return status

    def kill(self, run_id: str) -> str:
        """SIGKILL the run's worker and mark it ``stopped``; its rows so far are kept."""
        run = self.status(run_id)
        if not run.active:
            return run.status
        self._signal(run, signal.SIGKILL)
        lifecycle.finish(
            self.store, run_id, "stopped", "killed: its worker did not stop when asked"
        )
        return self.status(run_id).status

    def delete(self, run_id: str) -> None:
        """Delete a finished run (reaped first: a run whose worker died can be deleted)."""
        self._poll_children()
        lifecycle.reap(self.store, run_id)
        self.store.delete_run(run_id)

    def status(self, run_id: str) -> Run:
        """The run as :meth:`RunStore.get_run` returns it, reaped first if its worker died
        (and the pool topped up, at most every ``SUPERVISE_EVERY_S``)."""
        self._poll_children()
        self._supervise()
        lifecycle.reap(self.store, run_id)
        return self.store.get_run(run_id)

    def attach(self, run_id: str, interval: float = 0.5) -> Iterator[Run]:
        """Yield the run every ``interval`` s until it has finished (the last one yielded)."""
        while True:
            run = self.status(run_id)
            yield run
            if not run.active:
                return
            time.sleep(interval)

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """The run once finished, or as it is after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in self.attach(run_id, interval=0.2):
            if deadline is not None and time.monotonic() > deadline:
                return run
        return run

    def running(self) -> list[Run]:
        self._refresh()
        return self.store.runs_with_status("running")

    def queued(self) -> list[Run]:
        """Queued runs in the order they will start."""
        self._refresh()
        return self.store.runs_with_status("queued")

    # --- internals ----------------------------------------------------------------------

    def _refresh(self) -> None:
        self._poll_children()
        self._supervise()
        lifecycle.reap(self.store)

    def _supervise(self) -> None:
        """Top the pool up (dead pool workers replaced) if it is due, or at once when no
        pool worker is alive (one recycled after its runs): the reap that follows would
        otherwise judge the runs queued for the pool as orphans."""
        if not self.warm_workers:
            return
        if time.monotonic() - self._supervised >= SUPERVISE_EVERY_S or not pool.live(self.store):
            self.ensure_pool()

    def _poll_children(self) -> None:
        """Collect exited workers we started, so they do not linger as zombies."""
        for run_id, proc in list(self._children.items()):
            if proc.poll() is not None:
                self._children.pop(run_id, None)  # another thread may have collected it
        self._pool = [p for p in self._pool if p.poll() is None]

    def _wait_status(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            run = self.status(run_id)
            if not run.active or time.monotonic() >= deadline:
                return run.status
            time.sleep(0.1)

    def _signal(self, run: Run, sig: int) -> None:
        """Signal the run's worker if it is still the recorded process (not a reused pid)."""
        pid = run.worker_pid
        if pid is not None and lifecycle.process_alive(pid, run.worker_started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
