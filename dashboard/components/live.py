"""The Run view: one run, live while it trains, its results once it has finished.

The live panel is a fragment that rereads the run store every ``REFRESH_S`` seconds while
the run is queued or running (cheap SQLite reads; no page reload, the rest of the app stays
usable). When it sees the run finish it reruns the whole page once, which draws the panel
without the timer and the results below it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import figures, state
from dashboard.components import results
from dashboard.i18n import figure_labels, t
from pipelines.store import ACTIVE

REFRESH_S = 1.5
# Phases as the trainer names them; 1 and 2 are accepted too.
PHASES = {1: "feature_extraction", 2: "fine_tuning"}
FORCE_STOP_AFTER_S = 10.0
STATUS_COLORS = {
    "queued": "gray",
    "running": "blue",
    "completed": "green",
    "stopped": "orange",
    "failed": "red",
    "interrupted": "red",
}


def render(run_id: str) -> None:
    """The live panel of ``run_id`` and, for a finished run, its results."""
    try:
        run = state.store().get_run(run_id)
    except Exception as e:  # noqa: BLE001 - e.g. deleted meanwhile
        st.warning(state.error_text(e))
        return
    active = run["status"] in ACTIVE
    st.fragment(_panel, run_every=REFRESH_S if active else None)(run_id, active)
    if not active:
        results.render(run)


def _panel(run_id: str, was_active: bool) -> None:
    with state.shown_errors():
        run = state.status(run_id)  # also collects exited workers
        if was_active and run["status"] not in ACTIVE:
            st.rerun()  # the whole page: panel without timer, results below
        s = state.store()
        epochs = s.curves(run_id, kind="epoch")
        batches = s.curves(run_id, kind="batch")
        _header(run)
        _progress(run, epochs)
        _headline(run, epochs)
        _charts(run, epochs, batches)
        _log(run_id)


def _header(run: dict[str, Any]) -> None:
    config = run["config"]
    status = run["status"]
    left, right = st.columns([4, 1], vertical_alignment="center")
    with left:
        st.markdown(
            f"#### {t('run.title', id=run['run_id'])} "
            f":{STATUS_COLORS.get(status, 'gray')}-badge[{t(f'status.{status}')}]"
        )
        size = config.get("image_size") or (run.get("summary") or {}).get("image_size")
        size = size or _native_size(config.get("backbone", ""))
        st.caption(
            t(
                "run.subtitle",
                backbone=config.get("backbone"),
                dataset=config.get("dataset"),
                size=size,
                p1=config["phase1"]["epochs"],
                p2=config["phase2"]["epochs"],
                lr1=f"{config['phase1']['lr']:g}",
                lr2=f"{config['phase2']['lr']:g}",
                blocks=config["phase2"]["unfreeze_blocks"],
                created=datetime.fromtimestamp(run["created"]).strftime("%Y-%m-%d %H:%M"),
            )
        )
    with right:
        if status in ACTIVE:
            _stop_controls(run)
    if run.get("error"):
        st.error(run["error"])


def _native_size(backbone: str) -> int | str:
    from pipelines.backbones import resolve

    try:
        return resolve(backbone).input_size
    except Exception:  # noqa: BLE001 - a backbone folder since deleted: say nothing
        return "?"


def _stop_controls(run: dict[str, Any]) -> None:
    run_id = run["run_id"]
    if not run["stop_requested"]:
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
    asked = st.session_state.get(f"stop_asked.{run_id}") or run["updated"]
    if time.time() - asked > FORCE_STOP_AFTER_S:
        st.button(
            t("run.kill"),
            key=f"kill.{run_id}",
            icon=":material/dangerous:",
            width="stretch",
            on_click=_kill,
            args=(run_id,),
        )


def _request_stop(run_id: str) -> None:
    """Stop callback: the worker stops after its current batch (see ``pipelines.worker``);
    ``Force stop`` is offered if it has not after ``FORCE_STOP_AFTER_S``."""
    with state.shown_errors():
        state.store().request_stop(run_id)
        st.session_state[f"stop_asked.{run_id}"] = time.time()


def _kill(run_id: str) -> None:
    """Force-stop callback: SIGKILL the worker; the run is marked stopped, its rows kept."""
    with state.shown_errors():
        state.kill(run_id)


def _progress(run: dict[str, Any], epochs: pd.DataFrame) -> None:
    arms = run["config"]["arms"]
    cols = st.columns(len(arms))
    for col, arm in zip(cols, arms, strict=True):
        value, text = progress_text(run, arm, int((epochs["arm"] == arm).sum()))
        col.progress(value, text=f"**{t(f'arm.{arm}')}** · {text}")
    events = state.store().events(run["run_id"])
    if events and run["status"] in ACTIVE:
        st.caption(f":material/hourglass_top: {events[-1]['message']}")


def progress_text(run: Mapping[str, Any], arm: str, epochs_done: int) -> tuple[float, str]:
    """``(fraction done, "phase · epoch e/E · step s/S · ETA")`` for one arm of ``run``."""
    status = run["status"]
    config = run["config"]
    total = int(config["phase1"]["epochs"]) + int(config["phase2"]["epochs"])
    p = (run.get("progress") or {}).get(arm)
    if status == "queued" or (status == "running" and not p):
        return 0.0, t("progress.waiting" if status == "queued" else "progress.starting")
    if status not in ACTIVE:
        done = 1.0 if status == "completed" else min(epochs_done / max(total, 1), 1.0)
        return done, t(f"status.{status}") + " · " + t(
            "progress.epochs", done=epochs_done, total=total
        )
    steps = max(int(p.get("steps_per_epoch") or 1), 1)
    epoch = int(p.get("epoch") or 0)
    step = int(p.get("step") or 0)
    total = int(p.get("epochs_total") or total)
    fraction = min((epoch * steps + step) / max(total * steps, 1), 1.0)
    phase = t(f"phase.{PHASES.get(p.get('phase'), p.get('phase'))}")
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


def headline(run: Mapping[str, Any], epochs: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """Per arm: ``final`` and ``best`` validation accuracy and ``time`` (s), from the
    summary once there is one, else from the epoch rows so far."""
    summary = (run.get("summary") or {}).get("arms", {})
    out: dict[str, dict[str, float | None]] = {}
    for arm in run["config"]["arms"]:
        rows = epochs[epochs["arm"] == arm] if len(epochs) else epochs
        val = rows["val_accuracy"].dropna() if len(rows) else pd.Series(dtype=float)
        s = summary.get(arm, {})
        out[arm] = {
            "final": s.get("final_val_accuracy", val.iloc[-1] if len(val) else None),
            "best": s.get("best_val_accuracy", val.max() if len(val) else None),
            "time": s.get("wall_s", float(rows["epoch_s"].sum()) if len(rows) else None),
        }
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.1%}"


def _headline(run: dict[str, Any], epochs: pd.DataFrame) -> None:
    numbers = headline(run, epochs)
    finished = run["status"] not in ACTIVE
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


def _charts(run: dict[str, Any], epochs: pd.DataFrame, batches: pd.DataFrame) -> None:
    config = run["config"]
    arms = config["arms"]
    labels = figure_labels()
    total = int(config["phase1"]["epochs"]) + int(config["phase2"]["epochs"])
    steps = next(
        (p.get("steps_per_epoch") for p in (run.get("progress") or {}).values() if p), None
    )
    at = figures.phase2_start(config)
    counts = " · ".join(f"{t(f'arm.{a}')}: {int((epochs['arm'] == a).sum())}" for a in arms)
    st.caption(t("charts.points", counts=counts, total=total))
    st.plotly_chart(
        figures.arm_curves(
            epochs,
            arms,
            batches=batches,
            steps_per_epoch=steps,
            phase2_at=at,
            epochs_total=total,
            labels=labels,
            revision=run["run_id"],
        ),
        config={"displaylogo": False},
    )
    if len(arms) > 1:
        st.markdown(f"**{t('charts.overlay')}**")
        st.plotly_chart(
            figures.overlay_curves(
                epochs,
                arms,
                phase2_at=at,
                epochs_total=total,
                labels=labels,
                revision=run["run_id"],
            ),
            config={"displaylogo": False},
        )


def _log(run_id: str) -> None:
    events = state.store().events(run_id)
    with st.expander(t("run.log", n=len(events))):
        lines = [
            f"{datetime.fromtimestamp(e['time']).strftime('%H:%M:%S')}  {e['message']}"
            for e in events[-40:]
        ]
        st.code("\n".join(lines) or "–", language=None)
