"""The Groups page and a group's limited Setup form under AppTest, and the board's pure
figure builders (:mod:`dashboard.groups_figures`).

Runs on the board are written straight into the store (no training); the one Start test
runs a worker process with a test workload.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from streamlit import config as st_config

from dashboard import groups_figures
from pipelines.runs import exercise as ex
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig
from tests.served import until

GROUPS_PAGE = "views/groups.py"
EXPERIMENT_PAGE = "views/experiment.py"


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at, kind: str) -> str:
    return " | ".join(str(e.value) for e in getattr(at, kind))


def groups_page(app):
    at = app()
    at.switch_page(GROUPS_PAGE)
    return ok(at.run())


def seminar_exercise(store: RunStore, **base) -> ex.Exercise:
    config = ExperimentConfig()
    for key, value in base.items():
        config.set(key, value)
    return ex.open_exercise(store, "Horses", ex.Rules(base=config.validate().to_dict()))


def group_run(store: RunStore, exercise: ex.Exercise, name: str, vals, status="completed"):
    """A run of group ``name`` (its side's arm) with one epoch row per value in ``vals``."""
    side = ex.group(store, exercise.exercise_id, name).side
    config = exercise.rules.config_for(side)
    run_id = store.create_run(
        config, status="running", exercise_id=exercise.exercise_id, group_name=name
    )
    for epoch, val in enumerate(vals):
        store.log_epoch(
            run_id, config.arms[0], "feature_extraction", epoch, 0.5, 0.7, 0.5, val, 1, 9
        )
    if status != "running":
        lifecycle.finish(store, run_id, status)
    return run_id


@pytest.fixture
def shared_server():
    """The server as bound to every address (roles apply: a session is a viewer)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", before)


# --- the page -------------------------------------------------------------------------------


def test_the_presenter_opens_a_seminar_exercise_from_the_page(app, dashboard_env):
    at = groups_page(app)
    assert "No exercise yet" in texts(at, "info")
    at.text_input(key="groups.open.name").set_value("Monday seminar")
    at.button(key="groups.open.submit").click()
    ok(at.run())
    exercise = ex.current(dashboard_env.store)
    assert exercise.name == "Monday seminar" and exercise.is_open
    assert exercise.rules.mode == "seminar"
    assert "Monday seminar" in texts(at, "subheader")
    assert "0 groups · 0 runs finished" in texts(at, "caption")


def test_joining_a_bad_name_is_refused_and_a_good_one_gives_the_limited_form(app, dashboard_env):
    exercise = seminar_exercise(dashboard_env.store)
    ex.join(dashboard_env.store, exercise.exercise_id, "Taken")
    at = groups_page(app)
    for name, message in [
        ("", "group name: empty"),
        ("<i>x</i>", "group name: no markup please"),
        ("taken", "group name: “taken” is taken"),
        ("y" * 45, "group name: too long (45 characters)"),
    ]:
        at.text_input(key="groups.join.name").set_value(name)
        at.button(key="groups.join.submit").click()
        ok(at.run())
        assert message in texts(at, "error"), name
    assert [g.name for g in ex.groups(dashboard_env.store, exercise.exercise_id)] == ["Taken"]
    at.text_input(key="groups.join.name").set_value("Team Pferd")
    at.radio(key="groups.join.side").set_value("B")
    at.button(key="groups.join.submit").click()
    ok(at.run())
    assert "You are group Team Pferd · B: random weights" in texts(at, "success")
    code = ex.group(dashboard_env.store, exercise.exercise_id, "Team Pferd").code
    assert code in texts(at, "caption")  # the group's own session sees its code
    assert list(at.dataframe[0].value["group"]) == ["Taken", "Team Pferd"]  # the board
    assert not at.query_params.get("group")  # never in the URL
    at.switch_page(EXPERIMENT_PAGE)
    at.session_state["view"] = "setup"
    ok(at.run())
    assert "Group Team Pferd: your run" in texts(at, "subheader")
    assert "Group B trains the Random weights arm" in texts(at, "caption")
    assert at.button(key=f"group.{exercise.exercise_id}.start").disabled is False
    assert not at.get("select_slider")  # seminar: nothing to choose, the full form is absent


def test_a_group_starts_its_run_which_records_the_group_and_blocks_a_second(
    app, dashboard_env, workload, monkeypatch, tiny_data
):
    workload(steps=200, step_s=0.05)  # long enough to still be active below
    store = dashboard_env.store
    exercise = seminar_exercise(store, dataset=tiny_data, image_size=32)
    at = groups_page(app)
    at.text_input(key="groups.join.name").set_value("Alpha")
    at.button(key="groups.join.submit").click()
    ok(at.run())
    at.switch_page(EXPERIMENT_PAGE)
    at.session_state["view"] = "setup"
    ok(at.run())
    start = f"group.{exercise.exercise_id}.start"
    at.button(key=start).click()
    ok(at.run())
    runs = store.runs_of_exercise(exercise.exercise_id)
    assert len(runs) == 1 and runs[0].group_name == "Alpha" and runs[0].config.arms == ["imagenet"]
    assert at.query_params["run"] == runs[0].run_id  # the run, never the group
    try:
        at.session_state["view"] = "setup"
        ok(at.run())
        assert at.button(key=start).disabled  # one queued or running run per group
        assert f"Your run {runs[0].run_id} is" in texts(at, "info")
        at.button(key=f"group.{exercise.exercise_id}.stop").click()  # the group's own run
        ok(at.run())
        assert store.get_run(runs[0].run_id).stop_requested
    finally:
        lifecycle.request_stop(store, runs[0].run_id)
        until(lambda: not store.get_run(runs[0].run_id).active, 30, "the run to stop")


def test_a_free_exercise_limits_the_groups_choices(app, dashboard_env):
    base = ExperimentConfig()
    base.train_per_class = 20
    rules = ex.Rules(
        mode="free",
        base=base.validate().to_dict(),
        max_epochs=3,
        max_train_per_class=20,
        backbones=("efficientnet_lite0", "efficientnet_lite1"),
    )
    exercise = ex.open_exercise(dashboard_env.store, "Free", rules)
    at = groups_page(app)
    assert "at most 3 epochs · at most 20 images per class" in texts(at, "caption")
    at.text_input(key="groups.join.name").set_value("Free")
    at.button(key="groups.join.submit").click()
    ok(at.run())
    at.switch_page(EXPERIMENT_PAGE)
    at.session_state["view"] = "setup"
    ok(at.run())
    prefix = f"group.{exercise.exercise_id}."
    assert (
        at.selectbox(key=prefix + "backbone").options
        == [
            "EfficientNet-Lite0",
            "EfficientNet-Lite1",
        ]
        or len(at.selectbox(key=prefix + "backbone").options) == 2
    )
    assert at.select_slider(key=prefix + "train_per_class").options == ["2", "5", "10", "20"]
    assert at.number_input(key=prefix + "phase1.epochs").max == 3
    assert (
        at.number_input(key=prefix + "phase1.epochs").value
        + at.number_input(key=prefix + "phase2.epochs").value
        <= 3
    )
    at.number_input(key=prefix + "phase1.epochs").set_value(3)
    at.number_input(key=prefix + "phase2.epochs").set_value(2)
    ok(at.run())
    assert "5 epochs is above this exercise's limit of 3" in texts(at, "error")
    assert at.button(key=prefix + "start").disabled


def test_the_board_shows_leaderboard_charts_and_the_a_b_comparison(app, dashboard_env):
    store = dashboard_env.store
    exercise = seminar_exercise(store)
    for name in ("Ant", "Bee", "Cat", "Dog"):
        ex.join(store, exercise.exercise_id, name)  # sides A, B, A, B
    group_run(store, exercise, "Ant", [0.8, 0.95])
    group_run(store, exercise, "Bee", [0.5, 0.6])
    group_run(store, exercise, "Cat", [0.7], status="running")
    at = groups_page(app)
    assert "4 groups · 2 runs finished · 1 running · 0 queued" in texts(at, "caption")
    table = at.dataframe[0].value
    assert list(table["group"]) == ["Ant", "Cat", "Bee", "Dog"]
    assert list(table["rank"][:3]) == [1, 2, 3]
    assert list(table["side"]) == ["A", "A", "B", "B"]
    assert len(at.get("plotly_chart")) == 3  # comparison, overlay, side by side
    summary = texts(at, "caption")
    assert "ImageNet weights: mean 95.0% over 1 groups" in summary
    assert "Random weights: mean 60.0% over 1 groups" in summary
    assert "2 of 4 groups have a finished run" in summary
    assert at.button(key="groups.stop.0").label == "Stop Cat"  # the presenter's control
    at.button(key="groups.stop.0").click()
    ok(at.run())
    cat = ex.active_run(store, exercise.exercise_id, "Cat")
    assert cat is None or cat.stop_requested
    assert "Asked the run of Cat to stop" in texts(at, "info")


def test_closing_from_the_page_cancels_queued_runs(app, dashboard_env):
    store = dashboard_env.store
    exercise = seminar_exercise(store)
    ex.join(store, exercise.exercise_id, "Ant")
    run_id = store.create_run(
        exercise.rules.config_for("A"), exercise_id=exercise.exercise_id, group_name="Ant"
    )
    at = groups_page(app)
    at.button(key="groups.close").click()
    ok(at.run())
    assert "Exercise closed; 1 queued runs cancelled" in texts(at, "info")
    assert store.get_run(run_id).error.startswith("cancelled: the exercise “Horses” was closed")
    assert "closed" in texts(at, "subheader")


def test_a_viewer_sees_no_presenter_controls_and_the_doors_refuse(
    app, dashboard_env, shared_server, monkeypatch
):
    monkeypatch.setenv("PRESENTER_KEY", "k" * 16)
    store = dashboard_env.store
    at = groups_page(app)
    assert not [w for w in at.text_input if w.key == "groups.open.name"]
    exercise = seminar_exercise(store)
    ex.join(store, exercise.exercise_id, "Ant")
    run_id = group_run(store, exercise, "Ant", [0.6], status="running")
    ok(at.run())
    assert not [b for b in at.button if (b.key or "").startswith("groups.stop")]
    assert not [b for b in at.button if b.key == "groups.close"]
    assert at.text_input(key="groups.join.name")  # joining is a viewer's action
    from dashboard import state

    for call in (
        lambda: state.close_exercise(exercise.exercise_id),
        lambda: state.stop_group_run(exercise.exercise_id, "Ant"),
        lambda: state.open_exercise("X", {}),
    ):
        with pytest.raises(state.UserError, match="Only the presenter can"):
            call()
    assert ex.current(store).is_open and not store.get_run(run_id).stop_requested


# --- the figures ----------------------------------------------------------------------------


def _run(run_id, group, status="completed"):
    return SimpleNamespace(
        run_id=run_id,
        group_name=group,
        status=status,
        config_dict={"phase1": {"epochs": 2}, "phase2": {"epochs": 1}},
        progress={"imagenet": {"epoch": 1}},
    )


def test_leaderboard_ranks_the_best_run_of_each_group_and_keeps_groups_without_one():
    import pandas as pd

    groups = [SimpleNamespace(name=n, side=s) for n, s in (("a", "A"), ("b", "B"), ("c", "A"))]
    runs = [_run("r1", "a"), _run("r2", "b"), _run("r3", "a", "running")]
    best = {"r1": {"imagenet": 0.9}, "r2": {"random": 0.95}, "r3": {"imagenet": 0.5}}
    table = groups_figures.leaderboard(groups, runs, best)
    assert list(table["group"]) == ["b", "a", "c"]
    assert list(table["rank"][:2]) == [1, 2] and table["rank"][2] is pd.NA
    assert list(table["runs"]) == [1, 2, 0]
    assert list(table["status"]) == ["completed", "running", ""]
    assert list(table["epochs"]) == ["3/3", "2/3", ""]
    rows = groups_figures.comparison_rows(groups, runs, best)
    assert rows == [
        {"group": "a", "side": "A", "arm": "imagenet", "value": 0.9},
        {"group": "b", "side": "B", "arm": "random", "value": 0.95},
    ]
    assert groups_figures.comparison_summary(rows)["random"]["mean"] == 0.95


def test_thirty_groups_get_thirty_distinct_colours_and_a_grid_of_thirty_charts():
    import pandas as pd

    names = [f"G{i}" for i in range(30)]
    assert len(set(groups_figures.group_colors(names).values())) == 30
    frame = pd.DataFrame({"arm": ["imagenet"] * 2, "epoch": [0, 1], "val_accuracy": [0.5, 0.7]})
    curves = {n: frame for n in names}
    grid = groups_figures.side_by_side(curves).to_dict()
    assert len(grid["data"]) == 30 and len(grid["layout"]["annotations"]) == 30
    assert grid["data"][29]["xaxis"] == "x30" and grid["layout"]["yaxis30"]["domain"][0] >= 0
    assert [d["showlegend"] for d in grid["data"]].count(True) == 1  # one legend entry per arm
    import plotly.graph_objects as go

    go.Figure(grid)  # what it draws is a valid figure
    overlay = groups_figures.overlay(curves)
    assert len(overlay.data) == 30 and overlay.data[0].x == (1, 2)
    assert os.environ.get("WARM_WORKERS") == "0"
