"""The dashboard's pages; every page imports this package (through ``pages._ui``).

Streamlit treats a ``pages/`` folder beside the entry script as old-style multipage navigation
until ``st.navigation`` has run once in the server process. A first visit by deep link (for
example http://localhost:8501/cohort) would then run the page without ``app.py``'s navigation and
sidebar. The first such run switches the process to ``app.py``'s navigation and reruns, so every
visit goes through ``app.py``.
"""

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

if PagesManager.uses_pages_directory:
    PagesManager.uses_pages_directory = False
    st.rerun()
