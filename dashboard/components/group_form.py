"""The Setup view of a session that joined a group exercise: the setup form limited to the
exercise's choices, and Start for the group's own run.

In a ``seminar`` exercise everything is fixed and the group's side decides the arm: the
form shows the settings and Start. In a ``free`` exercise the group chooses the backbone
(of the allowed ones), images per class and epochs (up to the limits), the learning rates,
the fine-tuning depth and the arms; the rest is the exercise's. The engine checks the
choice again (:func:`dashboard.state.start_group_run`), and each group has at most one
queued or running run. Widget keys are ``group.<exercise>.<config key>``, apart from the
full form's, so the presenter's own Setup form is untouched.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import form, state
from dashboard.i18n import labels, t

ARM_NAMES = ("imagenet", "random")
FREE_KEYS = (
    "backbone",
    "train_per_class",
    "phase1.epochs",
    "phase1.lr",
    "phase2.epochs",
    "phase2.lr",
    "phase2.unfreeze_blocks",
    "arms",
)


def render(exercise: Any, group: Any) -> None:
    """The limited form of ``group`` in ``exercise`` (from :func:`dashboard.state.my_group`)."""
    rules = exercise.rules
    base = state.group_config()
    prefix = f"group.{exercise.exercise_id}."
    st.subheader(t("groups.form.title", group=group.name))
    if rules.mode == "seminar":
        st.caption(t("groups.form.seminar", side=group.side, arm=t(f"arm.{base.arms[0]}")))
        chosen: dict[str, Any] = {}
    else:
        st.caption(
            t(
                "groups.rules.free",
                epochs=rules.max_epochs or "–",
                images=rules.max_train_per_class or t("all"),
                backbones=", ".join(rules.allowed_backbones()),
            )
        )
        chosen = _free_widgets(rules, base, prefix)
    config, problem = state.attempt(_config, base, chosen)
    _fixed(config or base, chosen)
    mine = state.board()
    active = (
        [r for r in mine.runs if r.group_name == group.name and r.active]
        if mine.exercise and mine.exercise.exercise_id == exercise.exercise_id
        else []
    )
    if active:
        run = active[0]
        queued = [r.run_id for r in mine.runs if r.status == "queued"]
        place = queued.index(run.run_id) + 1 if run.run_id in queued else 0
        st.info(
            t("groups.form.active", id=run.run_id, status=t(f"status.{run.status}"), place=place)
        )
        st.button(
            t("groups.form.stop"), key=prefix + "stop", icon=":material/stop:", on_click=_stop
        )
    st.button(
        t("groups.form.start"),
        key=prefix + "start",
        type="primary",
        icon=":material/play_arrow:",
        disabled=problem is not None or bool(active) or not exercise.is_open,
        on_click=_start,
        args=(config,),
    )
    if error := st.session_state.pop("group.start_error", None) or problem:
        st.error(error)


def _free_widgets(rules: Any, base: Any, prefix: str) -> dict[str, Any]:
    for key, value in form.widget_values(base, list(rules.allowed_backbones())).items():
        if key in FREE_KEYS:
            st.session_state.setdefault(prefix + key, value)
    catalogue = {b["id"]: b["name"] for b in state.catalogue()}
    limit = rules.max_train_per_class
    sizes = [o for o in form.TRAIN_PER_CLASS_OPTIONS if o != form.ALL and (not limit or o <= limit)]
    if not limit:
        sizes.append(form.ALL)
    if st.session_state.get(prefix + "train_per_class") not in sizes:
        st.session_state[prefix + "train_per_class"] = sizes[-1]
    max_epochs = rules.max_epochs or form.MAX_EPOCHS
    left, right = st.columns(2, gap="large")
    with left:
        st.selectbox(
            t("field.backbone"),
            list(rules.allowed_backbones()),
            key=prefix + "backbone",
            format_func=lambda b: catalogue.get(b, b),
        )
        st.select_slider(
            t("field.train_per_class"),
            options=sizes,
            key=prefix + "train_per_class",
            format_func=lambda v: t("all") if v == form.ALL else str(v),
        )
        st.pills(
            t("field.arms"),
            list(ARM_NAMES),
            selection_mode="multi",
            key=prefix + "arms",
            format_func=labels("arm", ARM_NAMES).get,
        )
    with right:
        for phase in ("phase1", "phase2"):
            epochs, lr = st.columns(2)
            epochs.number_input(
                t(f"field.{phase}.epochs"), 0, max_epochs, step=1, key=f"{prefix}{phase}.epochs"
            )
            lr.select_slider(
                t(f"field.{phase}.lr"),
                options=form.LR_OPTIONS,
                key=f"{prefix}{phase}.lr",
                format_func=lambda v: f"{v:.0e}",
            )
        st.number_input(
            t("field.phase2.unfreeze_blocks"), 0, 100, step=1, key=prefix + "phase2.unfreeze_blocks"
        )
    values = {key: st.session_state.get(prefix + key) for key in FREE_KEYS}
    if values["train_per_class"] == form.ALL:
        values["train_per_class"] = None
    values["arms"] = list(values["arms"] or [])
    return values


def _config(base: Any, chosen: dict[str, Any]) -> Any:
    config = form.ExperimentConfig.from_dict(base.to_dict())
    for key, value in chosen.items():
        config.set(key, value)
    return state.check_group_choice(config.validate())


def _fixed(config: Any, chosen: dict[str, Any]) -> None:
    """The settings the group can't change, as a small table."""
    data = config.to_dict()
    rows = []
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            name = f"{key}.{sub}" if sub else key
            if name not in chosen:
                shown = t("all") if v is None and name == "train_per_class" else _text(v)
                rows.append({t("groups.form.setting"): name, t("groups.form.value"): shown})
    with st.expander(t("groups.form.fixed"), expanded=not chosen):
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "–" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _stop() -> None:
    """Stop callback: the group's own run only (the presenter stops any on the board)."""
    error = state.attempt(state.stop_my_group_run).error
    if error is not None:
        st.session_state["group.start_error"] = error


def _start(config: Any) -> None:
    run_id, error = state.attempt(state.start_group_run, config)
    if error is not None:
        st.session_state["group.start_error"] = error
        return
    st.session_state["current_run"] = run_id
    st.session_state["view"] = "run"
    st.query_params["run"] = run_id
