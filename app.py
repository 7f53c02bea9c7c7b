"""CRC-TIME dashboard entry point: routes to the pages and draws the sidebar, nothing else."""

from pathlib import Path

import streamlit as st

from pages import _ui

# The icon ships with the app: a hospital machine asks no outside host for anything (a
# ":material/...:" page icon would be fetched from a font CDN).
ICON = Path(__file__).resolve().parent / "pages" / "assets" / "favicon.png"

st.set_page_config(page_title="CRC-TIME", page_icon=str(ICON), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/cohort.py", title="Cohort", icon=":material/groups:", url_path="cohort"),
    st.Page("pages/labels.py", title="Labels", icon=":material/label:", url_path="labels"),
    st.Page("pages/ct_roi.py", title="CT & ROI", icon=":material/radiology:", url_path="ct_roi"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:", url_path="evaluate"),
]
# Streamlit's own page menu drops the URL's ?workspace= on a page switch; the sidebar draws links
# that carry it instead.
navigation = st.navigation(PAGES, position="hidden")
_ui.draw_sidebar(PAGES)
navigation.run()
