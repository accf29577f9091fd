"""The Series section of the Runs page: a series of runs (the "Near or far" preset) as one
chart, accuracy against the blocks taken over, one line per data set and arm.

The chart is a fragment that rereads the series every ``REFRESH_S`` seconds while any of
its runs is queued or running (a running run shows its best epoch so far), and stops the
timer once all have finished.
"""

from __future__ import annotations

import streamlit as st

from dashboard import figures, state
from dashboard.i18n import figure_labels, labels, t

REFRESH_S = 2.0
METRICS = ("best_val_accuracy", "best_val_balanced_accuracy")


def render() -> None:
    """Draw the section if the store holds any series (newest first in the picker)."""
    with state.shown_errors():
        sweeps = state.sweep_ids()
        if not sweeps:
            return
        st.subheader(t("series.title"))
        if started := st.session_state.pop("series_started", None):
            n = len({r["run_id"] for r in state.series_view(started).rows})
            st.success(t("series.started", id=started, n=n), icon=":material/check:")
        wanted = st.session_state.get("series")
        if wanted in sweeps and st.session_state.get("series_pick") not in sweeps:
            st.session_state["series_pick"] = wanted
        left, right = st.columns([2, 1])
        sweep_id = left.selectbox(t("series.pick"), sweeps, key="series_pick")
        metric = right.segmented_control(
            t("series.metric"),
            METRICS,
            default=METRICS[0],
            required=True,
            format_func=labels("fig", METRICS).get,
            key="series_metric",
        )
        if sweep_id is None:
            return
        active = state.series_view(sweep_id).active
    st.fragment(_chart, run_every=REFRESH_S if active else None)(
        sweep_id, metric or METRICS[0], active
    )


def _chart(sweep_id: str, metric: str, was_active: bool) -> None:
    with state.shown_errors():
        view = state.series_view(sweep_id)
        names = {}
        for dataset in {r["dataset"] for r in view.rows}:
            entry = state.named_dataset(dataset)
            names[dataset] = entry["title"] if entry else dataset
        chance = view.balanced_chance if metric == "best_val_balanced_accuracy" else None
        st.plotly_chart(
            figures.transfer_depth(view.rows, metric, {**figure_labels(), **names}, chance=chance),
            config={"displaylogo": False},
            key=f"series_chart.{sweep_id}",
        )
        runs = {r["run_id"]: r["status"] for r in view.rows}
        done = sum(1 for s in runs.values() if s not in ("queued", "running"))
        st.caption(t("series.progress", done=done, total=len(runs)) + " " + t("series.hint"))
        if was_active and not view.active:
            st.rerun()  # all finished: draw once more without the timer
