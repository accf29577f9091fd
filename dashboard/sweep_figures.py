"""Plotly figures of a sweep: pure functions of trial dicts, no Streamlit, no store.

A trial is the dict :func:`pipelines.sweeps.sweep_trials` returns: ``number``, ``state``
(Optuna's name: ``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``), ``params``
(dotted config keys), ``value`` (the objective, None until complete), ``run_id``,
``started``/``finished`` (epoch seconds or None) and ``curves`` (``{arm: [validation
accuracy per epoch]}``). Every builder takes its texts through ``labels`` (English by
default) and shows trials that have no value yet, were pruned or failed as such, not as
gaps: the heat map colours their cells by state and writes the state in them, the history
marks them with their own symbols.

``objective`` (``best``, ``final``, ``gap``) only changes how values are written: accuracy
as a percentage, the ImageNet - random gap in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

STATES = ("COMPLETE", "RUNNING", "WAITING", "PRUNED", "STOPPED", "FAIL")
STATE_COLORS = {
    "RUNNING": "#A5D8FF",
    "WAITING": "#F1F3F5",
    "PRUNED": "#CED4DA",
    "STOPPED": "#E9ECEF",
    "FAIL": "#FFC9C9",
}
STATE_MARKERS = {
    "COMPLETE": ("circle", "#0F766E"),
    "RUNNING": ("circle-open", "#1C7ED6"),
    "WAITING": ("circle-open", "#ADB5BD"),
    "PRUNED": ("x-thin-open", "#495057"),
    "STOPPED": ("square-open", "#868E96"),
    "FAIL": ("x", "#E03131"),
}
ARM_COLORS = {"imagenet": "#0F766E", "random": "#D9480F"}
BEST_COLOR = "#E8590C"
COLORSCALE = "Viridis"
# More distinct values than this on an axis (a float sampled at random): points, not cells.
MAX_CELLS_PER_AXIS = 16

SWEEP_LABELS: dict[str, str] = {
    "objective.best": "best validation accuracy (ImageNet)",
    "objective.final": "final validation accuracy (ImageNet)",
    "objective.gap": "gap ImageNet − random (best validation accuracy)",
    "trial": "trial",
    "best_so_far": "best so far",
    "epoch": "epoch",
    "val_accuracy": "validation accuracy",
    "imagenet": "ImageNet weights",
    "random": "Random weights",
    "state.COMPLETE": "complete",
    "state.RUNNING": "running",
    "state.WAITING": "waiting",
    "state.PRUNED": "pruned",
    "state.STOPPED": "stopped",
    "state.FAIL": "failed",
    "all": "all",
    "no_trials": "No trials yet",
    "not_shown": "{n} trial(s) without a value yet (running, pruned or failed) are not drawn",
}


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {**SWEEP_LABELS, **(labels or {})}


def state_of(trial: Mapping[str, Any]) -> str:
    """The trial's state as Optuna names it, upper case (``FAIL``, ``PRUNED``, ...), except
    ``STOPPED`` for a failed trial whose run a user stopped (skipped, not an error)."""
    state = str(trial.get("state") or "WAITING").upper()
    return "STOPPED" if state == "FAIL" and trial.get("stopped_by_user") else state


def has_value(trial: Mapping[str, Any]) -> bool:
    """Whether the trial is complete with a value (a pruned trial's value is only its value
    so far: see :func:`partial_value`)."""
    value = trial.get("value")
    return state_of(trial) == "COMPLETE" and value is not None and math.isfinite(float(value))


def format_value(value: float | None, objective: str = "best") -> str:
    """The objective as people read it: ``87.5 %``, or for the gap ``+12.0 pp``."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    if objective == "gap":
        return f"{value * 100:+.1f} pp"
    return f"{value:.1%}"


def format_param(value: Any, labels: Mapping[str, str] | None = None) -> str:
    """A parameter value as an axis tick or table cell: ``0.001``, ``1e-05``, ``all``
    (``train_per_class`` null), ``imagenet+random``."""
    lab = _labels(labels)
    if value is None:
        return lab["all"]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.2g}"
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)


def partial_value(trial: Mapping[str, Any], objective: str = "best") -> float | None:
    """What the objective was when the trial stopped or is now (a pruned or running
    trial): its stored value where it has one, else read from its validation curves; None
    without either."""
    value = trial.get("value")
    if value is not None and math.isfinite(float(value)):
        return float(value)
    curves = trial.get("curves") or {}
    imagenet = [v for v in curves.get("imagenet") or [] if v is not None]
    random = [v for v in curves.get("random") or [] if v is not None]
    if objective == "gap":
        return float(max(imagenet) - max(random)) if imagenet and random else None
    arm = imagenet or random  # a trial of the random arm alone is read on that arm
    if not arm:
        return None
    return float(arm[-1] if objective == "final" else max(arm))


def varying_keys(trials: Iterable[Mapping[str, Any]]) -> list[str]:
    """The parameter keys whose value differs between trials, in order of appearance."""
    seen: dict[str, set[str]] = {}
    for trial in trials:
        for key, value in (trial.get("params") or {}).items():
            seen.setdefault(key, set()).add(repr(value))
    return [k for k, values in seen.items() if len(values) > 1]


def _sort_key(value: Any) -> tuple:
    # Numbers ascending, then text, null ("all") last; bools as numbers.
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, format_param(value))


def axis_values(
    trials: Sequence[Mapping[str, Any]], key: str, known: Sequence[Any] | None = None
) -> list[Any]:
    """The values of ``key`` along an axis: ``known`` (a grid's values, so the whole grid
    shows from the start) plus any the trials have, sorted (null, "all", last)."""
    values: dict[str, Any] = {}
    sampled = [t["params"][key] for t in trials if key in (t.get("params") or {})]
    for value in [*(known or []), *sampled]:
        values.setdefault(repr(value), value)
    return sorted(values.values(), key=_sort_key)


def _cell_text(trials: list[Mapping[str, Any]], objective: str, lab: Mapping[str, str]) -> str:
    done = [t for t in trials if has_value(t)]
    if done:
        best = max(float(t["value"]) for t in done)
        more = f" (×{len(done)})" if len(done) > 1 else ""
        return format_value(best, objective) + more
    state = _cell_state(trials)
    partial = [v for t in trials if (v := partial_value(t, objective)) is not None]
    text = lab[f"state.{state}"]
    if partial and state in ("RUNNING", "PRUNED"):
        text += f" · {format_value(max(partial), objective)}"
    return text


def _cell_state(trials: list[Mapping[str, Any]]) -> str:
    states = {state_of(t) for t in trials}
    for state in ("RUNNING", "WAITING", "PRUNED", "STOPPED", "FAIL"):
        if state in states:
            return state
    return "WAITING"


def heat_map(
    trials: Sequence[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    *,
    objective: str = "best",
    axes: Mapping[str, Sequence[Any]] | None = None,
    log_keys: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """The objective over two varying parameters. Cells: a grid's points (``axes``: the
    known values per key) and every value a trial has. A cell with a complete trial is
    coloured by its value (the best of several, ``(×n)``); a cell whose trial is running,
    waiting, pruned or failed is grey/blue/red and says so, with the value so far where
    there is one. Trace 0 is always the objective's cells.

    With more than :data:`MAX_CELLS_PER_AXIS` distinct values on an axis (a float sampled
    at random) the trials are drawn as points on the parameters' own axes instead (log
    axes for ``log_keys``), coloured by their value."""
    lab = _labels(labels)
    axes = axes or {}
    xs = axis_values(trials, x_key, axes.get(x_key))
    ys = axis_values(trials, y_key, axes.get(y_key))
    if len(xs) > MAX_CELLS_PER_AXIS or len(ys) > MAX_CELLS_PER_AXIS:
        return _scatter_map(trials, x_key, y_key, objective, set(log_keys), lab)
    x_text = [format_param(v, lab) for v in xs]
    y_text = [format_param(v, lab) for v in ys]
    cells: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    index_x = {repr(v): i for i, v in enumerate(xs)}
    index_y = {repr(v): i for i, v in enumerate(ys)}
    for trial in trials:
        params = trial.get("params") or {}
        i = index_x.get(repr(params.get(x_key)))
        j = index_y.get(repr(params.get(y_key)))
        if i is not None and j is not None:
            cells.setdefault((j, i), []).append(trial)
    value_z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    state_z: list[list[int | None]] = [[None] * len(xs) for _ in ys]
    # Each layer writes only its own cells' texts (the other layer's cells are empty there).
    value_text: list[list[str]] = [[""] * len(xs) for _ in ys]
    state_text: list[list[str]] = [[""] * len(xs) for _ in ys]
    codes = {s: n for n, s in enumerate(STATE_COLORS)}
    for (j, i), members in cells.items():
        done = [float(t["value"]) for t in members if has_value(t)]
        if done:
            value_z[j][i] = max(done)
            value_text[j][i] = _cell_text(members, objective, lab)
        else:
            state_z[j][i] = codes[_cell_state(members)]
            state_text[j][i] = _cell_text(members, objective, lab)
    fig = go.Figure()
    title = lab[f"objective.{objective}"]
    fig.add_trace(
        go.Heatmap(
            x=x_text,
            y=y_text,
            z=value_z,
            text=value_text,
            texttemplate="%{text}",
            colorscale=COLORSCALE,
            colorbar={
                "title": {"text": title, "side": "right"},
                "tickformat": _tickformat(objective),
            },
            hovertemplate=f"{x_key} = %{{x}}<br>{y_key} = %{{y}}<br>%{{text}}<extra></extra>",
            hoverongaps=False,
            xgap=2,
            ygap=2,
            name=title,
        )
    )
    # States as a second layer of cells in fixed colours (z codes, a stepped colour scale).
    n = len(STATE_COLORS)
    scale = []
    for code, color in enumerate(STATE_COLORS.values()):
        scale += [[code / n, color], [(code + 1) / n, color]]
    fig.add_trace(
        go.Heatmap(
            x=x_text,
            y=y_text,
            z=state_z,
            text=state_text,
            texttemplate="%{text}",
            textfont={"color": "#212529"},
            colorscale=scale,
            zmin=-0.5,
            zmax=n - 0.5,
            showscale=False,
            hovertemplate=f"{x_key} = %{{x}}<br>{y_key} = %{{y}}<br>%{{text}}<extra></extra>",
            hoverongaps=False,
            xgap=2,
            ygap=2,
            name="state",
        )
    )
    fig.update_xaxes(title_text=x_key, type="category", side="bottom")
    fig.update_yaxes(title_text=y_key, type="category")
    fig.update_layout(
        height=max(260, 80 + 44 * len(ys)),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        plot_bgcolor="#FFFFFF",
    )
    return fig


def _tickformat(objective: str) -> str:
    return "+.0%" if objective == "gap" else ".0%"


def _scatter_map(
    trials: Sequence[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    objective: str,
    log_keys: set[str],
    lab: Mapping[str, str],
) -> go.Figure:
    fig = go.Figure()
    done = [t for t in trials if has_value(t)]
    fig.add_trace(
        go.Scatter(
            x=[t["params"].get(x_key) for t in done],
            y=[t["params"].get(y_key) for t in done],
            mode="markers",
            marker={
                "size": 14,
                "color": [float(t["value"]) for t in done],
                "colorscale": COLORSCALE,
                "showscale": True,
                "colorbar": {"title": {"text": lab[f"objective.{objective}"], "side": "right"}},
                "line": {"width": 1, "color": "#FFFFFF"},
            },
            text=[f"#{t['number']} · {format_value(t['value'], objective)}" for t in done],
            hovertemplate="%{text}<extra></extra>",
            name=lab[f"objective.{objective}"],
        )
    )
    for state in ("RUNNING", "WAITING", "PRUNED", "STOPPED", "FAIL"):
        members = [t for t in trials if state_of(t) == state and not has_value(t)]
        if not members:
            continue
        symbol, color = STATE_MARKERS[state]
        fig.add_trace(
            go.Scatter(
                x=[t["params"].get(x_key) for t in members],
                y=[t["params"].get(y_key) for t in members],
                mode="markers",
                marker={"size": 12, "symbol": symbol, "color": color, "line": {"width": 2}},
                text=[f"#{t['number']} · {lab[f'state.{state}']}" for t in members],
                hovertemplate="%{text}<extra></extra>",
                name=lab[f"state.{state}"],
            )
        )
    fig.update_xaxes(title_text=x_key, type="log" if x_key in log_keys else None)
    fig.update_yaxes(title_text=y_key, type="log" if y_key in log_keys else None)
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.2, "x": 0},
    )
    return fig


def parallel_coordinates(
    trials: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    objective: str = "best",
    log_keys: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """One line per complete trial through an axis per parameter in ``keys`` and the
    objective, coloured by the objective. Numbers on their own scale (log10 for
    ``log_keys``, ticks in the real values), anything else as evenly spaced categories.
    Trials without a value are counted in a note above the plot."""
    lab = _labels(labels)
    logs = set(log_keys)
    done = [t for t in trials if has_value(t)]
    fig = go.Figure()
    missing = len(trials) - len(done)
    if not done:
        return _empty(lab["no_trials"] if not trials else lab["not_shown"].format(n=missing))
    dimensions = [_dimension(done, key, key in logs, lab) for key in keys]
    values = [float(t["value"]) for t in done]
    dimensions.append(
        {
            "label": lab[f"objective.{objective}"],
            "values": values,
            "tickformat": _tickformat(objective),
        }
    )
    fig.add_trace(
        go.Parcoords(
            dimensions=dimensions,
            line={
                "color": values,
                "colorscale": COLORSCALE,
                "showscale": True,
                "colorbar": {"tickformat": _tickformat(objective)},
            },
        )
    )
    if missing:
        fig.add_annotation(
            text=lab["not_shown"].format(n=missing),
            xref="paper",
            yref="paper",
            x=0,
            y=1.12,
            showarrow=False,
            font={"size": 12, "color": "#495057"},
        )
    fig.update_layout(height=420, margin={"l": 60, "r": 40, "t": 70, "b": 30})
    return fig


def _dimension(
    trials: Sequence[Mapping[str, Any]], key: str, log: bool, lab: Mapping[str, str]
) -> dict[str, Any]:
    raw = [(t.get("params") or {}).get(key) for t in trials]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    if numeric and log and all(v > 0 for v in raw):
        ticks = sorted(set(raw))
        if len(ticks) > 8:
            low, high = math.floor(math.log10(min(ticks))), math.ceil(math.log10(max(ticks)))
            ticks = [10.0**e for e in range(low, high + 1)]
        return {
            "label": key,
            "values": [math.log10(v) for v in raw],
            "tickvals": [math.log10(v) for v in ticks],
            "ticktext": [format_param(float(v), lab) for v in ticks],
        }
    if numeric:
        return {"label": key, "values": [float(v) for v in raw]}
    order = sorted({repr(v): v for v in raw}.values(), key=_sort_key)
    index = {repr(v): i for i, v in enumerate(order)}
    return {
        "label": key,
        "values": [index[repr(v)] for v in raw],
        "tickvals": list(range(len(order))),
        "ticktext": [format_param(v, lab) for v in order],
        "range": [-0.25, max(len(order) - 1, 0) + 0.25],
    }


def one_param(
    trials: Sequence[Mapping[str, Any]],
    key: str,
    *,
    objective: str = "best",
    log_keys: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """The objective against the one parameter that varies: complete trials as points,
    the others with their state's symbol at their value so far (running, pruned) or on
    the axis' floor (waiting, failed)."""
    lab = _labels(labels)
    raw = [(t.get("params") or {}).get(key) for t in trials]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    fig = go.Figure()
    if not trials:
        return _empty(lab["no_trials"])
    order = sorted({repr(v): v for v in raw}.values(), key=_sort_key)

    def x_of(t: Mapping[str, Any]) -> Any:
        v = (t.get("params") or {}).get(key)
        return v if numeric else format_param(v, lab)

    _state_points(fig, trials, x_of, objective, lab)
    fig.update_xaxes(
        title_text=key,
        type="log" if numeric and key in set(log_keys) else ("category" if not numeric else None),
        categoryorder="array",
        categoryarray=[format_param(v, lab) for v in order] if not numeric else None,
    )
    fig.update_yaxes(title_text=lab[f"objective.{objective}"], tickformat=_tickformat(objective))
    fig.update_layout(
        height=380,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.25, "x": 0},
    )
    return fig


def history(
    trials: Sequence[Mapping[str, Any]],
    *,
    objective: str = "best",
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """The objective per trial (x: trial number, as the trials were started) with the best
    so far as a step line. Running and pruned trials sit at their value so far, in their
    own symbol; waiting and failed ones on the axis' floor."""
    lab = _labels(labels)
    if not trials:
        return _empty(lab["no_trials"])
    fig = go.Figure()
    ordered = sorted(trials, key=lambda t: int(t.get("number") or 0))
    best: list[tuple[int, float]] = []
    top = -math.inf
    for trial in ordered:
        if has_value(trial):
            top = max(top, float(trial["value"]))
            best.append((int(trial["number"]), top))
    if best:
        last = int(ordered[-1]["number"])
        xs = [n for n, _ in best] + ([last] if last > best[-1][0] else [])
        ys = [v for _, v in best] + ([best[-1][1]] if last > best[-1][0] else [])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"shape": "hv", "color": BEST_COLOR, "width": 2.5},
                name=lab["best_so_far"],
                hovertemplate=lab["best_so_far"] + ": %{y:.1%}<extra></extra>"
                if objective != "gap"
                else lab["best_so_far"] + ": %{y:+.1%}<extra></extra>",
            )
        )
    _state_points(fig, ordered, lambda t: int(t.get("number") or 0), objective, lab)
    fig.update_xaxes(title_text=lab["trial"], dtick=1 if len(ordered) <= 30 else None)
    fig.update_yaxes(title_text=lab[f"objective.{objective}"], tickformat=_tickformat(objective))
    fig.update_layout(
        height=360,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.25, "x": 0},
        hovermode="closest",
    )
    return fig


def _state_points(
    fig: go.Figure,
    trials: Sequence[Mapping[str, Any]],
    x_of,
    objective: str,
    lab: Mapping[str, str],
) -> None:
    """A trace per state: complete trials at their value, running/pruned at their value so
    far, waiting/failed (no value) on the floor of the values drawn."""
    known = [float(t["value"]) for t in trials if has_value(t)]
    known += [v for t in trials if (v := partial_value(t, objective)) is not None]
    floor = min(known) if known else 0.0
    for state in STATES:
        members = [t for t in trials if state_of(t) == state]
        if not members:
            continue
        symbol, color = STATE_MARKERS[state]
        ys, texts = [], []
        for t in members:
            value = float(t["value"]) if has_value(t) else partial_value(t, objective)
            ys.append(value if value is not None else floor)
            note = format_value(value, objective) if value is not None else ""
            texts.append(f"#{t.get('number')} · {lab[f'state.{state}']} {note}".strip())
        fig.add_trace(
            go.Scatter(
                x=[x_of(t) for t in members],
                y=ys,
                mode="markers",
                marker={"symbol": symbol, "color": color, "size": 11, "line": {"width": 2}},
                name=lab[f"state.{state}"],
                text=texts,
                hovertemplate="%{text}<extra></extra>",
            )
        )


def trial_curves(
    trials: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    limit: int = 12,
    columns: int = 4,
    epochs: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Small multiples: each trial's validation accuracy per epoch, one panel per trial
    (the newest ``limit``, in trial order), both arms in their colours, the panel titled
    with its number, state and the values of ``keys``. Shared axes (x: epochs 1 to
    ``epochs`` or the longest curve), so curves compare."""
    lab = _labels(labels)
    shown = sorted(trials, key=lambda t: int(t.get("number") or 0))[-limit:]
    if not shown:
        return _empty(lab["no_trials"])
    rows = math.ceil(len(shown) / columns)
    titles = []
    for t in shown:
        params = ", ".join(
            f"{k.split('.')[-1]}={format_param((t.get('params') or {}).get(k), lab)}" for k in keys
        )
        titles.append(f"#{t.get('number')} {lab[f'state.{state_of(t)}']}<br>{params}")
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=titles,
        shared_xaxes=True,
        shared_yaxes=True,
        vertical_spacing=min(0.3 / max(rows - 1, 1), 0.12),
    )
    legend_done: set[str] = set()
    for n, t in enumerate(shown):
        row, col = n // columns + 1, n % columns + 1
        faded = state_of(t) in ("PRUNED", "STOPPED", "FAIL")
        for arm, values in (t.get("curves") or {}).items():
            ys = [v for v in values or []]
            if not ys:
                continue
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(ys) + 1)),
                    y=ys,
                    mode="lines+markers",
                    line={
                        "color": ARM_COLORS.get(arm, "#495057"),
                        "dash": "dot" if faded else "solid",
                    },
                    marker={"size": 4},
                    name=lab.get(arm, arm),
                    legendgroup=arm,
                    showlegend=arm not in legend_done,
                    hovertemplate=f"#{t.get('number')} · {lab.get(arm, arm)}<br>"
                    f"{lab['epoch']} %{{x}}: %{{y:.1%}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            legend_done.add(arm)
    longest = max(
        (len(v or []) for t in shown for v in (t.get("curves") or {}).values()), default=1
    )
    fig.update_xaxes(
        range=[0.5, max(epochs or 0, longest, 1) + 0.5], dtick=1 if longest <= 12 else None
    )
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_annotations(font_size=11)
    fig.update_layout(
        height=60 + 190 * rows,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"orientation": "h", "y": 1.0 + 0.25 / rows, "x": 0, "yanchor": "bottom"},
    )
    return fig


def _empty(text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=200, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig
