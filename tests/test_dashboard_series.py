"""The "Near or far" series in the dashboard: the figure builder, the Series section of the
Runs page for runs written straight into the store, the preset button that queues the
series, and the Explain page's button to it."""

from __future__ import annotations

import json

import pytest

from dashboard import figures
from pipelines.runs import lifecycle
from pipelines.runs.store import RunStore
from pipelines.training.config import ExperimentConfig
from tests.conftest_data import make_image_folder

RUNS_PAGE = "views/runs.py"
EXPLAIN_PAGE = "views/explain.py"


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    return at


def _row(dataset, arm, cut, acc, balanced=None, chance=0.5, status="completed"):
    return {
        "dataset": dataset,
        "arm": arm,
        "reuse_blocks": cut,
        "best_val_accuracy": acc,
        "best_val_balanced_accuracy": balanced,
        "chance_accuracy": chance,
        "run_id": f"{dataset}-{cut}",
        "status": status,
    }


ROWS = [
    _row("near", "imagenet", 3, 0.8, 0.8),
    _row("near", "imagenet", 9, 0.95, 0.95),
    _row("near", "random", 9, 0.6, 0.6),
    _row("near", "random", 3, 0.55, 0.55),
    _row("far", "imagenet", 3, 0.85, 0.8, chance=0.626),
    _row("far", "imagenet", 9, None, None, chance=None, status="queued"),
    _row("far", "random", 3, 0.7, 0.6, chance=0.626),
]


# --- the figure -----------------------------------------------------------------------------


def test_transfer_depth_one_line_per_data_set_and_arm():
    fig = figures.transfer_depth(ROWS, "best_val_accuracy", {"near": "Near set"})
    traces = {t.name: t for t in fig.data}
    assert list(traces) == [
        "Near set · ImageNet weights",
        "Near set · Random weights",
        "far · ImageNet weights",
        "far · Random weights",
    ]
    near = traces["Near set · Random weights"]
    assert list(near.x) == [3, 9] and list(near.y) == [0.55, 0.6]  # sorted by cut
    assert list(traces["far · ImageNet weights"].x) == [3]  # the queued run: no point yet
    assert {t.line.dash for t in fig.data if t.name.startswith("Near")} == {"solid"}
    assert {t.line.dash for t in fig.data if t.name.startswith("far")} == {"dash"}
    colors = {t.name.split(" · ")[1]: t.line.color for t in fig.data}
    assert colors == {
        "ImageNet weights": figures.ARM_COLORS["imagenet"],
        "Random weights": figures.ARM_COLORS["random"],
    }
    chance = sorted(s.y0 for s in fig.layout.shapes)
    assert chance == [0.5, 0.626]  # one dotted line per data set
    assert all(s.line.dash == "dot" for s in fig.layout.shapes)
    assert [a.text for a in fig.layout.annotations] == [
        "chance · Near set: 50.0%",
        "chance · far: 62.6%",
    ]
    assert list(fig.layout.xaxis.tickvals) == [3, 9]
    assert fig.layout.yaxis.title.text == "best validation accuracy"


def test_transfer_depth_balanced_takes_its_chance_levels_from_the_caller():
    fig = figures.transfer_depth(ROWS, "best_val_balanced_accuracy")
    assert not fig.layout.shapes  # the rows' chance is plain accuracy's: not drawn
    fig = figures.transfer_depth(ROWS, "best_val_balanced_accuracy", chance={"far": 0.5})
    assert [s.y0 for s in fig.layout.shapes] == [0.5]
    far = [t for t in fig.data if t.name == "far · Random weights"][0]
    assert list(far.y) == [0.6]
    assert fig.layout.yaxis.title.text == "best validation balanced accuracy"


def test_transfer_depth_of_nothing_yet():
    fig = figures.transfer_depth([], "best_val_accuracy")
    assert not fig.data and not fig.layout.shapes


# --- the Runs page --------------------------------------------------------------------------


def write_series(store: RunStore, sweep_id: str, *, running: int | None = None) -> list[str]:
    """Four runs of a series: two data sets x cuts 3 and 9, both arms; the run at index
    ``running`` is still running with one epoch row, the others completed."""
    run_ids = []
    for trial, (dataset, cut) in enumerate(
        [("horses_or_humans", 3), ("horses_or_humans", 9), ("far_set", 3), ("far_set", 9)]
    ):
        config = ExperimentConfig(dataset=dataset, reuse_blocks=cut, image_size=32)
        run_id = store.create_run(config, "running", sweep_id=sweep_id, trial=trial)
        run_ids.append(run_id)
        if trial == running:
            store.log_epoch(run_id, "imagenet", "feature_extraction", 0, 0.5, 0.7, 0.5, 0.66, 1, 9)
            lifecycle.claim_worker(store, run_id, _own_pid())
            continue
        far = dataset == "far_set"
        store.set_summary(
            run_id,
            {
                "arms": {
                    arm: {
                        "best_val_accuracy": (0.6 if far else 0.7)
                        + cut / 100
                        + (0.1 if arm == "imagenet" else 0),
                        "best_val_balanced_accuracy": 0.55 + cut / 100,
                    }
                    for arm in ("imagenet", "random")
                },
                "classes": ["a", "b"],
                "chance_accuracy": 0.626 if far else 0.5,
                "val_class_counts": [5, 8] if far else [4, 4],
            },
        )
        lifecycle.finish(store, run_id, "completed")
    return run_ids


def _own_pid() -> int:
    import os

    return os.getpid()


def _series_chart(at):
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [s for s in specs if "blocks taken over" in json.dumps(s["layout"])]


def test_runs_page_shows_the_series_chart(app, dashboard_env):
    store = dashboard_env.store
    older = write_series(store, "near-far-older")
    newer = write_series(store, "near-far-newer")
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    assert "Series" in [s.value for s in at.subheader]
    pick = at.selectbox(key="series_pick")
    assert pick.options == ["near-far-newer", "near-far-older"]  # newest first
    assert pick.value == "near-far-newer"
    (spec,) = _series_chart(at)
    names = [t["name"] for t in spec["data"]]
    assert names == [
        "Horses or Humans · ImageNet weights",
        "Horses or Humans · Random weights",
        "far_set · ImageNet weights",
        "far_set · Random weights",
    ]
    first = spec["data"][0]
    assert first["x"] == [3, 9] and first["y"] == pytest.approx([0.83, 0.89])
    assert spec["data"][2]["line"]["dash"] == "dash"
    assert sorted(s["y0"] for s in spec["layout"]["shapes"]) == [0.5, 0.626]
    assert any("4 of 4 runs finished" in c.value for c in at.caption)
    at.segmented_control(key="series_metric").set_value("best_val_balanced_accuracy")
    ok(at.run())
    (spec,) = _series_chart(at)
    assert spec["data"][0]["y"] == pytest.approx([0.58, 0.64])
    assert [s["y0"] for s in spec["layout"]["shapes"]] == [0.5, 0.5]  # 1 / classes
    assert len(older) == len(newer) == 4


def test_a_series_still_running_shows_its_best_epoch_so_far(app, dashboard_env):
    write_series(dashboard_env.store, "near-far-live", running=3)
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    (spec,) = _series_chart(at)
    far_imagenet = [t for t in spec["data"] if t["name"] == "far_set · ImageNet weights"][0]
    assert far_imagenet["x"] == [3, 9] and far_imagenet["y"][1] == pytest.approx(0.66)
    assert any("3 of 4 runs finished" in c.value for c in at.caption)


def test_the_near_far_preset_queues_the_series(app, dashboard_env, monkeypatch):
    make_image_folder(
        dashboard_env.datasets / "chest-xray-pneumonia",
        classes=("NORMAL", "PNEUMONIA"),
        train=2,
        validation=1,
    )
    from pipelines.runs.jobs import JobManager

    def queue_only(self, config, *, sweep_id=None, trial=None):  # no worker processes
        return self.store.create_run(config, sweep_id=sweep_id, trial=trial)

    monkeypatch.setattr(JobManager, "start", queue_only)
    at = ok(app().run())
    button = at.button(key="preset.near_far")
    assert "12 runs" in button.help
    button.click()
    ok(at.run())
    store = dashboard_env.store
    (sweep_id,) = store.sweep_ids()
    runs = store.runs_in_sweep(sweep_id)
    assert [(r.config.dataset, r.config.reuse_blocks) for r in runs] == [
        (d, c) for d in ("horses_or_humans", "chest_xray_pneumonia") for c in (3, 6, 9, 12, 15, 18)
    ]
    assert all(r.config.phase2.epochs == 0 and r.config.image_size == 160 for r in runs)
    assert [r.trial for r in runs] == list(range(12))
    assert at.session_state["series"] == sweep_id


def test_the_near_far_preset_refused_is_a_message(app, dashboard_env):
    """No chest X-rays in DATASETS_DIR: the series is refused before any run exists."""
    at = ok(app().run())
    at.button(key="preset.near_far").click()
    ok(at.run())
    assert any("chest-xray-pneumonia" in e.value for e in at.error)
    assert dashboard_env.store.list_runs() == []


def test_explain_points_to_the_near_far_preset(app):
    at = ok(app().run())
    ok(at.switch_page(EXPLAIN_PAGE).run())
    [b for b in at.button if "Near or far" in b.label][0].click()
    ok(at.run())
    assert at.session_state["view"] == "setup"
    assert any("Near or far" in i.value for i in at.info)
    assert at.button(key="preset.near_far")
