"""Figure builders for what each arm learned: heat maps over an image, arm beside arm, and
the feature space of both arms before and after training. Pure functions of plain data
(NumPy arrays, the engine's dicts), no Streamlit; texts through ``labels`` (English by
default), like :mod:`dashboard.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CLASS_PALETTE = (
    "#1C7ED6",
    "#E8590C",
    "#2B8A3E",
    "#AE3EC9",
    "#C92A2A",
    "#0B7285",
    "#5F3DC4",
    "#E67700",
)
# Turbo-like, transparent where attention is low, so the image shows through there.
HEAT_SCALE = [
    [0.0, "rgba(48, 18, 59, 0.0)"],
    [0.2, "rgba(70, 107, 227, 0.25)"],
    [0.4, "rgba(40, 188, 235, 0.45)"],
    [0.6, "rgba(164, 252, 60, 0.6)"],
    [0.8, "rgba(251, 128, 34, 0.7)"],
    [1.0, "rgba(122, 4, 3, 0.8)"],
]

DEFAULT_LABELS: dict[str, str] = {
    "imagenet": "ImageNet weights",
    "random": "Random weights",
    "image": "image",
    "attention": "attention",
    "before": "before training",
    "after": "after training",
    "unchanged": "backbone unchanged",
    "knn": "{k}-NN accuracy {acc}",
    "knn_none": "k-NN: too few images",
    "predicts": "predicts {cls} ({p})",
    "explains": "explains {cls}",
    "on": "on {layer}",
}


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {**DEFAULT_LABELS, **(labels or {})}


def class_color(index: int) -> str:
    return CLASS_PALETTE[index % len(CLASS_PALETTE)]


def attention_panel_title(panel: Mapping[str, Any], *, labels: Mapping[str, str] | None = None):
    """``"ImageNet weights · Grad-CAM on head (7×7)<br>predicts horses (98%)"``: the arm,
    the method named, where, and what the map explains."""
    lab = _labels(labels)
    grid = f" ({panel['grid']}×{panel['grid']})" if panel["method"] == "grad-cam" else ""
    where = lab["on"].format(layer=panel["layer"]) + grid
    line = lab["predicts"].format(cls=panel["predicted_class"], p=f"{panel['probability']:.0%}")
    if panel["target_class"] != panel["predicted_class"]:
        line += " · " + lab["explains"].format(cls=panel["target_class"])
    return f"{lab[panel['arm']]} · {panel['method_title']} {where}<br>{line}"


def attention(
    image: np.ndarray,
    panels: Sequence[Mapping[str, Any]],
    *,
    caption: str = "",
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """The image, then one panel per arm with its heat map over the image. Each panel is a
    dict with ``arm, map ([size, size] in [0, 1]), method, method_title, layer, grid,
    predicted_class, target_class, probability``; the method is named in its title."""
    lab = _labels(labels)
    titles = [caption or lab["image"]] + [attention_panel_title(p, labels=lab) for p in panels]
    fig = make_subplots(
        rows=1, cols=1 + len(panels), subplot_titles=titles, horizontal_spacing=0.03
    )
    image = np.asarray(image, np.uint8)
    fig.add_trace(go.Image(z=image, hoverinfo="skip"), row=1, col=1)
    for col, panel in enumerate(panels, start=2):
        fig.add_trace(go.Image(z=image, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(
            go.Heatmap(
                z=np.round(np.asarray(panel["map"], np.float32), 3),
                zmin=0,
                zmax=1,
                colorscale=HEAT_SCALE,
                showscale=col == 1 + len(panels),
                colorbar={"title": {"text": lab["attention"]}, "len": 0.8, "thickness": 12},
                hovertemplate=lab["attention"] + " %{z:.2f}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    for col in range(2, 2 + len(panels)):
        fig.update_yaxes(scaleanchor=f"x{col}", row=1, col=col)
    fig.update_annotations(font={"size": 12})
    fig.update_layout(height=300, margin={"l": 5, "r": 5, "t": 60, "b": 5})
    return fig


def feature_panel_title(panel: Mapping[str, Any], *, labels: Mapping[str, str] | None = None):
    """``"ImageNet weights · before training<br>5-NN accuracy 97%"``."""
    lab = _labels(labels)
    acc = panel.get("knn_accuracy")
    number = (
        lab["knn"].format(k=panel["k"], acc=f"{acc:.0%}") if acc is not None else lab["knn_none"]
    )
    if panel.get("unchanged"):
        number += f" ({lab['unchanged']})"
    return f"{lab[panel['arm']]} · {lab[panel['stage']]}<br>{number}"


def feature_space(
    space: Mapping[str, Any], *, labels: Mapping[str, str] | None = None
) -> go.Figure:
    """The engine's feature space (``pipelines.insight.features.feature_space``): one panel
    per arm (columns) and stage (rows: before, after training), points coloured by class,
    hover naming the image; the k-NN accuracy in each panel's title. Each point's
    ``customdata`` is its index in ``space["names"]``."""
    lab = _labels(labels)
    panels = list(space["panels"])
    arms = list(dict.fromkeys(p["arm"] for p in panels))
    stages = list(dict.fromkeys(p["stage"] for p in panels))
    by_place = {(p["stage"], p["arm"]): p for p in panels}
    titles = [
        feature_panel_title(by_place[(s, a)], labels=lab) if (s, a) in by_place else ""
        for s in stages
        for a in arms
    ]
    fig = make_subplots(
        rows=len(stages),
        cols=len(arms),
        subplot_titles=titles,
        horizontal_spacing=0.06,
        vertical_spacing=0.12,
    )
    labels_ = np.asarray(space["labels"])
    names = list(space["names"])
    classes = list(space["classes"])
    for r, stage in enumerate(stages, start=1):
        for c, arm in enumerate(arms, start=1):
            panel = by_place.get((stage, arm))
            if panel is None:
                continue
            points = np.asarray(panel["points"], np.float32)
            for k, name in enumerate(classes):
                idx = np.flatnonzero(labels_ == k)
                fig.add_trace(
                    go.Scatter(
                        x=points[idx, 0],
                        y=points[idx, 1],
                        mode="markers",
                        name=name,
                        legendgroup=name,
                        showlegend=r == 1 and c == 1,
                        marker={"color": class_color(k), "size": 7, "opacity": 0.8},
                        customdata=idx,
                        text=[names[i] for i in idx],
                        hovertemplate=f"%{{text}}<br>{name}<extra></extra>",
                    ),
                    row=r,
                    col=c,
                )
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_annotations(font={"size": 12})
    fig.update_layout(
        height=330 * len(stages),
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "y": -0.04},
        clickmode="event+select",
    )
    return fig
