"""Faults in a seminar room: workers killed mid-run, a full disk, two Starts at once.

Real tiny training (EfficientNet-Lite0 at 32 px on the session's 2-class data set) except
where a test workload (``PIPELINES_TEST_WORKLOAD``) stands in for it to break the store
itself. A full disk is simulated by writers that raise ``ENOSPC`` partway through a run.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines.__main__ import main
from pipelines.data import safezip
from pipelines.runs.jobs import WORKER_LOG, JobManager
from pipelines.runs.store import ACTIVE, RunStore
from pipelines.runs.worker import EXIT_COMPLETED, EXIT_FAILED, run_worker
from tests.conftest_engine import tiny_config
from tests.conftest_store import start_at_once
from tests.served import until

KILLS = 10
LONG = ("phase1.epochs=1000", "phase2.epochs=0", "arms=imagenet")
NO_SPACE = "no space left on device while writing"
FREE_SPACE = "free some disk space and start again"


@pytest.fixture(scope="module", autouse=True)
def own_feature_cache(tmp_path_factory):
    """This module's own feature cache (warmed by its first worker): ``test_training``
    expects to be the first to fill the session's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FEATURE_CACHE_DIR", str(tmp_path_factory.mktemp("fault_features")))
    yield
    patch.undo()


def _rows(store: RunStore, run_id: str, kind: str = "epoch") -> int:
    return len(store.curves(run_id, kind=kind))


def _full(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", *([str(path)] if path else []))


# --- workers killed ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_mid_epoch_ten_times_then_the_next_run_completes(store, tiny_data) -> None:
    """Each killed run ends ``interrupted`` with its rows; the run queued behind it (its
    worker already started, so TensorFlow imports overlap) takes the slot and trains."""
    jm = JobManager(store, max_running=1)
    configs = [tiny_config(tiny_data, *LONG) for _ in range(KILLS)]
    configs.append(tiny_config(tiny_data, "phase1.epochs=2", "phase2.epochs=0", "arms=imagenet"))
    started = [jm.start(configs.pop(0)) for _ in range(2)]
    rng = random.Random(0)
    try:
        for kill in range(KILLS):
            victim = started[kill]  # the list grows as the loop goes
            until(lambda v=victim: _rows(store, v) >= 1, timeout=180, what="first epochs")
            if configs:
                started.append(jm.start(configs.pop(0)))
            time.sleep(rng.uniform(0.0, 0.3))  # anywhere in the epoch loop
            pid = store.get_run(victim).worker_pid
            os.kill(pid, signal.SIGKILL)
            assert jm._children[victim].wait(timeout=10) == -signal.SIGKILL
            epochs, batches = _rows(store, victim), _rows(store, victim, "batch")
            run = jm.status(victim)  # the job manager reaps dead workers
            assert run.status == "interrupted", run
            assert f"its worker process ({pid}) ended without finishing" in run.error
            assert "rows up to then are kept" in run.error
            assert epochs >= 1 and batches >= epochs
            assert (_rows(store, victim), _rows(store, victim, "batch")) == (epochs, batches)
        last = started[KILLS]
        run = jm.wait(last, timeout=180)
        log = (store.artefact_dir(last) / WORKER_LOG).read_text()
        assert run.status == "completed", f"{run.error}\n{log[-2000:]}"
        assert _rows(store, last) == 2
        statuses = [r.status for r in store.list_runs()]
        assert statuses.count("interrupted") == KILLS and statuses.count("completed") == 1
    finally:
        for proc in jm._children.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


# --- a full disk ------------------------------------------------------------------------------


def _check_readable_and_settled(store: RunStore, run_id: str) -> None:
    """The store still answers every reader, and nothing is left active."""
    assert [r.status for r in store.list_runs() if r.status in ACTIVE] == []
    store.curves(run_id)
    store.curves(run_id, kind="batch")
    store.events(run_id)
    assert store.get_run(run_id).status == "failed"


def test_disk_full_while_saving_the_model_fails_the_run_cleanly(store, tiny_data, monkeypatch):
    config = tiny_config(tiny_data, "phase1.epochs=2", "phase2.epochs=0", "arms=imagenet")
    run_id = store.create_run(config)
    artefacts = store.artefact_dir(run_id)
    real_savez, real_write_text = np.savez, Path.write_text

    def savez(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).is_relative_to(artefacts):
            raise _full(file)
        return real_savez(file, *args, **kwargs)

    def write_text(self, *args, **kwargs):  # the traceback file can't be written either
        if self.is_relative_to(artefacts):
            raise _full(self)
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)
    monkeypatch.setattr(Path, "write_text", write_text)
    assert run_worker(run_id, store) == EXIT_FAILED
    run = store.get_run(run_id)
    head = artefacts / "imagenet" / "head.npz"
    assert run.error == f"{NO_SPACE} {head}; {FREE_SPACE}"
    assert _rows(store, run_id) == 2  # the epochs trained before are kept
    _check_readable_and_settled(store, run_id)


class _FillingConnection:
    """A SQLite connection whose metric inserts fail once ``budget[0]`` rows have been
    written (by any thread: each has its own connection, the budget is shared)."""

    def __init__(self, conn: sqlite3.Connection, budget: list[int]) -> None:
        self._conn, self._budget = conn, budget

    def execute(self, sql: str, *args):
        if sql.startswith("INSERT INTO metrics"):
            if self._budget[0] <= 0:
                raise sqlite3.OperationalError("database or disk is full")
            self._budget[0] -= 1
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def test_disk_full_in_the_run_store_fails_the_run_with_the_reason(store, tiny_data, monkeypatch):
    config = tiny_config(tiny_data, "phase1.epochs=3", "phase2.epochs=0", "arms=imagenet")
    run_id = store.create_run(config)
    real, budget = store._conn, [5]
    monkeypatch.setattr(store, "_conn", lambda: _FillingConnection(real(), budget))
    assert run_worker(run_id, store) == 2  # a UserError: refused by the environment
    monkeypatch.undo()
    run = store.get_run(run_id)
    assert run.error == f"{NO_SPACE} the run store {str(store.path)!r}; {FREE_SPACE}"
    assert _rows(store, run_id) + _rows(store, run_id, "batch") == 5  # written before: kept
    _check_readable_and_settled(store, run_id)


def store_fills_up(run_id: str, config, store: RunStore, should_stop) -> dict:
    """Test workload: two batch rows, then the disk is full for every write to the store
    (this worker can't even record that it failed)."""
    for step in range(2):
        store.log_batch(run_id, "imagenet", "feature_extraction", 0, step, 0.5, 0.5, 0.1)
    real = store._conn

    class Full:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql: str, *args):
            if not sql.lstrip().upper().startswith("SELECT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

    store._conn = lambda: Full(real())
    store.log_batch(run_id, "imagenet", "feature_extraction", 0, 2, 0.5, 0.5, 0.2)
    raise AssertionError("the write above must fail")


def test_a_worker_that_cannot_write_the_store_exits_and_is_reaped(store, job_manager, monkeypatch):
    from tests.conftest_store import tiny_config as plain_config

    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", "tests.test_faults:store_fills_up")
    run_id = job_manager.start(plain_config())
    proc = job_manager._children[run_id]
    assert proc.wait(timeout=60) == 2  # exited by itself, with the refusal's status
    log = (store.artefact_dir(run_id) / WORKER_LOG).read_text()
    assert "no space left on device while writing the run store" in log
    assert "could not record that it failed" in log
    assert "Traceback" not in log
    run = job_manager.status(run_id)  # the reaper tells what the worker could not
    assert run.status == "interrupted" and "ended without finishing" in run.error
    assert _rows(store, run_id, "batch") == 2
    assert [r.status for r in store.list_runs()] == ["interrupted"]


def test_a_feature_cache_that_cannot_be_written_does_not_fail_the_run(
    store, tiny_data, tmp_path, monkeypatch
):
    cache = tmp_path / "features"
    monkeypatch.setenv("FEATURE_CACHE_DIR", str(cache))  # empty: features must be computed
    real_savez, calls = np.savez, []

    def savez(file, *args, **kwargs):
        if not isinstance(file, (str, os.PathLike)):  # the cache writes through a temp file
            calls.append(file)
            raise _full()
        return real_savez(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)
    config = tiny_config(tiny_data, "phase1.epochs=2", "phase2.epochs=0", "arms=imagenet")
    run_id = store.create_run(config)
    assert run_worker(run_id, store) == EXIT_COMPLETED
    assert calls, "the feature cache was never written to"
    assert store.get_run(run_id).status == "completed" and _rows(store, run_id) == 2
    assert not list(cache.rglob("*.npz")) and not list(cache.rglob("*.tmp"))


def test_disk_full_while_extracting_a_zip_is_one_clear_error(
    tmp_path, runs_dir, monkeypatch, capsys
):
    from tests.test_bad_inputs import Ctx, zip_of

    archive = zip_of(("shapes/cats/big.png", os.urandom(64 * 1024), 0))(Ctx(tmp_path, "", None))
    real_open = open

    class FillingFile:
        """A file that takes 20 kB, then reports a full disk."""

        def __init__(self, file):
            self._file, self._left = file, 20_000

        def write(self, data: bytes) -> int:
            self._left -= len(data)
            if self._left < 0:
                raise _full()
            return self._file.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

    def filling_open(path, mode="r", *args, **kwargs):
        file = real_open(path, mode, *args, **kwargs)
        return FillingFile(file) if "w" in mode else file

    monkeypatch.setattr(safezip, "open", filling_open, raising=False)
    assert main(["data", "--dataset", archive]) == 2
    assert capsys.readouterr().err == (
        "error: no space left on device while extracting upload.zip; "
        "free some disk space and start again\n"
    )
    assert not list(runs_dir.rglob(".extracting")) and not list(runs_dir.rglob("dataset"))


# --- two Starts at the same instant -----------------------------------------------------------


@pytest.mark.slow
def test_two_starts_at_the_same_instant_queue_with_real_training(store, tiny_data) -> None:
    """Two 'browser tabs' (each its own JobManager) press Start together: one trains while
    the other waits; at most one is ever running; both finish with every epoch row."""
    epochs, arms = 3, ("imagenet", "random")
    config = ("phase1.epochs=3", "phase2.epochs=0", "arms=imagenet,random")
    managers = [JobManager(store, max_running=1) for _ in range(2)]
    ids = start_at_once(managers, tiny_config(tiny_data, *config))
    assert len(ids) == 2
    most_running, deadline = 0, time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # 20 Hz, for the whole lifetime of both
            runs = {r.run_id: r for r in store.list_runs()}
            most_running = max(most_running, sum(runs[i].status == "running" for i in ids))
            assert most_running <= 1, "two experiments running at once on 2 cores"
            if all(runs[i].status not in ACTIVE for i in ids):
                break
            time.sleep(0.05)
        for run_id in ids:
            run = store.get_run(run_id)
            assert run.status == "completed", run.error
            frame = store.curves(run_id)
            assert len(frame) == epochs * len(arms)  # no rows lost
            assert sorted(frame.groupby("arm").size().items()) == [(a, epochs) for a in arms]
        waited = [i for i in ids if store.events(i)[0]["message"].startswith("queued: waiting")]
        assert len(waited) == 1  # the other one trained meanwhile
    finally:
        for jm in managers:
            for proc in jm._children.values():
                if proc.poll() is None:
                    proc.kill()
