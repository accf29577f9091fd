"""Plotly figure builders: pure functions of metric frames and reports, no Streamlit.

Every builder takes the texts it shows through ``labels`` (English by default, so tests and
other callers need not pass them) and returns a ``go.Figure``; the training curves'
builders (``arm_curves_spec``, ``overlay_curves_spec``) return the figure's plain dict, which
the live view draws as it is. The x axis of the curves is *epochs completed*: the epoch
row of global epoch ``e`` (0-based) sits at ``e + 1`` and a batch row at
``e + (step + 1) / steps_per_epoch``, so phase 2 starts at ``x = phase1.epochs``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ARM_COLORS = {"imagenet": "#0F766E", "random": "#D9480F"}
SPLIT_COLORS = {"train": "#4C6EF5", "validation": "#F08C00"}
FROZEN_COLOR = "#CED4DA"
TRAINABLE_COLOR = "#F76707"
REMOVED_COLOR = "#F1F3F5"
RUN_PALETTE = (
    "#1C7ED6",
    "#E8590C",
    "#2B8A3E",
    "#AE3EC9",
    "#C92A2A",
    "#0B7285",
    "#5F3DC4",
    "#E67700",
)
METRICS = ("loss", "accuracy")

DEFAULT_LABELS: dict[str, str] = {
    "imagenet": "ImageNet weights",
    "random": "Random weights",
    "loss": "loss",
    "accuracy": "accuracy",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "val_balanced_accuracy": "balanced validation accuracy",
    "balanced": "validation, balanced",
    "chance": "chance (majority class)",
    "train": "train",
    "validation": "validation",
    "batches": "train (per batch)",
    "epoch": "epoch",
    "phase2": "fine-tuning starts",
    "frozen": "frozen",
    "trainable": "trainable",
    "removed": "removed (not taken over)",
    "params": "parameters",
    "true": "true class",
    "predicted": "predicted class",
    "input": "input",
    "output": "output",
}


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {**DEFAULT_LABELS, **(labels or {})}


def epoch_x(frame: pd.DataFrame) -> pd.Series:
    """Epochs completed at each epoch row: ``epoch + 1``."""
    return frame["epoch"].astype(float) + 1.0


def batch_x(frame: pd.DataFrame, steps_per_epoch: int) -> pd.Series:
    """Fractional epochs completed at each batch row: ``epoch + (step + 1) / steps``."""
    steps = max(int(steps_per_epoch), 1)
    return frame["epoch"].astype(float) + (frame["step"].astype(float) + 1.0) / steps


def phase2_start(config: Mapping[str, Any]) -> float | None:
    """Where fine-tuning starts on the x axis (``phase1.epochs``), or None without phase 2."""
    p1 = int(config.get("phase1", {}).get("epochs", 0) or 0)
    p2 = int(config.get("phase2", {}).get("epochs", 0) or 0)
    return float(p1) if p1 > 0 and p2 > 0 else None


def _rows(frame: pd.DataFrame | None, arm: str) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["arm", "epoch", "step", *METRICS, "val_loss", "val_accuracy"])
    return frame[frame["arm"] == arm]


def _hover(metric: str) -> str:
    value = "%{y:.2%}" if "accuracy" in metric else "%{y:.4f}"
    return "%{fullData.name}<br>epoch %{x:.2f}: " + value + "<extra></extra>"


def _x_range(epochs_total: int | None) -> list[float] | None:
    return [0, epochs_total + 0.15] if epochs_total else None


def _x_axis(epochs_total: int | None) -> dict[str, Any]:
    """Fixed to the planned epochs (no jumping while points arrive), a tick per epoch."""
    axis: dict[str, Any] = {"range": _x_range(epochs_total)}
    if epochs_total and epochs_total <= 20:
        axis["dtick"] = 1
    return axis


def arm_curves_spec(
    epochs: pd.DataFrame | None,
    arms: Sequence[str],
    *,
    batches: pd.DataFrame | None = None,
    steps_per_epoch: int | None = None,
    phase2_at: float | None = None,
    epochs_total: int | None = None,
    labels: Mapping[str, str] | None = None,
    revision: str | None = None,
    chance: float | None = None,
    balanced: bool = False,
) -> dict[str, Any]:
    """Loss (top row) and accuracy (bottom row), one column per arm, y shared along a row.

    Per arm and metric: the train and validation epoch curves and, with ``batches`` and
    ``steps_per_epoch``, the running train metric per batch. The first trace is the first
    arm's train loss (one point per finished epoch). ``revision`` keeps zoom across updates.
    ``chance`` (the majority class's share of the validation set) is drawn as a dotted line
    on the accuracy row; with ``balanced``, the balanced validation accuracy joins it.
    """
    arms = tuple(arms) or ("imagenet",)
    with_batches = batches is not None and bool(steps_per_epoch)
    points: list[tuple[list, list]] = []
    for arm in arms:
        rows = _rows(epochs, arm)
        b = _rows(batches, arm) if with_batches else None
        for metric in METRICS:
            for column in _epoch_columns(metric, balanced, ("train", "validation")):
                points.append(_xy(epoch_x(rows), rows, column))
            if b is not None:
                points.append(_xy(batch_x(b, steps_per_epoch), b, metric))
    template = _arm_curves_template(
        arms,
        with_batches,
        phase2_at,
        epochs_total,
        _frozen(labels),
        revision,
        _chance(chance),
        balanced,
    )
    return _filled(template, points)


def overlay_curves_spec(
    epochs: pd.DataFrame | None,
    arms: Sequence[str],
    *,
    phase2_at: float | None = None,
    epochs_total: int | None = None,
    labels: Mapping[str, str] | None = None,
    revision: str | None = None,
    chance: float | None = None,
    balanced: bool = False,
) -> dict[str, Any]:
    """Both arms on the same axes: loss (left) and accuracy (right); validation solid,
    train dotted, balanced validation accuracy (with ``balanced``) dash-dotted, one colour
    per arm; ``chance`` as a grey dotted line on the accuracy axes."""
    arms = tuple(arms)
    points: list[tuple[list, list]] = []
    for metric in METRICS:
        for arm in arms:
            rows = _rows(epochs, arm)
            for column in _epoch_columns(metric, balanced, ("validation", "train")):
                points.append(_xy(epoch_x(rows), rows, column))
    template = _overlay_template(
        arms, phase2_at, epochs_total, _frozen(labels), revision, _chance(chance), balanced
    )
    return _filled(template, points)


# The epoch curves of one metric, in trace order: (split, column, dash) for the side-by-side
# figure's splits as ordered by the caller; balanced accuracy last, on the accuracy row only.
def _epoch_columns(metric: str, balanced: bool, order: tuple[str, str]) -> list[str]:
    columns = {"train": metric, "validation": f"val_{metric}"}
    out = [columns[split] for split in order]
    if balanced and metric == "accuracy":
        out.append("val_balanced_accuracy")
    return out


def _chance(value: float | None) -> float | None:
    """The chance level as a template key: rounded, so nearly equal values share one."""
    if value is None or pd.isna(value):
        return None
    return round(float(value), 4)


def _chance_line(
    fig: go.Figure, chance: float | None, lab: Mapping[str, str], what: str = "", **where
) -> None:
    """A grey dotted line at the chance level (the majority class's share) on accuracy
    axes, labelled with it (and ``what`` it is the chance of, if given)."""
    if chance is None:
        return
    fig.add_hline(
        y=chance,
        line_dash="dot",
        line_color="#868E96",
        line_width=1.5,
        annotation_text=f"{lab['chance']}{f' · {what}:' if what else ''} {chance:.1%}",
        annotation_position="bottom right",
        annotation_font={"size": 10, "color": "#495057"},
        **where,
    )


# The live view redraws both figures as a run trains: their layout (subplots, axes, phase-2
# marker; tens of ms through plotly's validation) is built once per shape and cached as a
# dict; each call only fills in the trace data. The *_spec builders return the plain dict,
# for callers that only send it (no Figure object, no deep copy).


def _frozen(labels: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((labels or {}).items()))


def _xy(x: pd.Series, rows: pd.DataFrame, column: str) -> tuple[list, list]:
    if not len(rows):
        return [], []
    return x.tolist(), rows[column].astype(float).tolist()


def _filled(template: dict[str, Any], points: Sequence[tuple[list, list]]) -> dict[str, Any]:
    """``template`` with each trace's x and y from ``points`` (in trace order)."""
    data = [
        {**trace, "x": x, "y": y} for trace, (x, y) in zip(template["data"], points, strict=True)
    ]
    return {"data": data, "layout": copy.deepcopy(template["layout"])}


@functools.lru_cache(maxsize=64)
def _arm_curves_template(
    arms: tuple[str, ...],
    with_batches: bool,
    phase2_at: float | None,
    epochs_total: int | None,
    labels: tuple[tuple[str, str], ...],
    revision: str | None,
    chance: float | None = None,
    balanced: bool = False,
) -> dict[str, Any]:
    lab = _labels(dict(labels))
    fig = make_subplots(
        rows=2,
        cols=len(arms),
        shared_yaxes=True,
        shared_xaxes=True,
        horizontal_spacing=0.04,
        vertical_spacing=0.08,
        subplot_titles=[lab.get(a, a) for a in arms],
    )
    for col, _arm in enumerate(arms, start=1):
        for row, metric in enumerate(METRICS, start=1):
            first = col == 1 and row == 1
            for split, dash in (("train", "solid"), ("validation", "dash")):
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        name=lab[split],
                        legendgroup=split,
                        showlegend=first,
                        mode="lines+markers",
                        line={"color": SPLIT_COLORS[split], "dash": dash, "width": 2.5},
                        marker={"size": 7},
                        hovertemplate=_hover(metric),
                    ),
                    row=row,
                    col=col,
                )
            if balanced and metric == "accuracy":
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        name=lab["balanced"],
                        legendgroup="balanced",
                        showlegend=col == 1,
                        mode="lines+markers",
                        line={"color": SPLIT_COLORS["validation"], "dash": "dot", "width": 2},
                        marker={"size": 6, "symbol": "diamond"},
                        hovertemplate=_hover(metric),
                    ),
                    row=row,
                    col=col,
                )
            if with_batches:
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        name=lab["batches"],
                        legendgroup="batches",
                        showlegend=first,
                        mode="lines",
                        line={"color": SPLIT_COLORS["train"], "width": 1},
                        opacity=0.35,
                        hovertemplate=_hover(metric),
                    ),
                    row=row,
                    col=col,
                )
    for row, metric in enumerate(METRICS, start=1):
        fig.update_yaxes(title_text=lab[metric], row=row, col=1)
    # autorange explicitly: with a fixed x range plotly.js would give y its empty default.
    fig.update_yaxes(autorange=True, rangemode="tozero", row=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=2)
    fig.update_xaxes(**_x_axis(epochs_total))
    fig.update_xaxes(title_text=lab["epoch"], row=2)
    _phase2_marker(fig, phase2_at, lab)
    _chance_line(fig, chance, lab, row=2, col="all")
    fig.update_layout(
        height=520,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.12, "x": 0},
        hovermode="x unified",
        uirevision=revision,
    )
    return fig.to_dict()


@functools.lru_cache(maxsize=64)
def _overlay_template(
    arms: tuple[str, ...],
    phase2_at: float | None,
    epochs_total: int | None,
    labels: tuple[tuple[str, str], ...],
    revision: str | None,
    chance: float | None = None,
    balanced: bool = False,
) -> dict[str, Any]:
    lab = _labels(dict(labels))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=[])
    for col, metric in enumerate(METRICS, start=1):
        lines = [("validation", "solid"), ("train", "dot")]
        if balanced and metric == "accuracy":
            lines.append(("balanced", "dashdot"))
        for arm in arms:
            for split, dash in lines:
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        name=f"{lab.get(arm, arm)} · {lab[split]}",
                        legendgroup=f"{arm}-{split}",
                        showlegend=col == 1 or split == "balanced",
                        mode="lines+markers",
                        line={"color": ARM_COLORS.get(arm, "#495057"), "dash": dash},
                        marker={"size": 6},
                        hovertemplate=_hover(metric),
                    ),
                    row=1,
                    col=col,
                )
        fig.update_yaxes(title_text=lab[metric], row=1, col=col)
        fig.update_xaxes(title_text=lab["epoch"], row=1, col=col, **_x_axis(epochs_total))
    fig.update_yaxes(autorange=True, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    _phase2_marker(fig, phase2_at, lab)
    _chance_line(fig, chance, lab, row=1, col=2)
    fig.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": -0.25, "x": 0},
        hovermode="x unified",
        uirevision=revision,
    )
    return fig.to_dict()


def _phase2_marker(fig: go.Figure, x: float | None, lab: Mapping[str, str]) -> None:
    """A dashed vertical line in every subplot where fine-tuning starts, labelled once."""
    if x is None:
        return
    fig.add_vline(x=x, line_dash="dash", line_color="#868E96", line_width=1.5, row="all", col="all")
    fig.add_annotation(
        x=x,
        y=1.0,
        xref="x",
        yref="paper",
        text=" " + lab["phase2"] + " →",
        showarrow=False,
        xanchor="left",
        yanchor="top",
        font={"size": 11, "color": "#495057"},
        bgcolor="rgba(255,255,255,0.7)",
    )


def layer_map(report: Mapping[str, Any], *, labels: Mapping[str, str] | None = None) -> go.Figure:
    """The backbone's blocks as a tower, input at the bottom, each block frozen or trainable
    in its own colour, from :func:`pipelines.backbones.blocks.freeze_report`; blocks above a
    cut (``reuse_blocks``) as a third, hatched trace of removed blocks."""
    lab = _labels(labels)
    blocks = list(report["blocks"])
    names = [b["name"] for b in blocks]
    fig = go.Figure()
    for trainable in (False, True):
        part = [
            b for b in blocks if bool(b["trainable"]) is trainable and not b.get("removed", False)
        ]
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=[b["name"] for b in part],
                x=[1] * len(part),
                name=lab["trainable" if trainable else "frozen"],
                marker={
                    "color": TRAINABLE_COLOR if trainable else FROZEN_COLOR,
                    "line": {"color": "white", "width": 1},
                },
                text=[f"{b['name']} · {count(b['params'])}" for b in part],
                textposition="inside",
                insidetextanchor="middle",
                textfont={"color": "white" if trainable else "#343A40", "size": 12},
                customdata=[[b["params"], b["trainable_params"]] for b in part],
                hovertemplate=(
                    "%{y}<br>%{customdata[0]:,} "
                    + lab["params"]
                    + "<br>%{customdata[1]:,} "
                    + lab["trainable"]
                    + "<extra></extra>"
                ),
            )
        )
    removed = [b for b in blocks if b.get("removed", False)]
    if removed:
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=[b["name"] for b in removed],
                x=[1] * len(removed),
                name=lab["removed"],
                marker={
                    "color": REMOVED_COLOR,
                    "pattern": {"shape": "/", "fgcolor": FROZEN_COLOR},
                    "line": {"color": FROZEN_COLOR, "width": 1},
                },
                text=[f"{b['name']} · {count(b['params'])}" for b in removed],
                textposition="inside",
                insidetextanchor="middle",
                textfont={"color": "#ADB5BD", "size": 12},
                customdata=[[b["params"]] for b in removed],
                hovertemplate="%{y}<br>%{customdata[0]:,} " + lab["params"] + "<extra></extra>",
            )
        )
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=names,
        showticklabels=False,
        title_text=f"{lab['input']}  →  {lab['output']}",
    )
    fig.update_xaxes(visible=False, range=[0, 1])
    fig.update_layout(
        barmode="overlay",
        bargap=0.08,
        height=max(260, 24 * len(blocks) + 70),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        showlegend=True,
    )
    return fig


def confusion_matrix(
    matrix: Sequence[Sequence[int]],
    classes: Sequence[str],
    *,
    title: str = "",
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Counts of (true class, predicted class); the true classes read top to bottom."""
    lab = _labels(labels)
    z = [list(map(int, row)) for row in matrix]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(classes),
            y=list(classes),
            colorscale="Blues",
            showscale=False,
            text=z,
            texttemplate="%{text}",
            textfont={"size": 16},
            hovertemplate=(
                lab["true"] + " %{y}<br>" + lab["predicted"] + " %{x}<br>%{z}<extra></extra>"
            ),
        )
    )
    fig.update_xaxes(title_text=lab["predicted"], side="bottom", type="category")
    fig.update_yaxes(title_text=lab["true"], autorange="reversed", type="category")
    fig.update_layout(
        title={"text": title, "x": 0.5} if title else None,
        height=320,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def runs_overlay(
    curves: Mapping[str, pd.DataFrame],
    *,
    metric: str = "val_accuracy",
    arms: Sequence[str] = ("imagenet", "random"),
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """One line per (run, arm) of ``metric`` per epoch: a colour per run, a dash per arm."""
    lab = _labels(labels)
    fig = go.Figure()
    dashes = {"imagenet": "solid", "random": "dash"}
    for i, (run, frame) in enumerate(curves.items()):
        color = RUN_PALETTE[i % len(RUN_PALETTE)]
        for arm in arms:
            rows = _rows(frame, arm)
            if not len(rows):
                continue
            fig.add_trace(
                go.Scatter(
                    x=list(epoch_x(rows)),
                    y=list(rows[metric]),
                    name=f"{run} · {lab.get(arm, arm)}",
                    mode="lines+markers",
                    line={"color": color, "dash": dashes.get(arm, "dot")},
                    hovertemplate=_hover(metric),
                )
            )
    longest = max((len(f) for f in curves.values()), default=0)
    fig.update_xaxes(title_text=lab["epoch"], dtick=1 if longest <= 40 else None)
    fig.update_yaxes(title_text=lab.get(metric, metric))
    if "accuracy" in metric:
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.2, "x": 0},
        hovermode="x unified",
    )
    return fig


def probabilities_bar(
    classes: Sequence[str], probabilities: Sequence[float], *, color: str = "#0F766E"
) -> go.Figure:
    """Horizontal bars of class probabilities, the most likely on top."""
    pairs = sorted(zip(classes, probabilities, strict=True), key=lambda p: p[1])
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=[c for c, _ in pairs],
            x=[float(p) for _, p in pairs],
            marker_color=color,
            text=[f"{p:.1%}" for _, p in pairs],
            textposition="auto",
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(height=60 + 32 * len(pairs), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def count(n: int) -> str:
    """A parameter count for people: ``1234567`` -> ``1.23 M``, ``37100`` -> ``37.1 k``."""
    n = int(n)
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.1f} k"
    return str(n)


DEPTH_LABELS: dict[str, str] = {
    "depth_x": "blocks taken over (reuse_blocks)",
    "best_val_accuracy": "best validation accuracy",
    "best_val_balanced_accuracy": "best validation balanced accuracy",
    "chance": "chance",
}
DATASET_DASHES = ("solid", "dash", "dot", "dashdot")


def transfer_depth(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "best_val_accuracy",
    labels: Mapping[str, str] | None = None,
    *,
    chance: Mapping[str, float] | None = None,
) -> go.Figure:
    """Accuracy against the blocks taken over: one line per data set x arm from the rows of
    :func:`pipelines.runs.series.depth_table`. Arms keep their colours (ImageNet, random);
    data sets their dash, in order of first appearance (the near one first: solid, the far
    one dashed). A dotted line per data set marks its chance level: ``chance`` (data set ->
    value) where given, else, for accuracy, the rows' ``chance_accuracy``. Points without a
    value yet (a run still queued) are left out. ``labels`` may name data sets too."""
    lab = {**DEFAULT_LABELS, **DEPTH_LABELS, **(labels or {})}
    fig = go.Figure()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    for i, dataset in enumerate(datasets):
        dash = DATASET_DASHES[i % len(DATASET_DASHES)]
        name = lab.get(dataset, dataset)
        for arm in ("imagenet", "random"):
            points = sorted(
                (r["reuse_blocks"], r[metric])
                for r in rows
                if r["dataset"] == dataset
                and r["arm"] == arm
                and r[metric] is not None
                and r["reuse_blocks"] is not None
            )
            if not points:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in points],
                    y=[p[1] for p in points],
                    name=f"{name} · {lab.get(arm, arm)}",
                    mode="lines+markers",
                    line={"color": ARM_COLORS.get(arm, "#495057"), "dash": dash, "width": 2.5},
                    marker={"size": 8},
                    hovertemplate=f"{name} · {lab.get(arm, arm)}<br>"
                    "%{x} blocks: %{y:.1%}<extra></extra>",
                )
            )
        if chance is not None:
            level = chance.get(dataset)
        elif metric == "best_val_accuracy":
            level = next(
                (
                    r["chance_accuracy"]
                    for r in rows
                    if r["dataset"] == dataset and r["chance_accuracy"] is not None
                ),
                None,
            )
        else:
            level = None
        _chance_line(fig, level, lab, name)
    cuts = sorted({r["reuse_blocks"] for r in rows if r["reuse_blocks"] is not None})
    fig.update_xaxes(title_text=lab["depth_x"], tickvals=cuts or None)
    fig.update_yaxes(title_text=lab.get(metric, metric), range=[0, 1.02], tickformat=".0%")
    fig.update_layout(
        height=440,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.2, "x": 0},
        hovermode="closest",
    )
    return fig
