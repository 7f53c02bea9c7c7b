"""The Evaluate page's "Robustness" tab: the run's model on crops cut with reader 2's ROI and with
reader 1's eroded or dilated by 1-2 px — computed by ``crc-time robustness`` in a worker and kept
in the run's folder."""

from __future__ import annotations

import streamlit as st

from crc_core import figures
from crc_core.evaluate import run_evaluation as me
from crc_core.evaluate import robustness as rb
from crc_core.errors import CrcInputError
from crc_core.runs.views import cohort_name
from crc_core.workspace import Workspace
from pages import _jobs


def _start(workspace: Workspace, run_id: str, cohort: str, again: bool) -> None:
    label = f"{'Check again' if again else 'Check'}: reader 2 and reader 1's ROI eroded and dilated"
    if st.button(label, key="robustness_start", type="secondary" if again else "primary",
                 help="Cuts the cohort's crops again with each ROI, as the run's own were cut, and scores them with the "
                      "run's model (a few minutes on a laptop)."):
        _jobs.start_step(workspace, "robustness", rb.RobustnessConfig(run_id=run_id, cohort=cohort))


def draw(workspace: Workspace, result: me.RunEvaluation) -> None:
    run = result.run
    if not run.has_network:
        st.info(f"A {run.mode} model has no network of its own to apply to other readers' crops; choose a features or "
                "fine-tuned run.")
        return
    cohorts = [c for c in result.metrics if c != "train"] or list(result.metrics)
    if not cohorts:
        return
    cohort = st.radio("Cohort", cohorts, horizontal=True, key="robustness_cohort", format_func=cohort_name,
                      persist_state="page")
    _, running = _jobs.show_job(workspace, "robustness", "Reader check")
    if running:
        return
    try:
        kept = rb.kept_robustness(workspace, run, cohort)
    except CrcInputError as exc:
        st.error(str(exc))
        kept = None
    if kept is None:
        st.info("Not checked yet: is the prediction the same when another reader draws the ROI, or when the outline moves "
                "by a pixel or two (Zwanenburg et al. 2019)?")
        _start(workspace, run.run_id, cohort, again=False)
        return
    st.dataframe(rb.summary_for_people(kept), hide_index=True)
    sentence = rb.comparison_sentence(kept)
    if sentence:
        st.markdown(sentence)
    st.caption("Each ROI's AUC minus reader 1's with DeLong's 95% CI, then DeLong's paired test (pROC::roc.test) with p "
               "Holm-adjusted across the ROIs (p.adjust(method = \"holm\")): a large p is no evidence of a difference, "
               "not proof of robustness. ICC(2,1) of the predicted probabilities against reader 1's (psych::ICC); a class "
               f"change at Table 2's threshold ({kept.threshold:.3f}). ICC above 0.75 is usually read as good agreement, "
               "above 0.9 as excellent.")
    miscalibrated = rb.threshold_note(kept)
    if miscalibrated:
        st.warning(miscalibrated)
    for note in kept.notes:
        st.caption(note)
    for stem, figure in rb.robustness_figures(kept, run.target).items():
        st.plotly_chart(figure, config=figures.EXPORT_CONFIG, key=stem)
    _start(workspace, run.run_id, cohort, again=True)
