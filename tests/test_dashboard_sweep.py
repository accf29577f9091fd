"""The Sweep page under Streamlit's AppTest: the form (modes, presets, every bad input as a
message with Start disabled), a tiny sweep started from it (trial workers running the test
workload, no TensorFlow) shown live with its heat map, history and table, and a trial
loaded into Setup."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psutil
import pytest

from dashboard.components.sweep_live import SNAPSHOT_S
from tests.sweep_workload import EPOCH_S_ENV
from tests.test_dashboard_app import errors, ok

SWEEP_PAGE = "views/sweep.py"
WORKLOAD = "tests.sweep_workload:curve_workload"


@pytest.fixture
def sweep_page(app, monkeypatch) -> Iterator:
    """``sweep_page()`` -> the app run once on the Sweep page; trial workers run the test
    workload and are killed at the end if still alive."""
    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", WORKLOAD)
    monkeypatch.setenv(EPOCH_S_ENV, "0.05")
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)

    def make(lang: str | None = None, **session):
        at = app(lang=lang)
        for key, value in session.items():
            at.session_state[key] = value
        at.switch_page(SWEEP_PAGE)
        return ok(at.run())

    yield make
    for child in psutil.Process().children(recursive=True):
        try:
            if "sweep-worker" in " ".join(child.cmdline()):
                child.kill()
        except psutil.Error:
            continue


def start(at):
    return at.button(key="sweep.start")


def mode(at, key: str, value: str):
    at.segmented_control(key=f"sweep.mode.{key}").set_value(value)
    return ok(at.run())


def chosen(at, key: str, values: list):
    at.multiselect(key=f"sweep.list.{key}").set_value(values)
    return ok(at.run())


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def infos(at) -> str:
    return " | ".join(i.value for i in at.info)


def test_the_form_starts_with_nothing_varied_and_says_so(sweep_page):
    at = sweep_page()
    assert at.title[0].value == "Sweep: many experiments at once"
    assert at.segmented_control(key="sweep.mode.phase1.lr").value == "fixed"
    assert at.segmented_control(key="sweep.mode.train_per_class").options == ["fixed", "list"]
    assert any(e.startswith("Nothing varies yet") for e in errors(at)), errors(at)
    assert start(at).disabled
    captions = " | ".join(c.value for c in at.caption)
    assert "fixed: 1e-03 (from Setup)" in captions  # phase1.lr, Setup's default
    # the same tooltips as Setup: the config key first
    assert "`phase2.lr`" in " ".join(m.help or "" for m in at.markdown)


def test_a_grid_shows_its_trials_and_enables_start(sweep_page):
    at = sweep_page()
    at = mode(at, "phase1.lr", "list")
    at = chosen(at, "phase1.lr", [1e-4, 1e-3, 1e-2])
    at = mode(at, "phase2.unfreeze_blocks", "range")
    at.slider(key="sweep.range.phase2.unfreeze_blocks").set_value((1, 4))
    at = ok(at.run())
    assert not errors(at), errors(at)
    assert "12 trials** (a grid of 12 points: 3 × 4)" in infos(at)
    assert "no time estimate yet" in infos(at)  # no finished run in the store
    assert not start(at).disabled


def test_the_estimate_is_timed_from_finished_runs(sweep_page, dashboard_env):
    from tests.conftest_dashboard import write_run

    write_run(dashboard_env.store, status="completed")  # 9 s over 3 epochs x 2 arms
    at = sweep_page()
    at = mode(at, "seed", "list")
    at = chosen(at, "seed", [0, 1])
    assert "with 1 worker(s), timed from 1 finished run(s)" in infos(at), infos(at)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        # a float range can't be a grid
        (
            [("mode", "phase1.lr", "range")],
            "phase1.lr: a float range has no grid",
        ),
        # a log scale needs both ends above 0 (dropout's range starts at 0)
        (
            [("mode", "dropout", "range"), ("toggle", "sweep.log.dropout", True)],
            "dropout: a log scale needs both ends above 0",
        ),
        # an empty list
        ([("mode", "optimizer", "list"), ("list", "optimizer", [])], "optimizer: give at least"),
        # a grid of more than 1000 points
        (
            [
                ("mode", "phase2.unfreeze_blocks", "range"),
                ("slider", "sweep.range.phase2.unfreeze_blocks", (1, 18)),
                ("mode", "seed", "range"),
                ("slider", "sweep.range.seed", (0, 9)),
                ("mode", "phase2.lr", "list"),
                ("list", "phase2.lr", [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]),
            ],
            "the grid has 1080 points, more than 1000",
        ),
        # gap without both arms in every trial
        (
            [
                ("mode", "arms", "list"),
                ("list", "arms", ["imagenet", "random"]),
                ("control", "sweep.objective", "gap"),
            ],
            "objective gap needs both arms",
        ),
        # a budget beyond the grid
        (
            [
                ("mode", "seed", "list"),
                ("list", "seed", [0, 1]),
                ("number", "sweep.trials", 5),
            ],
            "trials: a grid of 2 points runs each once, so at most 2",
        ),
        # a trial the data set can't take: 2 images per class, batch size 32
        (
            [("mode", "train_per_class", "list"), ("list", "train_per_class", [2, 10])],
            "The trial train_per_class=2 can't run: batch_size: 32 is larger",
        ),
    ],
    ids=["float-grid", "log-zero", "empty-list", "grid-1000", "gap-one-arm", "budget", "batch"],
)
def test_bad_inputs_are_messages_and_keep_start_disabled(sweep_page, steps, message):
    at = sweep_page()
    for kind, key, value in steps:
        if kind == "mode":
            at.segmented_control(key=f"sweep.mode.{key}").set_value(value)
        elif kind == "list":
            at.multiselect(key=f"sweep.list.{key}").set_value(value)
        elif kind == "slider":
            at.slider(key=key).set_value(value)
        elif kind == "toggle":
            at.toggle(key=key).set_value(value)
        elif kind == "control":
            at.segmented_control(key=key).set_value(value)
        elif kind == "number":
            at.number_input(key=key).set_value(value)
        at = ok(at.run())
    assert any(message in e for e in errors(at)), errors(at)
    assert start(at).disabled


def test_presets_set_the_space(sweep_page):
    at = sweep_page()
    at.button(key="sweep.preset.depth_lr").click()
    at = ok(at.run())
    assert at.multiselect(key="sweep.list.phase2.unfreeze_blocks").value == [1, 2, 4, 8]
    assert at.multiselect(key="sweep.list.phase2.lr").value == [1e-5, 1e-4, 1e-3]
    assert "12 trials** (a grid of 12 points: 3 × 4)" in infos(at), errors(at)
    at.button(key="sweep.preset.little_data").click()
    at = ok(at.run())
    assert at.segmented_control(key="sweep.mode.phase2.lr").value == "fixed"
    assert at.multiselect(key="sweep.list.arms").value == ["imagenet", "random"]
    assert at.segmented_control(key="sweep.pruner").value == "none"
    # 5 images per class fit: the preset's batch size is 8; the tiny set has 20 per class
    assert "12 trials** (a grid of 12 points: 6 × 2 × 1)" in infos(at), errors(at)
    assert not start(at).disabled


def wait_for_sweep(sweep_id: str, timeout: float = 120.0) -> None:
    from pipelines.sweeps import sweep_state_of, sweep_trials

    deadline = time.monotonic() + timeout
    while sweep_state_of(sweep_id) not in ("finished", "stopped"):
        assert time.monotonic() < deadline, sweep_trials(sweep_id)
        time.sleep(0.2)
    time.sleep(SNAPSHOT_S + 0.1)  # the page's shared snapshot may be that much older


def test_a_tiny_sweep_starts_and_fills_its_map(sweep_page):
    at = sweep_page(**{"phase1.epochs": 2, "phase2.epochs": 0})
    at = mode(at, "phase1.lr", "list")
    at = chosen(at, "phase1.lr", [1e-4, 1e-2])
    at = mode(at, "batch_size", "list")
    at = chosen(at, "batch_size", [8, 16])
    at.segmented_control(key="sweep.pruner").set_value("none")
    at = ok(at.run())
    assert "4 trials" in infos(at), errors(at)
    start(at).click()
    at = ok(at.run())
    sweep_id = at.query_params["sweep"]
    assert at.segmented_control(key="sweep_view").value == "live"
    wait_for_sweep(sweep_id)
    at = ok(at.run())
    assert not errors(at), errors(at)
    heat, history, curves = figures(at)
    cells = heat["data"][0]
    assert cells["type"] == "heatmap" and cells["x"] == ["8", "16"]  # batch_size
    assert cells["y"] == ["0.0001", "0.01"]  # phase1.lr
    z = cells["z"]
    assert all(v is not None for row in z for v in row)
    assert z[1][0] > z[0][0] and z[1][1] > z[0][1]  # the workload learns better at 1e-2
    assert history["data"][0]["name"] == "best so far"
    assert len(curves["data"]) == 8  # 4 trials x 2 arms
    table = at.dataframe[0].value
    assert sorted(table["trial"]) == [0, 1, 2, 3]
    assert set(table["state"]) == {"complete"}
    assert all(str(link).startswith("./?run=") for link in table["run"])
    assert "Best so far" in " ".join(s.value for s in at.success)
    # its trials are ordinary runs on the Runs page, but the sweep is no "Near or far" series
    at = ok(at.switch_page("views/runs.py").run())
    assert len(at.dataframe[0].value) == 4
    assert "Series" not in [h.value for h in at.subheader]


def test_load_into_setup_copies_the_trials_config(sweep_page, monkeypatch):
    from pipelines.sweeps import SweepSpec, parse_param, start_sweep

    spec = SweepSpec(
        params=(parse_param("phase1.lr=3.7e-4,1e-2"),),
        fixed={"phase1.epochs": 1, "phase2.epochs": 0, "batch_size": 8, "image_size": 64},
        sampler="grid",
        pruner="none",
    )
    sweep_id = start_sweep(spec, workers=1)
    wait_for_sweep(sweep_id)
    at = sweep_page(current_sweep=sweep_id, sweep_view="live")
    assert at.get("plotly_chart"), errors(at)
    table = at.dataframe[0].value
    row = list(table["trial"]).index(0)
    # AppTest can't click a row: select it the way the table's event does
    at.session_state[f"sweep_table.{sweep_id}"] = {"selection": {"rows": [row], "columns": []}}
    at = ok(at.run())
    at.button(key=f"sweep.load.{sweep_id}").click()
    at = ok(at.run())
    assert at.title[0].value == "ImageNet weights vs random weights"  # the Experiment page
    assert at.segmented_control(key="view").value == "setup"
    assert at.session_state["phase1.epochs"] == 1 and at.session_state["phase2.epochs"] == 0
    assert at.session_state["image_size"] == 64 and at.session_state["batch_size"] == 8
    assert at.session_state["phase1.lr"] == 5e-4  # the nearest slider step
    message = " ".join(s.value for s in at.success)
    assert f"Loaded trial #0 of sweep {sweep_id} into Setup" in message, message
    assert "phase1.lr 0.00037 is shown as the nearest slider step, 0.0005" in message


def test_the_page_speaks_german_without_a_missing_text(sweep_page):
    at = sweep_page(lang="de")
    at.button(key="sweep.preset.depth_lr").click()
    at = ok(at.run())
    assert at.title[0].value == "Sweep: viele Experimente auf einmal"
    shown = [e.value for kind in ("markdown", "caption", "info", "error") for e in at.get(kind)]
    shown += [b.label for b in at.button]
    assert not [s for s in shown if str(s).startswith("sweep.")], shown
    assert "**12 Trials** (ein Gitter aus 12 Punkten: 3 × 4)" in infos(at)


def test_stop_ends_the_sweep_and_its_trials_show_why(sweep_page, monkeypatch):
    from pipelines.sweeps import SweepSpec, parse_param, start_sweep, sweep_trials

    monkeypatch.setenv(EPOCH_S_ENV, "1.0")  # slow trials: Stop comes during the first
    spec = SweepSpec(
        params=(parse_param("phase1.lr=1e-4,1e-3,1e-2"),),
        fixed={"phase1.epochs": 5, "phase2.epochs": 0, "batch_size": 8},
        sampler="grid",
        pruner="none",
    )
    sweep_id = start_sweep(spec, workers=1)
    deadline = time.monotonic() + 60
    while not any(t["state"] == "RUNNING" for t in sweep_trials(sweep_id)):
        assert time.monotonic() < deadline, sweep_trials(sweep_id)
        time.sleep(0.2)
    at = sweep_page(current_sweep=sweep_id, sweep_view="live")
    at.button(key=f"sweep.stop.{sweep_id}").click()
    at = ok(at.run())
    wait_for_sweep(sweep_id)
    at = ok(at.run())
    header = next(m.value for m in at.markdown if m.value.startswith(f"#### Sweep {sweep_id}"))
    assert "badge[stopped]" in header, header
    table = at.dataframe[0].value
    assert "failed" in set(table["state"])  # the waiting trials, with the reason
    assert "the sweep was stopped" in set(table["error"])


def _two_trials_one_running(epochs: int) -> tuple[str, dict]:
    """A sweep of two trials (phase1.lr 1e-3, 1e-2) on one worker, once one of them runs:
    ``(sweep_id, the running trial)``."""
    from pipelines.sweeps import SweepSpec, parse_param, start_sweep, sweep_trials

    spec = SweepSpec(
        params=(parse_param("phase1.lr=1e-3,1e-2"),),
        fixed={"phase1.epochs": epochs, "phase2.epochs": 0, "batch_size": 8},
        sampler="grid",
        pruner="none",
    )
    sweep_id = start_sweep(spec, workers=1)
    deadline = time.monotonic() + 60
    while True:
        running = [t for t in sweep_trials(sweep_id) if t["state"] == "RUNNING" and t["run_id"]]
        if running:
            return sweep_id, running[0]
        assert time.monotonic() < deadline, sweep_trials(sweep_id)
        time.sleep(0.2)


def test_force_stop_is_offered_once_stop_has_not_taken_effect(sweep_page, monkeypatch):
    from dashboard.components.live import FORCE_STOP_AFTER_S

    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", "tests.sweep_workload:stubborn_workload")
    monkeypatch.setenv(EPOCH_S_ENV, "0.5")  # 40 epochs, deaf to Stop: only a kill ends it
    sweep_id, victim = _two_trials_one_running(epochs=40)
    at = sweep_page(current_sweep=sweep_id, sweep_view="live")
    assert not at.button(key=f"sweep.stop.{sweep_id}").disabled
    at.button(key=f"sweep.stop.{sweep_id}").click()
    at = ok(at.run())
    assert any(c.value.startswith("Stopping") for c in at.caption)
    kill = f"sweep.kill.{sweep_id}"
    assert kill not in {b.key for b in at.button}  # not yet: the Stop is seconds old
    # as if the Stop had been asked FORCE_STOP_AFTER_S ago and the trial still ran
    asked = time.time() - FORCE_STOP_AFTER_S - 1
    at.session_state[f"sweep.stop_asked.{sweep_id}"] = asked
    at = ok(at.run())
    assert kill in {b.key for b in at.button}, [b.key for b in at.button]
    assert at.button(key=kill).label == "Force stop"
    at.button(key=kill).click()
    at = ok(at.run())
    assert "1 worker process(es) of this machine killed" in infos(at), infos(at)
    wait_for_sweep(sweep_id, timeout=30)
    at = ok(at.run())
    header = next(m.value for m in at.markdown if m.value.startswith(f"#### Sweep {sweep_id}"))
    assert "badge[stopped]" in header, header
    table = at.dataframe[0].value
    row = table[table["trial"] == victim["number"]].iloc[0]
    assert row["state"] == "failed" and row["error"].startswith("killed:"), row
    assert kill not in {b.key for b in at.button}


def test_a_trial_stopped_from_its_run_shows_as_stopped(sweep_page, monkeypatch):
    from pipelines.runs import lifecycle
    from pipelines.runs.store import RunStore

    monkeypatch.setenv(EPOCH_S_ENV, "0.3")
    sweep_id, victim = _two_trials_one_running(epochs=6)
    lifecycle.request_stop(RunStore(), victim["run_id"])  # the Runs page's Stop
    wait_for_sweep(sweep_id)
    at = sweep_page(current_sweep=sweep_id, sweep_view="live")
    header = next(m.value for m in at.markdown if m.value.startswith(f"#### Sweep {sweep_id}"))
    assert "badge[finished]" in header, header  # the sweep went on
    table = at.dataframe[0].value
    assert dict(zip(table["trial"], table["state"], strict=True)) == {
        victim["number"]: "stopped",
        1 - victim["number"]: "complete",
    }
    assert "this configuration is skipped" in " ".join(table["error"])
    progress = at.get("progress")[0].proto.text
    assert "stopped 1" in progress and "failed" not in progress, progress
