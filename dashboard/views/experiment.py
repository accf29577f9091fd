"""Experiment page: set up an experiment and start it (Setup), then watch both arms train
live and see the results (Run). The run shown is ``?run=`` in the URL, so a reload or a
second tab shows the same run; without it, the newest queued or running run."""

import streamlit as st

from dashboard import roles, state
from dashboard.components import group_form, live, setup_form
from dashboard.i18n import labels, t

run_id = state.selected_run()
if "view" not in st.session_state:
    st.session_state["view"] = "run" if run_id else "setup"
if run_id and st.query_params.get("run") != run_id:
    st.query_params["run"] = run_id  # the URL names the run shown: reload, share
elif not run_id and "run" in st.query_params:
    del st.query_params["run"]  # a deleted run

st.title(t("experiment.title"))
st.caption(t("experiment.intro"))
if missing := st.session_state.pop("missing_run", None):
    st.warning(t("run.missing", id=missing), icon=":material/link_off:")
VIEWS = ("setup", "run")
view = "run"  # a viewer has no Setup: the presenter sets up and starts (dashboard/roles.py)
group = state.my_group()  # a group of the exercise has its own Setup, limited to its choices
if roles.is_presenter() or group is not None:
    view = st.segmented_control(
        t("experiment.view"),
        VIEWS,
        key="view",
        format_func=labels("view", VIEWS).get,
        required=True,
        label_visibility="collapsed",
        persist_state="session",
    )

if focus := st.session_state.pop("focus", None):
    st.info(t("explain.focus", control=t(f"control.{focus}")), icon=":material/school:")

if view == "setup" and group is not None:
    group_form.render(*group)
elif view == "setup":
    setup_form.render()
elif run_id is None and not roles.is_presenter():
    st.info(t("roles.setup_hidden"), icon=":material/visibility:")
elif run_id is None:
    st.info(t("run.none"))
else:
    st.session_state["current_run"] = run_id
    live.render(run_id)
