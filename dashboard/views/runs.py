"""Runs page: every experiment in a table; select some to overlay their curves, open one
(reattach to a running experiment), or delete them after a confirmation; below, the
series of runs (the "Near or far" preset) as one chart each."""

import streamlit as st

from dashboard import figures, history, roles, state
from dashboard.components import series
from dashboard.i18n import figure_labels, labels, t

METRICS = ("val_accuracy", "val_balanced_accuracy", "val_loss", "accuracy", "loss")


def open_run(run_id: str) -> None:
    st.session_state["current_run"] = run_id
    st.session_state["view"] = "run"
    st.switch_page("views/experiment.py", query_params={"run": run_id})


def delete_runs(run_ids: list[str]) -> None:
    """Confirmed delete (a callback): remove the runs and clear the table's selection."""
    problems = []
    for run_id in run_ids:
        _, problem = state.attempt(state.delete_run, run_id)
        if problem is not None:
            problems.append(problem)
    st.session_state.pop("confirm_delete", None)
    st.session_state["runs_table"] = {"selection": {"rows": [], "columns": []}}
    st.session_state["delete_problems"] = problems
    st.session_state["deleted"] = [r for r in run_ids if not any(r in p for p in problems)]


st.title(t("runs.title"))
state.require_store()
runs = state.list_runs()

for problem in st.session_state.pop("delete_problems", []):
    st.error(problem)
if deleted := st.session_state.pop("deleted", None):
    st.success(t("runs.deleted", ids=", ".join(deleted)))

if not runs:
    st.info(t("runs.empty"))
    st.stop()

for run in (r for r in runs if r.active):
    with st.container(border=True, horizontal=True, vertical_alignment="center"):
        st.markdown(t("runs.active", id=run.run_id, status=t(f"status.{run.status}")))
        if st.button(
            t("runs.reattach"), key=f"reattach.{run.run_id}", icon=":material/monitoring:"
        ):
            open_run(run.run_id)

table = history.history_frame(
    runs, state.best_val_accuracy(), state.best_val_accuracy("val_balanced_accuracy")
)
percent = st.column_config.NumberColumn
event = st.dataframe(
    table,
    key="runs_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    width="stretch",
    column_config={
        "run": st.column_config.TextColumn(t("runs.col.run")),
        "status": st.column_config.TextColumn(t("runs.col.status")),
        "created": st.column_config.DatetimeColumn(
            t("runs.col.created"), format="YYYY-MM-DD HH:mm"
        ),
        "dataset": st.column_config.TextColumn(t("runs.col.dataset")),
        "backbone": st.column_config.TextColumn(t("runs.col.backbone")),
        "image_size": st.column_config.NumberColumn(t("runs.col.image_size")),
        "train_per_class": st.column_config.NumberColumn(t("runs.col.train_per_class")),
        "epochs": st.column_config.TextColumn(t("runs.col.epochs")),
        "phase1.lr": st.column_config.NumberColumn(t("runs.col.lr1"), format="%.0e"),
        "phase2.lr": st.column_config.NumberColumn(t("runs.col.lr2"), format="%.0e"),
        "reuse_blocks": st.column_config.NumberColumn(t("runs.col.reuse_blocks")),
        "phase2.unfreeze_blocks": st.column_config.NumberColumn(t("runs.col.blocks")),
        "batch_size": st.column_config.NumberColumn(t("runs.col.batch")),
        "best_imagenet": percent(t("runs.col.best_imagenet"), format="percent"),
        "best_random": percent(t("runs.col.best_random"), format="percent"),
        "best_imagenet_balanced": percent(t("runs.col.best_imagenet_balanced"), format="percent"),
        "best_random_balanced": percent(t("runs.col.best_random_balanced"), format="percent"),
        "wall_s": st.column_config.NumberColumn(t("runs.col.wall"), format="%.0f s"),
    },
)
selected = [table.iloc[i]["run"] for i in event.selection.rows if i < len(table)]

with st.container(horizontal=True, vertical_alignment="center"):
    if st.button(t("runs.open"), disabled=len(selected) != 1, icon=":material/monitoring:"):
        open_run(selected[0])
    if roles.is_presenter() and st.button(
        t("runs.delete"), disabled=not selected, icon=":material/delete:"
    ):
        st.session_state["confirm_delete"] = selected
    st.caption(t("runs.selected", n=len(selected)) if selected else t("runs.select_hint"))

if (pending := st.session_state.get("confirm_delete")) and roles.is_presenter():
    with st.container(border=True):
        st.warning(
            t("runs.confirm", n=len(pending), ids=", ".join(pending)), icon=":material/warning:"
        )
        with st.container(horizontal=True):
            st.button(t("runs.confirm_yes"), type="primary", on_click=delete_runs, args=(pending,))
            if st.button(t("runs.confirm_no")):
                st.session_state.pop("confirm_delete", None)
                st.rerun()

st.subheader(t("runs.overlay"))
if not selected:
    st.caption(t("runs.overlay_hint"))
else:
    left, right = st.columns([2, 1])
    metric = left.segmented_control(
        t("runs.metric"),
        METRICS,
        default="val_accuracy",
        required=True,
        format_func=labels("fig", METRICS).get,
        key="runs_metric",
    )
    arm_names = ("imagenet", "random")
    arms = right.pills(
        t("field.arms"),
        arm_names,
        selection_mode="multi",
        default=["imagenet", "random"],
        format_func=labels("arm", arm_names).get,
        key="runs_arms",
    )
    with state.shown_errors():
        st.plotly_chart(
            figures.runs_overlay(
                state.overlay_curves(selected),
                metric=metric or "val_accuracy",
                arms=arms or [],
                labels=figure_labels(),
            ),
            config={"displaylogo": False},
        )

series.render()
