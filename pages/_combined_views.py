"""The Evaluate page's "Combined model" tab: a logistic regression of the label on a run's DL score
and chosen clinical variables (reference levels chosen here), fitted on the training cohort and
stored as a run of its own."""

from __future__ import annotations

import streamlit as st

from crc_core import figures
from crc_core.evaluate import run_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace
from pages import _ui


def _tables_stamp(workspace: Workspace) -> tuple[int, ...]:
    """The times of the files the cohort is read from, so the cache below follows them."""
    return tuple(_ui.stamp(path) for path in (workspace.clinical_csv, workspace.pathology_csv, workspace.labels_csv,
                                              workspace.split_csv, workspace.split_json, workspace.column_mapping_json))


@st.cache_data(show_spinner=False, max_entries=8)
def _clinical_columns(root: str, stamp: tuple[int, ...]) -> list[str]:
    from pathlib import Path

    return [c for c in Workspace(Path(root)).read_clinical().columns if c not in ("patient_id", "split", "fold")]


@st.cache_data(show_spinner=False, max_entries=32)
def _reference_choices(root: str, stamp: tuple[int, ...], variables: tuple[str, ...]) -> dict:
    # Read once per cohort and choice, not on every click of the page (the tables take about a second).
    from pathlib import Path

    from crc_core.evaluate.combined_model import reference_choices

    return reference_choices(Workspace(Path(root)), variables)


def _chart(figure, key: str) -> None:
    st.plotly_chart(figure, config=figures.EXPORT_CONFIG, key=key)


def _added_value(workspace, run) -> None:
    """What the clinical variables add, the tests that answer it first: the likelihood-ratio test,
    the AUC difference from the DL model alone, then the NRI and IDI without p values."""
    from crc_core.evaluate.combined_model import (NRI_CAVEAT, added_value_table, auc_difference, auc_difference_for_people,
                                         lr_test_words)

    words = lr_test_words(run)
    if words:
        st.markdown(f"**{words}**")
    gain = auc_difference(workspace, run)
    if len(gain):
        st.markdown("**AUC of the combined model against the DL model alone** on the same patients (DeLong's paired "
                    "test, pROC::roc.test)")
        st.dataframe(auc_difference_for_people(gain), hide_index=True)
    added = added_value_table(run)
    if len(added):
        st.markdown("**Reclassification** (category-free NRI and IDI as PredictABEL::reclassification defines them; "
                    "bootstrap 95% CIs)")
        st.dataframe(added, hide_index=True)
        st.caption(NRI_CAVEAT)


def draw(workspace, result: me.RunEvaluation) -> None:
    from crc_core.evaluate.combined_model import CombinedConfig, fit_combined, nomogram_figure, odds_ratio_table, stored_combined

    if result.run.mode == "combined":
        variables = tuple(result.run.config.get("variables", ()))
        try:
            fitted = stored_combined(result.run)
        except CrcInputError as exc:
            st.error(str(exc))
            return
        st.caption(f"This run is the combined model of run {result.run.info.get('parent_run')}'s DL score and "
                   f"{', '.join(variables) or 'no clinical variable'}; choose its DL run to fit another.")
        st.dataframe(odds_ratio_table(fitted.odds_ratios), hide_index=True)
        _added_value(workspace, result.run)
        _chart(nomogram_figure(fitted, result.run.target, variables), "nomogram")
        return
    st.caption("A multivariable logistic regression of the label on this run's DL score (its logit, per SD on the training "
               "cohort) and the clinical variables you choose, fitted on the training cohort only (statsmodels Logit, as R "
               "glm(binomial)). A training patient's DL score is the one from the run's inner cross-validation model that "
               "never saw that patient (a fine-tuned run has none, and says so). It is stored as a run of its own, so its "
               "ROC, decision and calibration curves sit beside the DL model's.")
    stamp = _tables_stamp(workspace)
    columns = _clinical_columns(str(workspace.root), stamp)
    chosen = st.multiselect("Clinical variables", columns, key="combined_variables", persist_state="page")
    references = {}
    choices = _reference_choices(str(workspace.root), stamp, tuple(chosen))
    for column, (name, levels) in zip(st.columns(max(len(choices), 1)), choices.items()):
        references[name] = column.selectbox(f"{name}: odds ratios relative to", [level for level, _ in levels],
                                            key=f"combined_reference_{name}", persist_state="page",
                                            format_func=lambda level, n=dict(levels): f"{level} ({n[level]} training patients)",
                                            help="The largest level by default: a small reference level makes every odds "
                                                 "ratio of the variable unstable.")
    if not st.button("Fit the combined model", key="fit_combined", disabled=not chosen,
                     help=None if chosen else "Choose at least one clinical variable first."):
        return
    try:
        fitted = fit_combined(workspace, CombinedConfig(run_id=result.run.run_id, variables=tuple(chosen),
                                                        reference_levels=references))
    except CrcInputError as exc:
        st.error(str(exc))
        return
    for note in fitted.notes:
        (st.warning if note.startswith("Warning") else st.caption)(note)
    st.dataframe(odds_ratio_table(fitted.odds_ratios), hide_index=True)
    _chart(nomogram_figure(fitted, result.run.target, tuple(chosen)), "nomogram")
    st.success(f"Stored as run {fitted.run_id}: choose it above to see its ROC, Table 2, decision and calibration curves, "
               "or compare it with the DL model under “Compare runs”.")
