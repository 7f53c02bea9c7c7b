"""Labels: pathology readings to TSR, TIL, Immune Score and TIME labels (planned)."""

import streamlit as st

from crc_core.errors import CrcInputError
from pages import _ui

workspace = _ui.require_workspace()
_ui.placeholder(
    "Labels",
    "How the pathologists' readings become the four labels the models learn.",
    [
        "TSR high: stroma > 50%; TIL high: grade 2-3; Immune Score 0-4 from CD3 and CD8 at the "
        "tumour centre and invasive margin (high: > 2); TIME score 0-3 (high: 2-3).",
        "Every cut-off adjustable, with the paper's rules as defaults and their source sentences.",
        "Two pathologists' agreement (Cohen's kappa with 95% CI) and a rule for disagreements.",
        "Label prevalence by split and cross-tabs; `labels.csv` saved for the later rooms.",
    ],
    "Below is the active workspace's pathology table.",
)
try:
    pathology = workspace.read_pathology()
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
st.subheader(f"Pathology readings ({len(pathology)} patients)")
st.dataframe(pathology, hide_index=True)
