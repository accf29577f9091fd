"""Sweep page: explore many configs at once (Optuna). Define which config keys vary and how
(Setup's experiment is the fixed part), see how many trials and about how long, Start; then
watch the trials fill a map live. The sweep shown is ``?sweep=`` in the URL (reload,
share), else this session's last, else the newest running one."""

import streamlit as st

from dashboard import state
from dashboard.components import sweep_live, sweep_setup
from dashboard.i18n import labels, t

st.title(t("sweep.title"))
st.caption(t("sweep.intro"))
state.require_store()

listed, problem = state.attempt(state.sweeps)
if problem is not None:
    st.error(problem, icon=":material/database:")
    listed = []
known = [s["sweep_id"] for s in listed]
wanted = st.query_params.get("sweep")
if wanted and wanted not in known:
    st.warning(t("sweep.missing", id=wanted), icon=":material/link_off:")
    del st.query_params["sweep"]
    wanted = None
current = st.session_state.get("current_sweep")
running = [s["sweep_id"] for s in listed if s["state"] in sweep_live.ACTIVE]
sweep_id = wanted or (current if current in known else None) or (running or [None])[0]
if sweep_id and st.query_params.get("sweep") != sweep_id:
    st.query_params["sweep"] = sweep_id

if "sweep_view" not in st.session_state:
    st.session_state["sweep_view"] = "live" if sweep_id else "setup"
VIEWS = ("setup", "live")
view = st.segmented_control(
    t("sweep.view"),
    VIEWS,
    key="sweep_view",
    format_func=labels("sweep.view", VIEWS).get,
    required=True,
    label_visibility="collapsed",
    persist_state="session",
)

if view == "setup":
    sweep_setup.render()
elif not known:
    st.info(t("sweep.none"))
else:
    by_id = {s["sweep_id"]: s for s in listed}
    picked = st.selectbox(
        t("sweep.pick"),
        known,
        index=known.index(sweep_id) if sweep_id in known else 0,
        format_func=lambda i: t(
            "sweep.pick.item",
            id=i,
            state=t(f"sweep.state.{by_id[i]['state']}"),
            n=by_id[i]["trials"],
        ),
    )
    if picked != sweep_id:
        st.session_state["current_sweep"] = picked
        st.query_params["sweep"] = picked
        st.rerun()
    st.session_state["current_sweep"] = sweep_id
    sweep_live.render(sweep_id)
