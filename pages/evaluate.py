"""Evaluate: a run's ROC with 95% CI, the paper's Table 2, violin, decision and calibration curves, and
runs compared — every number from the run store's predictions, as R prints it; then explain (Grad-CAM, a
combined clinical + DL model) and present (figures as PNG/SVG, a self-contained report)."""

from pathlib import Path

import streamlit as st

from crc_core import model_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.runs import RunStore
from crc_core.workspace import Workspace
from pages import _cam_views, _centre_views, _combined_views, _report_views, _robustness_views, _ui
from pages import _evaluation_views as views

st.title("Evaluate")
st.caption("ROC curves with DeLong 95% CIs (pROC), the paper's Table 2 with Wilson CIs, violin plots, decision "
           "curves (dcurves) and calibration (rms::val.prob), for any finished run — trained here or elsewhere; Grad-CAM "
           "with its trust checks, a combined clinical + DL model; beyond the paper, robustness to the reader, another "
           "centre, the sample size an external validation needs; and the figures, a report and the TRIPOD+AI checklist "
           "to take to a meeting.")

workspace = _ui.require_workspace()
store = RunStore(workspace)
try:
    finished = store.runs(status="done")
except CrcInputError as exc:
    st.error(str(exc))
    st.stop()
if not finished:
    st.info("No finished runs yet: train a model on the Train page (or copy a run store from a GPU server into runs/).")
    st.stop()

ids = [r.run_id for r in finished]
asked = st.query_params.get("run")
if st.session_state.get("evaluate_run") not in ids:
    st.session_state["evaluate_run"] = asked if asked in ids else ids[0]  # the latest run, or the one in the URL
labels = {r.run_id: f"{r.target.upper()} · {me.model_label(r)} · {r.config.get('evaluation', 'holdout')} · {r.run_id}"
          for r in finished}
left, middle, right = st.columns([3, 2, 2])
run_id = left.selectbox("Run", ids, key="evaluate_run", format_func=labels.get)
st.query_params["run"] = run_id  # a reload or a link opens the same run
rule = middle.radio("Threshold", me.THRESHOLD_RULES, horizontal=True, key="evaluate_rule",
                    format_func=me.THRESHOLD_RULE_NAMES.get)
ci_method = right.radio("AUC 95% CI", ["delong", "bootstrap"], horizontal=True, key="evaluate_ci",
                        format_func={"delong": "DeLong", "bootstrap": "bootstrap (2000, stratified)"}.get)


@st.cache_data(show_spinner="Evaluating…", max_entries=16)
def evaluation(root: str, run: str, stamp: tuple, threshold_rule: str, method: str) -> me.RunEvaluation:
    # stamp: the run store's files' times, so a new prediction (e.g. an external cohort) is read at once.
    return me.evaluate_run(RunStore(Workspace(Path(root))), run, threshold_rule=threshold_rule, ci_method=method)


try:
    stamp = tuple(_ui.stamp(store.path.with_name(store.path.name + suffix)) for suffix in ("", "-wal"))
    result = evaluation(str(workspace.root), run_id, stamp, rule, ci_method)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
if result.run.random_init:
    st.warning("This run started from random initialisation (no ImageNet weights): it is not the paper's model.")
for note in result.notes:
    st.info(note)
cohorts_shown = views.cohorts_choice(result)

tabs = st.tabs(["ROC", "Table 2", "Violin", "Decision curve", "Calibration", "Compare runs", "Grad-CAM", "Combined model",
                "Robustness", "Other centres", "Sample size", "Report & exports"])
with tabs[0]:
    views.roc(result, cohorts_shown)
with tabs[1]:
    views.table_two(result)
with tabs[2]:
    views.violin(result, cohorts_shown)
with tabs[3]:
    views.decision(result)
with tabs[4]:
    views.calibration(result)
with tabs[5]:
    views.compare(store, result, finished, stamp)
with tabs[6]:
    _cam_views.draw(workspace, store, result, finished)
with tabs[7]:
    _combined_views.draw(workspace, result)
with tabs[8]:
    _robustness_views.draw(workspace, result)
with tabs[9]:
    _centre_views.centres(workspace, result)
with tabs[10]:
    _centre_views.sample_size(result)
with tabs[11]:
    _report_views.draw(workspace, result, cohorts_shown)
