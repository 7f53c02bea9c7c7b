"""The Evaluate page's "Other centres" and "Sample size" tabs: does the run hold in another centre
(AUC per cohort with the pooled AUC and its heterogeneity, recalibration to an external cohort),
and how many patients would an external validation need (Riley et al. 2021)."""

from __future__ import annotations

import streamlit as st

from crc_core.evaluate import external as ex
from crc_core import figures
from crc_core.evaluate import run_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.runs.views import cohort_name
from crc_core.workspace import Workspace
from pages import _jobs


def _chart(figure, key: str) -> None:
    st.plotly_chart(figure, config=figures.EXPORT_CONFIG, key=key)


def _build_centre_form(workspace: Workspace, *, announce: bool) -> tuple[str, str]:
    """The sample's second hospital, built from the page as `crc-time sample --centre` builds it, so
    that a new user sees a model meet another centre without a terminal. Returns the folder and name
    of the centre built in this session (empty if none), for the predict form to start from;
    ``announce``: say that the last build is ready (not once a centre has been predicted)."""
    from crc_core.jobs import job_config, latest_job
    from crc_core.sample.cohort import SampleConfig, check_centre_folder, default_centre_folder

    last = latest_job(workspace, "sample")
    # The "sample" step also (re)builds this workspace's own cohort: only a centre's build is said here.
    built_config = job_config(workspace, last.job_id, SampleConfig) if last is not None else None
    if built_config is None or not built_config.centre:
        last = None
    if last is not None:
        _, running = _jobs.show_job(workspace, "sample", "Building the second centre")
        if running:
            return "", ""
    built = ("", "")
    if last is not None and last.state == "done":
        built = st.session_state.get("built_centre", ("", ""))
        if announce:
            said = last.message.rstrip(".")
            st.success(f"{said[:1].upper()}{said[1:]}. Predict its patients with this run below.")
    with st.expander("No other centre yet? Build the sample's second hospital"):
        st.caption("A simulated external cohort that differs as a second hospital does: another scanner (more noise, "
                   "an HU offset, thicker slices) and another case mix. It goes into a workspace of its own; nothing in "
                   "this one changes.")
        with st.form("build_centre"):
            left, right = st.columns([3, 1])
            folder = left.text_input("Folder for it", value=str(default_centre_folder(workspace, "Lanzhou")))
            name = right.text_input("Its name", value="Lanzhou")
            if st.form_submit_button("Build it"):
                try:
                    config = SampleConfig(centre=name)
                    if not config.centre:
                        raise CrcInputError("Name the centre (its patients' IDs start with its initials).")
                    target = check_centre_folder(workspace, folder, config.centre)
                except CrcInputError as exc:
                    st.error(str(exc))
                else:
                    st.session_state["built_centre"] = (str(target), config.centre)
                    _jobs.start_step(workspace, "sample", config, args=("--out", str(target)))
    return built


def _predict_form(workspace: Workspace, run_id: str, suggested: tuple[str, str] = ("", "")) -> None:
    from crc_core.evaluate.predict import PredictConfig

    _, running = _jobs.show_job(workspace, "predict", "Predicting another centre")
    if running:
        return
    with st.form("predict_centre"):
        left, right = st.columns([3, 1])
        source = left.text_input("Another centre's workspace folder", value=suggested[0], placeholder="/path/to/lanzhou",
                                 help="A workspace with the centre's CT volumes and masks (labels optional). The sample "
                                      "builds one with `crc-time --workspace DIR sample --centre NAME`.")
        name = right.text_input("Its name", value=suggested[1], placeholder="Lanzhou")
        if st.form_submit_button("Predict its patients with this run"):
            try:
                config = PredictConfig(run_id=run_id, source=source, cohort=name)
            except CrcInputError as exc:
                st.error(str(exc))
            else:
                _jobs.start_step(workspace, "predict", config)


def centres(workspace: Workspace, result: me.RunEvaluation) -> None:
    external = ex.external_cohorts(result)
    include_internal = False
    if external and len(ex.held_out_cohorts(result)) > len(external):
        include_internal = st.checkbox(
            "Pool the internal validation cohort with the external centres", key="centres_include_internal",
            persist_state="page", help="Off by default: the internal validation is a random split of the development "
                                       "data, not another centre, so the pooled AUC answers \"how does the model do in "
                                       "other hospitals\" only without it.")
    try:
        comparison = ex.compare_centres(result, include_internal=include_internal)
    except CrcInputError as exc:
        st.info(str(exc))
        comparison = None
    if comparison is not None:
        _chart(ex.centre_figure(comparison, f"{result.run.target.upper()}: {result.label}, AUC by cohort and centre"),
               "centres_forest")
        st.dataframe(ex.centre_table(comparison), hide_index=True)
        for note in comparison.notes:
            st.caption(note)
    if external:
        st.markdown("**Calibration in another centre, and updating the model to it**")
        left, right = st.columns(2)
        cohort = left.radio("External cohort", external, format_func=cohort_name, key="recalibration_cohort",
                           persist_state="page")
        method = right.radio("Update", ["intercept", "logistic"], key="recalibration_method", persist_state="page", format_func={
            "intercept": "intercept only (calibration-in-the-large)", "logistic": "intercept and slope"}.get)
        try:
            updated = ex.recalibrate_cohort(result, cohort, method)
        except CrcInputError as exc:
            st.error(str(exc))
        else:
            fit = updated.fit
            st.caption(f"Before: calibration-in-the-large {updated.before['citl']:.3f}, slope {updated.before['slope']:.3f} "
                       f"(the Calibration tab). Fitted on this cohort's outcomes: intercept {fit['intercept']:.3f} "
                       f"({fit['intercept_low']:.3f} to {fit['intercept_high']:.3f})"
                       + (f", slope {fit['slope']:.3f} ({fit['slope_low']:.3f} to {fit['slope_high']:.3f})"
                          if method == "logistic" else "")
                       + ". This updates the model to the centre: the numbers below describe the updated model, not the "
                         "run's, and need new patients to be checked.")
            _chart(ex.recalibration_figure(updated, f"{cohort_name(cohort)} cohort, recalibrated ({method})"),
                   "recalibration_plot")
    from crc_core.sample.cohort import sample_centre

    # Only the development sample offers a second centre: a centre's own workspace has its model elsewhere.
    suggested = (_build_centre_form(workspace, announce=not external)
                 if workspace.is_sample and not sample_centre(workspace) else ("", ""))
    _predict_form(workspace, result.run.run_id, suggested)


def sample_size(result: me.RunEvaluation) -> None:
    st.caption("How many patients an external validation of this model needs to estimate its calibration (O/E and slope), "
               "its C-statistic and, at a threshold, its net benefit precisely — Riley et al. 2021 (Stat Med 40:4230), "
               "as the pmvalsampsize package computes it, from this run's validation C-statistic, prevalence and "
               "linear-predictor distribution. The largest of the criteria is the answer.")
    cohorts = ex.held_out_cohorts(result)
    cohort = st.selectbox("Start from the cohort", cohorts, format_func=cohort_name, key="size_cohort",
                          help="An external centre's C-statistic, prevalence and predictions plan the next centre's "
                               "sample better than the internal validation's.") if len(cohorts) > 1 else None
    use_threshold = st.checkbox("Include net benefit at a threshold", key="size_with_threshold", persist_state="page")
    threshold = st.slider("Threshold probability", 0.05, 0.95, 0.3, 0.05, key="size_threshold",
                          persist_state="page") if use_threshold else None
    try:
        table = ex.validation_size(result, cohort=cohort, threshold=threshold)
    except CrcInputError as exc:
        st.error(str(exc))
        return
    largest = table[table["criterion"] == "largest"].iloc[0]
    st.metric("Patients needed (the largest criterion)", f"{int(largest['n']):,}",
              help=f"With at least {ex.events_needed(largest['events'])} patients of the high class at this prevalence.")
    st.dataframe(ex.validation_size_in_words(table), hide_index=True)
    first = table.iloc[0]
    st.caption(f"From the {cohort_name(first['source_cohort'])} cohort: C-statistic {first['cstatistic']:.3f}, prevalence "
               f"{first['prevalence']:.3f}, {first['lp_distribution']}.")
    st.download_button("validation_size.csv", table.to_csv(index=False), f"{result.run.run_id}-validation-size.csv")
