""" "Find a learning rate" beside ``phase1.lr`` and ``phase2.lr`` in the Setup form.

The button starts the range test (:mod:`pipelines.training.lr_find`) for the form's config,
the phase and the arm chosen, in a process of its own (through :mod:`dashboard.state`), so
the page stays usable. While it runs, a fragment rereads its result every ``REFRESH_S`` s
and draws the points so far, with Stop; once it has ended, the whole page reruns and shows
the chart with the suggested rate marked and the rule named, and "Use this rate", which sets
the phase's learning-rate slider to its nearest step. The finder's id is kept in Session
State (``lr_find.job.<phase>``), so the chart survives page switches.
"""

from __future__ import annotations

import streamlit as st

from dashboard import form, state
from dashboard.i18n import labels, t
from dashboard.lr_figures import LR_LABELS, lr_curve

REFRESH_S = 1.0


def render(phase: int) -> None:
    """The finder's controls and chart for ``phase`` (1 or 2)."""
    job = st.session_state.get(f"lr_find.job.{phase}")
    result = state.attempt(state.lr_find_result, job).value if job else None
    active = result is not None and state.lr_find_active(result.get("ended"))
    arms = [a for a in (st.session_state.get("arms") or []) if a in ("imagenet", "random")]
    with st.container(horizontal=True, vertical_alignment="bottom"):
        if len(arms) > 1:
            st.selectbox(
                t("lr_find.arm"),
                arms,
                key=f"lr_find.arm.{phase}",
                format_func=labels("arm", arms).get,
                disabled=active,
            )
        st.button(
            t("lr_find.start"),
            key=f"lr_find.start.{phase}",
            icon=":material/troubleshoot:",
            help=t(f"lr_find.start.help.{phase}"),
            on_click=_start,
            args=(phase, arms),
            disabled=active,
        )
    if error := st.session_state.pop(f"lr_find.error.{phase}", None):
        st.error(error)
    if result is None:
        return
    if active:
        st.fragment(_live, run_every=REFRESH_S)(phase, job)
    else:
        _finished(phase, result)


def _start(phase: int, arms: list[str]) -> None:
    st.session_state.pop(f"lr_find.used.{phase}", None)
    arm = st.session_state.get(f"lr_find.arm.{phase}") if len(arms) > 1 else None
    arm = arm if arm in arms else (arms[0] if arms else "imagenet")
    config, error = state.attempt(form.config_from_values, st.session_state)
    if error is None:
        job, error = state.attempt(state.start_lr_find, config, phase, arm)
    if error is not None:
        st.session_state[f"lr_find.error.{phase}"] = error
        return
    st.session_state[f"lr_find.job.{phase}"] = job


def _live(phase: int, job: str) -> None:
    """The points so far and Stop; the whole page reruns once the finder has ended."""
    result, error = state.attempt(state.lr_find_result, job)
    if error is not None:
        st.error(error)
        return
    if not state.lr_find_active(result.get("ended")):
        st.rerun()
    lrs = result.get("lrs") or []
    status = (
        t("lr_find.running", steps=len(lrs), lr=f"{lrs[-1]:.1e}") if lrs else t("lr_find.starting")
    )
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption(status)
        st.button(
            t("lr_find.stop"),
            key=f"lr_find.stop.{phase}",
            icon=":material/stop:",
            on_click=state.stop_lr_find,
            args=(job,),
        )
    if lrs:
        _chart(phase, result)


def _finished(phase: int, result: dict) -> None:
    ended = result.get("ended")
    if ended in ("failed", "interrupted"):
        st.error(t("lr_find.failed", error=result.get("error", "")))
        return
    _chart(phase, result)
    suggested = result.get("suggested_lr")
    facts = {
        "arm": t(f"arm.{result.get('arm')}"),
        "steps": len(result.get("lrs") or []),
        "ended": t(f"lr_find.ended.{ended}"),
        "head": result.get("head", ""),
    }
    if not suggested:
        st.caption(t("lr_find.none", **facts))
        return
    key = f"phase{phase}.lr"
    st.caption(
        t(
            "lr_find.caption",
            lr=f"{suggested:.1e}",
            rule=t(f"lr_find.rule.{result.get('rule')}"),
            step=f"{form.nearest_lr(suggested):.0e}",
            **facts,
        )
    )
    st.button(
        t("lr_find.use"),
        key=f"lr_find.use.{phase}",
        icon=":material/check:",
        help=t("lr_find.use.help", field=key),
        on_click=_use,
        args=(phase, suggested),
    )
    if used := st.session_state.get(f"lr_find.used.{phase}"):
        st.success(t("lr_find.used", field=key, lr=used), icon=":material/check:")


def _use(phase: int, suggested: float) -> None:
    """Set the phase's learning-rate slider to the step nearest ``suggested``."""
    value = form.nearest_lr(suggested)
    st.session_state[f"phase{phase}.lr"] = value
    st.session_state[f"lr_find.used.{phase}"] = f"{value:.0e}"


def _chart(phase: int, result: dict) -> None:
    names = {k: t(f"lr_find.fig.{k}") for k in LR_LABELS}
    st.plotly_chart(
        lr_curve(result, labels=names),
        config={"displayModeBar": False},
        key=f"lr_find.chart.{phase}.{result.get('ended')}",
    )
