"""The transfer-learning dashboard: ``streamlit run dashboard/app.py``.

Four pages (Experiment, Runs, Sweep, Explain) and a language switch in the sidebar. Training never
happens in this process: the pages start, watch and stop engine worker processes through
:mod:`pipelines.runs.jobs` and read everything from the run store (see ``dashboard/state.py``).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

import pipelines  # noqa: E402, F401 - selects Keras 2 before anything imports TensorFlow
from dashboard import roles, state  # noqa: E402
from dashboard.components import presenter  # noqa: E402
from dashboard.i18n import LANGS, t  # noqa: E402
from pipelines import settings  # noqa: E402

# Reachable from other machines: typed paths may only point into the allowed folders
# (data sets, runs, caches; see pipelines.settings.confine). Workers inherit the setting.
if not os.environ.get("CONFINE_PATHS", "").strip() and not settings.server_is_local(
    st.get_option("server.address")
):
    os.environ["CONFINE_PATHS"] = "1"
# Shared, sessions are viewers until they enter the presenter key (dashboard/roles.py); a
# made-up key is printed to this server's log on the first page view.
roles.announce()

st.set_page_config(
    page_title="Transfer learning: ImageNet vs random",
    page_icon=":material/compare:",
    layout="wide",
)

if "lang" not in st.session_state:
    st.session_state["lang"] = "de" if (st.context.locale or "").lower().startswith("de") else "en"

pages = [
    st.Page(
        "views/experiment.py", title=t("nav.experiment"), icon=":material/science:", default=True
    ),
    st.Page("views/runs.py", title=t("nav.runs"), icon=":material/history:", url_path="runs"),
    st.Page("views/sweep.py", title=t("nav.sweep"), icon=":material/grid_on:", url_path="sweep"),
    st.Page(
        "views/explain.py", title=t("nav.explain"), icon=":material/school:", url_path="explain"
    ),
    st.Page("views/groups.py", title=t("groups.nav"), icon=":material/groups:", url_path="groups"),
]
page = st.navigation(pages)

with st.sidebar:
    st.segmented_control(
        t("sidebar.language"),
        list(LANGS),
        key="lang",
        required=True,
        format_func=LANGS.get,
        persist_state="session",
    )
    presenter.render()
    st.caption(t("sidebar.about"))

# Every page says so when the run store can't be opened; the pages that need it stop.
if store_problem := state.store_problem():
    st.error(store_problem, icon=":material/database:")
else:
    state.start_pool()  # once per server: the first Start is already warm

page.run()
