"""Groups page: the group exercise. The presenter opens and closes it; the audience joins
as groups (then sets up its run on the Experiment page, limited to the exercise's
choices); the **board** below is for the projector: every group's run live, overlaid and
side by side, the leaderboard, and the seminar's comparison of the A groups (ImageNet
weights) against the B groups (random weights) as their runs finish.

The board is a fragment that reads one shared snapshot of the store every second
(:func:`dashboard.state.board`); its figures are built once per state of the board and
language, not per session. Group names are never put in the URL.
"""

from __future__ import annotations

import streamlit as st

from dashboard import form, groups_figures, roles, state
from dashboard.i18n import labels, lang, t

REFRESH_S = 1.0
MODES = ("seminar", "free")
SIDE_CHOICES = ("auto", "A", "B")


def _fig_labels() -> dict[str, str]:
    keys = ("imagenet", "random")
    return {
        **{k: t(f"arm.{k}") for k in keys},
        "epoch": t("fig.epoch"),
        "val_accuracy": t("fig.val_accuracy"),
        "side": t("groups.side.label"),
    }


# --- presenter: open and close ----------------------------------------------------------------


def _open_form() -> None:
    with st.form("groups.open", border=True):
        st.markdown(f"**{t('groups.open.title')}**")
        st.text_input(t("groups.open.name"), key="groups.open.name", max_chars=80)
        mode = st.radio(
            t("groups.open.mode"),
            MODES,
            key="groups.open.mode",
            format_func=labels("groups.mode", MODES).get,
            horizontal=True,
        )
        left, middle, right = st.columns(3)
        left.number_input(
            t("groups.open.max_epochs"), 1, form.MAX_EPOCHS, 5, key="groups.open.max_epochs"
        )
        options = [o for o in form.TRAIN_PER_CLASS_OPTIONS if o != form.ALL]
        middle.selectbox(t("groups.open.max_tpc"), options, index=4, key="groups.open.max_tpc")
        ids = [b["id"] for b in state.catalogue() if b.get("offline")]
        right.multiselect(
            t("groups.open.backbones"), ids, default=ids[:1], key="groups.open.backbones"
        )
        st.caption(t("groups.open.base") + " " + t(f"groups.mode.{mode}.help"))
        st.form_submit_button(
            t("groups.open.submit"), key="groups.open.submit", type="primary", on_click=_open
        )
    if error := st.session_state.pop("groups.open.error", None):
        st.error(error)


def _open() -> None:
    base, error = state.attempt(form.config_from_values, st.session_state)
    if error is None:
        mode = st.session_state.get("groups.open.mode", "seminar")
        rules = {"mode": mode, "base": base.to_dict()}
        if mode == "free":
            rules |= {
                "max_epochs": int(st.session_state.get("groups.open.max_epochs") or 1),
                "max_train_per_class": st.session_state.get("groups.open.max_tpc"),
                "backbones": list(st.session_state.get("groups.open.backbones") or []),
            }
        name = st.session_state.get("groups.open.name", "")
        error = state.attempt(state.open_exercise, name, rules).error
    if error is not None:
        st.session_state["groups.open.error"] = error


def _close(exercise_id: str) -> None:
    cancelled, error = state.attempt(state.close_exercise, exercise_id)
    st.session_state["groups.notice"] = error or t("groups.closed", n=len(cancelled))


def _presenter_controls(exercise) -> None:
    if exercise is None or not exercise.is_open:
        _open_form()
        return
    with st.popover(t("groups.close"), icon=":material/lock:"):
        st.caption(t("groups.close.confirm"))
        st.button(
            t("groups.close"),
            key="groups.close",
            type="primary",
            on_click=_close,
            args=(exercise.exercise_id,),
        )


# --- the audience: join, or your group -----------------------------------------------------------


def _join(exercise) -> None:
    side = st.session_state.get("groups.join.side", "auto")
    _, error = state.attempt(
        state.join_group,
        exercise.exercise_id,
        st.session_state.get("groups.join.name", ""),
        None if side == "auto" else side,
        st.session_state.get("groups.join.code", ""),
    )
    if error is not None:
        st.session_state["groups.join.error"] = error


def _membership(exercise) -> None:
    mine = state.my_group()
    if mine is not None:
        _, group = mine
        side = f" · {t(f'groups.side.{group.side}')}" if group.side else ""
        st.success(t("groups.mine", group=group.name) + side, icon=":material/groups:")
        st.caption(t("groups.mine.code", code=state.my_group_code() or "?"))
        left, right = st.columns([1, 1])
        if left.button(t("groups.mine.setup"), key="groups.mine.setup", type="primary"):
            st.session_state["view"] = "setup"
            st.switch_page("views/experiment.py")
        right.button(t("groups.mine.leave"), key="groups.mine.leave", on_click=state.leave_group)
        return
    with st.form("groups.join", border=True):
        st.markdown(f"**{t('groups.join.title')}**")
        st.text_input(t("groups.join.name"), key="groups.join.name", max_chars=80)
        if exercise.rules.mode == "seminar":
            st.radio(
                t("groups.join.side"),
                SIDE_CHOICES,
                key="groups.join.side",
                format_func=labels("groups.side", SIDE_CHOICES).get,
                horizontal=True,
            )
        st.text_input(
            t("groups.join.code"), key="groups.join.code", help=t("groups.join.code.help")
        )
        st.form_submit_button(
            t("groups.join.submit"),
            key="groups.join.submit",
            type="primary",
            on_click=_join,
            args=(exercise,),
        )
    if error := st.session_state.pop("groups.join.error", None):
        st.error(error)


# --- the board ---------------------------------------------------------------------------------


def _version(board: state.Board) -> tuple:
    """What the figures depend on: the runs' states and epoch rows, the groups."""
    rows = tuple((r.run_id, r.status, len(board.curves.get(r.run_id, ()))) for r in board.runs)
    return (board.exercise.exercise_id, len(board.groups), rows)


@st.cache_resource(show_spinner=False, max_entries=8)
def _figures(version: tuple, language: str, _board: state.Board) -> dict:
    """The board's figures, built once per state of the board and language."""
    board = _board
    names = [g.name for g in board.groups]
    latest = groups_figures.latest_runs(board.runs)
    curves = {n: board.curves.get(r.run_id) for n, r in latest.items()}
    lab = _fig_labels()
    points = groups_figures.comparison_rows(board.groups, board.runs, board.best)
    return {
        "overlay": groups_figures.overlay(
            curves, order=[n for n in names if n in curves], labels=lab
        ),
        "grid": groups_figures.side_by_side(
            curves, order=[n for n in names if n in curves], labels=lab
        ),
        "points": points,
        "comparison": groups_figures.comparison(points, labels=lab) if points else None,
    }


def _stop(exercise_id: str, group: str) -> None:
    _, error = state.attempt(state.stop_group_run, exercise_id, group)
    st.session_state["groups.notice"] = error or t("groups.board.stopped", group=group)


def _board_panel() -> None:
    with state.shown_errors():
        board = state.board()
        exercise = board.exercise
        if exercise is None:
            return
        runs = board.runs
        latest = groups_figures.latest_runs(runs)
        statuses = [r.status for r in latest.values()]
        st.caption(
            t(
                "groups.board.counts",
                groups=len(board.groups),
                finished=sum(r.status == "completed" for r in runs),
                running=statuses.count("running"),
                queued=statuses.count("queued"),
            )
        )
        if not board.groups:
            st.info(t("groups.board.empty"))
            return
        figs = _figures(_version(board), lang(), board)
        left, right = st.columns([1.1, 1], gap="large")
        with left:
            st.markdown(f"##### {t('groups.board.leaderboard')}")
            table = groups_figures.leaderboard(board.groups, runs, board.best)
            table["status"] = [t(f"status.{s}") if s else "" for s in table["status"]]
            table["arm"] = [t(f"arm.{a}") if a else "" for a in table["arm"]]
            st.dataframe(
                table,
                hide_index=True,
                width="stretch",
                column_config={
                    "rank": st.column_config.NumberColumn(t("groups.col.rank"), width="small"),
                    "group": t("groups.col.group"),
                    "side": st.column_config.TextColumn(t("groups.col.side"), width="small"),
                    "status": t("groups.col.status"),
                    "runs": st.column_config.NumberColumn(t("groups.col.runs"), width="small"),
                    "best": st.column_config.ProgressColumn(
                        t("groups.col.best"), min_value=0.0, max_value=1.0, format="percent"
                    ),
                    "arm": t("groups.col.arm"),
                    "epochs": t("groups.col.epochs"),
                },
            )
            if roles.is_presenter():
                active = [(n, r) for n, r in latest.items() if r.active]
                if active:
                    with st.container(horizontal=True):
                        for i, (name, _) in enumerate(active):
                            st.button(
                                t("groups.board.stop", group=name),
                                key=f"groups.stop.{i}",
                                icon=":material/stop:",
                                on_click=_stop,
                                args=(exercise.exercise_id, name),
                            )
        with right:
            st.markdown(f"##### {t('groups.board.compare')}")
            points = figs["points"]
            summary = groups_figures.comparison_summary(points)
            done = len({p["group"] for p in points})
            if figs["comparison"] is None:
                st.info(t("groups.board.compare.wait"))
            else:
                st.plotly_chart(
                    figs["comparison"], key="groups.compare", config={"displayModeBar": False}
                )
                st.caption(
                    " · ".join(
                        t(
                            "groups.board.compare.summary",
                            arm=t(f"arm.{arm}"),
                            mean=f"{s['mean']:.1%}",
                            n=int(s["n"]),
                            low=f"{s['min']:.1%}",
                            high=f"{s['max']:.1%}",
                        )
                        for arm, s in summary.items()
                    )
                )
            st.caption(t("groups.board.compare.done", done=done, groups=len(board.groups)))
        st.markdown(f"##### {t('groups.board.overlay')}")
        st.plotly_chart(figs["overlay"], key="groups.overlay", config={"displayModeBar": False})
        st.markdown(f"##### {t('groups.board.grid')}")
        st.plotly_chart(figs["grid"], key="groups.grid", config={"displayModeBar": False})


# --- the page ----------------------------------------------------------------------------------

state.require_store()
st.title(t("groups.title"))
st.caption(t("groups.intro"))
if notice := st.session_state.pop("groups.notice", None):
    st.info(notice)
exercise = state.exercise_now()
if roles.is_presenter():
    _presenter_controls(exercise)
if exercise is None:
    st.info(t("groups.none"))
    st.stop()
badge = ":green-badge[{}]" if exercise.is_open else ":gray-badge[{}]"
status = t("groups.status.open" if exercise.is_open else "groups.status.closed")
st.subheader(f"{exercise.name} {badge.format(status)}")
rules = exercise.rules
if rules.mode == "seminar":
    st.caption(t("groups.rules.seminar"))
else:
    st.caption(
        t(
            "groups.rules.free",
            epochs=rules.max_epochs or "–",
            images=rules.max_train_per_class or t("all"),
            backbones=", ".join(rules.allowed_backbones()),
        )
    )
if exercise.is_open:
    _membership(exercise)
st.fragment(_board_panel, run_every=REFRESH_S)()
