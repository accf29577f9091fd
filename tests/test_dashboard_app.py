"""The dashboard under Streamlit's AppTest: the setup form, the live view of runs written
straight into the store (no training), the Runs page and the Explain page."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest

from dashboard.components import live
from tests.conftest_dashboard import APP, PRESENTER_KEY, as_presenter, write_run
from tests.conftest_data import zip_bytes

RUNS_PAGE = "views/runs.py"
EXPLAIN_PAGE = "views/explain.py"
EXPERIMENT_PAGE = "views/experiment.py"


def ok(at):
    """The app ran without an exception; return it."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def widget(at, kind: str, key: str):
    return getattr(at, kind)(key=key)


def start_button(at):
    return at.button(key="start")


# --- setup form -----------------------------------------------------------------------------


def test_form_defaults_are_the_seminar_demo(app):
    at = ok(app().run())
    assert at.title[0].value == "ImageNet weights vs random weights"
    assert widget(at, "radio", "dataset_source").value == "horses_or_humans"
    assert widget(at, "text_input", "dataset").value == "horses_or_humans"
    assert widget(at, "select_slider", "train_per_class").value == "all"
    assert widget(at, "selectbox", "backbone").value == "efficientnet_lite0"
    assert widget(at, "number_input", "image_size").value is None
    assert widget(at, "number_input", "phase1.epochs").value == 3
    assert widget(at, "select_slider", "phase1.lr").value == 1e-3
    assert widget(at, "number_input", "phase2.epochs").value == 2
    assert widget(at, "select_slider", "phase2.lr").value == 1e-5
    assert widget(at, "slider", "phase2.unfreeze_blocks").value == 2
    assert widget(at, "number_input", "batch_size").value == 32
    assert widget(at, "selectbox", "optimizer").value == "adam"
    assert widget(at, "radio", "random_policy").value == "same"
    assert widget(at, "toggle", "augment").value is False
    assert widget(at, "number_input", "seed").value == 0
    assert at.pills(key="arms").value == ["imagenet", "random"]
    assert not errors(at) and not start_button(at).disabled
    captions = " | ".join(c.value for c in at.caption)
    assert "2 classes · 40 training images (horses 20, humans 20) · 8 validation images" in captions
    assert "Ready: ImageNet weights + Random weights · 5 epochs · 40 training images" in captions
    assert "Top 2 of 18 blocks train in phase 2" in captions
    assert at.get("plotly_chart")  # the layer map
    # the help tooltips name the config key each widget sets
    assert widget(at, "select_slider", "phase2.lr").help.startswith("`phase2.lr`")


def test_layer_map_redraws_with_the_freeze_depth(app):
    at = ok(app().run())
    widget(at, "slider", "phase2.unfreeze_blocks").set_value(5)
    ok(at.run())
    assert "Top 5 of 18 blocks" in " ".join(c.value for c in at.caption)
    trainable = [m.value for m in at.metric]
    widget(at, "slider", "phase2.unfreeze_blocks").set_value(1)
    ok(at.run())
    assert [m.value for m in at.metric] != trainable


def test_reuse_blocks_cuts_the_layer_map_and_bounds_the_freeze_depth(app):
    at = ok(app().run())
    assert widget(at, "number_input", "reuse_blocks").value is None  # all blocks
    captions = " | ".join(c.value for c in at.caption)
    assert "All 18 blocks taken over: 1280 features go into the head" in captions
    widget(at, "number_input", "reuse_blocks").set_value(5)
    ok(at.run())
    captions = " | ".join(c.value for c in at.caption)
    assert "Cut after **block_03** (block 5 of 18): 40 features go into the head" in captions
    assert "Top 2 of 5 blocks train in phase 2" in captions, captions.split(" | ")
    assert "The 13 blocks above the cut are removed" in captions
    assert widget(at, "slider", "phase2.unfreeze_blocks").max == 5
    assert not errors(at) and not start_button(at).disabled
    widget(at, "slider", "phase2.unfreeze_blocks").set_value(5)
    widget(at, "number_input", "reuse_blocks").set_value(3)
    ok(at.run())
    assert widget(at, "slider", "phase2.unfreeze_blocks").value == 3  # within the kept blocks


def test_the_far_data_set_is_in_the_picker_with_its_citation(app, dashboard_env):
    from tests.conftest_data import make_image_folder

    make_image_folder(
        dashboard_env.datasets / "chest-xray-pneumonia",
        classes=("NORMAL", "PNEUMONIA"),
        train=6,
        validation=3,
    )
    at = ok(app().run())
    assert "Chest X-rays (far)" in widget(at, "radio", "dataset_source").options
    widget(at, "radio", "dataset_source").set_value("chest_xray_pneumonia")
    ok(at.run())
    assert widget(at, "text_input", "dataset").value == "chest_xray_pneumonia"
    captions = " | ".join(c.value for c in at.caption)
    assert "Kermany" in captions and "CC BY 4.0" in captions
    assert "2 classes · 12 training images (NORMAL 6, PNEUMONIA 6)" in captions


@pytest.mark.parametrize(
    ("kind", "key", "value", "message"),
    [
        ("slider", "phase2.unfreeze_blocks", 0, "phase2.unfreeze_blocks: fine-tuning"),
        ("number_input", "batch_size", 64, "batch_size: 64 is larger than the training set (40"),
        ("number_input", "phase1.epochs", 0, None),  # fine on its own
    ],
)
def test_invalid_values_are_refused_with_the_fields_message(app, kind, key, value, message):
    at = ok(app().run())
    widget(at, kind, key).set_value(value)
    ok(at.run())
    if message is None:
        assert not errors(at) and not start_button(at).disabled
        return
    assert any(e.startswith(message) for e in errors(at)), errors(at)
    assert start_button(at).disabled


def test_no_arm_and_no_epochs_are_refused(app):
    at = ok(app().run())
    at.pills(key="arms").set_value([])
    ok(at.run())
    assert any(e.startswith("arms: choose at least one") for e in errors(at))
    at.pills(key="arms").set_value(["imagenet"])
    widget(at, "number_input", "phase1.epochs").set_value(0)
    widget(at, "number_input", "phase2.epochs").set_value(0)
    ok(at.run())
    assert any("both 0: nothing would train" in e for e in errors(at))


def test_a_missing_folder_is_a_message_not_a_traceback(app, tmp_path):
    at = ok(app().run())
    widget(at, "radio", "dataset_source").set_value("folder")
    ok(at.run())
    assert widget(at, "text_input", "dataset").value == ""
    assert any("folder path" in i.value for i in at.info)
    widget(at, "text_input", "dataset").set_value(str(tmp_path / "nowhere"))
    ok(at.run())
    assert any("no folder or zip at" in e for e in errors(at)), errors(at)
    assert start_button(at).disabled


def test_a_folder_with_one_class_is_refused(app, tmp_path):
    from tests.conftest_data import make_image_folder

    folder = make_image_folder(tmp_path / "one", classes=("cats",))
    at = ok(app().run())
    widget(at, "radio", "dataset_source").set_value("folder")
    ok(at.run())
    widget(at, "text_input", "dataset").set_value(str(folder))
    ok(at.run())
    assert any("a classifier needs at least 2" in e for e in errors(at))


def test_an_unknown_custom_backbone_is_refused(app):
    at = ok(app().run())
    widget(at, "selectbox", "backbone").set_value("custom")
    ok(at.run())
    widget(at, "text_input", "backbone_custom").set_value("no-such-model")
    ok(at.run())
    assert any("unknown backbone 'no-such-model'" in e for e in errors(at))
    assert start_button(at).disabled


def test_presets_set_the_recipe_and_keep_the_data_set(app, dashboard_env):
    folder = dashboard_env.datasets / "horses-or-humans"
    at = ok(app().run())
    widget(at, "radio", "dataset_source").set_value("folder")
    ok(at.run())
    widget(at, "text_input", "dataset").set_value(str(folder))
    ok(at.run())
    at.button(key="preset.quick").click()
    ok(at.run())
    assert widget(at, "select_slider", "train_per_class").value == 50
    assert widget(at, "number_input", "image_size").value == 128
    assert widget(at, "number_input", "phase2.epochs").value == 2
    assert widget(at, "text_input", "dataset").value == str(folder)
    assert any("Quick look" in s.value for s in at.success)
    at.button(key="preset.deeper").click()
    ok(at.run())
    assert widget(at, "slider", "phase2.unfreeze_blocks").value == 8
    assert widget(at, "number_input", "image_size").value is None
    assert widget(at, "select_slider", "train_per_class").value == "all"
    at.button(key="preset.seminar").click()
    ok(at.run())
    assert widget(at, "slider", "phase2.unfreeze_blocks").value == 2
    assert widget(at, "number_input", "phase2.epochs").value == 2


def test_the_form_survives_a_page_switch(app):
    at = ok(app().run())
    widget(at, "number_input", "phase1.epochs").set_value(7)
    ok(at.run())
    ok(at.switch_page(RUNS_PAGE).run())
    ok(at.switch_page(EXPERIMENT_PAGE).run())
    assert widget(at, "number_input", "phase1.epochs").value == 7


def test_the_form_survives_a_look_at_the_run_view(app):
    at = ok(app().run())
    widget(at, "select_slider", "phase2.lr").set_value(2e-5)
    ok(at.run())
    at.segmented_control(key="view").set_value("run")
    ok(at.run())
    at.segmented_control(key="view").set_value("setup")
    ok(at.run())
    assert widget(at, "select_slider", "phase2.lr").value == 2e-5


def test_a_runs_folder_that_is_a_file_is_a_message(app, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("RUNS_DIR", str(blocker))
    at = ok(app().run())
    assert any("is a file; set RUNS_DIR to a folder" in e for e in errors(at))
    ok(at.switch_page(RUNS_PAGE).run())
    assert any("is a file; set RUNS_DIR to a folder" in e for e in errors(at))


def test_a_shared_dashboard_confines_typed_paths(app, tmp_path, monkeypatch):
    """Bound to a non-local address, the app turns path confinement on for itself and its
    workers: a folder outside the data sets and runs folders is refused."""
    from streamlit import config as st_config

    from tests.conftest_data import make_image_folder

    outside = make_image_folder(tmp_path / "elsewhere", classes=("cats", "dogs"), train=20)
    monkeypatch.setenv("CONFINE_PATHS", "")
    monkeypatch.setenv("PRESENTER_KEY", PRESENTER_KEY)
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = as_presenter(ok(app().run()))
    finally:
        st_config.set_option("server.address", previous)
    assert os.environ["CONFINE_PATHS"] == "1"
    widget(at, "radio", "dataset_source").set_value("folder")
    ok(at.run())
    widget(at, "text_input", "dataset").set_value(str(outside))
    ok(at.run())
    assert any("outside the folders this shared dashboard may read" in e for e in errors(at))
    assert start_button(at).disabled


def test_a_local_dashboard_does_not_confine(app, monkeypatch):
    from streamlit import config as st_config

    monkeypatch.setenv("CONFINE_PATHS", "")
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "localhost")
    try:
        ok(app().run())
    finally:
        st_config.set_option("server.address", previous)
    assert os.environ["CONFINE_PATHS"] == ""


def test_an_uploaded_zip_is_extracted_under_the_runs_folder(app, dashboard_env, tmp_path):
    from tests.conftest_data import make_image_folder

    data = zip_bytes(make_image_folder(tmp_path / "pets", classes=("cats", "dogs"), train=20))
    at = ok(app().run())
    widget(at, "radio", "dataset_source").set_value("upload")
    ok(at.run())
    at.file_uploader(key="dataset_zip").upload("pets.zip", data, "application/zip")
    ok(at.run())
    dataset = widget(at, "text_input", "dataset").value
    assert dataset.startswith(str(dashboard_env.runs.absolute() / "uploads"))
    assert (dashboard_env.runs / "uploads").is_dir()
    assert "cats" in " ".join(c.value for c in at.caption)
    assert not errors(at)


def test_a_bad_upload_is_a_message(app):
    at = ok(app().run())
    widget(at, "radio", "dataset_source").set_value("upload")
    ok(at.run())
    at.file_uploader(key="dataset_zip").upload("pets.zip", b"not a zip", "application/zip")
    ok(at.run())
    assert any("pets.zip is not a zip file" in e for e in errors(at)), errors(at)


def test_start_spawns_a_worker_and_shows_its_run(app, dashboard_env, workload):
    workload("steady_workload", steps=5, step_s=0.05)
    at = ok(app().run())
    start_button(at).click()
    ok(at.run())
    run_id = at.session_state["current_run"]
    assert at.query_params["run"] == run_id
    assert at.session_state["view"] == "run"
    assert any(f"Run {run_id}" in m.value for m in at.markdown)
    from pipelines.runs.jobs import JobManager

    run = JobManager(dashboard_env.store).wait(run_id, timeout=60)
    assert run.status == "completed", run
    ok(at.run())
    assert any("completed" in m.value for m in at.markdown)
    assert at.subheader[0].value == "After the run"


# --- live view ------------------------------------------------------------------------------


def test_live_view_of_a_running_run(app, dashboard_env):
    run_id = write_run(dashboard_env.store, status="running", epochs_done=4)
    at = ok(app(run=run_id).run())
    assert at.session_state["view"] == "run"
    progress = [p.text for p in at.get("progress")]
    assert len(progress) == 2
    assert "fine-tuning · epoch 5/5 · step 2/4 · ETA 0:12" in progress[0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ImageNet weights: latest val. accuracy"] == "94.0%"
    assert metrics["Random weights: latest val. accuracy"] == "53.0%"
    assert metrics["ImageNet − random"] == "+41.0 pp"
    assert "Epoch points — ImageNet weights: 4 · Random weights: 4 (of 5)" in [
        c.value for c in at.caption
    ]
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # side by side + overlay
    spec = json.loads(charts[0].proto.spec)
    assert len(spec["data"][0]["x"]) == 4
    assert {s["x0"] for s in spec["layout"]["shapes"]} == {3.0}  # phase 2 starts at epoch 3
    assert at.button(key=f"stop.{run_id}")
    assert "· 32 px ·" in " ".join(c.value for c in at.caption)
    assert "· top 2 blocks fine-tuned ·" in " ".join(c.value for c in at.caption)
    assert not at.subheader  # no results while running


def test_imbalanced_validation_shows_balanced_accuracy_and_the_chance_level(app, dashboard_env):
    run_id = write_run(dashboard_env.store, status="running", epochs_done=4, val_counts=(231, 387))
    at = ok(app(run=run_id).run())
    captions = [c.value for c in at.caption]
    assert "balanced 84.0% (best 84.0%) · chance 62.6%" in captions  # ImageNet: 0.94 - 0.1
    assert "balanced 43.0% (best 43.0%) · chance 62.6%" in captions  # random: below chance
    curves, overlay = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    balanced = [t for t in curves["data"] if t["name"] == "validation, balanced"]
    assert [round(y, 3) for y in balanced[0]["y"]] == [0.6, 0.68, 0.76, 0.84]
    chance = [s for s in curves["layout"]["shapes"] if s["y0"] == s["y1"]]
    assert [s["y0"] for s in chance] == [pytest.approx(387 / 618, abs=1e-4)] * 2
    assert [s for s in overlay["layout"]["shapes"] if s["y0"] == s["y1"]]


def test_balanced_data_shows_the_chance_level_but_no_balanced_accuracy(app, dashboard_env):
    run_id = write_run(
        dashboard_env.store, status="running", epochs_done=2, phase2=0, val_counts=(4, 4)
    )
    at = ok(app(run=run_id).run())
    assert "· no fine-tuning ·" in " ".join(c.value for c in at.caption)
    assert not [c.value for c in at.caption if c.value.startswith("balanced")]
    curves = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert not [t for t in curves["data"] if t["name"] == "validation, balanced"]
    assert {s["y0"] for s in curves["layout"]["shapes"] if s["y0"] == s["y1"]} == {0.5}


def test_sessions_watching_one_run_share_its_snapshot_and_charts(app, dashboard_env, monkeypatch):
    """Twenty people on one run: the store is read and the charts built once, not per tab."""
    from dashboard import figures

    # The per-batch curve's cut-off moves every BATCH_CURVE_EVERY_S; tabs opened across such
    # a boundary rightly get a new chart, so the boundary is kept out of the test's way.
    monkeypatch.setattr(live, "BATCH_CURVE_EVERY_S", 1e9)
    run_id = write_run(dashboard_env.store, status="running", epochs_done=4)
    built = []
    original = figures.arm_curves_spec
    monkeypatch.setattr(
        figures, "arm_curves_spec", lambda *a, **k: built.append(1) or original(*a, **k)
    )
    tabs = [ok(app(run=run_id).run()) for _ in range(3)]
    assert len(built) == 1
    specs = {tab.get("plotly_chart")[0].proto.spec for tab in tabs}
    assert len(specs) == 1
    dashboard_env.store.log_epoch(run_id, "imagenet", "fine_tuning", 4, 0.1, 0.9, 0.1, 0.95, 1, 40)
    time.sleep(live.SNAPSHOT_S)  # the next snapshot sees the new row
    tab = ok(app(run=run_id).run())
    assert len(built) == 2
    assert len(json.loads(tab.get("plotly_chart")[0].proto.spec)["data"][0]["x"]) == 5


def test_the_per_batch_curve_catches_up_with_each_epoch_point():
    every = live.BATCH_CURVE_EVERY_S
    assert live.batch_cutoff(0.0, active=False) == math.inf
    assert live.batch_cutoff(0.0, active=True, now=2.5 * every) == 2 * every
    assert live.batch_cutoff(2.2 * every, active=True, now=2.5 * every) == 2.2 * every


def test_stop_asks_the_worker_to_stop_and_force_stop_follows(app, dashboard_env):
    run_id = write_run(dashboard_env.store, status="running")
    at = ok(app(run=run_id).run())
    at.button(key=f"stop.{run_id}").click()
    ok(at.run())
    assert dashboard_env.store.get_run(run_id).stop_requested
    assert any("Stopping after the current batch" in c.value for c in at.caption)
    assert f"kill.{run_id}" not in {b.key for b in at.button}  # not before FORCE_STOP_AFTER_S
    at.session_state[f"stop_asked.{run_id}"] = time.time() - live.FORCE_STOP_AFTER_S - 1
    at = ok(at.run())
    at.button(key=f"kill.{run_id}").click()  # a worker that did not stop: Force stop
    ok(at.run())
    assert dashboard_env.store.get_run(run_id).status == "stopped"


def test_without_a_run_in_the_url_the_newest_active_run_is_shown(app, dashboard_env):
    write_run(dashboard_env.store, status="completed")
    active = write_run(dashboard_env.store, status="running")
    write_run(dashboard_env.store, status="failed")
    at = ok(app().run())
    assert at.session_state["current_run"] == active
    assert at.query_params["run"] == active


def test_no_run_at_all_opens_the_setup(app):
    at = ok(app().run())
    assert at.session_state["view"] == "setup"
    at.segmented_control(key="view").set_value("run")
    ok(at.run())
    assert "No experiment yet" in at.info[0].value


def test_a_finished_run_shows_results(app, dashboard_env):
    images = dashboard_env.datasets / "horses-or-humans" / "validation"
    run_id = write_run(dashboard_env.store, status="completed", epochs_done=5, images=images)
    at = ok(app(run=run_id).run())
    assert at.subheader[0].value == "After the run"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["ImageNet weights: final val. accuracy"] == "86.0%"  # from the summary
    assert len(at.get("plotly_chart")) == 4  # curves, overlay, 2 confusion matrices
    at.session_state["results.tab"] = "Misclassified images"
    ok(at.run())
    assert any("2 of 8 validation images wrong" in m.value for m in at.markdown)
    assert at.image
    at.session_state["results.tab"] = "Downloads"
    ok(at.run())
    assert [d.label for d in at.download_button][0] == "Metrics (CSV)"
    # the synthetic run has no saved model: a message, not a traceback
    assert any("has no trained imagenet model yet" in e for e in errors(at))


def test_a_failed_run_shows_its_error(app, dashboard_env):
    run_id = write_run(dashboard_env.store, status="failed", epochs_done=1)
    at = ok(app(run=run_id).run())
    assert "boom: synthetic failure" in errors(at)
    assert any("This run has no results" in i.value for i in at.info)


def test_a_deleted_run_in_the_url_falls_back(app, dashboard_env):
    at = ok(app(run="20000101-000000-dead").run())
    assert at.session_state["view"] == "setup"
    assert "run" not in at.query_params


# --- runs page ------------------------------------------------------------------------------


def test_runs_page_without_runs(app):
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    assert "No experiments yet" in at.info[0].value


def test_runs_page_lists_every_run_and_overlays_the_selected(app, dashboard_env):
    a = write_run(dashboard_env.store, status="completed", epochs_done=5)
    b = write_run(dashboard_env.store, status="completed", epochs_done=5)
    c = write_run(dashboard_env.store, status="running")
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    table = at.dataframe[0].value
    assert list(table["run"]) == [c, b, a]
    assert list(table["status"]) == ["running", "completed", "completed"]
    assert table.loc[1, "best_imagenet"] == pytest.approx(1.02)
    assert table["best_imagenet_balanced"].isna().all()  # measured by none of these runs
    assert any("Select runs" in x.value for x in at.caption)
    at.session_state["runs_table"] = {"selection": {"rows": [1, 2], "columns": []}}
    ok(at.run())
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace["name"] for trace in spec["data"]]
    assert names == [
        f"{b} · ImageNet weights",
        f"{b} · Random weights",
        f"{a} · ImageNet weights",
        f"{a} · Random weights",
    ]


def test_delete_asks_first_and_refuses_an_active_run(app, dashboard_env):
    done = write_run(dashboard_env.store, status="completed")
    active = write_run(dashboard_env.store, status="running")
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    at.session_state["runs_table"] = {"selection": {"rows": [0, 1], "columns": []}}
    ok(at.run())
    [b for b in at.button if b.label == "Delete…"][0].click()
    ok(at.run())
    assert "Delete 2 run(s)" in at.warning[0].value
    assert len(dashboard_env.store.list_runs()) == 2  # nothing deleted yet
    [b for b in at.button if b.label == "Yes, delete"][0].click()
    ok(at.run())
    remaining = [r.run_id for r in dashboard_env.store.list_runs()]
    assert remaining == [active]
    assert any("stop it first" in e for e in errors(at))
    assert any(done in s.value for s in at.success)


def test_cancel_keeps_the_runs(app, dashboard_env):
    write_run(dashboard_env.store, status="completed")
    at = ok(app().run())
    ok(at.switch_page(RUNS_PAGE).run())
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    ok(at.run())
    [b for b in at.button if b.label == "Delete…"][0].click()
    ok(at.run())
    [b for b in at.button if b.label == "Cancel"][0].click()
    ok(at.run())
    assert not at.warning and len(dashboard_env.store.list_runs()) == 1


def test_reattach_opens_the_running_experiment(app, dashboard_env):
    write_run(dashboard_env.store, status="completed")
    active = write_run(dashboard_env.store, status="running")
    at = ok(app().run())
    at.segmented_control(key="view").set_value("setup")
    ok(at.run())
    ok(at.switch_page(RUNS_PAGE).run())
    at.button(key=f"reattach.{active}").click()
    ok(at.run())
    assert at.session_state["view"] == "run"
    assert at.session_state["current_run"] == active
    assert at.button(key=f"stop.{active}")


# --- explain page and language ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "title", "first"),
    [
        ("en", "Explain: the ideas behind the experiment", "Transfer learning vs traditional"),
        ("de", "Erklärungen: die Ideen hinter dem Experiment", "Transfer Learning und klassisches"),
    ],
)
def test_explain_page_in_both_languages(app, lang, title, first):
    at = ok(app(lang=lang).run())
    ok(at.switch_page(EXPLAIN_PAGE).run())
    assert at.title[0].value == title
    assert at.subheader[0].value.startswith(first)
    assert len(at.subheader) >= 5


def test_try_it_opens_the_control_on_the_setup(app):
    at = ok(app().run())
    ok(at.switch_page(EXPLAIN_PAGE).run())
    [b for b in at.button if "the fine-tuning learning rate" in b.label][0].click()
    ok(at.run())
    assert at.session_state["view"] == "setup"
    assert any("the fine-tuning learning rate" in i.value for i in at.info)
    assert widget(at, "select_slider", "phase2.lr")


def test_language_switch(app):
    at = ok(app().run())
    at.segmented_control(key="lang").set_value("de")
    ok(at.run())
    assert at.title[0].value == "ImageNet-Gewichte gegen Zufallsgewichte"
    assert start_button(at).label == "Start"
    assert widget(at, "number_input", "phase1.epochs").label == "Epochen (Phase 1)"


def test_the_setup_form_does_not_import_tensorflow(dashboard_env):
    """TensorFlow costs seconds and memory in the server; only models need it."""
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        f"AppTest.from_file({str(APP)!r}, default_timeout=60).run(); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1:] == ["False"], out.stderr[-2000:]
