"""The Run view: one run, live while it trains, its results once it has finished.

The live panel is a fragment that rereads the run store every ``REFRESH_S`` seconds while
the run is queued or running (cheap SQLite reads; no page reload, the rest of the app stays
usable). When it sees the run finish it reruns the whole page once, which draws the panel
without the timer and the results below it.

Many people watch one run (a seminar room), so what the panel shows is read from the store
at most every ``SNAPSHOT_S`` per run and shared by every session (:func:`snapshot`), and the
charts are built once per state of the run (:func:`_figures`): its number of epoch rows
and, for the faint per-batch curve, the last ``BATCH_CURVE_EVERY_S`` boundary. A session's
refresh then only sends what it shows, and a chart whose figure has not changed is not
redrawn by the browsers either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import figures, roles, state
from dashboard.components import hydra, results
from dashboard.i18n import figure_labels, lang, t
from dashboard.state import Run

REFRESH_S = 1.0
SNAPSHOT_S = 0.5
BATCH_CURVE_EVERY_S = 5.0
LOG_LINES = 40
FORCE_STOP_AFTER_S = 10.0
STATUS_COLORS = {
    "queued": "gray",
    "running": "blue",
    "completed": "green",
    "stopped": "orange",
    "failed": "red",
    "interrupted": "red",
    "pruned": "violet",
}


def render(run_id: str) -> None:
    """The live panel of ``run_id`` and, for a finished run, its results."""
    run, problem = state.attempt(state.status, run_id)  # reaped; e.g. deleted meanwhile
    if problem is not None:
        st.warning(problem)
        return
    if run.config is None:  # stored by another version of this program
        st.warning(f"{run.run_id}: {run.config_problem}")
        return
    active = run.active
    st.fragment(_panel, run_every=REFRESH_S if active else None)(run_id, active)
    if not active:
        results.render(run)


def _panel(run_id: str, was_active: bool) -> None:
    with state.shown_errors():
        snap = snapshot(run_id)
        run = snap.run
        if was_active and not run.active:
            st.rerun()  # the whole page: panel without timer, results below
        _header(run, snap.size)
        _progress(run, snap)
        _headline(run, snap.numbers)
        _charts(run, snap)
        _log(snap)


@dataclass(frozen=True)
class Snapshot:
    """What the live panel shows of a run at one moment; shared, so read-only."""

    run: Run
    counts: dict[str, int]  # epoch rows per arm
    numbers: dict[str, dict[str, float | None]]  # see headline()
    newest_epoch: float  # when the newest epoch row was written (0: none yet)
    events: list[dict[str, Any]]  # the last LOG_LINES
    event_count: int
    size: int | str  # the image size trained on


def snapshot(run_id: str) -> Snapshot:
    """The run as the store had it at most ``SNAPSHOT_S`` ago."""
    root = state.store_root()
    return _snapshot(run_id, root, math.floor(time.time() / SNAPSHOT_S))


@st.cache_resource(show_spinner=False, max_entries=64)
def _snapshot(run_id: str, root: str, tick: int) -> Snapshot:
    run = state.status(run_id)  # also collects exited workers
    epochs = state.curves(run_id)
    events = state.events(run_id)
    config = run.config
    arms = config.arms
    size = config.image_size or (run.summary or {}).get("image_size")
    return Snapshot(
        run=run,
        counts={arm: int((epochs["arm"] == arm).sum()) for arm in arms},
        numbers=headline(run, epochs),
        newest_epoch=float(epochs["time"].max()) if len(epochs) else 0.0,
        events=events[-LOG_LINES:],
        event_count=len(events),
        size=size or state.native_size(config.backbone) or "?",
    )


def _depth(config) -> str:
    """How much of the backbone the run takes over and fine-tunes, in words."""
    blocks = config.phase2.unfreeze_blocks
    if not config.phase2.epochs or blocks == 0:
        depth = t("run.depth.none")
    elif blocks is None:
        depth = t("run.depth.all")
    else:
        depth = t("run.depth.top", blocks=blocks)
    if config.reuse_blocks is not None:
        return t("run.depth.reuse", reuse=config.reuse_blocks, depth=depth)
    return depth


def _header(run: Run, size: int | str) -> None:
    config = run.config
    status = run.status
    left, right = st.columns([4, 1], vertical_alignment="center")
    with left:
        st.markdown(
            f"#### {t('run.title', id=run.run_id)} "
            f":{STATUS_COLORS.get(status, 'gray')}-badge[{t(f'status.{status}')}]"
        )
        st.caption(
            t(
                "run.subtitle",
                backbone=config.backbone,
                dataset=config.dataset,
                size=size,
                p1=config.phase1.epochs,
                p2=config.phase2.epochs,
                lr1=f"{config.phase1.lr:g}",
                lr2=f"{config.phase2.lr:g}",
                depth=_depth(config),
                created=datetime.fromtimestamp(run.created).strftime("%Y-%m-%d %H:%M"),
            )
        )
    with right:
        if run.active and roles.is_presenter():
            _stop_controls(run)
    if run.error:
        st.error(run.error)


def _stop_controls(run: Run) -> None:
    run_id = run.run_id
    # "Stopping" at once after the click, even before the shared snapshot shows the request.
    if not run.stop_requested and f"stop_asked.{run_id}" not in st.session_state:
        st.button(
            t("run.stop"),
            key=f"stop.{run_id}",
            icon=":material/stop:",
            width="stretch",
            on_click=_request_stop,
            args=(run_id,),
        )
        return
    st.caption(t("run.stopping"))
    # When the stop was asked: here, or (another tab) the run's last update.
    asked = st.session_state.get(f"stop_asked.{run_id}") or run.updated
    force_stop_button(f"kill.{run_id}", asked, _kill, run_id)


def force_stop_button(
    key: str, asked: float, on_click: Callable[[str], None], target: str, help: str | None = None
) -> None:
    """ "Force stop" (``on_click(target)``) once a Stop asked at ``asked`` (Unix s) has not
    taken effect for ``FORCE_STOP_AFTER_S``; nothing before. Also the Sweep page's."""
    if time.time() - asked > FORCE_STOP_AFTER_S:
        st.button(
            t("run.kill"),
            key=key,
            icon=":material/dangerous:",
            width="stretch",
            on_click=on_click,
            args=(target,),
            help=help,
        )


def _request_stop(run_id: str) -> None:
    """Stop callback: the worker stops after its current batch (see ``pipelines.runs.worker``);
    ``Force stop`` is offered if it has not after ``FORCE_STOP_AFTER_S``."""
    with state.shown_errors():
        state.request_stop(run_id)
        st.session_state[f"stop_asked.{run_id}"] = time.time()
    _snapshot.clear()  # show "Stopping" at once


def _kill(run_id: str) -> None:
    """Force-stop callback: SIGKILL the worker; the run is marked stopped, its rows kept."""
    with state.shown_errors():
        state.kill(run_id)
    _snapshot.clear()


def _progress(run: Run, snap: Snapshot) -> None:
    arms = run.config.arms
    cols = st.columns(len(arms))
    for col, arm in zip(cols, arms, strict=True):
        value, text = progress_text(run, arm, snap.counts[arm])
        col.progress(value, text=f"**{t(f'arm.{arm}')}** · {text}")
    if snap.events and run.active:
        st.caption(f":material/hourglass_top: {snap.events[-1]['message']}")


def progress_text(run: Run, arm: str, epochs_done: int) -> tuple[float, str]:
    """``(fraction done, "phase · epoch e/E · step s/S · ETA")`` for one arm of ``run``."""
    status = run.status
    total = run.total_epochs
    p = run.progress.get(arm)
    if status == "queued" or (status == "running" and not p):
        return 0.0, t("progress.waiting" if status == "queued" else "progress.starting")
    if not run.active:
        done = 1.0 if status == "completed" else min(epochs_done / max(total, 1), 1.0)
        return done, t(f"status.{status}") + " · " + t(
            "progress.epochs", done=epochs_done, total=total
        )
    steps = max(int(p.get("steps_per_epoch") or 1), 1)
    epoch = int(p.get("epoch") or 0)
    step = int(p.get("step") or 0)
    total = int(p.get("epochs_total") or total)
    fraction = min((epoch * steps + step) / max(total * steps, 1), 1.0)
    phase = t(f"phase.{p.get('phase')}")
    eta = p.get("eta_s")
    eta_text = f" · {t('progress.eta')} {_duration(eta)}" if eta is not None else ""
    return fraction, t(
        "progress.running",
        phase=phase,
        epoch=epoch + 1,
        total=total,
        step=step,
        steps=steps,
    ) + eta_text


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def headline(run: Run, epochs: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per arm: ``final`` and ``best`` validation accuracy, the same of balanced accuracy
    (``final_balanced``, ``best_balanced``) and ``time`` (s), from the summary once there
    is one, else from the epoch rows so far."""
    summary = (run.summary or {}).get("arms", {})
    out: dict[str, dict[str, float | None]] = {}
    for arm in run.config.arms:
        rows = epochs[epochs["arm"] == arm] if len(epochs) else epochs
        s = summary.get(arm, {})
        out[arm] = {"time": s.get("wall_s", float(rows["epoch_s"].sum()) if len(rows) else None)}
        for name, column in (("", "val_accuracy"), ("_balanced", "val_balanced_accuracy")):
            val = rows[column].dropna() if len(rows) else pd.Series(dtype=float)
            out[arm]["final" + name] = s.get(f"final_{column}", val.iloc[-1] if len(val) else None)
            out[arm]["best" + name] = s.get(f"best_{column}", val.max() if len(val) else None)
    return out


def imbalance(run: Run) -> tuple[float | None, bool]:
    """The validation split's chance level (the majority class's share) and whether its
    classes are imbalanced enough to show balanced accuracy beside accuracy; from the
    data facts the trainer stores before the first epoch (None, False before that)."""
    summary = run.summary or {}
    counts = summary.get("val_class_counts") or []
    return summary.get("chance_accuracy"), state.is_imbalanced(counts)


def _pct(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def _headline(run: Run, numbers: dict[str, dict[str, float | None]]) -> None:
    finished = not run.active
    chance, imbalanced = imbalance(run)
    arms = list(numbers)
    cols = st.columns(len(arms) + (1 if len(arms) == 2 else 0))
    for col, arm in zip(cols, arms, strict=False):
        n = numbers[arm]
        col.metric(
            t("headline.final" if finished else "headline.latest", arm=t(f"arm.{arm}")),
            _pct(n["final"]),
            help=t("headline.final.help"),
            border=True,
        )
        col.caption(t("headline.best_time", best=_pct(n["best"]), time=_duration(n["time"])))
        if imbalanced:
            col.caption(
                t(
                    "headline.balanced",
                    final=_pct(n["final_balanced"]),
                    best=_pct(n["best_balanced"]),
                    chance=_pct(chance),
                ),
                help=t("headline.balanced.help"),
            )
    if len(arms) == 2:
        a, b = (numbers[arm] for arm in arms)
        if a["final"] is not None and b["final"] is not None:
            diff = (a["final"] - b["final"]) * 100
            best = (a["best"] - b["best"]) * 100
            cols[2].metric(
                t("headline.diff"),
                f"{diff:+.1f} pp",
                help=t("headline.diff.help"),
                border=True,
            )
            cols[2].caption(t("headline.diff_best", best=f"{best:+.1f} pp"))
        else:
            cols[2].metric(t("headline.diff"), "–", border=True)


def _charts(run: Run, snap: Snapshot) -> None:
    if hydra.is_hydra(run):  # several tasks: a curve panel per task and the cost panel
        hydra.render(run)
        return
    arms = run.config.arms
    total = run.total_epochs
    steps = next((p.get("steps_per_epoch") for p in run.progress.values() if p), None)
    counts = " · ".join(f"{t(f'arm.{a}')}: {snap.counts[a]}" for a in arms)
    st.caption(t("charts.points", counts=counts, total=total))
    curves, overlay = _figures(
        run.run_id,
        state.store_root(),
        sum(snap.counts.values()),
        batch_cutoff(snap.newest_epoch, active=run.active),
        steps,
        lang(),
    )
    st.plotly_chart(curves, config={"displaylogo": False})
    if overlay is not None:
        st.markdown(f"**{t('charts.overlay')}**")
        st.plotly_chart(overlay, config={"displaylogo": False})


def batch_cutoff(newest_epoch: float, *, active: bool, now: float | None = None) -> float:
    """Batch rows written up to this time go into the per-batch curve: the last
    ``BATCH_CURVE_EVERY_S`` boundary or the newest epoch row, whichever is later (so the
    curve reaches every epoch point as it appears); everything once the run is over."""
    if not active:
        return math.inf
    now = time.time() if now is None else now
    return max(math.floor(now / BATCH_CURVE_EVERY_S) * BATCH_CURVE_EVERY_S, newest_epoch)


@st.cache_resource(show_spinner=False, max_entries=64)
def _figures(
    run_id: str,
    root: str,
    epoch_rows: int,
    batches_until: float,
    steps: int | None,
    language: str,
) -> tuple[go.Figure, go.Figure | None]:
    """The side-by-side and overlay figures of a run as it is (its first ``epoch_rows``
    epoch rows, batch rows written up to ``batches_until``), shared by every session that
    shows the same state. Read-only: ``st.plotly_chart`` copies what it sends."""
    run = state.get_run(run_id)
    arms = run.config.arms
    epochs = state.curves(run_id).iloc[:epoch_rows]
    batches = state.curves(run_id, kind="batch")
    batches = batches[batches["time"] <= batches_until]
    labels = figure_labels()
    total = run.total_epochs
    at = figures.phase2_start(run.config_dict)
    chance, balanced = imbalance(run)
    common = dict(
        phase2_at=at,
        epochs_total=total,
        labels=labels,
        revision=run_id,
        chance=chance,
        balanced=balanced,
    )
    curves = figures.arm_curves_spec(epochs, arms, batches=batches, steps_per_epoch=steps, **common)
    overlay = figures.overlay_curves_spec(epochs, arms, **common) if len(arms) > 1 else None
    return _Prepared(curves), _Prepared(overlay) if overlay is not None else None


class _Prepared(go.Figure):
    """A figure to be drawn only, from its finished plain dict. ``st.plotly_chart`` asks
    every figure for ``to_dict()`` on every rerun - a deep copy of every point - and a
    shared figure is drawn by every watching session every ``REFRESH_S``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()  # empty: nothing but to_dict() is read
        self._prepared = spec

    def to_dict(self) -> dict[str, Any]:
        return dict(self._prepared)  # callers read it; the top level may be replaced


def _log(snap: Snapshot) -> None:
    with st.expander(t("run.log", n=snap.event_count)):
        lines = [
            f"{datetime.fromtimestamp(e['time']).strftime('%H:%M:%S')}  {e['message']}"
            for e in snap.events
        ]
        st.code("\n".join(lines) or "–", language=None)
