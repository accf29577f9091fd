"""The warm worker pool (:mod:`pipelines.runs.pool`): runs back to back in one process, a
killed pool worker replaced, recycling between runs, ``WARM_WORKERS=0``, and Stop within
2 s during a long inference pass.

Pool workers run a test workload from ``tests.conftest_store`` (``PIPELINES_TEST_WORKLOAD``)
except in the tests marked ``slow``, which train for real (Lite0 at 32 px).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.runs import lifecycle, pool
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import RunStore
from pipelines.runs.worker import run_worker
from tests.conftest_store import tiny_config
from tests.served import until


def _batches(store: RunStore, run_id: str) -> int:
    return len(store.curves(run_id, kind="batch"))


def _pool_pids(store: RunStore) -> list[int]:
    return [w["pid"] for w in lifecycle.live_pool_workers(store)]


@pytest.fixture
def warm(store: RunStore) -> Iterator[JobManager]:
    """A job manager keeping one pool worker (one run at a time); every pool worker is
    retired, then killed, at the end."""
    jm = JobManager(store, max_running=1, warm_workers=1)
    yield jm
    with contextlib.suppress(Exception):  # e.g. the store was deleted
        jm.stop_pool()
    for proc in [*jm._pool, *jm._children.values()]:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_settings_from_env(monkeypatch) -> None:
    monkeypatch.delenv("WARM_WORKERS")  # conftest sets 0 for every test
    assert pool.warm_workers_from_env() == 0
    assert pool.warm_workers_from_env(default=1) == 1
    assert pool.max_runs_from_env() == pool.DEFAULT_WARM_WORKER_RUNS
    assert pool.max_mb_from_env() == pool.DEFAULT_WARM_WORKER_MAX_MB
    monkeypatch.setenv("WARM_WORKERS", "2")
    monkeypatch.setenv("WARM_WORKER_RUNS", "3")
    monkeypatch.setenv("WARM_WORKER_MAX_MB", "512.5")
    assert pool.warm_workers_from_env(default=1) == 2
    assert pool.max_runs_from_env() == 3
    assert pool.max_mb_from_env() == 512.5
    readers = {
        "WARM_WORKERS": pool.warm_workers_from_env,
        "WARM_WORKER_RUNS": pool.max_runs_from_env,
        "WARM_WORKER_MAX_MB": pool.max_mb_from_env,
    }
    for (name, read), bad in zip(readers.items(), ("-1", "0", "x"), strict=True):
        monkeypatch.setenv(name, bad)
        with pytest.raises(UserError, match=name):
            read()
        monkeypatch.delenv(name)


def test_a_warm_worker_runs_queued_runs_back_to_back(warm: JobManager, store, workload) -> None:
    workload(steps=5, step_s=0.01)
    assert warm.ensure_pool() == 1
    assert warm.ensure_pool() == 0  # already there: no second one
    (pid,) = _pool_pids(store)
    ids = [warm.start(tiny_config()) for _ in range(3)]
    runs = [warm.wait(run_id, timeout=60) for run_id in ids]
    assert [r.status for r in runs] == ["completed"] * 3, runs
    assert {r.worker_pid for r in runs} == {pid}  # one process, three runs
    assert not warm._children  # nothing spawned per run
    for run_id in ids:
        assert _batches(store, run_id) == 10
        log = (store.artefact_dir(run_id) / "worker.log").read_text()
        assert f"started in worker process {pid}" in log and "completed" in log
    until(lambda: store.pool_workers()[0]["runs_done"] == 3, what="runs counted")
    assert store.pool_workers()[0]["run_id"] is None  # idle again


def test_runs_wait_for_a_busy_pool_without_being_reaped(
    warm: JobManager, store, workload, monkeypatch
) -> None:
    workload(steps=10_000, step_s=0.02)
    first = warm.start(tiny_config())
    second = warm.start(tiny_config())
    until(lambda: store.get_run(first).status == "running", what="first running")
    monkeypatch.setattr(lifecycle, "ORPHAN_AFTER_S", 0.0)  # would reap an unclaimed run
    assert lifecycle.reap(store) == []
    assert warm.status(second).status == "queued" and store.get_run(second).worker_pid is None
    # Stop on a run still waiting for the pool: stopped at once, never trained.
    asked = time.monotonic()
    assert warm.stop(second) == "stopped"
    assert time.monotonic() - asked < 2
    assert warm.stop(first, timeout=10) == "stopped"
    assert _batches(store, second) == 0


def test_a_killed_pool_worker_is_replaced_and_the_queue_goes_on(
    warm: JobManager, store, workload, monkeypatch
) -> None:
    workload(steps=10_000, step_s=0.02)
    doomed = warm.start(tiny_config())
    until(lambda: _batches(store, doomed) >= 3, what="first batches")
    monkeypatch.setenv("PIPELINES_TEST_STEPS", "3")  # the replacement gets short runs
    waiting = warm.start(tiny_config())
    (pid,) = _pool_pids(store)
    os.kill(pid, signal.SIGKILL)
    run = warm.wait(doomed, timeout=20)
    assert run.status == "interrupted" and "ended without finishing" in run.error
    done = warm.wait(waiting, timeout=60)
    assert done.status == "completed", done
    assert done.worker_pid != pid and _pool_pids(store) == [done.worker_pid]


def test_a_worker_past_its_memory_bound_is_recycled_between_runs(
    warm: JobManager, store, workload, monkeypatch
) -> None:
    workload(steps=20, step_s=0.02)
    monkeypatch.setenv("WARM_WORKER_MAX_MB", "1")  # every worker is past it at once
    ids = [warm.start(tiny_config()) for _ in range(2)]
    runs = [warm.wait(run_id, timeout=60) for run_id in ids]
    assert [r.status for r in runs] == ["completed", "completed"], runs  # never cut short
    assert runs[0].worker_pid != runs[1].worker_pid
    assert all(_batches(store, r.run_id) == 40 for r in runs)
    log = (store.root / pool.POOL_LOG).read_text()
    assert f"pool worker {runs[0].worker_pid} exits: recycled: " in log


def test_a_worker_is_recycled_after_its_run_count(
    warm: JobManager, store, workload, monkeypatch
) -> None:
    workload(steps=2, step_s=0.0)
    monkeypatch.setenv("WARM_WORKER_RUNS", "2")
    ids = [warm.start(tiny_config()) for _ in range(3)]
    runs = [warm.wait(run_id, timeout=60) for run_id in ids]
    assert [r.status for r in runs] == ["completed"] * 3
    assert runs[0].worker_pid == runs[1].worker_pid != runs[2].worker_pid
    assert "recycled after 2 runs" in (store.root / pool.POOL_LOG).read_text()


def test_sigterm_stops_the_run_not_the_pool_worker(warm: JobManager, store, workload) -> None:
    workload(steps=10_000, step_s=0.02)
    run_id = warm.start(tiny_config())
    until(lambda: _batches(store, run_id) >= 3, what="first batches")
    (pid,) = _pool_pids(store)
    os.kill(pid, signal.SIGTERM)
    assert warm.wait(run_id, timeout=10).status == "stopped"
    assert store.get_run(run_id).stop_requested
    assert _pool_pids(store) == [pid]  # still serving


def test_a_deleted_store_stops_the_pool_workers(warm: JobManager, store, workload) -> None:
    workload(steps=100_000, step_s=0.02)
    run_id = warm.start(tiny_config())
    (proc,) = warm._pool
    until(lambda: _batches(store, run_id) >= 3, what="first batches")
    log = store.artefact_dir(run_id) / "worker.log"
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    assert proc.wait(timeout=15) == 0
    assert "was deleted or replaced while this run trained" in log.read_text()


def test_warm_workers_zero_spawns_one_process_per_run(store, workload) -> None:
    workload(steps=3, step_s=0.0)
    jm = JobManager(store, max_running=1)
    assert jm.warm_workers == 0
    run_id = jm.start(tiny_config())
    assert run_id in jm._children and not jm._pool
    spawned = jm._children[run_id].pid  # a worker of its own (collected once it exits)
    run = jm.wait(run_id, timeout=30)
    assert run.status == "completed" and run.worker_pid == spawned
    assert store.pool_workers() == []


def test_train_command_uses_a_live_pool(
    warm: JobManager, store, workload, tiny_data, lite0_handle
) -> None:
    workload(steps=3, step_s=0.0)
    warm.ensure_pool()
    (pid,) = _pool_pids(store)
    out = subprocess.run(
        [sys.executable, "-m", "pipelines", "train", "--set", f"dataset={tiny_data}", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUNS_DIR": str(store.root)},
    )
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout)
    assert result["status"] == "completed"
    assert store.get_run(result["run_id"]).worker_pid == pid
    assert "on the warm worker pool" in out.stderr
    assert "started in worker process" in out.stderr  # the run's events, followed


def test_stop_during_a_long_feature_pass_answers_within_2_s(
    store, tiny_data, lite0_handle, monkeypatch, tmp_path
) -> None:
    """The first feature pass (cold cache) stops between inference batches: each batch is
    slowed to 0.25 s, so the pass alone would take 8 s per arm."""
    from pipelines.training import arms
    from tests.conftest_engine import tiny_config as engine_config

    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    monkeypatch.setattr(arms, "PREDICT_BATCH", 1)
    check = arms.Arm._check_stop
    passes: list[float] = []

    def slow_check(self) -> None:
        passes.append(time.monotonic())
        time.sleep(0.25)
        check(self)

    monkeypatch.setattr(arms.Arm, "_check_stop", slow_check)
    run_id = store.create_run(engine_config(tiny_data, "phase2.epochs=0"))
    asked: list[float] = []

    def stop_during_the_pass() -> None:
        until(lambda: len(passes) >= 8, what="the feature pass under way", timeout=120)
        asked.append(time.monotonic())
        lifecycle.request_stop(store, run_id)

    stopper = threading.Thread(target=stop_during_the_pass)
    stopper.start()
    run_worker(run_id, store)
    answered = time.monotonic()
    stopper.join()
    run = store.get_run(run_id)
    assert run.status == "stopped", run
    assert answered - asked[0] < 2.0
    assert len(passes) < 20  # the pass did not run to its end
    messages = [e["message"] for e in store.events(run_id)]
    assert "stop requested during an inference pass" in messages


@pytest.mark.slow
def test_a_warm_worker_trains_for_real_and_the_second_run_is_quick(
    warm: JobManager, store, tiny_data, lite0_handle, monkeypatch, tmp_path
) -> None:
    """Two real runs (Lite0, 32 px, both arms, feature extraction) in one pool worker: the
    second one's first epoch row follows its submission within 2 s."""
    from tests.conftest_engine import tiny_config as engine_config

    monkeypatch.delenv("PIPELINES_TEST_WORKLOAD", raising=False)
    monkeypatch.setenv("FEATURE_CACHE_DIR", str(tmp_path / "features"))
    warm.ensure_pool()
    first = warm.start(engine_config(tiny_data, "phase2.epochs=0"))
    run = warm.wait(first, timeout=300)
    log = (store.artefact_dir(first) / "worker.log").read_text()
    assert run.status == "completed", f"{run.error}\n{log[-3000:]}"
    submitted = time.time()
    second = warm.start(engine_config(tiny_data, "phase2.epochs=0"))
    until(lambda: len(store.curves(second)) >= 1, timeout=60, what="the first epoch row")
    first_row = float(store.curves(second)["time"].min())
    done = warm.wait(second, timeout=120)
    assert done.status == "completed", done.error
    assert done.worker_pid == run.worker_pid  # the same warm process
    timeline = "\n".join(
        f"{e['time'] - submitted:6.2f} {e['message']}" for e in store.events(second)
    )
    # 2 s on a machine with a core to spare; 2.13 s was measured at load 7 on 2 cores.
    limit = 2.0 if os.getloadavg()[0] < (os.cpu_count() or 1) else 4.0
    assert first_row - submitted < limit, f"first row {first_row - submitted:.2f} s\n{timeline}"
    assert done.summary["arms"]["imagenet"]["epochs"] == 2
