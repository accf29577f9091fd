"""Explain page: the seminar's concepts, short, in the chosen language, each tied to the
control on the Experiment page that demonstrates it. Texts: ``assets/explanations.*.md``."""

import streamlit as st

from dashboard import roles
from dashboard.i18n import explanations, lang, t

st.title(t("explain.title"))
intro, sections = explanations(lang())
st.markdown(intro)

for i, section in enumerate(sections):
    with st.container(border=True):
        st.subheader(section.title)
        st.markdown(section.body)
        # A viewer has no Setup form to be shown; the ONNX export is on the run view.
        can_try = roles.is_presenter() or section.control == "onnx"
        if (
            section.control
            and can_try
            and st.button(
                t("explain.try", control=t(f"control.{section.control}")),
                key=f"explain.try.{i}",
                icon=":material/tune:",
            )
        ):
            st.session_state["view"] = "run" if section.control == "onnx" else "setup"
            st.session_state["focus"] = section.control
            st.switch_page("views/experiment.py")
