"""The HydraNet view: a curve panel per task with both arms, the cost panel (shared against
separate), and the preset the Explain page leads to."""

from __future__ import annotations

import json

import pandas as pd

from dashboard import hydra_figures
from pipelines.training.config import ExperimentConfig
from pipelines.training.hydra import preset_configs
from tests.conftest_dashboard import APP_TIMEOUT_S

TASKS = ("normal_vs_pneumonia", "bacterial_vs_viral")


def _cost(mode: str, wall: float, networks: int) -> dict:
    return {
        "hydra": mode,
        "networks": networks,
        "wall_s": wall,
        "backbone_forward_images": 1000 * networks,
        "parameters": 3_000_000 * networks,
        "model_bytes": 12_000_000 * networks,
        "peak_memory_bytes": 900 * 2**20,
    }


def write_hydra_run(store, mode: str, sweep: str | None = None, epochs: int = 2) -> str:
    config = ExperimentConfig().with_overrides(
        ["dataset=chest_xray_pneumonia_tasks", f"hydra={mode}", "image_size=32"]
    )
    trial = None if sweep is None else int(mode != "shared")
    run_id = store.create_run(config, status="running", sweep_id=sweep, trial=trial)
    tasks = {t: {"classes": ["a", "b"], "chance_accuracy": 0.6} for t in TASKS}
    for epoch in range(epochs):
        for arm in ("imagenet", "random"):
            for k, task in enumerate(TASKS):
                val = 0.7 + 0.1 * epoch - 0.1 * k if arm == "imagenet" else 0.55
                store.log_epoch(
                    run_id,
                    arm,
                    "feature_extraction",
                    epoch,
                    0.5,
                    0.8,
                    0.6,
                    val,
                    1.0,
                    9.0,
                    val_balanced_accuracy=val - 0.05,
                    task=task,
                )
    arms = {
        arm: {
            "tasks": {
                t: {"final_val_accuracy": 0.8, "final_val_balanced_accuracy": 0.75} for t in TASKS
            }
        }
        for arm in ("imagenet", "random")
    }
    networks = 2 if mode == "shared" else 4
    store.set_summary(
        run_id,
        {
            "tasks": tasks,
            "hydra": mode,
            "arms": arms,
            "cost": _cost(mode, 10.0 * networks, networks),
        },
    )
    return run_id


def test_task_curves_have_a_panel_per_task_with_both_arms():
    rows = [
        {"arm": arm, "task": task, "epoch": e, "val_accuracy": 0.5 + 0.1 * e, "accuracy": 0.6}
        for arm in ("imagenet", "random")
        for task in TASKS
        for e in range(3)
    ]
    fig = hydra_figures.task_curves(
        pd.DataFrame(rows), ["imagenet", "random"], list(TASKS), chance={TASKS[0]: 0.6}
    )
    titles = [a.text for a in fig.layout.annotations if a.text in TASKS]
    assert titles == list(TASKS)
    assert len(fig.data) == 2 * 2 * 2  # tasks x arms x (validation, train)
    by_axis = {}
    for trace in fig.data:
        by_axis.setdefault(trace.xaxis, set()).add(trace.name.split(" · ")[0])
    assert by_axis == {
        "x": {"ImageNet weights", "Random weights"},
        "x2": {"ImageNet weights", "Random weights"},
    }
    assert list(fig.data[0].x) == [1, 2, 3]


def test_cost_bars_show_shared_against_separate_with_the_ratio():
    fig = hydra_figures.cost_bars(
        {"shared": _cost("shared", 30, 2), "separate": _cost("separate", 60, 4)}
    )
    assert len(fig.data) == len(hydra_figures.COSTS)
    wall = fig.data[0]
    assert list(wall.x) == ["shared backbone", "one network per task"]
    assert list(wall.y) == [30.0, 60.0] and "(0.50×)" in wall.text[0]
    assert fig.data[3].y[0] == 24_000_000 / 2**20  # model size in MB
    only = hydra_figures.cost_bars({"shared": _cost("shared", 30, 2)})
    assert list(only.data[0].x) == ["shared backbone"]


def test_the_run_view_of_a_hydranet_shows_each_task_and_the_cost(app, dashboard_env):
    store = dashboard_env.store
    shared = write_hydra_run(store, "shared", sweep="hydra-1")
    write_hydra_run(store, "separate", sweep="hydra-1")
    at = app(run=shared).run(timeout=APP_TIMEOUT_S)
    assert not at.exception
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 2  # the task curves and the cost panel
    curves, costs = charts
    titles = {a["text"] for a in curves["layout"]["annotations"]}
    assert set(TASKS) <= titles
    assert costs["data"][0]["y"] == [20.0, 40.0]  # wall time, shared vs separate
    assert "HydraNet, shared backbone: 2 tasks" in " ".join(m.value for m in at.markdown)
    assert len(at.dataframe[0].value) == 4  # arm x task


def test_german_texts_for_the_hydranet_view(app, dashboard_env):
    shared = write_hydra_run(dashboard_env.store, "shared")
    at = app(run=shared, lang="de").run(timeout=APP_TIMEOUT_S)
    assert not at.exception
    assert "gemeinsames Backbone" in " ".join(m.value for m in at.markdown)
    assert any("Gegenlauf" in c.value for c in at.caption)  # no separate run to compare


def test_the_preset_runs_shared_against_separate_on_the_two_chest_xray_tasks():
    shared, separate = preset_configs()
    assert (shared.hydra, separate.hydra) == ("shared", "separate")
    for config in (shared, separate):
        assert config.dataset == "chest_xray_pneumonia_tasks"
        assert config.image_size == 160 and config.arms == ["imagenet", "random"]
        assert (config.phase1.epochs, config.phase2.epochs) == (3, 1)
    assert shared.to_dict() | {"hydra": "separate"} == separate.to_dict()


def test_the_explain_page_leads_to_the_hydranet_preset(app):
    from dashboard import i18n

    for language in i18n.LANGS:
        sections = i18n.explanations(language)[1]
        assert any(s.control == "hydra" for s in sections)
    at = app().run(timeout=APP_TIMEOUT_S)
    assert at.button(key="preset.hydra")


def test_a_data_set_with_tasks_offers_them_and_shared_or_separate(app, tmp_path):
    from tests.conftest_hydra import make_two_task_folder

    folder = make_two_task_folder(tmp_path / "two")
    at = app().run(timeout=APP_TIMEOUT_S)
    at.radio(key="dataset_source").set_value("folder").run(timeout=APP_TIMEOUT_S)
    at.text_input(key="dataset").set_value(str(folder)).run(timeout=APP_TIMEOUT_S)
    assert not at.exception
    tasks = at.multiselect(key="tasks")
    assert list(tasks.options) == ["light", "colour"] and tasks.value == []
    at.radio(key="hydra").set_value("separate")
    tasks.set_value(["colour"]).run(timeout=APP_TIMEOUT_S)
    from dashboard import form

    keys = [*form.CONFIG_KEYS, "backbone_custom"]
    config = form.config_from_values({k: at.session_state[k] for k in keys})
    assert config.hydra == "separate" and config.tasks == ["colour"]
    assert "24 training images" in " ".join(c.value for c in at.caption)
