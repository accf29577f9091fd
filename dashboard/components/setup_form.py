"""The Setup view: data, backbone and how many of its blocks to take over, freeze depth
with its layer map, learning rates, arms, presets and Start.

Every config field is one widget keyed by its dotted name (see :mod:`dashboard.form`), with
``persist_state="session"`` so the form survives page switches. Start runs in a callback:
it builds the config from Session State, starts a worker through the job manager and
switches the page to the run view; a refusal lands in ``start_error`` and is shown here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import figures, form, state
from dashboard.components import lr_finder
from dashboard.form import (
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    OPTIMIZERS,
    RANDOM_POLICIES,
)
from dashboard.form import ExperimentConfig as Config
from dashboard.i18n import figure_labels, labels, lang, t

KEEP = {"persist_state": "session"}
ARM_NAMES = ("imagenet", "random")


def render() -> None:
    """Draw the form; the action bar on top is filled last, from the final values."""
    ids = [b["id"] for b in state.catalogue()]
    _init_state(ids)
    bar = st.container()
    data_col, model_col, train_col = st.columns(3, gap="large")
    with data_col:
        report = _data_section()
    with model_col:
        blocks = _backbone_section(ids)
    with train_col:
        _arms_and_training_section()
    st.divider()
    p1_col, p2_col, map_col = st.columns([1, 1, 1.1], gap="large")
    with p1_col:
        _phase1_section()
    with p2_col:
        report_blocks = _phase2_section(blocks)
    with map_col:
        _layer_map(report_blocks)
    with bar:
        _action_bar(ids, report, blocks)


# --- state --------------------------------------------------------------------------------


def _init_state(ids: list[str]) -> None:
    for key, value in form.widget_values(Config(), ids).items():
        st.session_state.setdefault(key, value)


def _help(key: str) -> str:
    return f"`{key}` · {t(f'help.{key}')}"


def _apply_preset(name: str, ids: list[str]) -> None:
    keep = {k: st.session_state.get(k) for k in ("dataset", "dataset_source")}
    values = form.widget_values(form.preset_config(name), ids)
    for key, value in values.items():
        if key not in keep:
            st.session_state[key] = value
    st.session_state["preset_applied"] = name
    st.session_state.pop("start_error", None)


def _source_changed() -> None:
    source = st.session_state.get("dataset_source")
    if source in form.NAMED_SOURCES:
        st.session_state["dataset"] = source
    elif form.source_of(st.session_state.get("dataset", "")) != source:
        st.session_state["dataset"] = ""


def _zip_uploaded() -> None:
    """Upload callback: extract the zip and point ``dataset`` at it; a refusal lands in
    ``upload_error`` and ``dataset`` is cleared (not left pointing at an older upload)."""
    upload = st.session_state.get("dataset_zip")
    st.session_state.pop("upload_error", None)
    if upload is None:
        return
    root, error = state.attempt(state.save_upload, upload.name, upload.getvalue())
    if error is not None:
        st.session_state["upload_error"] = error
        st.session_state["dataset"] = ""
        return
    st.session_state["dataset"] = str(root)


def started(call: Callable[[], str], error_key: str) -> str | None:
    """In a Start callback: ``call()``'s id, or None with its refusal in Session State's
    ``error_key`` (the form shows it on the rerun). An older refusal is cleared first."""
    st.session_state.pop(error_key, None)
    started_id, error = state.attempt(call)
    if error is not None:
        st.session_state[error_key] = error
        return None
    return started_id


def _show_run(run_id: str | None) -> None:
    if run_id is not None:
        st.session_state["current_run"] = run_id
        st.session_state["view"] = "run"
        st.query_params["run"] = run_id


def _start() -> None:
    """Start callback: validate, spawn the worker, show the run."""
    _show_run(started(_checked_start, "start_error"))


def _start_near_far() -> None:
    """The "Near or far" preset: queue the whole series and show it on the Runs page."""
    sweep_id = started(state.start_near_far, "start_error")
    if sweep_id is not None:
        st.session_state["series"] = sweep_id
        st.session_state["series_started"] = sweep_id
        st.switch_page("views/runs.py")


def _start_hydra() -> None:
    """The "HydraNet" preset: queue shared and separate, show the shared run."""
    _show_run(started(state.start_hydra, "start_error"))


def _checked_start() -> str:
    config = form.config_from_values(st.session_state)
    _cross_check(config)
    return state.start(config)


def _cross_check(config: Config) -> None:
    """Checks needing the blocks and the data set; the engine repeats them in the worker."""
    block_count = len(state.blocks_for(config.backbone))
    if problem := state.backbone_problem(config.backbone, config.image_size):
        raise state.UserError(problem)
    report = state.inspect_current(config.dataset)
    if report["problems"]:
        raise state.UserError("; ".join(report["problems"]))
    images = form.train_images(report, config.train_per_class)
    form.check_against(config, block_count=block_count, train_images=images)


# --- sections -----------------------------------------------------------------------------


def _action_bar(ids: list[str], report: dict | None, blocks: list | None) -> None:
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left, st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"**{t('presets.label')}**", help=t("presets.help"))
        for name in form.PRESETS:
            st.button(
                t(f"preset.{name}"),
                key=f"preset.{name}",
                help=t(f"preset.{name}.help"),
                on_click=_apply_preset,
                args=(name, ids),
            )
        if st.button(
            t("preset.near_far"),
            key="preset.near_far",
            help=t("preset.near_far.help"),
            icon=":material/stacked_line_chart:",
        ):
            _start_near_far()
        st.button(
            t("hydra.preset"),
            key="preset.hydra",
            help=t("hydra.preset.help"),
            icon=":material/account_tree:",
            on_click=_start_hydra,
        )
    config, problem = state.attempt(form.config_from_values, st.session_state)
    if problem is not None and report is None and problem.startswith("dataset:"):
        problem = None  # the data section says what is missing
    if problem is None and (report is None or report.get("problems") or blocks is None):
        problem = t("setup.fix_above")  # the section below names the problem
    if problem is None and config is not None:
        _, problem = state.attempt(
            lambda: form.check_against(
                config,
                block_count=len(blocks),
                train_images=form.train_images(report, config.train_per_class),
            )
        )
    with right:
        st.button(
            t("start"),
            key="start",
            type="primary",
            icon=":material/play_arrow:",
            on_click=_start,
            disabled=problem is not None,
            width="stretch",
        )
    applied = st.session_state.pop("preset_applied", None)
    if applied:
        st.success(t("presets.applied", name=t(f"preset.{applied}")), icon=":material/check:")
    if loaded := st.session_state.pop("loaded_into_setup", None):  # a sweep's trial
        st.success(loaded, icon=":material/input:")
    start_error = st.session_state.pop("start_error", None)
    if start_error:
        st.error(start_error)
    elif problem:
        st.error(problem)
    elif config is not None and report is not None:
        st.caption(_summary(config, report, blocks))


def _summary(config: Config, report: dict, blocks: list | None) -> str:
    epochs = config.phase1.epochs + config.phase2.epochs
    return t(
        "setup.summary",
        arms=" + ".join(t(f"arm.{a}") for a in config.arms),
        epochs=epochs,
        images=form.train_images(report, config.train_per_class),
        size=config.image_size or state.native_size(config.backbone),
    )


def _data_section() -> dict | None:
    st.subheader(t("setup.data"))
    source = st.radio(
        t("field.dataset_source"),
        form.SOURCES,
        key="dataset_source",
        format_func=labels("source", form.SOURCES).get,
        horizontal=True,
        on_change=_source_changed,
        **KEEP,
    )
    if source == "upload":
        # No type= filter: Streamlit would answer a wrong file with an exception; the
        # upload callback refuses it with a message instead.
        st.file_uploader(
            t("field.upload"),
            key="dataset_zip",
            on_change=_zip_uploaded,
            help=t("upload.help", mb=state.upload_cap_mb()),
        )
        if err := st.session_state.get("upload_error"):
            st.error(err)
    st.text_input(
        t("field.dataset"),
        key="dataset",
        disabled=source != "folder",
        placeholder=t("dataset.placeholder"),
        help=_help("dataset"),
        **KEEP,
    )
    st.select_slider(
        t("field.train_per_class"),
        options=form.TRAIN_PER_CLASS_OPTIONS,
        key="train_per_class",
        format_func={
            v: t("all") if v == form.ALL else str(v) for v in form.TRAIN_PER_CLASS_OPTIONS
        }.get,
        help=_help("train_per_class"),
        **KEEP,
    )
    dataset = str(st.session_state.get("dataset") or "").strip()
    if not dataset:
        st.info(t("dataset.missing"))
        return None
    report = None
    with state.shown_errors(), st.spinner(t("dataset.inspecting")):
        report = state.inspect_current(dataset)
    if report is None:
        return None
    _data_report(dataset, report)
    if report.get("tasks"):
        _task_fields(list(report["tasks"]))
    return report


def _task_fields(tasks: list[str]) -> None:
    """A data set with several tasks: which to train (none chosen: all), and whether they
    share one backbone (a HydraNet) or get one network each."""
    chosen = st.session_state.get("tasks") or []
    st.session_state["tasks"] = [x for x in chosen if x in tasks]  # another data set's
    st.multiselect(
        t("hydra.field.tasks"),
        tasks,
        key="tasks",
        placeholder=t("hydra.all_tasks"),
        help=_help("tasks"),
        **KEEP,
    )
    st.radio(
        t("hydra.field.hydra"),
        form.HYDRA_MODES,
        key="hydra",
        format_func=lambda mode: t(f"hydra.fig.{mode}"),
        horizontal=True,
        help=_help("hydra"),
        **KEEP,
    )


def _named_about(dataset: str) -> None:
    """A named data set's title, licence, citation and notes (``assets/datasets.json``)."""
    entry = state.named_dataset(dataset)
    if entry is None:
        return
    st.caption(
        t(
            "dataset.about",
            title=entry["title"],
            licence=entry["licence"],
            citation=entry["citation"],
        )
    )
    if note := entry["notes"].get(lang()) or entry["notes"].get("en"):
        st.caption(note)


def _data_report(dataset: str, report: dict) -> None:
    _named_about(dataset)
    splits = report["splits"]
    per_class = ", ".join(f"{c} {n}" for c, n in splits["train"].items())
    st.caption(
        t(
            "dataset.counts",
            classes=len(report["classes"]),
            train=sum(splits["train"].values()),
            per_class=per_class,
            validation=sum(splits["validation"].values()),
        )
    )
    for problem in report["problems"]:
        st.error(problem)
    with state.shown_errors():
        thumbs = state.samples_current(dataset)
        for name, images in thumbs.items():
            if images:
                st.caption(name)
                st.image(images, width=72)
    skipped = state.upload_skipped(dataset) + report["skipped"]
    with st.expander(t("dataset.skipped", n=len(skipped)), expanded=False):
        if skipped:
            frame = pd.DataFrame(skipped).rename(
                columns={"path": t("dataset.skipped.path"), "reason": t("dataset.skipped.reason")}
            )
            st.dataframe(frame, hide_index=True, width="stretch")
        else:
            st.caption(t("dataset.skipped.none"))
        for note in report.get("notes", []):
            st.caption(note)


def _backbone_label(entry: dict[str, Any] | None) -> str:
    """``✓ name`` for a backbone that loads offline, ``☁ name`` for one that needs the
    network (TF Hub), ``… custom`` for the free-text choice."""
    if entry is None:
        return t("backbone.custom")
    return f"{'✓' if entry['offline'] else '☁'} {entry['name']}"


def _backbone_section(ids: list[str]) -> list | None:
    st.subheader(t("setup.backbone"))
    by_id = {b["id"]: b for b in state.catalogue()}
    options = [*ids, form.CUSTOM_BACKBONE]
    choice = st.selectbox(
        t("field.backbone"),
        options,
        key="backbone",
        format_func={i: _backbone_label(by_id.get(i)) for i in options}.get,
        help=_help("backbone"),
        **KEEP,
    )
    if choice == form.CUSTOM_BACKBONE:
        st.text_input(
            t("field.backbone_custom"),
            key="backbone_custom",
            placeholder="https://tfhub.dev/... | /path/to/saved_model",
            help=_help("backbone"),
            **KEEP,
        )
    backbone = form.config_dict(st.session_state).get("backbone", "")
    native = 224
    if entry := by_id.get(choice):
        native = entry["input_size"]
        size_m = f"{entry['params_millions']} M · " if entry.get("params_millions") else ""
        where = t("backbone.offline" if entry["offline"] else "backbone.online")
        st.caption(f"{where} · {size_m}{native}×{native} px · {entry.get('citation', '')}")
    st.number_input(
        t("field.image_size"),
        min_value=MIN_IMAGE_SIZE,
        max_value=MAX_IMAGE_SIZE,
        step=8,
        key="image_size",
        placeholder=t("image_size.native", n=native),
        help=_help("image_size"),
        **KEEP,
    )
    if not backbone:
        st.info(t("backbone.missing"))
        return None
    blocks = problem = None
    with state.shown_errors(), st.spinner(t("backbone.preparing")):
        blocks = state.blocks_for(backbone)
        problem = state.backbone_problem(backbone, st.session_state.get("image_size"))
    if blocks is None:
        return None
    if problem:
        st.error(problem)
        return None
    _reuse_blocks(backbone, blocks)
    return blocks


def _reuse_blocks(backbone: str, blocks: list) -> None:
    """How many blocks to take over (``reuse_blocks``), with the feature width and the
    parameters at the cut."""
    key, count = "reuse_blocks", len(blocks)
    widths = state.block_widths(backbone)
    value = st.session_state.get(key)
    if value is not None and value > count:
        st.session_state[key] = value = count
    st.number_input(
        t(f"field.{key}"),
        min_value=1,
        max_value=count,
        step=1,
        key=key,
        placeholder=t("reuse.all", n=count),
        disabled=widths is None and value is None,
        help=_help(key),
        **KEEP,
    )
    if widths is None:
        st.caption(t("reuse.not_cuttable"))
        return
    kept = value or count
    kept_params = sum(b.params for b in blocks[:kept])
    if value is None or kept == count:
        st.caption(t("reuse.whole", total=count, width=widths[-1], kept=figures.count(kept_params)))
        return
    st.caption(
        t(
            "reuse.caption",
            name=blocks[kept - 1].name,
            k=kept,
            total=count,
            width=widths[kept - 1],
            kept=figures.count(kept_params),
            removed=figures.count(sum(b.params for b in blocks[kept:])),
        )
    )


def _arms_and_training_section() -> None:
    st.subheader(t("setup.arms"))
    arms = st.pills(
        t("field.arms"),
        list(ARM_NAMES),
        selection_mode="multi",
        key="arms",
        format_func=labels("arm", ARM_NAMES).get,
        help=_help("arms"),
        **KEEP,
    )
    st.radio(
        t("field.random_policy"),
        RANDOM_POLICIES,
        key="random_policy",
        format_func=labels("policy", RANDOM_POLICIES).get,
        disabled="random" not in (arms or []),
        help=_help("random_policy"),
        **KEEP,
    )
    st.subheader(t("setup.training"))
    left, right = st.columns(2)
    left.number_input(
        t("field.batch_size"),
        min_value=1,
        max_value=4096,
        step=1,
        key="batch_size",
        help=_help("batch_size"),
        **KEEP,
    )
    right.selectbox(
        t("field.optimizer"), OPTIMIZERS, key="optimizer", help=_help("optimizer"), **KEEP
    )
    st.slider(
        t("field.dropout"),
        0.0,
        0.9,
        step=0.05,
        key="dropout",
        help=_help("dropout"),
        **KEEP,
    )
    st.number_input(
        t("field.seed"), min_value=0, max_value=2**31 - 1, key="seed", help=_help("seed"), **KEEP
    )
    st.toggle(t("field.augment"), key="augment", help=_help("augment"), **KEEP)


def _lr_text(value: float) -> str:
    return f"{value:.0e}"


def _lr_slider(key: str) -> None:
    # Streamlit would silently reset a value that is not a step; say what happened instead.
    value = st.session_state.get(key)
    if value not in form.LR_OPTIONS:
        snapped, problem = form.snap_lr(key, value)
        st.session_state[key] = snapped
        if problem:
            st.warning(problem, icon=":material/tune:")
    st.select_slider(
        t(f"field.{key}"),
        options=form.LR_OPTIONS,
        key=key,
        format_func=_lr_text,
        help=_help(key),
        **KEEP,
    )


def _epochs(key: str) -> None:
    st.number_input(
        t(f"field.{key}"),
        min_value=0,
        max_value=MAX_EPOCHS,
        step=1,
        key=key,
        help=_help(key),
        **KEEP,
    )


def _phase1_section() -> None:
    st.subheader(t("setup.phase1"))
    st.caption(t("setup.phase1.caption"))
    _epochs("phase1.epochs")
    _lr_slider("phase1.lr")
    lr_finder.render(1)


def _phase2_section(blocks: list | None) -> dict | None:
    st.subheader(t("setup.phase2"))
    st.caption(t("setup.phase2.caption"))
    _epochs("phase2.epochs")
    _lr_slider("phase2.lr")
    lr_finder.render(2)
    reuse = st.session_state.get("reuse_blocks")
    if blocks and reuse is not None and reuse > len(blocks):
        reuse = None  # the backbone section clamps it on its next run
    count = (reuse or len(blocks)) if blocks else 30  # counted within the kept blocks
    key = "phase2.unfreeze_blocks"
    # Set it anew each run: a slider whose range changed (another cut) would otherwise
    # start again from 0.
    st.session_state[key] = min(st.session_state.get(key, 0), count)
    unfreeze_blocks = st.slider(
        t(f"field.{key}"), 0, count, step=1, key=key, help=_help(key), **KEEP
    )
    if not blocks:
        return None
    report = state.freeze_report(blocks, unfreeze_blocks, reuse)
    left, right = st.columns(2)
    left.metric(t("map.trainable"), figures.count(report["trainable_params"]))
    right.metric(t("map.frozen"), figures.count(report["frozen_params"]))
    if st.session_state.get("random_policy") == "scratch" and "random" in (
        st.session_state.get("arms") or []
    ):
        st.caption(t("map.scratch_note"))
    return report


def _layer_map(report: dict | None) -> None:
    st.subheader(t("setup.map"))
    if report is None:
        st.info(t("map.unavailable"))
        return
    st.caption(
        t("map.caption", n=report["unfreeze_blocks"], total=report["reuse_blocks"]),
        help=t("map.help"),
    )
    if removed := report["block_count"] - report["reuse_blocks"]:
        st.caption(t("map.removed", n=removed))
    st.plotly_chart(
        figures.layer_map(report, labels=figure_labels()),
        config={"displayModeBar": False},
        key="layer_map",
    )
