"""Run-store fixtures, and the test-only worker workloads.

Registered from ``conftest.py``. A workload stands in for ``pipelines.training.loop
.run_experiment`` in worker processes through ``PIPELINES_TEST_WORKLOAD`` (see
:mod:`pipelines.runs.worker`), so the job mechanics are tested without TensorFlow. Workers import
this module by name, so it must stay importable without pytest fixtures running.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig

STEPS_ENV = "PIPELINES_TEST_STEPS"
STEP_S_ENV = "PIPELINES_TEST_STEP_S"


def steady_workload(
    run_id: str, config: ExperimentConfig, store: RunStore, should_stop: Callable[[], bool]
) -> dict:
    """Per arm: ``PIPELINES_TEST_STEPS`` batch rows (default 10), one every
    ``PIPELINES_TEST_STEP_S`` s (default 0.05), then one epoch row; checks ``should_stop``
    every step like the trainer does."""
    steps = int(os.environ.get(STEPS_ENV, "10"))
    step_s = float(os.environ.get(STEP_S_ENV, "0.05"))
    start = time.monotonic()
    for arm in config.arms:
        store.log_event(run_id, f"{arm}: phase 1 started")
        for step in range(steps):
            if should_stop():
                return {"steps_done": step, "stopped": True}
            time.sleep(step_s)
            wall = time.monotonic() - start
            store.log_batch(
                run_id,
                arm,
                "feature_extraction",
                0,
                step,
                1.0 / (step + 1),
                0.5,
                wall,
                global_step=step,
            )
            store.set_progress(
                run_id, arm, {"phase": "feature_extraction", "epoch": 0, "step": step + 1}
            )
        store.log_epoch(
            run_id, arm, "feature_extraction", 0, 0.3, 0.8, 0.4, 0.75, steps * step_s, 100.0
        )
        store.save_result(run_id, arm, {"classes": ["a", "b"], "confusion": [[2, 0], [1, 1]]})
    return {"steps_done": steps, "stopped": False}


def failing_workload(run_id: str, config, store: RunStore, should_stop) -> dict:
    store.log_batch(run_id, "imagenet", "feature_extraction", 0, 0, 0.9, 0.5, 0.01)
    raise RuntimeError("boom")


def refusing_workload(run_id: str, config, store: RunStore, should_stop) -> dict:
    raise UserError("batch_size: 64 is larger than the training set")


def tiny_config(**changes) -> ExperimentConfig:
    config = ExperimentConfig()
    for key, value in changes.items():
        config.set(key, value)
    return config.validate()


def fill_run(store: RunStore, run_id: str, arms=("imagenet", "random"), epochs: int = 2) -> None:
    """Write a finished-looking run: batch and epoch rows per arm, events, results."""
    for arm in arms:
        for epoch in range(1, epochs + 1):
            for step in range(3):
                store.log_batch(
                    run_id, arm, "feature_extraction", epoch, step, 0.5, 0.6, epoch + step / 10
                )
            val = 0.6 + 0.1 * epoch if arm == "imagenet" else 0.5 + 0.01 * epoch
            store.log_epoch(
                run_id, arm, "feature_extraction", epoch, 0.5, 0.6, 0.45, val, 2.0, 50.0
            )
        store.save_result(run_id, arm, {"classes": ["a", "b"], "confusion": [[1, 0], [0, 1]]})
    store.log_event(run_id, "feature cache: hit")


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``RUNS_DIR`` for this test."""
    path = tmp_path / "runs"
    monkeypatch.setenv("RUNS_DIR", str(path))
    monkeypatch.delenv("MAX_RUNNING_EXPERIMENTS", raising=False)
    return path


@pytest.fixture
def store(runs_dir: Path) -> Iterator[RunStore]:
    s = RunStore()
    yield s
    s.close()


@pytest.fixture
def workload(monkeypatch: pytest.MonkeyPatch):
    """``workload(name, steps=10, step_s=0.05)`` selects a workload of this module for
    every worker started afterwards in this test."""

    def use(name: str = "steady_workload", steps: int = 10, step_s: float = 0.05) -> None:
        monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", f"tests.conftest_store:{name}")
        monkeypatch.setenv(STEPS_ENV, str(steps))
        monkeypatch.setenv(STEP_S_ENV, str(step_s))

    return use


@pytest.fixture
def job_manager(store: RunStore) -> Iterator:
    """A :class:`JobManager` (at most one running); workers still alive at the end of the
    test are killed."""
    from pipelines.runs.jobs import JobManager

    jm = JobManager(store, max_running=1)
    yield jm
    for proc in jm._children.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def start_at_once(managers: list, config: ExperimentConfig) -> list[str]:
    """Each :class:`JobManager` in ``managers`` starts ``config`` at the same instant, from
    its own thread (browser tabs pressing Start together); the run ids."""
    barrier, ids = threading.Barrier(len(managers)), []

    def press_start(jm) -> None:
        barrier.wait()
        ids.append(jm.start(config))

    threads = [threading.Thread(target=press_start, args=(jm,)) for jm in managers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids
