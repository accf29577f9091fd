"""The learning-rate finder's chart: loss against learning rate, a pure plotly builder.

Takes the finder's result as :mod:`pipelines.training.lr_find` writes it (``lrs``,
``losses``, ``smoothed``, ``suggested_lr``, ``rule``, ``arm``) and returns a ``go.Figure``:
the loss of every step (faint markers), the smoothed loss (a line), a log-scale x axis, and
the suggested rate as a dashed vertical line whose legend entry names the rule. Texts come in
through ``labels`` (English by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go

from dashboard.figures import ARM_COLORS

LR_LABELS: dict[str, str] = {
    "lr": "learning rate (log scale)",
    "loss": "training loss",
    "raw": "loss per step",
    "smoothed": "smoothed loss",
    "suggested": "suggested {lr} ({rule})",
    "rule.min/10": "the smoothed loss's minimum ÷ 10",
}


def lr_curve(result: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> go.Figure:
    """Loss against learning rate with the suggested rate marked (if there is one)."""
    lab = {**LR_LABELS, **(labels or {})}
    color = ARM_COLORS.get(str(result.get("arm")), "#1C7ED6")
    lrs = list(result.get("lrs") or [])
    fig = go.Figure()
    fig.add_scatter(
        x=lrs,
        y=list(result.get("losses") or []),
        mode="markers",
        name=lab["raw"],
        marker={"size": 4, "color": color, "opacity": 0.35},
        hovertemplate="lr %{x:.2e}<br>loss %{y:.4f}<extra></extra>",
    )
    fig.add_scatter(
        x=lrs,
        y=list(result.get("smoothed") or []),
        mode="lines",
        name=lab["smoothed"],
        line={"color": color, "width": 2},
        hovertemplate="lr %{x:.2e}<br>smoothed %{y:.4f}<extra></extra>",
    )
    suggested = result.get("suggested_lr")
    if suggested:
        # A trace, not a shape: a shape's x on a log axis would be log10 of the rate.
        rule = str(result.get("rule", ""))
        shown = [v for v in (result.get("losses") or []) if v is not None]
        low, high = (min(shown), max(shown)) if shown else (0.0, 1.0)
        fig.add_scatter(
            x=[suggested, suggested],
            y=[low, high],
            mode="lines",
            name=lab["suggested"].format(lr=f"{suggested:.1e}", rule=lab.get(f"rule.{rule}", rule)),
            line={"dash": "dash", "color": "#495057", "width": 1.5},
            hovertemplate=f"suggested {suggested:.2e}<extra></extra>",
        )
    fig.update_layout(
        xaxis={"type": "log", "title": lab["lr"], "exponentformat": "power"},
        yaxis={"title": lab["loss"]},
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": -0.3},
        showlegend=True,
    )
    return fig
