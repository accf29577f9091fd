"""A run's life between processes: the worker protocol over the run store.

:class:`pipelines.runs.jobs.JobManager` creates a run ``queued`` and records the worker it
spawned (:func:`claim_worker`); the worker claims the run for itself, waits for a slot
(:func:`claim_slot` moves it to ``running``), beats (:func:`heartbeat`), polls
:func:`stop_requested` (set by :func:`request_stop` from any process) and records how it
ended (:func:`finish`). A worker that dies leaves its run ``queued`` or ``running``;
:func:`reap` marks such a run ``interrupted``.

The warm worker pool (:mod:`pipelines.runs.pool`) adds: pool workers register themselves
(:func:`register_pool_worker`; :func:`live_pool_workers` tells whether a live pool exists),
and take the oldest queued run nobody has claimed (:func:`claim_next_queued`), then go
through the same claim, slot, heartbeat, stop and finish as any worker. A queued run
submitted to the pool has no worker pid until a pool worker claims it; :func:`reap` leaves
it alone while a live pool exists, and :func:`drop_unclaimed` stops it before any worker
has taken it.

The store's reads never write, so whoever polls runs reaps first: the job manager (its
``status``, ``running``, ``queued``, ``start``), the worker waiting for a slot,
``python -m pipelines runs`` and the dashboard's refresh.

Every function takes the :class:`~pipelines.runs.store.RunStore` first and writes through
:meth:`~pipelines.runs.store.RunStore.transaction`, so each is atomic and durable when it
returns. Process liveness (:func:`process_alive`, via psutil) is judged here and nowhere else.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from pipelines.errors import UserError
from pipelines.runs.run import ACTIVE, TERMINAL
from pipelines.runs.store import RunStore

# A queued/running run with no worker pid is only judged dead after this long without a
# heartbeat: whoever created it may be about to start its worker.
ORPHAN_AFTER_S = 120.0
# psutil's create_time is derived from boot time + start ticks; allow for rounding.
_CREATE_TIME_TOLERANCE_S = 0.5


def claim_worker(store: RunStore, run_id: str, pid: int) -> None:
    """Record ``pid`` (and its start time, against pid reuse) as the run's worker.

    Refuses a run that has finished, or that another live process is working on.
    """
    started = _create_time(pid)
    with store.transaction() as c:
        run = store.get_run(run_id)
        if not run.active:
            raise UserError(f"run {run_id} is already {run.status}; start a new one")
        other = run.worker_pid
        if other is not None and other != pid and process_alive(other, run.worker_started):
            raise UserError(f"run {run_id} is already being run by process {other}")
        now = time.time()
        c.execute(
            "UPDATE runs SET worker_pid = ?, worker_started = ?, heartbeat = ?, updated = ?"
            " WHERE run_id = ?",
            (pid, started, now, now, run_id),
        )


def create_claimed(
    store: RunStore, config, pid: int, sweep_id: str | None = None, trial: int | None = None
) -> str:
    """Create a queued run already claimed by worker ``pid`` (as :func:`claim_worker`
    records it), in one transaction: no pool worker can take it in between. For a process
    that runs the run itself (a sweep's worker)."""
    started = _create_time(pid)
    with store.transaction() as c:
        run_id = store.create_run(config, sweep_id=sweep_id, trial=trial)
        now = time.time()
        c.execute(
            "UPDATE runs SET worker_pid = ?, worker_started = ?, heartbeat = ?, updated = ?"
            " WHERE run_id = ?",
            (pid, started, now, now, run_id),
        )
    return run_id


def claim_slot(store: RunStore, run_id: str, max_running: int) -> bool:
    """Atomically move a queued run to ``running`` if fewer than ``max_running`` runs are
    running and no older queued run with a live worker is waiting ahead of it.

    Returns True once the run is running (also if it already was); False to wait.
    """
    with store.transaction() as c:
        status = store.get_run(run_id).status
        if status == "running":
            return True
        if status != "queued":
            raise UserError(f"run {run_id} is {status}; it can no longer start")
        free = max_running - len(store.runs_with_status("running"))
        if free <= 0:
            return False
        ahead = 0
        for other in store.runs_with_status("queued"):
            if other.run_id == run_id:
                break
            if other.worker_pid is not None:
                ahead += process_alive(other.worker_pid, other.worker_started)
        if ahead >= free:
            return False
        now = time.time()
        c.execute(
            "UPDATE runs SET status = 'running', updated = ?, heartbeat = ? WHERE run_id = ?",
            (now, now, run_id),
        )
        return True


def heartbeat(store: RunStore, run_id: str) -> None:
    """Record that the run's worker is alive now."""
    with store.transaction() as c:
        c.execute("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time(), run_id))


def request_stop(store: RunStore, run_id: str) -> None:
    """Ask the run's worker to stop after its current batch (it marks ``stopped``);
    ``UserError`` if there is no such run."""
    with store.transaction() as c:
        cur = c.execute(
            "UPDATE runs SET stop_requested = 1, updated = ? WHERE run_id = ?",
            (time.time(), run_id),
        )
        if cur.rowcount == 0:
            store.get_run(run_id)  # raises: no such run


def stop_requested(store: RunStore, run_id: str) -> bool:
    """Whether a stop was requested (False for a run that is gone)."""
    try:
        return store.get_run(run_id).stop_requested
    except UserError:
        return False


def finish(store: RunStore, run_id: str, status: str, error: str | None = None) -> bool:
    """Set a terminal ``status`` (and ``error``) only if the run is still queued or running;
    return whether it did (a run already finished, e.g. reaped, keeps its status)."""
    if status not in TERMINAL:
        raise ValueError(f"{status!r} is not a terminal status")
    with store.transaction() as c:
        cur = c.execute(
            "UPDATE runs SET status = ?, error = ?, updated = ?"
            " WHERE run_id = ? AND status IN ('queued', 'running')",
            (status, error, time.time(), run_id),
        )
        return cur.rowcount == 1


def reap(store: RunStore, run_id: str | None = None) -> list[str]:
    """Mark ``interrupted`` every queued/running run (or just ``run_id``) whose worker
    process is gone: pid not alive, a zombie, or a different process reusing the pid.
    A run without a worker pid is judged by its heartbeat (``ORPHAN_AFTER_S``).
    Returns the ids it marked; their metric rows are kept."""
    runs = store.runs_with_status(*ACTIVE)
    if run_id is not None:
        runs = [r for r in runs if r.run_id == run_id]
    reaped = []
    now = time.time()
    pool: bool | None = None  # whether a live pool exists, looked up once if needed
    for run in runs:
        pid = run.worker_pid
        if pid is None:
            if now - (run.heartbeat or run.updated) < ORPHAN_AFTER_S:
                continue
            if pool is None:
                pool = bool(live_pool_workers(store))
            if pool:  # waiting for a busy pool: a pool worker takes it when one is free
                continue
            why = "no worker process picked it up"
        elif process_alive(pid, run.worker_started):
            continue
        else:
            why = f"its worker process ({pid}) ended without finishing"
        # Conditional on the same worker, an active status and the same heartbeat: a
        # worker that finished, or beat (or a pool that let its queued runs know it was
        # alive until now), between our read and this write keeps the run.
        with store.transaction() as c:
            cur = c.execute(
                "UPDATE runs SET status = 'interrupted', error = ?, updated = ?"
                " WHERE run_id = ? AND status IN ('queued', 'running') AND worker_pid IS ?"
                " AND heartbeat IS ?",
                (
                    f"interrupted: {why}; rows up to then are kept",
                    now,
                    run.run_id,
                    pid,
                    run.heartbeat,
                ),
            )
        if cur.rowcount:
            reaped.append(run.run_id)
    return reaped


def drop_unclaimed(store: RunStore, run_id: str) -> bool:
    """Mark ``stopped`` a queued run no worker has claimed yet (one waiting for a busy
    pool); return whether it did. A claimed run stops through its worker instead."""
    with store.transaction() as c:
        cur = c.execute(
            "UPDATE runs SET status = 'stopped', error = NULL, updated = ?"
            " WHERE run_id = ? AND status = 'queued' AND worker_pid IS NULL",
            (time.time(), run_id),
        )
        return cur.rowcount == 1


# --- the warm worker pool ------------------------------------------------------------------


def register_pool_worker(store: RunStore, pid: int) -> None:
    """Record ``pid`` (with its start time) as a pool worker; keeps its counts if it is
    already recorded as the same process (the supervisor records it at spawn, the worker
    again once it serves)."""
    started = _create_time(pid)
    now = time.time()
    with store.transaction() as c:
        row = c.execute("SELECT started FROM workers WHERE pid = ?", (pid,)).fetchone()
        if row is not None and _same_start(row[0], started):
            c.execute("UPDATE workers SET heartbeat = ? WHERE pid = ?", (now, pid))
            return
        c.execute(
            "INSERT OR REPLACE INTO workers (pid, started, registered, heartbeat, runs_done)"
            " VALUES (?, ?, ?, ?, 0)",
            (pid, started, now, now),
        )


def pool_worker_state(
    store: RunStore, pid: int, run_id: str | None, runs_done: int, rss_mb: float | None
) -> bool:
    """Record what pool worker ``pid`` does now (``run_id`` None: idle); return whether it
    was asked to retire (:func:`retire_pool_workers`) or is no longer registered."""
    with store.transaction() as c:
        cur = c.execute(
            "UPDATE workers SET heartbeat = ?, run_id = ?, runs_done = ?, rss_mb = ? WHERE pid = ?",
            (time.time(), run_id, runs_done, rss_mb, pid),
        )
        if cur.rowcount == 0:
            return True
        return bool(c.execute("SELECT retire FROM workers WHERE pid = ?", (pid,)).fetchone()[0])


def unregister_pool_worker(store: RunStore, pid: int) -> None:
    """Forget pool worker ``pid`` (it exits). The runs queued for the pool restart their
    orphan clock (:func:`reap`, ``ORPHAN_AFTER_S``) now: a worker recycled after its runs
    leaves no live pool until its replacement is spawned, and a reap in between must not
    judge runs that were served until a moment ago as picked up by no one."""
    with store.transaction() as c:
        c.execute("DELETE FROM workers WHERE pid = ?", (pid,))
        c.execute(
            "UPDATE runs SET heartbeat = ? WHERE status = 'queued' AND worker_pid IS NULL",
            (time.time(),),
        )


def live_pool_workers(store: RunStore) -> list[dict]:
    """The registered pool workers whose process is still alive (and not retiring): a
    live pool exists when this is not empty. Never writes."""
    return [
        w for w in store.pool_workers() if not w["retire"] and process_alive(w["pid"], w["started"])
    ]


def reap_pool(store: RunStore) -> list[int]:
    """Forget registered pool workers whose process is gone; return their pids. (Their
    runs are reaped by :func:`reap`, like any worker's.)"""
    dead = [w["pid"] for w in store.pool_workers() if not process_alive(w["pid"], w["started"])]
    if dead:
        with store.transaction() as c:
            for pid in dead:
                c.execute("DELETE FROM workers WHERE pid = ?", (pid,))
    return dead


def top_up_pool(store: RunStore, size: int, spawn) -> list[int]:
    """Make ``size`` live pool workers: forget dead ones, call ``spawn()`` (which starts a
    pool worker process and returns its pid) for each one missing and record them, all in
    one transaction, so two supervisors at once never start more than ``size``. Returns
    the pids spawned."""
    reap_pool(store)
    with store.transaction() as c:
        live = [
            w
            for w in store.pool_workers()
            if not w["retire"] and process_alive(w["pid"], w["started"])
        ]
        spawned = []
        for _ in range(size - len(live)):
            pid = spawn()
            now = time.time()
            c.execute(
                "INSERT OR REPLACE INTO workers (pid, started, registered, heartbeat, runs_done)"
                " VALUES (?, ?, ?, ?, 0)",
                (pid, _create_time(pid), now, now),
            )
            spawned.append(pid)
        return spawned


def retire_pool_workers(store: RunStore) -> int:
    """Ask every pool worker to exit once its current run (if any) has ended; the count."""
    with store.transaction() as c:
        return c.execute("UPDATE workers SET retire = 1 WHERE retire = 0").rowcount


def claim_next_queued(store: RunStore, pid: int) -> str | None:
    """Atomically give pool worker ``pid`` the oldest queued run no worker has claimed
    (as :func:`claim_worker` records a worker); its id, or None when there is none."""
    started = _create_time(pid)
    with store.transaction() as c:
        row = c.execute(
            "SELECT run_id FROM runs WHERE status = 'queued' AND worker_pid IS NULL"
            " ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        now = time.time()
        c.execute(
            "UPDATE runs SET worker_pid = ?, worker_started = ?, heartbeat = ?, updated = ?"
            " WHERE run_id = ?",
            (pid, started, now, now, row[0]),
        )
        return row[0]


def process_alive(pid: int, started: float | None) -> bool:
    """Is ``pid`` still the process that was recorded (same start time, not a zombie)?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) <= _CREATE_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process holds the pid: it exists
        return True


def _same_start(recorded: float | None, actual: float | None) -> bool:
    return recorded is None or actual is None or abs(recorded - actual) <= _CREATE_TIME_TOLERANCE_S


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or None where it is gone: a worker compares it with
    the one it started with to notice a run store that was deleted or replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextmanager
def signals_handled(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Call ``handler(signum, frame)`` on SIGTERM and SIGINT while the block runs, then put
    the previous handlers back. Only the main thread can set handlers; elsewhere this does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
