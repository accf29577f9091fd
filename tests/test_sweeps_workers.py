"""Sweep workers (pipelines/sweeps/worker.py, trial.py, study.py) as separate processes on
one study: the budget exactly, no grid point twice, the same results as one worker, pruning
to a ``pruned`` run with its rows, a killed worker's trial run ``interrupted`` while the
sweep goes on, Stop, Force stop of workers that ignore Stop (runs ``stopped`` with their
rows, trials failed, nothing re-run), and a trial stopped from its run (skipped: shown as
stopped, not re-run, the sweep goes on). The trials run ``tests/sweep_workload.py`` (no
TensorFlow): these tests are about the workers, the study and the run store;
``test_sweeps_real.py`` trains."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from pipelines.runs import lifecycle
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import RunStore
from pipelines.sweeps import (
    SweepSpec,
    best_trial,
    force_stop,
    list_sweeps,
    parse_param,
    start_sweep,
    stop_sweep,
    sweep_state_of,
    sweep_trials,
)
from pipelines.sweeps.control import KILLED
from pipelines.sweeps.study import STOPPED_BY_USER
from tests.sweep_workload import EPOCH_S_ENV

WORKLOAD = "tests.sweep_workload:curve_workload"


@pytest.fixture
def sweep_env(runs_dir, tiny_data, monkeypatch) -> Iterator[str]:
    """The test workload in every worker; workers still alive at the end are killed."""
    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", WORKLOAD)
    monkeypatch.setenv(EPOCH_S_ENV, "0.05")
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    yield tiny_data
    for child in psutil.Process().children(recursive=True):
        try:
            if "sweep-worker" in " ".join(child.cmdline()):
                child.kill()
        except psutil.Error:  # already ended
            continue


def grid(data: str, lrs: str, **changes) -> SweepSpec:
    fixed = {"dataset": data, "phase1.epochs": 3, "phase2.epochs": 0, **changes.pop("fixed", {})}
    return SweepSpec(
        params=(parse_param(f"phase1.lr={lrs}"), parse_param("batch_size=4,8")),
        fixed=fixed,
        sampler=changes.pop("sampler", "grid"),
        **changes,
    )


def wait_for(sweep_id: str, states=("finished", "stopped"), timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while (state := sweep_state_of(sweep_id)) not in states:
        assert time.monotonic() < deadline, f"sweep still {state}: {sweep_trials(sweep_id)}"
        time.sleep(0.2)
    return state


def wait_until(check, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def results(sweep_id: str) -> dict[tuple, float]:
    return {
        tuple(sorted(t["params"].items())): t["value"]
        for t in sweep_trials(sweep_id)
        if t["state"] == "COMPLETE"
    }


def test_two_workers_run_each_grid_point_once_with_one_workers_results(sweep_env, monkeypatch):
    monkeypatch.setenv(EPOCH_S_ENV, "0.5")  # 1.5 s a trial: the second worker has time to join
    spec = grid(sweep_env, "1e-4,1e-3,1e-2")
    two = start_sweep(spec, workers=2)
    assert wait_for(two) == "finished"
    trials = sweep_trials(two)
    points = [tuple(sorted(t["params"].items())) for t in trials]
    assert len(trials) == spec.budget() == 6 and len(set(points)) == 6
    assert {t["state"] for t in trials} == {"COMPLETE"}
    store = RunStore()
    runs = store.runs_in_sweep(two)
    assert sorted(r.trial for r in runs) == list(range(6))
    assert {r.status for r in runs} == {"completed"}
    assert {r.run_id for r in runs} == {t["run_id"] for t in trials}
    for t in trials:  # what a machine without this run store shows: both arms' curves
        assert len(t["curves"]["imagenet"]) == len(t["curves"]["random"]) == 3
    assert len({r.worker_pid for r in runs}) == 2, "both workers took trials"

    one = start_sweep(spec, workers=1)
    assert wait_for(one) == "finished"
    assert results(one) == results(two)
    best = best_trial(two)
    assert best["params"]["phase1.lr"] == 1e-2 and best["value"] == max(results(two).values())
    listed = list_sweeps()
    assert [s["sweep_id"] for s in listed] == [one, two]  # newest first
    assert listed[1]["state"] == "finished" and listed[1]["trials"] == 6


def test_random_sweeps_draw_the_same_points_whoever_takes_them(sweep_env):
    spec = SweepSpec(
        params=(parse_param("phase1.lr=1e-4:1e-2:log"), parse_param("batch_size=2:8")),
        fixed={"dataset": sweep_env, "phase1.epochs": 2, "phase2.epochs": 0},
        sampler="random",
        trials=5,
        seed=7,
        pruner="none",
    )
    two, one = start_sweep(spec, workers=2), start_sweep(spec, workers=1)
    wait_for(two), wait_for(one)
    by_number = [{t["number"]: t["params"] for t in sweep_trials(s)} for s in (two, one)]
    assert by_number[0] == by_number[1] and len(by_number[0]) == 5


def test_a_clearly_worse_trial_is_pruned_and_its_run_keeps_its_rows(sweep_env, monkeypatch):
    monkeypatch.setenv(EPOCH_S_ENV, "1.0")  # the run's stop request lands within an epoch
    spec = SweepSpec(
        params=(parse_param("phase1.lr=1e-2,5e-3,2e-3,1e-5"),),
        fixed={"dataset": sweep_env, "phase1.epochs": 4, "phase2.epochs": 0},
        sampler="grid",
    )
    sweep_id = start_sweep(spec, workers=1)
    wait_for(sweep_id)
    trials = sweep_trials(sweep_id)
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    pruned = trials[3]
    store = RunStore()
    run = store.get_run(pruned["run_id"])
    assert run.status == "pruned" and run.finished
    rows = store.curves(run.run_id)
    assert 2 <= len(rows[rows.arm == "imagenet"]) < 4  # every epoch row up to the prune
    assert pruned["curves"]["imagenet"] == list(rows[rows.arm == "imagenet"].val_accuracy)
    assert any("pruned by the sweep" in e["message"] for e in store.events(run.run_id))


def test_a_killed_worker_leaves_its_run_interrupted_and_the_sweep_goes_on(sweep_env, monkeypatch):
    monkeypatch.setenv(EPOCH_S_ENV, "0.5")
    spec = grid(sweep_env, "1e-3,1e-2", pruner="none")
    sweep_id = start_sweep(spec, workers=2)

    def running_trial():
        return next(
            (t for t in sweep_trials(sweep_id) if t["state"] == "RUNNING" and t["run_id"]), None
        )

    victim = wait_until(running_trial, what="a running trial")
    store = RunStore()
    run = store.get_run(victim["run_id"])
    os.kill(run.worker_pid, signal.SIGKILL)
    assert wait_for(sweep_id) == "finished"
    lifecycle.reap(store)
    assert store.get_run(victim["run_id"]).status == "interrupted"
    trials = sweep_trials(sweep_id)
    failed = [t for t in trials if t["state"] == "FAIL"]
    assert [t["number"] for t in failed] == [victim["number"]]
    assert "interrupted" in failed[0]["error"]
    retried = [t for t in trials if t["retry_of"] == victim["number"]]
    assert len(retried) == 1 and retried[0]["params"] == victim["params"]
    assert retried[0]["state"] == "COMPLETE"
    assert sum(t["state"] == "COMPLETE" for t in trials) == spec.budget() == 4


def test_stop_ends_the_sweep_and_stops_its_running_trial(sweep_env, monkeypatch):
    monkeypatch.setenv(EPOCH_S_ENV, "1.0")
    sweep_id = start_sweep(grid(sweep_env, "1e-3,1e-2"), workers=1)
    running = wait_until(
        lambda: next((t for t in sweep_trials(sweep_id) if t["run_id"]), None), what="a trial"
    )
    stop_sweep(sweep_id)
    assert wait_for(sweep_id, timeout=30) == "stopped"
    trials = sweep_trials(sweep_id)
    assert RunStore().get_run(running["run_id"]).status == "stopped"
    assert {t["state"] for t in trials} == {"FAIL"}
    assert all(t["error"] == "the sweep was stopped" for t in trials)  # running or waiting


STUBBORN = "tests.sweep_workload:stubborn_workload"


def started_with_a_running_trial(data: str, epochs: int, workers: int):
    """A 4-point grid (phase1.lr x batch_size, no pruning) once a trial runs: ``(spec,
    sweep_id, the running trial)``."""
    spec = grid(data, "1e-3,1e-2", pruner="none", fixed={"phase1.epochs": epochs})
    sweep_id = start_sweep(spec, workers=workers)

    def running() -> dict | None:
        trials = sweep_trials(sweep_id)
        return next((t for t in trials if t["state"] == "RUNNING" and t["run_id"]), None)

    return spec, sweep_id, wait_until(running, what="a running trial")


def test_force_stop_kills_a_worker_that_ignores_stop_and_keeps_its_rows(sweep_env, monkeypatch):
    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", STUBBORN)
    monkeypatch.setenv(EPOCH_S_ENV, "0.5")
    spec, sweep_id, victim = started_with_a_running_trial(sweep_env, 40, 1)
    store = RunStore()
    run = store.get_run(victim["run_id"])
    stop_sweep(sweep_id)
    time.sleep(3.0)  # the worker has seen the Stop (every 2 s) and goes on regardless
    assert sweep_state_of(sweep_id) == "stopping"
    assert lifecycle.process_alive(run.worker_pid, run.worker_started)

    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "sweeps", "stop", sweep_id, "--force", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {"killed": [run.worker_pid], "trials": [victim["number"]], "elsewhere": []}
    assert not lifecycle.process_alive(run.worker_pid, run.worker_started)
    assert sweep_state_of(sweep_id) == "stopped"
    lifecycle.reap(store)
    after = store.get_run(victim["run_id"])
    assert after.status == "stopped" and after.error == KILLED
    assert len(store.curves(victim["run_id"])) >= 2  # the epochs before the kill are kept
    trials = {t["number"]: t for t in sweep_trials(sweep_id)}
    assert trials[victim["number"]]["state"] == "FAIL"
    assert trials[victim["number"]]["error"] == KILLED
    assert trials[victim["number"]]["run_status"] == "stopped"
    assert not any(t["retry_of"] is not None for t in trials.values())  # nothing re-run
    assert {t["state"] for t in trials.values()} == {"FAIL"}


def test_force_stop_of_a_sweep_with_nothing_left_to_kill_just_stops_it(sweep_env):
    sweep_id = start_sweep(grid(sweep_env, "1e-3,1e-2"), workers=0)
    assert force_stop(sweep_id) == {"killed": [], "trials": [], "elsewhere": []}
    assert sweep_state_of(sweep_id) == "stopped"


def test_a_trial_stopped_from_its_run_is_skipped_not_failed_and_not_rerun(
    sweep_env, monkeypatch, capsys
):
    from pipelines.commands.sweeps import run_show

    monkeypatch.setenv(EPOCH_S_ENV, "0.5")
    spec, sweep_id, victim = started_with_a_running_trial(sweep_env, 6, 1)
    store = RunStore()
    lifecycle.request_stop(store, victim["run_id"])  # the Runs page's Stop (state.request_stop)
    assert wait_for(sweep_id) == "finished"  # the sweep went on without it
    assert store.get_run(victim["run_id"]).status == "stopped"
    trials = sweep_trials(sweep_id)
    skipped = [t for t in trials if t["stopped_by_user"]]
    assert [t["number"] for t in skipped] == [victim["number"]]
    assert skipped[0]["state"] == "FAIL" and skipped[0]["error"] == STOPPED_BY_USER
    assert not any(t["retry_of"] is not None for t in trials)
    assert sum(t["state"] == "COMPLETE" for t in trials) == spec.budget() - 1 == 3

    run_show(argparse.Namespace(sweep_id=sweep_id, storage=None, json=False))
    line = next(x for x in capsys.readouterr().out.splitlines() if victim["run_id"] in x)
    assert line.split()[:2] == [str(victim["number"]), "STOPPED"], line
    assert STOPPED_BY_USER in line


def test_a_trial_force_stopped_from_its_run_is_skipped_too(sweep_env, monkeypatch):
    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", STUBBORN)
    monkeypatch.setenv(EPOCH_S_ENV, "0.3")
    spec, sweep_id, victim = started_with_a_running_trial(sweep_env, 3, 2)
    store = RunStore()
    pid = store.get_run(victim["run_id"]).worker_pid
    JobManager(store).kill(victim["run_id"])  # the run view's Force stop: its worker dies
    assert store.get_run(victim["run_id"]).status == "stopped"
    assert wait_for(sweep_id) == "finished"  # the other worker finishes the rest
    trials = sweep_trials(sweep_id)
    [skipped] = [t for t in trials if t["number"] == victim["number"]]
    assert skipped["stopped_by_user"] and skipped["error"] == STOPPED_BY_USER, skipped
    assert not any(t["retry_of"] is not None for t in trials)
    assert sum(t["state"] == "COMPLETE" for t in trials) == 3
    assert not lifecycle.process_alive(pid, None)
