"""The worker protocol over the store: claims, slots, heartbeats, stop requests, finishing,
reaping and process liveness (``pipelines.runs.lifecycle``). No worker processes here:
this process stands in for the worker; ``test_jobs`` runs real ones."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_store import fill_run


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running(store: RunStore, run_id: str) -> None:
    lifecycle.claim_worker(store, run_id, os.getpid())
    assert lifecycle.claim_slot(store, run_id, max_running=99)


def _set_worker(store: RunStore, run_id: str, pid: int, started: float | None = 1.0) -> None:
    store._write(
        "UPDATE runs SET worker_pid = ?, worker_started = ? WHERE run_id = ?",
        (pid, started, run_id),
    )


# --- claims and finishing -------------------------------------------------------------------


def test_status_transitions(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    lifecycle.claim_worker(store, run_id, os.getpid())
    run = store.get_run(run_id)
    assert run.worker_pid == os.getpid() and run.worker_started is not None
    assert run.heartbeat is not None and run.status == "queued"
    assert lifecycle.claim_slot(store, run_id, max_running=1)
    assert lifecycle.claim_slot(store, run_id, max_running=1)  # already running: still True
    assert store.get_run(run_id).status == "running"
    assert lifecycle.finish(store, run_id, "completed")
    assert not lifecycle.finish(store, run_id, "failed", "too late")  # keeps its status
    run = store.get_run(run_id)
    assert run.status == "completed" and run.error is None and run.finished
    with pytest.raises(UserError, match="already completed"):
        lifecycle.claim_worker(store, run_id, os.getpid())
    with pytest.raises(UserError, match="is completed; it can no longer start"):
        lifecycle.claim_slot(store, run_id, max_running=1)
    with pytest.raises(ValueError, match="not a terminal status"):
        lifecycle.finish(store, run_id, "running")


def test_finish_records_the_error(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    _running(store, run_id)
    assert lifecycle.finish(store, run_id, "failed", "ValueError: x")
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error == "ValueError: x"


def test_claim_worker_refuses_a_run_another_live_process_has(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    lifecycle.claim_worker(store, run_id, os.getppid())
    with pytest.raises(UserError, match="already being run by process"):
        lifecycle.claim_worker(store, run_id, os.getpid())
    _set_worker(store, run_id, _dead_pid())  # a dead one may be replaced
    lifecycle.claim_worker(store, run_id, os.getpid())
    assert store.get_run(run_id).worker_pid == os.getpid()


def test_unknown_run_id_is_a_user_error(store: RunStore) -> None:
    for call in (
        lambda: lifecycle.claim_worker(store, "nope", os.getpid()),
        lambda: lifecycle.claim_slot(store, "nope", 1),
        lambda: lifecycle.request_stop(store, "nope"),
    ):
        with pytest.raises(UserError, match="no run with id 'nope'"):
            call()
    assert lifecycle.stop_requested(store, "nope") is False
    assert lifecycle.finish(store, "nope", "stopped") is False


def test_stop_request_and_heartbeat(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    assert not lifecycle.stop_requested(store, run_id)
    lifecycle.request_stop(store, run_id)
    assert lifecycle.stop_requested(store, run_id) and store.get_run(run_id).stop_requested
    assert store.get_run(run_id).heartbeat is None
    lifecycle.heartbeat(store, run_id)
    assert store.get_run(run_id).heartbeat is not None


# --- queue slots ----------------------------------------------------------------------------


def test_claim_slot_is_fifo_and_bounded(store: RunStore) -> None:
    first, second = store.create_run(ExperimentConfig()), store.create_run(ExperimentConfig())
    for run_id in (first, second):
        lifecycle.claim_worker(store, run_id, os.getpid())
    assert not lifecycle.claim_slot(store, second, max_running=1)  # first is waiting ahead
    assert lifecycle.claim_slot(store, first, max_running=1)
    assert not lifecycle.claim_slot(store, second, max_running=1)  # the slot is taken
    lifecycle.finish(store, first, "completed")
    assert lifecycle.claim_slot(store, second, max_running=1)


def test_a_dead_worker_queued_ahead_does_not_hold_the_queue(store: RunStore) -> None:
    first, second = store.create_run(ExperimentConfig()), store.create_run(ExperimentConfig())
    _set_worker(store, first, _dead_pid())
    lifecycle.claim_worker(store, second, os.getpid())
    assert lifecycle.claim_slot(store, second, max_running=1)


def test_concurrent_slot_claims_never_exceed_the_limit(store: RunStore) -> None:
    """Eight claimants with their own connections race for two slots."""
    ids = [store.create_run(ExperimentConfig()) for _ in range(8)]
    for run_id in ids:
        _set_worker(store, run_id, os.getpid(), started=None)
    barrier, won = threading.Barrier(len(ids)), []

    def claim(run_id: str) -> None:
        barrier.wait()
        for _ in range(20):
            if lifecycle.claim_slot(store, run_id, max_running=2):
                won.append(run_id)
                return
        store.close()

    threads = [threading.Thread(target=claim, args=(r,)) for r in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(ids[:2])  # exactly two, the oldest two
    assert len(store.runs_with_status("running")) == 2


# --- reaping --------------------------------------------------------------------------------


def test_reap_marks_dead_or_reused_pids_interrupted_and_keeps_rows(store: RunStore) -> None:
    dead, reused, alive = (store.create_run(ExperimentConfig()) for _ in range(3))
    for run_id in (dead, reused, alive):
        fill_run(store, run_id, epochs=1)
        _running(store, run_id)
    _set_worker(store, dead, _dead_pid())
    # Our own pid, but recorded with another start time: a different process reusing it.
    _set_worker(store, reused, os.getpid())
    assert sorted(lifecycle.reap(store)) == sorted([dead, reused])
    for run_id in (dead, reused):
        run = store.get_run(run_id)
        assert run.status == "interrupted" and "ended without finishing" in run.error
        assert "rows up to then are kept" in run.error
        assert len(store.curves(run_id, kind="batch")) == 6
    assert store.get_run(alive).status == "running"
    assert lifecycle.reap(store) == []


def test_reap_of_one_run_leaves_the_others(store: RunStore) -> None:
    one, other = store.create_run(ExperimentConfig()), store.create_run(ExperimentConfig())
    for run_id in (one, other):
        _running(store, run_id)
        _set_worker(store, run_id, _dead_pid())
    assert lifecycle.reap(store, one) == [one]
    assert store.get_run(other).status == "running"
    assert lifecycle.reap(store, other) == [other]


def test_reap_waits_before_judging_a_run_without_worker(store, monkeypatch) -> None:
    run_id = store.create_run(ExperimentConfig())
    assert lifecycle.reap(store) == []  # just created: its worker may be starting
    monkeypatch.setattr(lifecycle, "ORPHAN_AFTER_S", 0.0)
    assert lifecycle.reap(store) == [run_id]
    assert "no worker process" in store.get_run(run_id).error


def test_a_finished_run_is_never_reaped(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    _running(store, run_id)
    lifecycle.finish(store, run_id, "completed")
    _set_worker(store, run_id, _dead_pid())
    assert lifecycle.reap(store) == []
    assert store.get_run(run_id).status == "completed"


def test_the_job_manager_reaps_where_the_store_only_reads(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    _running(store, run_id)
    _set_worker(store, run_id, _dead_pid())
    assert store.get_run(run_id).status == "running"  # a read: no reaping
    assert [r.status for r in store.list_runs()] == ["running"]
    run = JobManager(store).status(run_id)
    assert run.status == "interrupted" and "ended without finishing" in run.error


def test_the_job_manager_deletes_a_dead_workers_run(store: RunStore) -> None:
    run_id = store.create_run(ExperimentConfig())
    _running(store, run_id)
    _set_worker(store, run_id, _dead_pid())
    JobManager(store).delete(run_id)
    assert store.list_runs() == []


# --- process liveness -----------------------------------------------------------------------


def test_process_alive() -> None:
    me = os.getpid()
    assert lifecycle.process_alive(me, None)
    assert lifecycle.process_alive(me, lifecycle._create_time(me))
    assert not lifecycle.process_alive(me, 1.0)  # another start time: a reused pid
    assert not lifecycle.process_alive(_dead_pid(), None)
    assert lifecycle._create_time(_dead_pid()) is None
