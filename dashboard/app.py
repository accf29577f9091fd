"""Transfer-learning dashboard (placeholder until the dashboard issue lands)."""

import streamlit as st

st.set_page_config(page_title="Transfer learning: ImageNet vs random", layout="wide")
st.title("Transfer learning: ImageNet weights vs random weights")
st.write(
    "The engine lives in `pipelines/`. Try `python -m pipelines backbones` and "
    "`python -m pipelines classify --backbone efficientnet_lite0 IMAGE` meanwhile."
)
