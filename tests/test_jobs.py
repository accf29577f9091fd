"""Worker processes and the job manager: spawning, the queue, stopping, killing, failures.

Workers run a test workload from ``tests.conftest_store`` (``PIPELINES_TEST_WORKLOAD``)
instead of real training, except in the last test.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.runs import lifecycle
from pipelines.runs.jobs import JobManager, max_running_from_env
from pipelines.runs.store import ACTIVE, RunStore
from pipelines.runs.worker import EXIT_COMPLETED, EXIT_REFUSED, EXIT_STOPPED, run_worker
from tests.conftest_store import start_at_once, tiny_config
from tests.served import until


def _batches(store: RunStore, run_id: str) -> int:
    return len(store.curves(run_id, kind="batch"))


def test_start_runs_a_worker_process_to_completion(job_manager: JobManager, store, workload):
    workload(steps=5, step_s=0.01)
    run_id = job_manager.start(tiny_config())
    run = job_manager.wait(run_id, timeout=30)
    assert run.status == "completed", run
    assert run.worker_pid != os.getpid()
    assert run.summary == {"steps_done": 5, "stopped": False}
    assert _batches(store, run_id) == 10
    assert store.result(run_id, "random")["confusion"] == [[2, 0], [1, 1]]
    messages = [e["message"] for e in store.events(run_id)]
    assert messages[0].startswith("started in worker process") and messages[-1] == "completed"
    assert "completed" in (store.artefact_dir(run_id) / "worker.log").read_text()


def test_two_starts_at_once_queue_and_run_in_order(store: RunStore, workload) -> None:
    """Two 'browser tabs', each with its own JobManager, press Start at the same instant."""
    workload(steps=8, step_s=0.05)
    managers = [JobManager(store, max_running=1) for _ in range(2)]
    ids = start_at_once(managers, tiny_config())
    assert len(ids) == 2
    started_order = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = {r.run_id: r for r in store.list_runs()}
        running = [i for i in ids if runs[i].status == "running"]
        assert len(running) <= 1, "two experiments running at once"
        for i in running:
            if i not in started_order:
                started_order.append(i)
        if all(runs[i].status not in ACTIVE for i in ids):
            break
        time.sleep(0.05)
    oldest_first = [r.run_id for r in reversed(store.list_runs())]
    assert [runs[i].status for i in oldest_first] == ["completed", "completed"]
    assert started_order == oldest_first
    for run_id in ids:
        assert _batches(store, run_id) == 16  # no rows lost
    second_events = [e["message"] for e in store.events(oldest_first[1])]
    assert second_events[0].startswith("queued: waiting for a free slot")


def test_graceful_stop_keeps_rows_and_marks_stopped(job_manager: JobManager, store, workload):
    workload(steps=10_000, step_s=0.02)
    run_id = job_manager.start(tiny_config())
    until(lambda: _batches(store, run_id) >= 5, what="first batches")
    asked = time.monotonic()
    assert job_manager.stop(run_id, timeout=10) == "stopped"
    assert time.monotonic() - asked < 5
    run = store.get_run(run_id)
    assert run.stop_requested and run.summary["stopped"] is True
    assert _batches(store, run_id) >= 5
    assert "stopped on request" in store.events(run_id)[-1]["message"]


def test_sigterm_stops_gracefully_instead_of_killing(job_manager: JobManager, store, workload):
    workload(steps=10_000, step_s=0.02)
    run_id = job_manager.start(tiny_config())
    proc = job_manager._children[run_id]
    until(lambda: _batches(store, run_id) >= 3, what="first batches")
    os.kill(proc.pid, signal.SIGTERM)
    run = job_manager.wait(run_id, timeout=10)
    assert run.status == "stopped"
    assert run.stop_requested  # the signal's request reached the store too
    assert proc.wait(timeout=5) == EXIT_STOPPED


def test_a_worker_whose_run_store_is_deleted_stops_instead_of_training_unseen(
    job_manager: JobManager, store, workload
):
    workload(steps=100_000, step_s=0.02)  # about an hour unless stopped
    run_id = job_manager.start(tiny_config())
    proc = job_manager._children[run_id]
    until(lambda: _batches(store, run_id) >= 3, what="first batches")
    log = store.artefact_dir(run_id) / "worker.log"
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    proc.wait(timeout=15)  # the heartbeat notices within HEARTBEAT_S
    assert "was deleted or replaced while this run trained" in log.read_text()


def test_stop_while_queued(job_manager: JobManager, store, workload) -> None:
    workload(steps=10_000, step_s=0.02)
    first = job_manager.start(tiny_config())
    second = job_manager.start(tiny_config())
    until(lambda: store.get_run(first).status == "running", what="first running")
    assert store.get_run(second).status == "queued"
    assert job_manager.stop(second, timeout=10) == "stopped"
    assert _batches(store, second) == 0
    assert job_manager.stop(first, timeout=10) == "stopped"
    assert job_manager.stop(first) == "stopped"  # stopping a finished run is harmless


def test_sigkilled_worker_is_reaped_interrupted_and_frees_its_slot(
    job_manager: JobManager, store, workload, monkeypatch
) -> None:
    workload(steps=10_000, step_s=0.02)
    doomed = job_manager.start(tiny_config())
    proc = job_manager._children[doomed]
    until(lambda: _batches(store, doomed) >= 5, what="first batches")
    monkeypatch.setenv("PIPELINES_TEST_STEPS", "3")  # the next worker gets a short run
    waiting = job_manager.start(tiny_config())
    until(lambda: store.get_run(waiting).status == "queued", what="second queued")
    os.kill(store.get_run(doomed).worker_pid, signal.SIGKILL)
    proc.wait(timeout=5)
    kept = _batches(store, doomed)
    assert store.get_run(doomed).status == "running"  # a store read does not reap
    run = job_manager.status(doomed)  # the job manager does
    assert run.status == "interrupted" and "ended without finishing" in run.error
    assert kept >= 5 and _batches(store, doomed) == kept
    assert job_manager.wait(waiting, timeout=20).status == "completed"


def test_kill_marks_stopped(job_manager: JobManager, store, workload) -> None:
    workload(steps=10_000, step_s=0.02)
    run_id = job_manager.start(tiny_config())
    proc = job_manager._children[run_id]
    until(lambda: _batches(store, run_id) >= 1, what="first batch")
    assert job_manager.kill(run_id) == "stopped"
    assert "killed" in store.get_run(run_id).error
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_failures_are_recorded_with_their_message(job_manager: JobManager, store, workload):
    workload("failing_workload")
    crashed = job_manager.start(tiny_config())
    run = job_manager.wait(crashed, timeout=20)
    assert run.status == "failed" and run.error == "RuntimeError: boom"
    assert _batches(store, crashed) == 1
    assert "Traceback" in (store.artefact_dir(crashed) / "worker.log").read_text()
    assert "RuntimeError: boom" in (store.artefact_dir(crashed) / "traceback.txt").read_text()
    workload("refusing_workload")
    refused = job_manager.start(tiny_config())
    run = job_manager.wait(refused, timeout=20)
    assert run.status == "failed"
    assert run.error == "batch_size: 64 is larger than the training set"


def test_run_worker_in_process_for_the_foreground_train_command(store, workload, capfd) -> None:
    workload(steps=3, step_s=0.0)
    run_id = store.create_run(tiny_config(arms="imagenet"))
    assert run_worker(run_id, store) == EXIT_COMPLETED
    assert capfd.readouterr() == ("", "")  # prints nothing: the train command reports
    run = store.get_run(run_id)
    assert run.status == "completed" and run.worker_pid == os.getpid()
    with pytest.raises(UserError, match="already completed"):
        run_worker(run_id, store)
    with pytest.raises(UserError, match="no run with id"):
        run_worker("20000101-000000-abcd", store)
    workload("refusing_workload")
    refused = store.create_run(tiny_config())
    assert run_worker(refused, store) == EXIT_REFUSED


def test_stop_requested_before_the_slot_is_free(store, workload) -> None:
    workload(steps=3, step_s=0.0)
    run_id = store.create_run(tiny_config())
    lifecycle.request_stop(store, run_id)
    assert run_worker(run_id, store) == EXIT_STOPPED
    assert store.get_run(run_id).status == "stopped"
    assert store.curves(run_id, kind="batch").empty


def test_max_running_from_env_and_argument(store, monkeypatch, workload) -> None:
    assert max_running_from_env() == 1
    monkeypatch.setenv("MAX_RUNNING_EXPERIMENTS", "3")
    assert JobManager(store).max_running == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("MAX_RUNNING_EXPERIMENTS", bad)
        with pytest.raises(UserError, match="MAX_RUNNING_EXPERIMENTS must be a whole number"):
            JobManager(store)
    workload(steps=10_000, step_s=0.02)
    jm = JobManager(store, max_running=2)
    ids = [jm.start(tiny_config()) for _ in range(2)]
    try:
        until(lambda: len(jm.running()) == 2, what="two running at once")
        assert jm.queued() == []
    finally:
        for run_id in ids:
            jm.stop(run_id, timeout=10)


@pytest.mark.slow
def test_worker_process_runs_real_training(
    job_manager: JobManager, store, tiny_image_folder: Path, monkeypatch
) -> None:
    monkeypatch.delenv("PIPELINES_TEST_WORKLOAD", raising=False)
    config = tiny_config(
        dataset=str(tiny_image_folder),
        image_size=64,
        **{"phase1.epochs": 1, "phase2.epochs": 0, "batch_size": 8},
    )
    run_id = job_manager.start(config)
    run = job_manager.wait(run_id, timeout=300)
    log = (store.artefact_dir(run_id) / "worker.log").read_text()
    assert run.status == "completed", f"{run.error}\n{log[-3000:]}"
    epochs = store.curves(run_id)
    assert set(epochs["arm"]) == set(config.arms)
    assert epochs["val_accuracy"].notna().all()
