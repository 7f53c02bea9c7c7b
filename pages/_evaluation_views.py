"""The Evaluate page's tabs: each draws one view of a run's evaluation with crc_core's figures."""

from __future__ import annotations

import numpy as np
import streamlit as st

from crc_core import figures
from crc_core import model_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.runs import RunRecord, RunStore
from crc_core.stats import p_words


def _chart(figure, key: str) -> None:
    st.plotly_chart(figure, config=figures.EXPORT_CONFIG, key=key)


def cohorts_choice(result: me.RunEvaluation) -> list[str]:
    """The cohorts the ROC, violin, figures export and report show (every evaluated one by default)."""
    from crc_core.run_views import cohort_name

    cohorts = list(result.metrics)
    if len(cohorts) < 2:
        return cohorts
    return st.multiselect("Cohorts shown", cohorts, default=cohorts, format_func=cohort_name, key="evaluate_cohorts",
                          help="In the ROC and violin tabs, and in the figures and report exported below.") or cohorts


def _cohort_choice(result: me.RunEvaluation, key: str) -> str | None:
    from crc_core.run_views import cohort_name

    cohorts = list(result.metrics)
    if not cohorts:
        st.info("No cohort of this run can be evaluated (see the notes above).")
        return None
    default = "validation" if "validation" in cohorts else cohorts[-1]
    return st.radio("Cohort", cohorts, index=cohorts.index(default), horizontal=True, key=key, format_func=cohort_name)


def roc(result: me.RunEvaluation, cohorts: list[str]) -> None:
    if result.metrics:
        _chart(me.roc_figure(result, cohorts), "roc")
    if len(result.fold_aucs):
        from crc_core.run_views import cohort_name

        spread = result.fold_aucs.groupby("cohort")["auc"].agg(["mean", "std", "count"])
        for cohort, row in spread.iterrows():
            st.caption(f"{cohort_name(cohort)}: AUC {row['mean']:.3f} ± {row['std']:.3f} over {int(row['count'])} "
                       "folds/repeats (mean ± SD).")


def table_two(result: me.RunEvaluation) -> None:
    st.dataframe(me.table2_for_people(result), hide_index=True)
    st.caption("95% CI of the AUC: " + ("DeLong (pROC::ci.auc)." if result.ci_method == "delong"
                                        else "2000 stratified bootstrap resamples, percentile interval (pROC::ci.auc).")
               + " Every proportion's Wilson 95% CI is in the downloads. Threshold: "
               + result.threshold_words)
    left, right = st.columns(2)
    left.download_button("metrics.csv", result.metrics_table().to_csv(index=False), f"{result.run.run_id}-metrics.csv")
    right.download_button("Table 2 (Excel)", me.table2_xlsx([result]), f"{result.run.run_id}-table2.xlsx")


def violin(result: me.RunEvaluation, cohorts: list[str]) -> None:
    if result.metrics:
        _chart(me.violin_figure(result, cohorts), "violin")


def decision(result: me.RunEvaluation) -> None:
    cohort = _cohort_choice(result, "decision_cohort")
    if cohort is None:
        return
    low, high = st.slider("Threshold range", 0.01, 0.99, (0.01, 0.99), 0.01)
    band = st.checkbox("Bootstrap band (200 resamples)")
    thresholds = np.round(np.arange(low, high + 1e-9, 0.01), 2)
    _chart(me.decision_figure(result, cohort, thresholds, band), "dca")
    _chart(me.impact_figure(result, cohort, thresholds), "impact")


def calibration(result: me.RunEvaluation) -> None:
    cohort = _cohort_choice(result, "calibration_cohort")
    if cohort is None:
        return
    stats = result.calibration[cohort]
    _chart(me.calibration_figure(result, cohort), "calibration")
    st.caption(f"Intercept and slope of the logistic recalibration on logit(p) (rms::val.prob): {stats['intercept']:.3f}, "
               f"{stats['slope']:.3f}; Hosmer-Lemeshow χ² {stats['hl_chi2']:.2f} (df {stats['hl_df']}), {p_words(stats['hl_p'])}; "
               f"Spiegelhalter z {stats['spiegelhalter_z']:.2f}, {p_words(stats['spiegelhalter_p'])}.")


@st.cache_data(show_spinner="Comparing…", max_entries=8)
def _comparison(root: str, stamp: tuple, run_ids: tuple[str, ...]):
    from pathlib import Path

    from crc_core.workspace import Workspace

    store = RunStore(Workspace(Path(root)))
    table, pairs = me.compare_runs(store, list(run_ids))
    return table, pairs, me.cohort_curves(store, list(run_ids))


def compare(store: RunStore, result: me.RunEvaluation, finished: list[RunRecord], stamp: tuple) -> None:
    from crc_core.run_views import EVALUATION_NAMES

    same_target = [r for r in finished if r.target == result.run.target]
    labels = {r.run_id: f"{me.model_label(r)} · {EVALUATION_NAMES.get(r.evaluation, r.evaluation)} · {r.run_id[-4:]}"
              for r in same_target}
    chosen = st.multiselect(f"Runs of {result.run.target.upper()} to compare", list(labels), default=list(labels)[:5],
                            format_func=labels.get)
    if not chosen:
        return
    try:
        table, pairs, curves = _comparison(str(store.workspace.root), stamp, tuple(chosen))
    except CrcInputError as exc:
        st.error(str(exc))
        return
    st.dataframe(me.comparison_for_people(table), hide_index=True)
    if curves:  # full width, one under the other: a legend of several models needs the room
        _chart(figures.roc_curves([(label, roc, auc) for label, roc, _, auc in curves], "Validation cohort: ROC"), "compare_roc")
        _chart(figures.decision_curves({label: dca for label, _, dca, _ in curves}, "Validation cohort: decision curves"),
               "compare_dca")
    if len(pairs):
        st.markdown("**DeLong's test between models on the same validation patients** (pROC::roc.test): the AUC "
                    "difference (first − second) with its 95% CI, and p")
        st.dataframe(me.delong_pairs_for_people(pairs, labels), hide_index=True)
