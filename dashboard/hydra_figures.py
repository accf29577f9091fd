"""Plotly figures of a HydraNet run: pure functions of metric frames and summaries.

* :func:`task_curves` - one panel per task, each with both arms' validation accuracy
  (solid) and training accuracy (dotted) per epoch, the task's chance level dashed;
* :func:`cost_bars` - what ``shared`` and ``separate`` cost, as measured in their runs:
  wall time, images through the backbone, parameters, model size and peak memory, one
  small panel each (their units differ), ``shared`` beside ``separate``.

Texts come through ``labels`` (English by default), as in :mod:`dashboard.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures import ARM_COLORS

MODE_COLORS = {"shared": "#1C7ED6", "separate": "#868E96"}
COSTS = ("wall_s", "backbone_forward_images", "parameters", "model_bytes", "peak_memory_bytes")

DEFAULT_LABELS: dict[str, str] = {
    "imagenet": "ImageNet weights",
    "random": "Random weights",
    "val_accuracy": "validation accuracy",
    "accuracy": "train accuracy",
    "chance": "chance (majority class)",
    "epoch": "epoch",
    "shared": "shared backbone",
    "separate": "one network per task",
    "wall_s": "wall time (s)",
    "backbone_forward_images": "images through the backbone",
    "parameters": "parameters",
    "model_bytes": "model size (MB)",
    "peak_memory_bytes": "peak memory (MB)",
}
_MB = ("model_bytes", "peak_memory_bytes")


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {**DEFAULT_LABELS, **(labels or {})}


def task_curves(
    epochs: pd.DataFrame,
    arms: Sequence[str],
    tasks: Sequence[str],
    *,
    chance: Mapping[str, float | None] | None = None,
    epochs_total: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """One panel per task (columns, in ``tasks`` order) with every arm's curves; ``epochs``
    holds epoch rows with a ``task`` column (``x``: epochs completed)."""
    lab = _labels(labels)
    fig = make_subplots(rows=1, cols=max(len(tasks), 1), subplot_titles=list(tasks))
    for col, task in enumerate(tasks, start=1):
        rows = epochs[epochs["task"] == task] if len(epochs) else epochs
        for arm in arms:
            mine = rows[rows["arm"] == arm] if len(rows) else rows
            x = (mine["epoch"] + 1).tolist() if len(mine) else []
            for column, dash in (("val_accuracy", "solid"), ("accuracy", "dot")):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=mine[column].tolist() if len(mine) else [],
                        mode="lines+markers",
                        name=f"{lab[arm]} · {lab[column]}",
                        legendgroup=f"{arm}-{column}",
                        showlegend=col == 1,
                        line={"color": ARM_COLORS.get(arm, "#495057"), "dash": dash},
                    ),
                    row=1,
                    col=col,
                )
        level = (chance or {}).get(task)
        if level is not None:
            fig.add_hline(
                y=level,
                line={"dash": "dash", "color": "#868E96", "width": 1},
                annotation_text=lab["chance"],
                annotation_position="bottom right",
                row=1,
                col=col,
            )
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=col)
        x_range = [0, epochs_total + 0.2] if epochs_total else None
        fig.update_xaxes(title_text=lab["epoch"], range=x_range, dtick=1, row=1, col=col)
    fig.update_layout(
        height=340,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def cost_bars(
    costs: Mapping[str, Mapping[str, Any]], *, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """``costs``: ``{"shared": cost, "separate": cost}`` (either may be missing), each the
    ``cost`` a HydraNet run's summary stores. One panel per measure; a bar per mode,
    labelled with its value and, for ``shared``, its share of ``separate``'s."""
    lab = _labels(labels)
    modes = [m for m in ("shared", "separate") if m in costs]
    fig = make_subplots(rows=1, cols=len(COSTS), subplot_titles=[lab[c] for c in COSTS])
    for col, key in enumerate(COSTS, start=1):
        values = [_value(costs[m].get(key), key) for m in modes]
        text = [_text(v) for v in values]
        if len(modes) == 2 and values[0] is not None and values[1]:
            text[0] += f" ({values[0] / values[1]:.2f}×)"
        fig.add_trace(
            go.Bar(
                x=[lab[m] for m in modes],
                y=values,
                text=text,
                textposition="auto",
                marker_color=[MODE_COLORS[m] for m in modes],
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    fig.update_layout(height=300, margin={"l": 30, "r": 10, "t": 50, "b": 30})
    fig.update_xaxes(tickangle=0, tickfont={"size": 10})
    return fig


def _value(raw: Any, key: str) -> float | None:
    if raw is None:
        return None
    return float(raw) / 2**20 if key in _MB else float(raw)


def _text(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.1f} M"
    if value >= 1e4:
        return f"{value / 1e3:.0f} k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"
