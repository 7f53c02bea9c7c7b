"""A run's evaluation, from its stored predictions: the paper's Table 2 per cohort, calibration,
decision curves, and runs of a target compared (DeLong's test between models on the same patients).

Reads only the run store (:mod:`crc_core.runs.store`), so a run trained elsewhere or a radiomics
baseline is evaluated the same way; the statistics are :mod:`crc_core.metrics.roc`'s.

Thresholds: a fixed rule, applied unchanged to validation and external cohorts, as a deployed
model would use. By default (ours, ``out_of_fold``) Youden's optimum on the training patients'
out-of-fold scores, where the run keeps them (features and radiomics runs): the fitted model's own
predictions of its training patients are resubstituted, so optimistic, and their optimum sits
where the training patients are separated best — lower than new patients need (TSR: 0.42 against
0.54 out-of-fold). ``training`` takes Youden's optimum on those resubstituted training
predictions (the rule a run without out-of-fold scores falls back to, with a note). The paper's
Table 2 instead shows each cohort at its own optimum (``per_cohort``), which flatters the
validation cohort; rows at a per-cohort threshold are marked optimistic.

The training row of Table 2 is the apparent (resubstituted) performance; where out-of-fold scores
exist a second training row gives theirs.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import crc_core.metrics as ev
from crc_core.errors import CrcInputError
from crc_core.runs.store import NO_FOLD, OUT_OF_FOLD, RunRecord, RunStore
from crc_core.runs.views import cohort_name, labelled
from crc_core.cohort.table1 import p_words

THRESHOLD_RULES = ("out_of_fold", "training", "per_cohort")
#: The default rule: ours (see the module docstring); a run without out-of-fold scores falls back to "training".
DEFAULT_THRESHOLD_RULE = "out_of_fold"
#: Each rule in words, for a choice on a page, a caption or the report.
THRESHOLD_RULE_NAMES = {
    "out_of_fold": "Youden on training out-of-fold scores, applied to all (ours)",
    "training": "Youden on training fitted scores (resubstituted), applied to all",
    "per_cohort": "each cohort's own (optimistic, as the paper)",
}
#: The Table 2 caption's sentence of each rule.
THRESHOLD_RULE_SENTENCES = {
    "out_of_fold": "Youden's optimum on the training patients' out-of-fold scores (each from the inner cross-validation's "
                   "model that never saw the patient), applied unchanged to every cohort (ours: the fitted model's own "
                   "training predictions are resubstituted, so optimistic).",
    "training": "Youden's optimum on the training cohort, applied unchanged to the others.",
    "per_cohort": "each cohort's own optimum (optimistic).",
}
#: Table 2's names of the two training rows.
APPARENT, OUT_OF_FOLD_ROW = "training (apparent: resubstituted)", "training (out-of-fold)"
#: The paper's Table 2 columns, in its order.
TABLE2_COLUMNS = ["Model", "ACC", "AUC", "95% CI", "Sensitivity", "Specificity", "PPV", "NPV", "Precision", "Recall",
                  "F1", "Threshold", "Cohort"]
COHORT_ORDER = ("train", "validation", "cv")


def model_label(run: RunRecord) -> str:
    """``DenseNet-121 (frozen features, random init)``: the model in words, with its mode and, where
    it applies, that it started from random weights."""
    from crc_core.runs.views import MODE_NAMES, model_name

    suffix = ", random init" if run.random_init else ""
    harmonised = run.config.get("harmonise", "none")
    combat = f", ComBat {harmonised}" if harmonised not in ("none", None) else ""
    return f"{model_name(run)} ({MODE_NAMES[run.mode]}{combat}{suffix})"


def cohorts_of(predictions: pd.DataFrame) -> list[str]:
    """The cohorts in which every patient has one prediction (folds pooled for k-fold), in a
    reading order: training, validation, cross-validation, then external cohorts. Repeated splits
    predict a patient many times, and a features run's out-of-fold training scores are kept for
    the combined model, not evaluated."""
    from crc_core.runs.views import AUXILIARY_COHORTS

    found = [c for c in pd.unique(predictions["cohort"]) if c != "repeat" and c not in AUXILIARY_COHORTS]
    return sorted(found, key=lambda c: (COHORT_ORDER.index(c) if c in COHORT_ORDER else 9, c))


@dataclass
class RunEvaluation:
    run: RunRecord
    predictions: pd.DataFrame
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # cohort → threshold_metrics
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    fold_aucs: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    threshold_rule: str = DEFAULT_THRESHOLD_RULE
    ci_method: str = "delong"
    #: The training patients' out-of-fold scores at the rule's threshold (threshold_metrics), where kept.
    out_of_fold: dict[str, Any] | None = None

    @property
    def threshold_words(self) -> str:
        """The rule that set Table 2's threshold, as the caption says it."""
        return THRESHOLD_RULE_SENTENCES[self.threshold_rule]

    @property
    def label(self) -> str:
        return model_label(self.run)

    def table2(self) -> pd.DataFrame:
        """The paper's Table 2 layout (three decimals, the AUC CI as "low-high"), one row per cohort."""
        rows = []
        for cohort, m in self._rows():
            rows.append({
                "Model": self.label, "ACC": m["acc"], "AUC": m["auc"], "95% CI": f"{m['auc_low']:.3f}-{m['auc_high']:.3f}",
                "Sensitivity": m["sensitivity"], "Specificity": m["specificity"], "PPV": m["ppv"], "NPV": m["npv"],
                "Precision": m["precision"], "Recall": m["recall"], "F1": m["f1"], "Threshold": m["threshold"],
                "Cohort": self.cohort_words(cohort) + (" (own threshold: optimistic)" if m.get("optimistic") else ""),
            })
        return pd.DataFrame(rows, columns=TABLE2_COLUMNS)

    def _rows(self) -> list[tuple[str, dict[str, Any]]]:
        """(cohort, metrics) of Table 2, the out-of-fold training row right after the apparent one."""
        rows = []
        for cohort, m in self.metrics.items():
            rows.append((cohort, m))
            if cohort == "train" and self.out_of_fold is not None:
                rows.append((OUT_OF_FOLD, self.out_of_fold))
        if "train" not in self.metrics and self.out_of_fold is not None:
            rows.insert(0, (OUT_OF_FOLD, self.out_of_fold))
        return rows

    def _threshold_source(self) -> str:
        return ("training patients' out-of-fold scores" if self.threshold_rule == "out_of_fold" else
                "training cohort (resubstituted)" if self.threshold_rule == "training" else "training cohort")

    def cohort_words(self, cohort: str) -> str:
        """A cohort in words; the training cohort says whether its scores are the model's own
        (apparent) or out-of-fold."""
        if cohort == "train":
            return APPARENT
        if cohort == OUT_OF_FOLD:
            return OUT_OF_FOLD_ROW
        return cohort_name(cohort)

    def metrics_table(self) -> pd.DataFrame:
        """Every number of Table 2 with its Wilson CI, for ``metrics.csv`` and the XLSX export:
        ``cohort``, ``auc``, ``ci`` ("low-high"), ``threshold`` and the rest."""
        rows = []
        for cohort, m in self._rows():
            rows.append({"run_id": self.run.run_id, "model": self.label, "cohort": cohort, "n": m["n"],
                         "n_positive": m["n_positive"], "auc": m["auc"], "ci": f"{m['auc_low']:.4f}-{m['auc_high']:.4f}",
                         "auc_low": m["auc_low"], "auc_high": m["auc_high"], "threshold": m["threshold"],
                         "threshold_from": "this cohort (optimistic)" if m.get("optimistic") else self._threshold_source(),
                         **{k: m[k] for k in ("acc", "acc_low", "acc_high", "sensitivity", "sensitivity_low", "sensitivity_high",
                                              "specificity", "specificity_low", "specificity_high", "ppv", "ppv_low", "ppv_high",
                                              "npv", "npv_low", "npv_high", "f1", "tp", "fp", "fn", "tn")},
                         "few_cases": m["unreliable"]})
        return pd.DataFrame(rows)


def table2_for_people(result: RunEvaluation) -> pd.DataFrame:
    """Table 2 as a reader sees it: every number to three decimals with its trailing zeros, so a
    column reads alike from row to row (0.850, not 0.85)."""
    table = result.table2()
    for column in table.columns:
        if column not in ("Model", "95% CI", "Cohort"):
            table[column] = [f"{v:.3f}" if pd.notna(v) else "—" for v in table[column]]
    return table


def evaluate_run(store: RunStore, run_id: str, *, threshold_rule: str = DEFAULT_THRESHOLD_RULE, ci_method: str = "delong",
                 n_boot: int = 2000, seed: int = 0) -> RunEvaluation:
    """Table 2 and calibration of every cohort of a run; a cohort that cannot be evaluated (one
    class, no labels) is left out with a note, never an error for the whole run. ``threshold_rule``
    as in the module docstring: ``out_of_fold`` on a run without out-of-fold training scores is
    ``training``, said in a note (the result's ``threshold_rule`` is the rule applied)."""
    if threshold_rule not in THRESHOLD_RULES:
        raise CrcInputError(f"The threshold rule must be one of {', '.join(THRESHOLD_RULES)}; got {threshold_rule!r}.")
    run = store.run(run_id)
    predictions = store.predictions(run_id)
    if predictions.empty:
        raise CrcInputError(f"Run {run_id} has no predictions ({run.status}{': ' + run.message if run.message else ''}).")
    cohorts = cohorts_of(predictions)
    out_of_fold = labelled(predictions, OUT_OF_FOLD)
    fallback = threshold_rule == "out_of_fold" and (out_of_fold.empty or out_of_fold["y_true"].nunique() < 2)
    result = RunEvaluation(run, predictions, threshold_rule="training" if fallback else threshold_rule, ci_method=ci_method)
    threshold_rule = result.threshold_rule
    if fallback and "train" in cohorts:
        result.notes.append("This run keeps no out-of-fold scores of its training patients (only features and radiomics "
                            "runs of the saved split do): the threshold is Youden's optimum on the fitted model's own "
                            "(resubstituted, so optimistic) training predictions.")
    if "validation" not in cohorts and "cv" not in cohorts:
        result.notes.append("This run has no validation predictions (nor cross-validated ones): its only numbers are "
                            "on the patients it was trained on, which say little about new patients.")
    training_threshold = None
    source = {"out_of_fold": out_of_fold, "training": labelled(predictions, "train") if "train" in cohorts else None}
    if source.get(threshold_rule) is not None:
        rows = source[threshold_rule]
        try:
            training_threshold = ev.youden_threshold(rows["y_true"].astype(int), rows["prob"])
        except CrcInputError as exc:
            result.notes.append(f"No training threshold: {exc}")
    if len(out_of_fold) and out_of_fold["y_true"].nunique() == 2:
        y, prob = out_of_fold["y_true"].astype(int).to_numpy(), out_of_fold["prob"].to_numpy()
        result.out_of_fold = ev.threshold_metrics(y, prob, training_threshold)
        if ci_method == "bootstrap":
            result.out_of_fold["auc"], result.out_of_fold["auc_low"], result.out_of_fold["auc_high"] = \
                ev.auc_ci(y, prob, "bootstrap", n_boot=n_boot, seed=seed)
        result.out_of_fold["optimistic"] = False
    for cohort in cohorts:
        rows = labelled(predictions, cohort)
        if rows.empty:
            result.notes.append(f"The {cohort} cohort has no labels: predictions only, no statistics.")
            continue
        y, prob = rows["y_true"].astype(int).to_numpy(), rows["prob"].to_numpy()
        own = training_threshold is None or (cohort == "train" and threshold_rule == "training")
        try:
            ev.check_binary(y, prob, what=f"The {cohort} cohort")
            metrics = ev.threshold_metrics(y, prob, None if own else training_threshold)
            if ci_method == "bootstrap":
                metrics["auc"], metrics["auc_low"], metrics["auc_high"] = ev.auc_ci(y, prob, "bootstrap", n_boot=n_boot, seed=seed)
            result.calibration[cohort] = ev.calibration_stats(y, prob)
        except CrcInputError as exc:
            result.notes.append(str(exc))
            continue
        metrics["optimistic"] = own and cohort != "train"
        if metrics["unreliable"]:
            result.notes.append(f"The {cohort} cohort has fewer than {ev.FEW_CASES} patients in a class: its CIs are unreliable.")
        result.metrics[cohort] = metrics
    from crc_core.evaluate.threshold_side import table_two_notes

    result.notes.extend(table_two_notes(result))  # a threshold no patient crosses: miscalibration, said
    folds = ev.grouped_auc(predictions[predictions["fold"] != NO_FOLD], ["cohort", "fold"])
    result.fold_aucs = folds.dropna(subset=["auc"])[["cohort", "fold", "auc"]].reset_index(drop=True)
    return result


def compare_runs(store: RunStore, run_ids: list[str], cohort: str = "validation") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs side by side on one cohort — model, mode, evaluation, AUC with CI (and mean ± SD
    over folds or repeats) — and DeLong's test between every pair predicted on the same patients
    (``run_a``, ``run_b``, ``z``, ``p``, ``difference``, ``low``, ``high``)."""
    rows, scored = [], {}
    for run_id in run_ids:
        run = store.run(run_id)
        predictions = store.predictions(run_id)
        row: dict[str, Any] = {"run_id": run_id, "model": model_label(run), "target": run.target, "mode": run.mode,
                               "evaluation": run.config.get("evaluation", "holdout"), "seed": run.config.get("seed", 0)}
        pooled = labelled(predictions, cohort if cohort in set(predictions["cohort"]) else "cv")
        if pooled["y_true"].nunique() == 2:
            auc, low, high = ev.auc_ci(pooled["y_true"].astype(int), pooled["prob"])
            row.update(auc=auc, auc_low=low, auc_high=high, n=len(pooled))
            scored[run_id] = pooled.set_index("patient_id")
        folds = predictions[(predictions["fold"] != NO_FOLD) & predictions["y_true"].notna()]
        values = [ev.auc_ci(r["y_true"].astype(int), r["prob"])[0] for _, r in folds.groupby(["cohort", "fold"])
                  if r["y_true"].nunique() == 2]
        if len(values) > 1:
            row.update(fold_auc_mean=float(np.mean(values)), fold_auc_sd=float(np.std(values, ddof=1)), n_folds=len(values))
        rows.append(row)
    pairs = []
    ids = list(scored)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            shared = scored[a].index.intersection(scored[b].index)
            if len(shared) < 2 or scored[a].loc[shared, "y_true"].nunique() < 2:
                continue
            z, p, difference, (low, high) = ev.delong_difference(
                scored[a].loc[shared, "y_true"].astype(int), scored[a].loc[shared, "prob"], scored[b].loc[shared, "prob"])
            pairs.append({"run_a": a, "run_b": b, "n": len(shared), "z": z, "p": p, "difference": difference,
                          "low": low, "high": high})
    return pd.DataFrame(rows), pd.DataFrame(pairs, columns=["run_a", "run_b", "n", "z", "p", "difference", "low", "high"])


def table2_xlsx(evaluations: list[RunEvaluation]) -> bytes:
    """Table 2 of several runs as an Excel workbook: the paper's layout, and every number with its CI."""
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        pd.concat([e.table2() for e in evaluations]).round(3).to_excel(writer, sheet_name="Table 2", index=False)
        pd.concat([e.metrics_table() for e in evaluations]).to_excel(writer, sheet_name="Details with CIs", index=False)
        notes = [n for e in evaluations for n in e.notes] or ["—"]
        pd.DataFrame({"note": notes}).to_excel(writer, sheet_name="Notes", index=False)
    return buffer.getvalue()


def mann_whitney_by_class(rows: pd.DataFrame) -> float:
    """p of the Mann-Whitney U test of the predicted probability between the two true classes
    (Z tie-corrected without continuity correction, as Table 1; R ``wilcox.test(exact = FALSE,
    correct = FALSE)``)."""
    from crc_core.cohort.table1 import mann_whitney_z

    high, low = rows.loc[rows["y_true"] == 1, "prob"], rows.loc[rows["y_true"] == 0, "prob"]
    if min(len(high), len(low)) == 0:
        return math.nan
    return mann_whitney_z(high, low).p_value


def figure_title(result: RunEvaluation) -> str:
    return f"{result.run.target.upper()}: {result.label}"


def roc_figure(result: RunEvaluation, cohorts: list[str] | None = None):
    """ROC curves of the run's evaluated cohorts (or of ``cohorts``), each with its AUC and CI."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name, labelled

    curves = []
    for cohort, m in result.metrics.items():
        if cohorts is None or cohort in cohorts:
            rows = labelled(result.predictions, cohort)
            curves.append((cohort_name(cohort), ev.roc_curve(rows["y_true"].astype(int), rows["prob"]),
                           (m["auc"], m["auc_low"], m["auc_high"])))
    return figures.roc_curves(curves, figure_title(result))


def violin_figure(result: RunEvaluation, cohorts: list[str] | None = None):
    """The predicted probability by true class per cohort, with each cohort's Mann-Whitney p."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name, labelled

    shown = [c for c in result.metrics if cohorts is None or c in cohorts]
    rows = result.predictions[result.predictions["cohort"].isin(shown) & result.predictions["y_true"].notna()]
    p_values = {cohort_name(c): mann_whitney_by_class(labelled(rows, c)) for c in shown}
    return figures.violin(rows.assign(cohort=rows["cohort"].map(cohort_name)), p_values,
                          f"{figure_title(result)}: predicted probability by true class")


def decision_figure(result: RunEvaluation, cohort: str, thresholds=None, band: bool = False):
    """The decision curve of ``cohort``, with a bootstrap band when asked."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name, labelled

    rows = labelled(result.predictions, cohort)
    y, prob = rows["y_true"].astype(int), rows["prob"]
    curve = ev.decision_curve(y, prob, thresholds)
    bands = {result.label: ev.decision_curve_band(y, prob, thresholds)} if band else None
    return figures.decision_curves({result.label: curve}, f"{figure_title(result)}, {cohort_name(cohort)} cohort: decision curve",
                                   bands)


def impact_figure(result: RunEvaluation, cohort: str, thresholds=None):
    """Of 1000 patients like ``cohort``'s, how many the model calls high and how many truly are."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name, labelled

    rows = labelled(result.predictions, cohort)
    curve = ev.decision_curve(rows["y_true"].astype(int), rows["prob"], thresholds)
    return figures.clinical_impact(curve, f"{figure_title(result)}, {cohort_name(cohort)} cohort: clinical impact")


def calibration_figure(result: RunEvaluation, cohort: str):
    """The calibration curve of ``cohort`` with its statistics (``rms::val.prob``): quantile bins
    with Wilson CIs, the smoothed curve (``lowess(p, y, iter = 0)``) with its bootstrap 95% band
    (200 resamples, seed 0: the same band on every drawing)."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name, labelled

    rows = labelled(result.predictions, cohort)
    bins, smooth = ev.calibration_curve(rows["y_true"].astype(int), rows["prob"])
    band = ev.calibration_band(rows["y_true"].astype(int), rows["prob"])
    return figures.calibration_plot(bins, smooth, rows["prob"].to_numpy(), result.calibration[cohort],
                                    f"{figure_title(result)}, {cohort_name(cohort)} cohort: calibration", band=band)


def calibration_words(stats: dict) -> str:
    """A cohort's calibration in sentences, the same on the page and in the report:
    calibration-in-the-large first (with its CI and what its sign means), the slope with the
    intercept fitted beside it, Spiegelhalter's z, and Hosmer-Lemeshow with its weaknesses."""
    from crc_core.cohort.table1 import p_words

    def shown(value: float) -> str:
        return f"{round(value, 3) + 0.0:.3f}"  # + 0.0: no "-0.000" for a recalibrated -1e-10

    citl = (f"Calibration-in-the-large {shown(stats['citl'])} (95% CI {shown(stats['citl_low'])} to "
            f"{shown(stats['citl_high'])}; "
            "R glm(y ~ offset(logit(p)), binomial): 0 when the mean predicted risk is right, above 0 when the model "
            "under-predicts, below 0 when it over-predicts).")
    slope = ("Calibration slope undefined: the probabilities separate the outcomes perfectly." if stats.get("separated") else
             f"Calibration slope {stats['slope']:.3f} (below 1: predictions too extreme, above 1: too modest) with its "
             f"intercept (with slope) {shown(stats['intercept_with_slope'])}, fitted together (rms::val.prob's \"Slope\" "
             "and \"Intercept\"; that intercept is not calibration-in-the-large).")
    return (f"{citl} {slope} Spiegelhalter z {stats['spiegelhalter_z']:.2f}, {p_words(stats['spiegelhalter_p'])}. "
            f"Hosmer-Lemeshow χ² {stats['hl_chi2']:.2f} (df {stats['hl_df']}), {p_words(stats['hl_p'])}. {ev.HL_CAVEAT} "
            "In the figure: quantile bins with Wilson 95% CIs, the smoothed curve (lowess, as rms::val.prob draws it) "
            "and its bootstrap 95% band (200 resamples of the patients).")


#: ``calibration.csv``'s columns, calibration-in-the-large first; val.prob's joint intercept only
#: beside the slope, named as such (its ``intercept`` key is not written twice).
CALIBRATION_COLUMNS = ("cohort", "citl", "citl_low", "citl_high", "slope", "intercept_with_slope", "brier", "hl_chi2",
                       "hl_df", "hl_p", "ece", "spiegelhalter_z", "spiegelhalter_p", "separated", "unreliable")


def calibration_table(result: RunEvaluation) -> pd.DataFrame:
    """One row per cohort: ``calibration.csv`` (:data:`CALIBRATION_COLUMNS`)."""
    return pd.DataFrame([{"cohort": c, **s} for c, s in result.calibration.items()], columns=list(CALIBRATION_COLUMNS))


def evaluation_figures(result: RunEvaluation, cohorts: list[str] | None = None) -> dict[str, Any]:
    """The run's figures by file stem — ROC and violin of the cohorts, and the decision curve,
    clinical impact and calibration of each cohort — drawn by the same builders the page's tabs
    use, so the page, the PNG/SVG export and the report show the same figures."""
    shown = [c for c in result.metrics if cohorts is None or c in cohorts]
    if not shown:
        return {}
    out: dict[str, Any] = {"roc": roc_figure(result, shown), "violin": violin_figure(result, shown)}
    for cohort in shown:
        stem = cohort.replace(":", "-")
        out[f"decision_curve-{stem}"] = decision_figure(result, cohort)
        out[f"clinical_impact-{stem}"] = impact_figure(result, cohort)
        out[f"calibration-{stem}"] = calibration_figure(result, cohort)
    return out


def export_evaluation(result: RunEvaluation, folder) -> list:
    """Write ``metrics.csv`` (Table 2 with ``cohort``, ``auc``, ``ci``, ``threshold`` and every CI),
    ``predictions.csv`` (``patient_id``, ``cohort``, ``y_true``, ``prob``), ``calibration.csv``
    (:func:`calibration_table`: calibration-in-the-large ``citl`` first) and
    the figures as HTML that open offline (plotly.js written once beside them). Each file atomic."""
    from pathlib import Path

    from crc_core.workspace import atomic_write_csv, atomic_write_text, ensure_writable_dir

    folder = ensure_writable_dir(Path(folder))
    written = [atomic_write_csv(folder / "metrics.csv", result.metrics_table()),
               atomic_write_csv(folder / "predictions.csv",
                                result.predictions[["patient_id", "cohort", "fold", "y_true", "prob"]]),
               atomic_write_csv(folder / "calibration.csv", calibration_table(result))]
    for stem, figure in evaluation_figures(result).items():
        html = figure.to_html(include_plotlyjs="directory", full_html=True)
        written.append(atomic_write_text(folder / f"{stem}.html", html))
    if written[3:]:
        from plotly.offline import get_plotlyjs

        written.append(atomic_write_text(folder / "plotly.min.js", get_plotlyjs()))
    return written


def comparison_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compare_runs`' table in words: model, evaluation, seed, AUC (95% CI) to three
    decimals, patients, the mean ± SD over folds or repeats, and the run's id last."""
    from crc_core.runs.views import EVALUATION_NAMES

    def auc(row) -> str:
        return f"{row['auc']:.3f} ({row['auc_low']:.3f}-{row['auc_high']:.3f})" if pd.notna(row.get("auc")) else "—"

    def spread(row) -> str:
        if pd.isna(row.get("fold_auc_mean", float("nan"))):
            return "—"
        return f"{row['fold_auc_mean']:.3f} ± {row['fold_auc_sd']:.3f} ({int(row['n_folds'])})"

    return pd.DataFrame({
        "Model": table["model"], "Evaluation": table["evaluation"].map(lambda e: EVALUATION_NAMES.get(e, e)),
        "Seed": table["seed"], "AUC (95% CI)": [auc(r) for _, r in table.iterrows()],
        "Patients": [int(n) if pd.notna(n) else "—" for n in table.get("n", pd.Series([None] * len(table)))],
        "Folds: mean ± SD (n)": [spread(r) for _, r in table.iterrows()], "Run": table["run_id"]})


def delong_pairs_for_people(pairs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """DeLong's tests as one row per pair of models (never a matrix wider than the page): the AUC
    difference with its 95% CI first, p Holm-adjusted across the pairs, in words
    (:func:`crc_core.runs.views.delong_pairs_in_words`)."""
    from crc_core.runs.views import delong_pairs_in_words

    return delong_pairs_in_words(pairs, labels)


def delong_matrix(pairs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The pairwise DeLong tests as a square table between models: each cell the AUC difference
    (row − column) with its 95% CI and p."""
    names = list(dict.fromkeys([*pairs["run_a"], *pairs["run_b"]]))
    matrix = pd.DataFrame("", index=[labels.get(n, n) for n in names], columns=[labels.get(n, n) for n in names])
    for row in pairs.itertuples():
        a, b = labels.get(row.run_a, row.run_a), labels.get(row.run_b, row.run_b)
        matrix.loc[a, b] = f"{row.difference:+.3f} ({row.low:+.3f} to {row.high:+.3f}), {p_words(row.p)}"
        matrix.loc[b, a] = f"{-row.difference:+.3f} ({-row.high:+.3f} to {-row.low:+.3f}), {p_words(row.p)}"
    for name in matrix.index:
        matrix.loc[name, name] = "—"
    return matrix


def cohort_curves(store: RunStore, run_ids: list[str], cohort: str = "validation") -> list[tuple[str, pd.DataFrame, pd.DataFrame, tuple]]:
    """For each run with labelled predictions on ``cohort``: its label, ROC curve, decision curve
    and (AUC, low, high) — what the comparison charts draw."""
    out = []
    for run_id in run_ids:
        rows = labelled(store.predictions(run_id), cohort)
        if rows["y_true"].nunique() < 2:
            continue
        y, prob = rows["y_true"].astype(int), rows["prob"]
        out.append((f"{model_label(store.run(run_id))} · {run_id[-4:]}", ev.roc_curve(y, prob), ev.decision_curve(y, prob),
                    ev.auc_ci(y, prob)))
    return out
