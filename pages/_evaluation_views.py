"""The Evaluate page: its header (the run, the threshold rule, the CI method, the cohorts shown), the
bar of its views, and the views themselves — each draws one view of a run's evaluation with
crc_core's figures. Only the chosen view is drawn: a click inside it reruns that view alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from crc_core import figures
from crc_core.evaluate import run_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.runs.store import RunRecord, RunStore
from crc_core.cohort.table1 import p_words
from crc_core.workspace import Workspace
from pages import _ui


@dataclass(frozen=True)
class EvaluateContext:
    """What every view draws from: the workspace, its run store, the chosen run's evaluation by the
    chosen rule and CI method, every finished run, the store's stamp and the cohorts shown."""

    workspace: Workspace
    store: RunStore
    result: me.RunEvaluation
    finished: list[RunRecord]
    stamp: tuple
    cohorts: list[str]


def _chart(figure, key: str) -> None:
    st.plotly_chart(figure, config=figures.EXPORT_CONFIG, key=key)


def cohorts_choice(result: me.RunEvaluation) -> list[str]:
    """The cohorts the ROC, violin, figures export and report show (every evaluated one by default)."""
    from crc_core.runs.views import cohort_name

    cohorts = list(result.metrics)
    if len(cohorts) < 2:
        return cohorts
    return st.multiselect("Cohorts shown", cohorts, default=cohorts, format_func=cohort_name, key="evaluate_cohorts",
                          help="In the ROC and violin tabs, and in the figures and report exported below.") or cohorts


def _cohort_choice(result: me.RunEvaluation, key: str) -> str | None:
    from crc_core.runs.views import cohort_name

    cohorts = list(result.metrics)
    if not cohorts:
        st.info("No cohort of this run can be evaluated (see the notes above).")
        return None
    default = "validation" if "validation" in cohorts else cohorts[-1]
    return st.radio("Cohort", cohorts, index=cohorts.index(default), horizontal=True, key=key, format_func=cohort_name,
                    persist_state="page")


def roc(result: me.RunEvaluation, cohorts: list[str]) -> None:
    if result.metrics:
        _chart(me.roc_figure(result, cohorts), "roc")
    if len(result.fold_aucs):
        from crc_core.runs.views import cohort_name

        spread = result.fold_aucs.groupby("cohort")["auc"].agg(["mean", "std", "count"])
        for cohort, row in spread.iterrows():
            st.caption(f"{cohort_name(cohort)}: AUC {row['mean']:.3f} ± {row['std']:.3f} over {int(row['count'])} "
                       "folds/repeats (mean ± SD).")


#: Table 2 on screen: the cohort and the AUC first, so they are in view at 1024 px (the paper's order,
#: Model first, is kept in the downloads); the model, the same on every row and named above, last.
TABLE_TWO_FIRST = ("Cohort", "AUC", "95% CI")


def table_two_on_screen(result: me.RunEvaluation) -> pd.DataFrame:
    table = me.table2_for_people(result)
    first = [c for c in TABLE_TWO_FIRST if c in table.columns]
    rest = [c for c in table.columns if c not in first and c != "Model"]
    return table[first + rest + (["Model"] if "Model" in table.columns else [])]


def table_two(result: me.RunEvaluation) -> None:
    st.dataframe(table_two_on_screen(result), hide_index=True,
                 column_config={"Cohort": st.column_config.TextColumn(pinned=True)})
    st.caption("95% CI of the AUC: " + ("DeLong (pROC::ci.auc)." if result.ci_method == "delong"
                                        else "2000 stratified bootstrap resamples, percentile interval (pROC::ci.auc).")
               + " Every proportion's Wilson 95% CI is in the downloads. Threshold: "
               + result.threshold_words)
    left, right = st.columns(2)
    # Built when downloaded, not on every click of the page.
    left.download_button("metrics.csv", lambda: result.metrics_table().to_csv(index=False), f"{result.run.run_id}-metrics.csv",
                         mime="text/csv", key="download_metrics", on_click="ignore")
    right.download_button("Table 2 (Excel)", lambda: me.table2_xlsx([result]), f"{result.run.run_id}-table2.xlsx",
                          mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", key="download_table2",
                          on_click="ignore")


def violin(result: me.RunEvaluation, cohorts: list[str]) -> None:
    if result.metrics:
        _chart(me.violin_figure(result, cohorts), "violin")


def decision(result: me.RunEvaluation) -> None:
    cohort = _cohort_choice(result, "decision_cohort")
    if cohort is None:
        return
    low, high = st.slider("Threshold range", 0.01, 0.99, (0.01, 0.99), 0.01, key="decision_range", persist_state="page")
    band = st.checkbox("Bootstrap band (200 resamples)", key="decision_band", persist_state="page")
    thresholds = np.round(np.arange(low, high + 1e-9, 0.01), 2)
    _chart(me.decision_figure(result, cohort, thresholds, band), "dca")
    _chart(me.impact_figure(result, cohort, thresholds), "impact")


def calibration(result: me.RunEvaluation) -> None:
    cohort = _cohort_choice(result, "calibration_cohort")
    if cohort is None:
        return
    stats = result.calibration[cohort]
    _chart(me.calibration_figure(result, cohort), "calibration")
    st.caption(me.calibration_words(stats))


@st.cache_data(show_spinner="Comparing…", max_entries=8)
def _comparison(root: str, stamp: tuple, run_ids: tuple[str, ...]):
    from pathlib import Path

    from crc_core.workspace import Workspace

    store = RunStore(Workspace(Path(root)))
    table, pairs = me.compare_runs(store, list(run_ids))
    return table, pairs, me.cohort_curves(store, list(run_ids))


def compare(store: RunStore, result: me.RunEvaluation, finished: list[RunRecord], stamp: tuple) -> None:
    from crc_core.runs.views import EVALUATION_NAMES

    same_target = [r for r in finished if r.target == result.run.target]
    labels = {r.run_id: f"{me.model_label(r)} · {EVALUATION_NAMES.get(r.evaluation, r.evaluation)} · {r.run_id[-4:]}"
              for r in same_target}
    chosen = st.multiselect(f"Runs of {result.run.target.upper()} to compare", list(labels), default=list(labels)[:5],
                            format_func=labels.get, key="compare_runs", persist_state="page")
    if not chosen:
        return
    try:
        table, pairs, curves = _comparison(str(store.workspace.root), stamp, tuple(chosen))
    except CrcInputError as exc:
        st.error(str(exc))
        return
    st.dataframe(me.comparison_for_people(table), hide_index=True)
    _best_of(store, chosen)
    if curves:  # full width, one under the other: a legend of several models needs the room
        _chart(figures.roc_curves([(label, roc, auc) for label, roc, _, auc in curves], "Validation cohort: ROC"), "compare_roc")
        _chart(figures.decision_curves({label: dca for label, _, dca, _ in curves}, "Validation cohort: decision curves"),
               "compare_dca")
    if len(pairs):
        st.markdown("**DeLong's test between models on the same validation patients** (pROC::roc.test): the AUC "
                    "difference (first − second) with its 95% CI, then p Holm-adjusted across the pairs shown. A large p "
                    "is no evidence of a difference, not proof that the models are equal: the CI says what it rules out.")
        st.dataframe(delong_on_screen(me.delong_pairs_for_people(pairs, labels)), hide_index=True, column_config={
            "First model": st.column_config.TextColumn(width="medium"),
            "Second model": st.column_config.TextColumn(width="medium")})


def _best_of(store: RunStore, chosen: list[str]) -> None:
    """Which of the compared runs is best, and on which cohort it was picked: the table reports
    validation AUCs, so a pick on them is flagged optimistic."""
    from crc_core.runs import views as run_views

    if len(chosen) < 2:
        return
    by = st.radio("Pick the best model on", list(run_views.SELECTION_COHORTS)[:2], horizontal=True, key="compare_select_by",
                  format_func=lambda c: f"{run_views.selection_name(c)} AUC" + (" (ours)" if c == run_views.DEFAULT_SELECTION else ""),
                  help="The training out-of-fold AUC leaves the validation cohort out of the choice; picking on the "
                       "validation AUC and then reporting it overstates the chosen model.")
    picked = run_views.select_best(store, chosen, by=by, reported="validation")
    (st.warning if picked.warning else st.info)(" ".join(filter(None, [picked.describe(), picked.warning])))


def delong_on_screen(pairs: pd.DataFrame) -> pd.DataFrame:
    """The DeLong pairs with the AUC difference and its Holm-adjusted p beside the two models, so they
    are in view at 1024 px (the models' long names are cut to a medium width, whole on hover)."""
    first = ["First model", "Second model", "AUC difference (95% CI)", "Holm-adjusted p"]
    return pairs[first + [c for c in pairs.columns if c not in first]]


# --- The page's header: which run, evaluated how ------------------------------------------------

CI_NAMES = {"delong": "DeLong", "bootstrap": "bootstrap (2000, stratified)"}


def run_fingerprint(store: RunStore, run: RunRecord) -> tuple:
    """What a run's evaluation is computed from — its record and its predictions — as a cache key:
    a new prediction of this run (an external cohort) is read at once, while another run's training
    (which rewrites the store every few seconds) leaves this run's evaluation cached."""
    predictions = store.predictions(run.run_id)
    rows = int(pd.util.hash_pandas_object(predictions, index=False).sum()) if len(predictions) else 0
    return run.status, run.finished_at, repr(sorted(run.info.items())), repr(sorted(run.config.items())), len(predictions), rows


@st.cache_data(show_spinner="Evaluating…", max_entries=16)
def _evaluation(root: str, run: str, fingerprint: tuple, threshold_rule: str, method: str) -> me.RunEvaluation:
    return me.evaluate_run(RunStore(Workspace(Path(root))), run, threshold_rule=threshold_rule, ci_method=method)


def store_stamp(store: RunStore) -> tuple[int, ...]:
    """The run store's files' times, for the views that read several runs (Compare runs)."""
    return tuple(_ui.stamp(store.path.with_name(store.path.name + suffix)) for suffix in ("", "-wal"))


def _keep_run_in_url() -> None:
    st.query_params["run"] = st.session_state["evaluate_run"]


def _run_choice(finished: list[RunRecord], column) -> str:
    """The run shown: the one in the URL (a link, a reload, Back), else the one chosen, else the
    latest. The URL is written only when the user chooses: a write on the first render would add a
    browser history entry, and Back would need two presses to leave the page."""
    ids = [r.run_id for r in finished]
    asked = st.query_params.get("run")
    if asked in ids and asked != st.session_state.get("evaluate_run"):
        st.session_state["evaluate_run"] = asked
    elif st.session_state.get("evaluate_run") not in ids:
        st.session_state["evaluate_run"] = ids[0]
    labels = {r.run_id: f"{r.target.upper()} · {me.model_label(r)} · {r.config.get('evaluation', 'holdout')} · {r.run_id}"
              for r in finished}
    return column.selectbox("Run", ids, key="evaluate_run", format_func=labels.get, on_change=_keep_run_in_url)


def open_run() -> EvaluateContext:
    """The header of the page: the run, the threshold rule, the CI method and the cohorts shown.
    Stops with a message when there is no run to evaluate."""
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
    left, middle, right = st.columns([3, 2, 2])
    run_id = _run_choice(finished, left)
    rule = middle.radio("Threshold", me.THRESHOLD_RULES, horizontal=True, key="evaluate_rule", format_func=me.THRESHOLD_RULE_NAMES.get)
    ci_method = right.radio("AUC 95% CI", ["delong", "bootstrap"], horizontal=True, key="evaluate_ci", format_func=CI_NAMES.get)
    by_id = {r.run_id: r for r in finished}
    try:
        result = _evaluation(str(workspace.root), run_id, run_fingerprint(store, by_id[run_id]), rule, ci_method)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        st.stop()
    if result.run.random_init:
        st.warning("This run started from random initialisation (no ImageNet weights): it is not the paper's model.")
    for note in result.notes:
        st.info(note)
    return EvaluateContext(workspace, store, result, finished, store_stamp(store), cohorts_choice(result))


# --- The views, and the bar that chooses one ----------------------------------------------------

def _views() -> dict[str, tuple[str, Callable[[EvaluateContext], None]]]:
    from pages import _cam_views, _centre_views, _combined_views, _report_views, _robustness_views

    return {
        "roc": ("ROC", lambda c: roc(c.result, c.cohorts)),
        "table-2": ("Table 2", lambda c: table_two(c.result)),
        "violin": ("Violin", lambda c: violin(c.result, c.cohorts)),
        "decision": ("Decision curve", lambda c: decision(c.result)),
        "calibration": ("Calibration", lambda c: calibration(c.result)),
        "compare": ("Compare runs", lambda c: compare(c.store, c.result, c.finished, c.stamp)),
        "grad-cam": ("Grad-CAM", lambda c: _cam_views.draw(c.workspace, c.store, c.result, c.finished)),
        "combined": ("Combined model", lambda c: _combined_views.draw(c.workspace, c.result)),
        "robustness": ("Robustness", lambda c: _robustness_views.draw(c.workspace, c.result)),
        "centres": ("Other centres", lambda c: _centre_views.centres(c.workspace, c.result)),
        "sample-size": ("Sample size", lambda c: _centre_views.sample_size(c.result)),
        "report": ("Report & exports", lambda c: _report_views.draw(c.workspace, c.result, c.cohorts)),
    }


#: Every view by its name: its label on the bar (and in the URL) and how it is drawn.
VIEWS = _views()


def choose_view() -> str:
    """The bar of views: one button per view, wrapping onto a second row on a narrow screen (all
    twelve reachable at 1024 px), kept in the URL by its label (``?tab=Calibration``) so a reload
    or Back opens it again; Streamlit writes it there without adding a history entry."""
    return st.segmented_control("View", list(VIEWS), default="roc", required=True, key="tab", bind="query-params",
                                wrap=True, format_func=lambda name: VIEWS[name][0], label_visibility="collapsed")


def draw_view(name: str, context: EvaluateContext) -> None:
    VIEWS[name][1](context)
