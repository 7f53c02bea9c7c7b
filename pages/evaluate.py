"""Evaluate: a run's ROC with 95% CI, the paper's Table 2, violin, decision and calibration curves, and
runs compared — every number from the run store's predictions, as R prints it; then explain (Grad-CAM, a
combined clinical + DL model) and present (figures as PNG/SVG, a self-contained report)."""

import streamlit as st

from pages import _evaluation_views as views

st.title("Evaluate")
st.caption("ROC curves with DeLong 95% CIs (pROC), the paper's Table 2 with Wilson CIs, violin plots, decision "
           "curves (dcurves) and calibration (rms::val.prob), for any finished run — trained here or elsewhere; Grad-CAM "
           "with its trust checks, a combined clinical + DL model; beyond the paper, robustness to the reader, another "
           "centre, the sample size an external validation needs; and the figures, a report and the TRIPOD+AI checklist "
           "to take to a meeting.")

context = views.open_run()
# Only the chosen view is drawn (st.tabs would run all twelve on every click).
views.draw_view(views.choose_view(), context)
