"""Cohort: the clinical and pathology tables, the split and Table 1 (Table 1 planned)."""

import streamlit as st

from crc_core.errors import CrcInputError
from pages import _ui

workspace = _ui.require_workspace()
_ui.placeholder(
    "Cohort",
    "The cohort's clinical and pathology tables, how it is split, and whether the training and "
    "validation cohorts are balanced.",
    [
        "Upload of your own tables (CSV, TSV, XLSX) with column mapping and a join report.",
        "A seeded 7:3 split (adjustable), stratified, from a column, k-fold, or an external centre.",
        "Table 1 with the paper's tests (KS normality; t-test or Mann-Whitney Z; χ²), as SPSS "
        "reports them, exported to CSV, XLSX, Markdown and Word.",
    ],
    "Below is the active workspace's clinical table.",
)
try:
    clinical = workspace.read_clinical()
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
st.subheader(f"Clinical table ({len(clinical)} patients)")
st.dataframe(clinical, hide_index=True)
