"""Home: what CRC-TIME does, the active cohort, and how far the workflow has come."""

import pandas as pd
import streamlit as st

from crc_core.workflow import workflow_status
from pages import _ui

st.title("CRC-TIME")
st.markdown(
    "Reproduce, check and extend a CT deep-learning radiomics study of the colorectal cancer "
    "**tumour immune microenvironment** (TIME): tumour-stroma ratio (TSR), tumour-infiltrating "
    "lymphocytes (TIL), Immune Score (IS) and the combined TIME score, predicted from the largest "
    "axial cross-section of the tumour on plain CT. Your data stays on this machine."
)

workspace = _ui.require_workspace()
summary = _ui.summary_of(workspace)
counts = summary.counts if summary else {}

columns = st.columns(3)
columns[0].metric("Patients", summary.patients if summary else 0)
columns[1].metric("Training cohort", counts.get("train", 0))
columns[2].metric("Validation cohort", counts.get("validation", 0))
if summary and summary.split:
    st.caption(f"Split: {summary.split.describe()} (from {summary.split.source}). Workspace: `{workspace.root.resolve()}`")
else:
    st.caption(f"No split yet: make one on the Cohort page. Workspace: `{workspace.root.resolve()}`")

st.subheader("Workflow")
statuses = workflow_status(workspace)
for status in statuses:
    if status.problem:
        st.error(status.problem)
st.table(
    pd.DataFrame(
        [{"room": s.step, "status": "done" if s.done else "to do", "in the workspace": s.detail} for s in statuses]
    ).set_index("room")
)
st.markdown(
    "1. **Cohort**: clinical and pathology tables, the 7:3 split, Table 1.\n"
    "2. **Labels**: TSR, TIL, Immune Score and TIME score from the pathology readings.\n"
    "3. **CT & ROI**: CT volumes and ROI masks to the largest-cross-section crops; reader agreement.\n"
    "4. **Train**: ResNet and DenseNet backbones, fine-tuned or as frozen feature extractors.\n"
    "5. **Evaluate**: ROC with 95% CI, Table 2, violin, decision and calibration curves, Grad-CAM; "
    "robustness to the reader, another centre, the sample size an external validation needs, a report."
)
