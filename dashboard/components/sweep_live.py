"""The Sweep page's live view: one sweep's trials as a map, their history and curves, and a
table of trials with links to their runs; Stop, Open run, Load into Setup.

Stop asks the running trials to stop after their current batch; if they still run
``FORCE_STOP_AFTER_S`` later, the presenter is offered Force stop (the run view's button and
delay), which kills this machine's workers of the sweep
(:func:`dashboard.state.force_stop_sweep`).
A trial stopped from its own run (Runs page) was skipped by a user: it shows as *stopped*,
not *failed*.

Refreshed like the run view (:mod:`dashboard.components.live`): a fragment rereads the
sweep every ``REFRESH_S`` while it is running, from a snapshot of the study read at most
every ``SNAPSHOT_S`` and shared by every session watching it, so what it shows is at most
about 1.5 s behind the study. Trials of workers on other machines are read from the study
too (their curves are trial attributes), so they show although their runs live elsewhere.

Which figure maps the space: a heat map when two parameters vary, parallel coordinates
for more, the objective against the parameter for one (:mod:`dashboard.sweep_figures`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import form, roles, state
from dashboard import sweep_figures as figures
from dashboard import sweep_form as sweeps
from dashboard.components.live import force_stop_button
from dashboard.i18n import lang, t

REFRESH_S = 1.0
SNAPSHOT_S = 0.5
ACTIVE = ("running", "stopping")
STATE_BADGES = {
    "COMPLETE": "green",
    "RUNNING": "blue",
    "WAITING": "gray",
    "PRUNED": "orange",
    "STOPPED": "gray",
    "FAIL": "red",
}
SWEEP_BADGES = {"running": "blue", "stopping": "orange", "stopped": "orange", "finished": "green"}


@dataclass(frozen=True)
class Snapshot:
    """A sweep as its study had it at one moment; shared by sessions, so read-only."""

    info: dict[str, Any]  # the list_sweeps entry: sweep_id, state, trials, best_value, created
    spec: Any  # the SweepSpec
    trials: list[dict[str, Any]]
    version: str  # changes whenever anything shown changes

    @property
    def active(self) -> bool:
        return self.info.get("state") in ACTIVE


def snapshot(sweep_id: str) -> Snapshot:
    """The sweep as the study had it at most ``SNAPSHOT_S`` ago."""
    return _snapshot(sweep_id, state.store_root(), math.floor(time.time() / SNAPSHOT_S))


@st.cache_resource(show_spinner=False, max_entries=32)
def _snapshot(sweep_id: str, root: str, tick: int) -> Snapshot:
    info = next((s for s in state.sweeps() if s["sweep_id"] == sweep_id), None)
    if info is None:
        raise state.UserError(t("sweep.missing", id=sweep_id))
    trials = state.sweep_trials(sweep_id)
    version = json.dumps([info.get("state"), trials], sort_keys=True, default=str)
    return Snapshot(info, state.sweep_spec(sweep_id), trials, version)


def render(sweep_id: str) -> None:
    """The live panel of ``sweep_id``, refreshed while its trials run."""
    snap, problem = state.attempt(snapshot, sweep_id)
    if problem is not None:
        st.warning(problem)
        return
    st.fragment(_panel, run_every=REFRESH_S if snap.active else None)(sweep_id, snap.active)


def _panel(sweep_id: str, was_active: bool) -> None:
    with state.shown_errors():
        snap = snapshot(sweep_id)
        if was_active and not snap.active:
            st.rerun()  # the whole page: the panel without its timer
        _header(snap)
        _maps(snap)
        _table(snap)


# --- header -----------------------------------------------------------------------------------


def _header(snap: Snapshot) -> None:
    info, spec = snap.info, snap.spec
    status = str(info.get("state"))
    counts: dict[str, int] = {}
    for trial in snap.trials:
        counts[figures.state_of(trial)] = counts.get(figures.state_of(trial), 0) + 1
    left, right = st.columns([4, 1], vertical_alignment="center")
    with left:
        st.markdown(
            f"#### {t('sweep.live.title', id=info['sweep_id'])} "
            f":{SWEEP_BADGES.get(status, 'gray')}-badge[{t(f'sweep.state.{status}')}]"
        )
        space = " · ".join(p.text() for p in spec.params)
        created = info.get("created")
        st.caption(
            t(
                "sweep.live.subtitle",
                space=space,
                sampler=t(f"sweep.sampler.{spec.sampler}"),
                objective=t(f"sweep.objective.{spec.objective}"),
                pruner=t(f"sweep.pruner.{spec.pruner}"),
                created=datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")
                if created
                else "–",
            )
        )
    with right:
        _stop_controls(info, status)
    killed = st.session_state.get(f"sweep.killed.{info['sweep_id']}")
    if killed:
        st.info(killed, icon=":material/dangerous:")
    budget = spec.budget()
    done = sum(counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "STOPPED", "FAIL"))
    shown = [f"{t(f'sweep.fig.state.{s}')} {counts[s]}" for s in figures.STATES if counts.get(s)]
    st.progress(
        min(done / max(budget, 1), 1.0),
        text=" · ".join([t("sweep.live.progress", done=done, total=budget), *shown]),
    )
    best = max(
        (tr for tr in snap.trials if figures.has_value(tr)),
        key=lambda tr: float(tr["value"]),
        default=None,
    )
    if best is not None:
        params = ", ".join(f"{k}={_param(k, v)}" for k, v in best["params"].items())
        st.success(
            t(
                "sweep.live.best",
                value=figures.format_value(best["value"], spec.objective),
                number=best["number"],
                params=params,
            ),
            icon=":material/trophy:",
        )


def _stop_controls(info: dict[str, Any], status: str) -> None:
    """Stop while it runs; once stopping, Force stop after the run view's delay (counted
    from this session's click, else from the Stop the study recorded). Presenter only."""
    sweep_id = info["sweep_id"]
    if status == "running" and roles.is_presenter():
        st.button(
            t("sweep.stop"),
            key=f"sweep.stop.{sweep_id}",
            icon=":material/stop:",
            width="stretch",
            on_click=_stop,
            args=(sweep_id,),
        )
        return
    if status != "stopping":
        return
    st.caption(t("sweep.stopping"))
    asked = st.session_state.get(f"sweep.stop_asked.{sweep_id}") or info.get("stopped_at") or 0
    if roles.is_presenter():
        key = f"sweep.kill.{sweep_id}"
        force_stop_button(key, asked, _force_stop, sweep_id, help=t("sweep.kill.help"))


def _stop(sweep_id: str) -> None:
    with state.shown_errors():
        state.stop_sweep(sweep_id)
        st.session_state[f"sweep.stop_asked.{sweep_id}"] = time.time()
    _snapshot.clear()  # show "Stopping" at once


def _force_stop(sweep_id: str) -> None:
    """Force-stop callback: kill the sweep's workers here; say what could not be killed."""
    with state.shown_errors():
        done = state.force_stop_sweep(sweep_id)
        message = t("sweep.killed", n=len(done["killed"]))
        if done["elsewhere"]:
            numbers = ", ".join(f"#{n}" for n in done["elsewhere"])
            message += " " + t("sweep.killed.elsewhere", numbers=numbers)
        st.session_state[f"sweep.killed.{sweep_id}"] = message
    _snapshot.clear()


# --- figures ----------------------------------------------------------------------------------


def _labels() -> dict[str, str]:
    return {key: t(f"sweep.fig.{key}") for key in figures.SWEEP_LABELS}


def varying(spec) -> list[str]:
    """The parameters that take more than one value, in the space's order."""
    out = []
    for p in spec.params:
        many = len(p.choices) > 1 if p.kind == "categorical" else p.low != p.high
        if many:
            out.append(p.key)
    return out


@st.cache_resource(show_spinner=False, max_entries=32)
def _figures(sweep_id: str, version: str, language: str, _snap: Snapshot) -> dict[str, go.Figure]:
    """The sweep's figures for one state of it (``version``; ``_snap`` is that state, not
    part of the key), shared by every session showing it."""
    spec, trials = _snap.spec, _snap.trials
    labels = _labels()
    keys = varying(spec)
    logs = sweeps.log_keys(spec)
    common = {"objective": spec.objective, "labels": labels}
    out: dict[str, go.Figure] = {}
    if len(keys) == 2:
        out["map"] = figures.heat_map(
            trials, keys[1], keys[0], axes=sweeps.axes(spec), log_keys=logs, **common
        )
    elif len(keys) > 2:
        out["map"] = figures.parallel_coordinates(trials, keys, log_keys=logs, **common)
    elif len(keys) == 1:
        out["map"] = figures.one_param(trials, keys[0], log_keys=logs, **common)
    out["history"] = figures.history(trials, **common)
    base = spec.base_config()
    epochs = base.phase1.epochs + base.phase2.epochs
    if any(p.key in ("phase1.epochs", "phase2.epochs") for p in spec.params):
        epochs = None  # varies: the longest curve sets the axis
    out["curves"] = figures.trial_curves(trials, keys, epochs=epochs, labels=labels)
    return out


def _maps(snap: Snapshot) -> None:
    sweep_id = snap.info["sweep_id"]
    figs = _figures(sweep_id, snap.version, lang(), snap)
    config = {"displaylogo": False}
    if "map" in figs:
        st.markdown(f"**{t('sweep.live.map')}**", help=t("sweep.live.map.help"))
        st.plotly_chart(figs["map"], config=config, key=f"sweep_map.{sweep_id}")
    st.markdown(f"**{t('sweep.live.history')}**", help=t("sweep.live.history.help"))
    st.plotly_chart(figs["history"], config=config, key=f"sweep_history.{sweep_id}")
    st.markdown(f"**{t('sweep.live.curves')}**", help=t("sweep.live.curves.help"))
    st.plotly_chart(figs["curves"], config=config, key=f"sweep_curves.{sweep_id}")


# --- the trials table -----------------------------------------------------------------------


def _param(key: str, value: Any) -> str:
    if value is None:
        return t("all") if key == "train_per_class" else "null"
    if key.endswith(".lr") and isinstance(value, float):
        return f"{value:.1e}"
    return figures.format_param(value)


def trials_frame(snap: Snapshot) -> pd.DataFrame:
    """One row per trial, newest first: number, state, each parameter, value, its run."""
    keys = [p.key for p in snap.spec.params]
    rows = []
    for trial in sorted(snap.trials, key=lambda tr: -int(tr["number"])):
        state_name = figures.state_of(trial)
        value = trial.get("value") if figures.has_value(trial) else None
        so_far = figures.partial_value(trial, snap.spec.objective)
        shown = t(f"sweep.fig.state.{state_name}")
        row: dict[str, Any] = {
            "trial": int(trial["number"]),
            "state": shown,
            **{k: _param(k, (trial.get("params") or {}).get(k)) for k in keys},
            "value": figures.format_value(value, snap.spec.objective)
            if value is not None
            else (
                f"({figures.format_value(so_far, snap.spec.objective)})"
                if so_far is not None
                else "–"
            ),
            "run": f"./?run={trial['run_id']}" if trial.get("run_id") else None,
            "error": trial.get("error") or "",
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _table(snap: Snapshot) -> None:
    sweep_id = snap.info["sweep_id"]
    st.markdown(f"**{t('sweep.live.trials')}**", help=t("sweep.live.trials.help"))
    frame = trials_frame(snap)
    if frame.empty:
        st.caption(t("sweep.live.no_trials"))
        return
    event = st.dataframe(
        frame,
        key=f"sweep_table.{sweep_id}",
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
        column_config={
            "trial": st.column_config.NumberColumn(t("sweep.col.trial"), format="#%d"),
            "state": st.column_config.TextColumn(t("sweep.col.state")),
            "value": st.column_config.TextColumn(
                t("sweep.col.value"), help=t("sweep.col.value.help")
            ),
            "run": st.column_config.LinkColumn(
                t("sweep.col.run"), display_text=r"\?run=(.*)$", help=t("sweep.col.run.help")
            ),
            "error": st.column_config.TextColumn(t("sweep.col.error")),
        },
    )
    rows = [i for i in event.selection.rows if i < len(frame)]
    number = int(frame.iloc[rows[0]]["trial"]) if rows else None
    trial = next((tr for tr in snap.trials if tr["number"] == number), None)
    with st.container(horizontal=True, vertical_alignment="center"):
        run_id = (trial or {}).get("run_id")
        if st.button(
            t("sweep.open_run"),
            disabled=not run_id,
            icon=":material/monitoring:",
            key=f"sweep.open.{sweep_id}",
        ):
            st.session_state["current_run"] = run_id
            st.session_state["view"] = "run"
            st.switch_page("views/experiment.py", query_params={"run": run_id})
        if st.button(
            t("sweep.load_setup"),
            disabled=trial is None,
            icon=":material/input:",
            key=f"sweep.load.{sweep_id}",
            help=t("sweep.load_setup.help"),
        ):
            _load_into_setup(sweep_id, trial)
        st.caption(t("sweep.selected", n=number) if trial is not None else t("sweep.select_hint"))


def _load_into_setup(sweep_id: str, trial: dict[str, Any]) -> None:
    """Put the trial's whole config into the Setup form and show it there. Learning rates
    the sliders can't show exactly (a sampled 3.7e-4) are snapped to the nearest step, and
    the message says which."""
    config, problem = state.attempt(state.trial_config, sweep_id, trial.get("params") or {})
    if problem is not None:
        st.error(problem)
        return
    ids = [b["id"] for b in state.catalogue()]
    values = form.widget_values(config, ids)
    for key, value in values.items():
        st.session_state[key] = value
    shown, _ = state.attempt(form.config_from_values, values)
    changed = []
    if shown is not None:
        for key in form.CONFIG_KEYS:
            before, after = sweeps.value_of(config, key), sweeps.value_of(shown, key)
            if before != after:
                changed.append(t("sweep.loaded.snapped", name=key, before=before, after=after))
    message = t("sweep.loaded", number=trial["number"], id=sweep_id)
    st.session_state["loaded_into_setup"] = " ".join([message, *changed])
    st.session_state["view"] = "setup"
    st.switch_page("views/experiment.py")
