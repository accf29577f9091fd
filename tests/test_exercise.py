"""Group exercises (:mod:`pipelines.runs.exercise`): names, rules, one active run per group,
the fair queue, closing with queued runs, the presenter's stop, and 30 groups in turn.

Where a run must exist without training, this test process registers itself as the warm
pool's worker (:func:`pipelines.runs.lifecycle.register_pool_worker`), so
:meth:`JobManager.start` only queues, and plays the worker's part of the protocol itself
(claim the oldest queued run, take the slot, finish). Elsewhere real worker processes run a
test workload.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator

import pytest

from pipelines.errors import UserError
from pipelines.runs import exercise as ex
from pipelines.runs import lifecycle
from pipelines.runs.jobs import JobManager
from pipelines.runs.store import SCHEMA_VERSION, RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_store import tiny_config
from tests.served import until


@pytest.fixture
def queue_only(store: RunStore) -> Iterator[JobManager]:
    """A job manager whose starts only queue: this process is the 'pool worker'."""
    lifecycle.register_pool_worker(store, os.getpid())
    yield JobManager(store, max_running=1)
    lifecycle.unregister_pool_worker(store, os.getpid())


def seminar(store: RunStore, name: str = "Seminar") -> ex.Exercise:
    return ex.open_exercise(store, name, ex.Rules(base=tiny_config().to_dict()))


def free(store: RunStore, **limits) -> ex.Exercise:
    base = tiny_config(**{"train_per_class": 20}).to_dict()
    rules = ex.Rules(mode="free", base=base, **limits)
    return ex.open_exercise(store, "Free", rules)


def serve_next(store: RunStore) -> str:
    """Be the pool worker once: the oldest queued run, through slot to completed."""
    run_id = lifecycle.claim_next_queued(store, os.getpid())
    assert run_id is not None
    assert lifecycle.claim_slot(store, run_id, 1)
    assert lifecycle.finish(store, run_id, "completed")
    return run_id


# --- bad input: one clear message each, nothing stored ----------------------------------------

BAD_NAMES = [
    ("", "empty; type a name"),
    ("   ", "empty; type a name"),
    ("x" * 41, "too long (41 characters); use at most 40"),
    ("<b>Table</b>", "no markup please (< > not allowed)"),
    ("**bold**", "no markup please (* not allowed)"),
    ("[link](http://x)", "no markup please"),
    (":red[red]", "no markup please"),
    ("$x^2$", "no markup please"),
    ("two\nlines", "line break or control character"),
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_a_bad_group_name_is_refused_with_its_own_message(store, name, message):
    exercise = seminar(store)
    with pytest.raises(UserError, match="^group name: ") as refused:
        ex.join(store, exercise.exercise_id, name)
    assert message in str(refused.value)
    assert ex.groups(store, exercise.exercise_id) == []  # nothing stored


def test_a_taken_group_name_is_refused_whatever_its_case_and_spaces(store):
    exercise = seminar(store)
    first = ex.join(store, exercise.exercise_id, "  Table   one ")
    assert first.name == "Table one"
    for again in ("table one", "TABLE  ONE"):
        with pytest.raises(UserError, match="“table one”|“TABLE ONE”") as refused:
            ex.join(store, exercise.exercise_id, again)
        assert "is taken in this exercise; choose another" in str(refused.value)
    assert [g.name for g in ex.groups(store, exercise.exercise_id)] == ["Table one"]
    assert ex.join(store, exercise.exercise_id, "Ümlaut-Gruppe 2, ok?").name  # letters etc.


def test_a_group_continues_on_another_device_with_its_code_only(store):
    exercise = seminar(store)
    joined = ex.join(store, exercise.exercise_id, "Table one")
    assert len(joined.code) == 6 and "code" not in repr(joined)
    again = ex.rejoin(store, exercise.exercise_id, "TABLE ONE", f" {joined.code.upper()} ")
    assert again.name == "Table one"
    for wrong in ("", "000000", joined.code[:5]):
        with pytest.raises(UserError, match="group “Table one”: wrong code"):
            ex.rejoin(store, exercise.exercise_id, "Table one", wrong)
    with pytest.raises(UserError, match="no group “Table two”"):
        ex.rejoin(store, exercise.exercise_id, "Table two", joined.code)


def test_seminar_sides_alternate_and_each_side_trains_its_arm_only(store, queue_only):
    exercise = seminar(store)
    sides = [ex.join(store, exercise.exercise_id, f"G{i}").side for i in range(4)]
    assert sides == ["A", "B", "A", "B"]
    assert ex.join(store, exercise.exercise_id, "Chosen", side="B").side == "B"
    with pytest.raises(UserError, match="side: choose A .* or B"):
        ex.join(store, exercise.exercise_id, "Nowhere", side="C")
    rules = exercise.rules
    assert rules.config_for("A").arms == ["imagenet"]
    assert rules.config_for("B").arms == ["random"]
    run_id = ex.start_run(queue_only, exercise.exercise_id, "G1", rules.config_for("B"))
    run = store.get_run(run_id)
    assert (run.exercise_id, run.group_name) == (exercise.exercise_id, "G1")  # recorded
    assert run.config.arms == ["random"]
    assert run.to_dict()["group_name"] == "G1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arms": ["imagenet", "random"]}, "arms: fixed at imagenet in this exercise"),
        ({"arms": ["random"]}, "arms: fixed at imagenet in this exercise (you chose random)"),
        ({"phase1.lr": 0.01}, "phase1.lr: fixed at 0.001 in this exercise (you chose 0.01)"),
        ({"phase1.epochs": 9}, "phase1.epochs: fixed at 3"),
    ],
)
def test_a_seminar_choice_outside_the_rules_is_refused_and_creates_no_run(
    store, queue_only, change, message
):
    exercise = seminar(store)
    ex.join(store, exercise.exercise_id, "Alpha", side="A")
    config = exercise.rules.config_for("A")
    for key, value in change.items():
        config.set(key, value)
    with pytest.raises(UserError) as refused:
        ex.start_run(queue_only, exercise.exercise_id, "Alpha", config)
    assert message in str(refused.value)
    assert store.list_runs() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"phase1.epochs": 3, "phase2.epochs": 2},
            "phase1.epochs + phase2.epochs: 5 epochs is above this exercise's limit of 4",
        ),
        ({"train_per_class": None}, "train_per_class: at most 20 images per class in this"),
        ({"train_per_class": 50}, "(you chose 50)"),
        ({"backbone": "efficientnet_lite2"}, "backbone: efficientnet_lite2 is not allowed"),
        ({"dataset": "chest_xray_pneumonia"}, "dataset: this exercise uses horses_or_humans"),
    ],
)
def test_a_free_choice_outside_the_limits_is_refused_and_creates_no_run(
    store, queue_only, change, message
):
    exercise = free(
        store,
        max_epochs=4,
        max_train_per_class=20,
        backbones=("efficientnet_lite0", "efficientnet_lite1"),
    )
    ex.join(store, exercise.exercise_id, "Free spirits")
    config = exercise.rules.config_for(None)
    assert config.phase1.epochs + config.phase2.epochs == 4  # the base, brought within
    for key, value in change.items():
        config.set(key, value)
    with pytest.raises(UserError) as refused:
        ex.start_run(queue_only, exercise.exercise_id, "Free spirits", config)
    assert message in str(refused.value)
    assert store.list_runs() == []
    config = exercise.rules.config_for(None)
    config.set("backbone", "efficientnet_lite1")
    config.set("phase1.lr", 0.01)  # free
    assert ex.start_run(queue_only, exercise.exercise_id, "Free spirits", config)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (ex.Rules(mode="chaos"), "exercise mode: 'chaos' is not one of seminar, free"),
        (ex.Rules(mode="free", max_epochs=0), "max epochs: must be between 1 and"),
        (ex.Rules(mode="free", max_train_per_class=0), "max images per class: must be at least"),
        (
            ex.Rules(mode="free", backbones=("efficientnet_lite1",)),
            "the exercise's own backbone efficientnet_lite0 must be one of them",
        ),
        (ex.Rules(base={"phase1": {"lr": -1}}), "phase1.lr: must be a positive number"),
    ],
)
def test_rules_that_make_no_sense_are_refused(store, rules, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ex.open_exercise(store, "Rules", rules)
    assert ex.current(store) is None


def test_one_exercise_at_a_time_and_its_name_is_checked_like_a_group_name(store):
    with pytest.raises(UserError, match="^exercise name: empty"):
        ex.open_exercise(store, " ", ex.Rules())
    first = seminar(store, "Morning")
    with pytest.raises(UserError, match="the exercise “Morning” is still open; close it first"):
        seminar(store, "Afternoon")
    ex.close(store, first.exercise_id)
    assert ex.current(store).exercise_id == first.exercise_id  # closed, still shown
    second = seminar(store, "Afternoon")
    assert ex.current(store).exercise_id == second.exercise_id


def test_a_second_run_of_a_group_while_one_is_active_is_refused(store, queue_only):
    exercise = seminar(store)
    ex.join(store, exercise.exercise_id, "Alpha", side="A")
    ex.join(store, exercise.exercise_id, "Beta", side="B")
    config = exercise.rules.config_for("A")
    first = ex.start_run(queue_only, exercise.exercise_id, "alpha", config)  # any case
    with pytest.raises(UserError, match=f"group “Alpha” already has a run queued \\({first}\\)"):
        ex.start_run(queue_only, exercise.exercise_id, "Alpha", config)
    ex.start_run(queue_only, exercise.exercise_id, "Beta", exercise.rules.config_for("B"))
    assert lifecycle.claim_next_queued(store, os.getpid()) == first
    assert lifecycle.claim_slot(store, first, 1)
    with pytest.raises(UserError, match="already has a run running"):
        ex.start_run(queue_only, exercise.exercise_id, "Alpha", config)
    assert len(store.runs_of_exercise(exercise.exercise_id)) == 2
    lifecycle.finish(store, first, "completed")
    again = ex.start_run(queue_only, exercise.exercise_id, "Alpha", config)  # its turn again
    assert [r.run_id for r in store.runs_of_exercise(exercise.exercise_id)][-1] == again
    with pytest.raises(UserError, match="no group “Gamma” in this exercise; join first"):
        ex.start_run(queue_only, exercise.exercise_id, "Gamma", config)


def test_closing_cancels_queued_runs_with_a_reason_and_keeps_their_rows(store, queue_only):
    exercise = seminar(store, "Monday")
    for name in ("One", "Two", "Three"):
        ex.join(store, exercise.exercise_id, name)
    ids = {
        g.name: ex.start_run(
            queue_only, exercise.exercise_id, g.name, exercise.rules.config_for(g.side)
        )
        for g in ex.groups(store, exercise.exercise_id)
    }
    running = lifecycle.claim_next_queued(store, os.getpid())
    assert running == ids["One"] and lifecycle.claim_slot(store, running, 1)
    cancelled = ex.close(store, exercise.exercise_id)
    assert cancelled == [ids["Two"], ids["Three"]]
    reason = "cancelled: the exercise “Monday” was closed before this run started"
    for name in ("Two", "Three"):
        run = store.get_run(ids[name])  # the row is kept
        assert run.status == "stopped" and run.error.startswith(reason)
        assert run.group_name == name and run.config is not None
        assert store.events(ids[name])[-1]["message"].startswith(reason)  # in its log
    assert store.get_run(running).status == "running"  # a running run finishes
    assert lifecycle.claim_next_queued(store, os.getpid()) is None  # nothing left to take
    with pytest.raises(UserError, match="the exercise “Monday” is closed; no new groups"):
        ex.join(store, exercise.exercise_id, "Late")
    with pytest.raises(UserError, match="is closed"):
        ex.start_run(queue_only, exercise.exercise_id, "One", exercise.rules.config_for("A"))
    assert ex.stop_group_run(store, exercise.exercise_id, "One") == running  # the presenter
    assert store.get_run(running).stop_requested
    assert ex.stop_group_run(store, exercise.exercise_id, "Two") is None  # nothing active


# --- the fair queue --------------------------------------------------------------------------


def test_the_queue_serves_the_groups_in_turn_even_when_one_keeps_pressing_start(store, queue_only):
    """One run at a time, FIFO claiming and one active run per group: every group that
    is waiting runs before any group runs twice, whatever the order of the Starts."""
    exercise = seminar(store)
    names = [f"G{i}" for i in range(5)]
    for name in names:
        ex.join(store, exercise.exercise_id, name)
    sides = {g.name: g.side for g in ex.groups(store, exercise.exercise_id)}
    config = {name: exercise.rules.config_for(sides[name]) for name in names}
    served: list[str] = []
    late = "Late"
    for round_ in range(20):
        if round_ == 7:  # a group that joins late waits at most one turn of the others
            ex.join(store, exercise.exercise_id, late)
            sides[late] = ex.group(store, exercise.exercise_id, late).side
            config[late] = exercise.rules.config_for(sides[late])
            names.append(late)
            late_queued_at = len(served)
        # Every group without an active run presses Start (greedy G0 first, and again:
        # it is refused while its run waits); the order rotates, so no one is favoured.
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in ["G0", *order]:
            with contextlib.suppress(UserError):
                ex.start_run(queue_only, exercise.exercise_id, name, config[name])
        run_id = serve_next(store)
        served.append(store.get_run(run_id).group_name)
    # Before the late group: any 5 consecutive runs are the 5 groups, each once.
    for start in range(0, late_queued_at - 5 + 1):
        assert len(set(served[start : start + 5])) == 5, served
    # The late group waits behind the 5 already queued at most, then all 6 take turns.
    assert served.index(late) - late_queued_at <= 5, served
    for start in range(late_queued_at, len(served) - 6 + 1):
        assert len(set(served[start : start + 6])) == 6, served
    assert served.count("G0") <= served.count("G4") + 1  # pressing Start more gains nothing


# --- the store ---------------------------------------------------------------------------------


def test_a_schema_4_store_gains_exercises_and_keeps_its_runs(store):
    run_id = store.create_run(ExperimentConfig(), sweep_id="s", trial=0)
    store.close()
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("DROP TABLE exercises")
    conn.execute("DROP TABLE exercise_groups")
    conn.execute("ALTER TABLE runs DROP COLUMN exercise_id")
    conn.execute("ALTER TABLE runs DROP COLUMN group_name")
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    reopened = RunStore(store.root)
    run = reopened.get_run(run_id)
    assert run.sweep_id == "s" and run.group_name is None and run.exercise_id is None
    exercise = seminar(reopened)
    assert ex.join(reopened, exercise.exercise_id, "After").name == "After"
    version = sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION
    reopened.close()


# --- 30 groups, one run at a time, real worker processes -----------------------------------


@pytest.mark.slow
def test_thirty_groups_each_get_their_run_in_order_and_none_is_lost(store, workload, monkeypatch):
    """The seminar-room load: 30 groups join and press Start; one warm pool worker runs
    them one at a time (a test workload: no TensorFlow), in the order they were queued.
    The pool worker is recycled twice on the way (every 10 runs) and the runs still
    queued count as orphans after 1 s here: polling must replace the worker before it
    reaps, or they would be lost as ``interrupted``."""
    workload(steps=2, step_s=0.01)
    monkeypatch.setenv("WARM_WORKER_RUNS", "10")
    monkeypatch.setattr(lifecycle, "ORPHAN_AFTER_S", 1.0)
    jobs = JobManager(store, max_running=1, warm_workers=1)
    try:
        jobs.ensure_pool()
        exercise = seminar(store)
        names = [f"Group {i:02d}" for i in range(30)]
        started = []
        for name in names:
            side = ex.join(store, exercise.exercise_id, name).side
            started.append(
                ex.start_run(jobs, exercise.exercise_id, name, exercise.rules.config_for(side))
            )

        def all_done():
            jobs.queued()  # polls like the dashboard: reaps, tops the pool up
            runs = store.runs_of_exercise(exercise.exercise_id)
            return all(not r.active for r in runs) and runs

        runs = until(all_done, timeout=240, what="30 group runs", every=0.2)
        assert [r.run_id for r in runs] == started  # every run is there, none lost
        assert [r.status for r in runs] == ["completed"] * 30, [r.error for r in runs if r.error]
        assert [r.group_name for r in runs] == names
        # In order: each run started (its first event) after the previous one ended.
        firsts = [store.events(r.run_id)[0]["time"] for r in runs]
        lasts = [store.events(r.run_id)[-1]["time"] for r in runs]
        assert all(firsts[i + 1] >= lasts[i] for i in range(29))
        for run in runs:
            assert len(store.curves(run.run_id)) == 1  # its one arm's epoch row
    finally:
        jobs.stop_pool()
        for proc in jobs._pool:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        time.sleep(0)
