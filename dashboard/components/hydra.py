"""The Run view's HydraNet panel: a run on a data set with several tasks shows one curve
panel per task (both arms in each) and, beside it, what ``shared`` and ``separate`` cost,
measured in this run and its counterpart (the HydraNet preset queues both)."""

from __future__ import annotations

import streamlit as st

from dashboard import hydra_figures, state
from dashboard.i18n import t
from dashboard.state import Run


def is_hydra(run: Run) -> bool:
    """Whether ``run`` trains several tasks (known once its data set has loaded)."""
    return bool((run.summary or {}).get("tasks"))


def labels() -> dict[str, str]:
    """The HydraNet figures' texts in the current language."""
    return {key: t(f"hydra.fig.{key}") for key in hydra_figures.DEFAULT_LABELS}


def render(run: Run) -> None:
    """Per-task curves and the cost panel of a HydraNet run (see :func:`is_hydra`)."""
    summary = run.summary or {}
    tasks = summary["tasks"]
    mode = summary.get("hydra") or run.config.hydra
    st.markdown(f"**{t('hydra.title', mode=t(f'hydra.fig.{mode}'), n=len(tasks))}**")
    epochs = state.curves(run.run_id)
    curves = hydra_figures.task_curves(
        epochs,
        run.config.arms,
        list(tasks),
        chance={name: facts.get("chance_accuracy") for name, facts in tasks.items()},
        epochs_total=run.total_epochs,
        labels=labels(),
    )
    st.plotly_chart(curves, config={"displaylogo": False})
    _task_table(run)
    st.markdown(f"**{t('hydra.cost')}**", help=t("hydra.cost.help"))
    costs = state.hydra_costs(run.run_id)
    if costs:
        st.plotly_chart(
            hydra_figures.cost_bars(costs, labels=labels()), config={"displaylogo": False}
        )
    if len(costs) < 2:
        st.caption(t("hydra.cost.pending"))


def _task_table(run: Run) -> None:
    arms = (run.summary or {}).get("arms", {})
    rows = [
        {
            t("hydra.arm"): t(f"arm.{arm}"),
            t("hydra.task"): task,
            t("hydra.final"): values.get("final_val_accuracy"),
            t("hydra.balanced"): values.get("final_val_balanced_accuracy"),
        }
        for arm, facts in arms.items()
        for task, values in facts.get("tasks", {}).items()
    ]
    if rows:
        st.dataframe(rows, hide_index=True)
