"""The Groups board's tables and figures: pure functions of the exercise's groups, runs and
epoch rows, no Streamlit, no store (``dashboard/views/groups.py`` draws them).

Inputs are what :func:`dashboard.state.board` reads: groups (``name``, ``side``), runs
(``run_id``, ``group_name``, ``status``, ``config_dict``), ``best`` (``{run_id: {arm: best
validation accuracy}}``) and each group's latest run's epoch rows. Texts come in through
``labels`` (English by default), like :mod:`dashboard.figures`.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures import ARM_COLORS, epoch_x

ARMS = ("imagenet", "random")
DASHES = {"imagenet": "solid", "random": "dash"}
SIDE_ARMS = {"A": "imagenet", "B": "random"}
DEFAULT_LABELS = {
    "imagenet": "ImageNet weights",
    "random": "Random weights",
    "epoch": "epoch",
    "val_accuracy": "validation accuracy",
    "side": "group {side}",
    "mean": "mean",
    "waiting": "no epoch yet",
}
LEADERBOARD_COLUMNS = ("rank", "group", "side", "status", "runs", "best", "arm", "epochs")


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {**DEFAULT_LABELS, **(labels or {})}


def group_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per group, evenly spread around the hue circle (30 groups stay apart),
    in the order given."""
    n = max(len(names), 1)
    out = {}
    for i, name in enumerate(names):
        # Alternate lightness so neighbours in the order differ twice over.
        r, g, b = colorsys.hls_to_rgb(i / n, 0.42 if i % 2 else 0.55, 0.7)
        out[name] = f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"
    return out


def latest_runs(runs: Sequence[Any]) -> dict[str, Any]:
    """``{group: its newest run}`` (runs oldest first, as the store lists them)."""
    return {r.group_name: r for r in runs if r.group_name}


def leaderboard(
    groups: Sequence[Any], runs: Sequence[Any], best: Mapping[str, Mapping[str, float]]
) -> pd.DataFrame:
    """One row per group, best first: ``rank`` (1 = best; groups without a validated epoch
    share the last place, unranked), ``group``, ``side`` (A/B or empty), ``status`` of its
    latest run, ``runs`` started, ``best`` validation accuracy over all its runs and arms,
    the ``arm`` that reached it, and ``epochs`` (done / planned) of its latest run."""
    latest = latest_runs(runs)
    count: dict[str, int] = {}
    top: dict[str, tuple[float, str]] = {}
    for run in runs:
        count[run.group_name] = count.get(run.group_name, 0) + 1
        for arm, value in (best.get(run.run_id) or {}).items():
            if value is not None and value > top.get(run.group_name, (-1.0, ""))[0]:
                top[run.group_name] = (float(value), arm)
    rows = []
    for group in groups:
        run = latest.get(group.name)
        value, arm = top.get(group.name, (None, ""))
        rows.append(
            {
                "group": group.name,
                "side": group.side or "",
                "status": run.status if run else "",
                "runs": count.get(group.name, 0),
                "best": value,
                "arm": arm,
                "epochs": _epochs(run),
            }
        )
    frame = pd.DataFrame(rows, columns=[c for c in LEADERBOARD_COLUMNS if c != "rank"])
    frame = frame.sort_values("best", ascending=False, na_position="last", kind="stable")
    ranks = frame["best"].rank(ascending=False, method="min")
    frame.insert(0, "rank", pd.array([pd.NA if math.isnan(r) else int(r) for r in ranks], "Int64"))
    return frame.reset_index(drop=True)


def _epochs(run: Any) -> str:
    if run is None:
        return ""
    config = run.config_dict or {}
    try:
        total = sum(int(config[p]["epochs"]) for p in ("phase1", "phase2"))
    except (KeyError, TypeError, ValueError):
        total = 0
    done = max((int(p.get("epoch", -1)) + 1 for p in (run.progress or {}).values()), default=0)
    if run.status == "completed":
        done = total
    return f"{min(done, total)}/{total}"


def _arm_rows(frame: pd.DataFrame | None, arm: str) -> pd.DataFrame:
    if frame is None or not len(frame):
        return pd.DataFrame(columns=["arm", "epoch", "val_accuracy"])
    return frame[frame["arm"] == arm]


def overlay(
    curves: Mapping[str, pd.DataFrame],
    *,
    order: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Every group's latest run in one chart: validation accuracy per epoch, a colour per
    group, a solid line for the ImageNet arm and a dashed one for the random arm.
    ``curves`` is ``{group: epoch rows}``."""
    lab = _labels(labels)
    names = list(order or curves)
    colors = group_colors(names)
    fig = go.Figure()
    for name in names:
        for arm in ARMS:
            rows = _arm_rows(curves.get(name), arm)
            if not len(rows):
                continue
            fig.add_trace(
                go.Scatter(
                    x=list(epoch_x(rows)),
                    y=list(rows["val_accuracy"]),
                    name=f"{name} · {lab[arm]}",
                    legendgroup=name,
                    mode="lines+markers",
                    line={"color": colors[name], "dash": DASHES[arm]},
                    hovertemplate="%{y:.1%}",
                )
            )
    fig.update_xaxes(title_text=lab["epoch"], rangemode="tozero")
    fig.update_yaxes(title_text=lab["val_accuracy"], range=[0, 1.02], tickformat=".0%")
    fig.update_layout(
        height=440,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"font": {"size": 11}},
        hovermode="x unified",
    )
    return fig


class Prepared(go.Figure):
    """A figure drawn from its finished plain dict, skipping plotly's validation of every
    trace (a grid of 30 charts costs seconds through ``add_trace``; the dict milliseconds).
    ``st.plotly_chart`` reads only ``to_dict()``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self._prepared = spec

    def to_dict(self) -> dict[str, Any]:
        return dict(self._prepared)


def side_by_side(
    curves: Mapping[str, pd.DataFrame],
    *,
    order: Sequence[str] | None = None,
    columns: int = 6,
    labels: Mapping[str, str] | None = None,
) -> Prepared:
    """One small chart per group (its latest run's validation accuracy, an arm colour
    each), in a grid of ``columns``, all on the same axes so they compare at a glance."""
    lab = _labels(labels)
    names = list(order or curves)
    cols = max(1, min(columns, len(names) or 1))
    rows = max(1, math.ceil(len(names) / cols))
    gap_x, gap_y = 0.02, min(0.1, 0.6 / rows)
    width = (1 - gap_x * (cols - 1)) / cols
    height = (1 - gap_y * (rows - 1)) / rows
    layout: dict[str, Any] = {
        "height": max(220, 150 * rows + 60),
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "legend": {"orientation": "h", "y": 1.0 + 0.12 / rows, "x": 0, "yanchor": "bottom"},
        "annotations": [],
        "hovermode": "closest",
    }
    data: list[dict[str, Any]] = []
    shown = set()
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        n = "" if i == 0 else str(i + 1)
        left = col * (width + gap_x)
        top = 1 - row * (height + gap_y)
        layout[f"xaxis{n}"] = {
            "domain": [left, left + width],
            "anchor": f"y{n}",
            "matches": "x" if n else None,
            "showticklabels": row == rows - 1 or i + cols >= len(names),
            "rangemode": "tozero",
            "nticks": 4,
        }
        layout[f"yaxis{n}"] = {
            "domain": [max(top - height, 0), top],
            "anchor": f"x{n}",
            "range": [0, 1.05],
            "tickformat": ".0%",
            "nticks": 3,
            "showticklabels": col == 0,
        }
        layout["annotations"].append(
            {
                "text": name,
                "x": left + width / 2,
                "y": top,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 11},
            }
        )
        for arm in ARMS:
            arm_rows = _arm_rows(curves.get(name), arm)
            if not len(arm_rows):
                continue
            data.append(
                {
                    "type": "scatter",
                    "x": list(epoch_x(arm_rows)),
                    "y": [float(v) for v in arm_rows["val_accuracy"]],
                    "xaxis": f"x{n}",
                    "yaxis": f"y{n}",
                    "name": lab[arm],
                    "legendgroup": arm,
                    "showlegend": arm not in shown,
                    "mode": "lines+markers",
                    "marker": {"size": 4},
                    "line": {"color": ARM_COLORS[arm], "width": 2},
                    "hovertemplate": f"{name}: " + "%{y:.1%}<extra></extra>",
                }
            )
            shown.add(arm)
    for key in [k for k in layout if k.startswith("xaxis")]:
        if layout[key]["matches"] is None:
            del layout[key]["matches"]
    return Prepared({"data": data, "layout": layout})


def comparison_rows(
    groups: Sequence[Any], runs: Sequence[Any], best: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    """The finished comparison's points: per group, its latest *completed* run's best
    validation accuracy per arm it trained: ``{group, side, arm, value}``. A seminar group
    trains its side's arm; in a free exercise a run may bring both arms."""
    sides = {g.name: g.side for g in groups}
    done: dict[str, Any] = {}
    for run in runs:
        if run.status == "completed":
            done[run.group_name] = run
    out = []
    for name, run in done.items():
        for arm, value in sorted((best.get(run.run_id) or {}).items()):
            if value is not None:
                out.append({"group": name, "side": sides.get(name), "arm": arm, "value": value})
    return out


def comparison_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{arm: {"n", "mean", "min", "max"}}`` over the comparison's points."""
    out = {}
    for arm in ARMS:
        values = [r["value"] for r in rows if r["arm"] == arm]
        if values:
            out[arm] = {
                "n": len(values),
                "mean": sum(values) / len(values),
                "min": min(values),
                "max": max(values),
            }
    return out


def comparison(
    rows: Sequence[Mapping[str, Any]], *, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """The seminar's comparison: every group's best validation accuracy, ImageNet arm
    (group A) against random arm (group B): a box per arm with every group as a point."""
    lab = _labels(labels)
    fig = go.Figure()
    for arm in ARMS:
        points = [r for r in rows if r["arm"] == arm]
        if not points:
            continue
        side = next((s for s, a in SIDE_ARMS.items() if a == arm), "")
        name = lab[arm] + (f" ({lab['side'].format(side=side)})" if side else "")
        fig.add_trace(
            go.Box(
                y=[r["value"] for r in points],
                text=[r["group"] for r in points],
                name=name,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                boxmean=True,
                marker={"color": ARM_COLORS[arm], "size": 9},
                line={"color": ARM_COLORS[arm]},
                hovertemplate="%{text}: %{y:.1%}<extra></extra>",
            )
        )
    fig.update_yaxes(title_text=lab["val_accuracy"], range=[0, 1.05], tickformat=".0%")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False)
    return fig
