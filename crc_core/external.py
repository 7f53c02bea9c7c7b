"""Does a run hold in another centre? Its AUC in each held-out cohort and external centre side by
side with the pooled AUC and its heterogeneity (:mod:`crc_core.meta_analysis`), its calibration in
an external cohort and that cohort's recalibration (:mod:`crc_core.recalibration`, named as
updating the model), and the sample size an external validation would need
(:mod:`crc_core.sample_size`, Riley et al. 2021). Everything from the run store's predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from crc_core.errors import CrcInputError

HELD_OUT = ("validation", "cv")


def held_out_cohorts(result) -> list[str]:
    """The evaluated cohorts whose patients no model of the run saw: validation (or the
    cross-validated predictions) and every external cohort."""
    return [c for c in result.metrics if c in HELD_OUT or c.startswith("external:")]


def external_cohorts(result) -> list[str]:
    return [c for c in result.metrics if c.startswith("external:")]


@dataclass
class CentreComparison:
    """Per cohort ``cohort``, ``label``, ``n``, ``value``/``low``/``high`` (the AUC and its CI on the
    logit scale), ``weight`` (% in the pooled estimate); and the pooled random-effects AUC with
    tau², Q and I² (None with fewer than two cohorts)."""

    cohorts: pd.DataFrame
    pooled: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def compare_centres(result) -> CentreComparison:
    """The run's AUC in each held-out cohort and centre, and pooled across them (DerSimonian-Laird
    on the logit AUC, as ``statsmodels ... combine_effects(method_re="dl")``)."""
    from crc_core.meta_analysis import POOLED, forest_table, pooled_auc
    from crc_core.run_views import cohort_name

    cohorts = held_out_cohorts(result)
    rows = result.predictions[result.predictions["cohort"].isin(cohorts) & result.predictions["y_true"].notna()]
    if not cohorts or rows.empty:
        raise CrcInputError(f"Run {result.run.run_id} has no held-out cohort with labels to compare.")
    notes: list[str] = []
    if len(cohorts) < 2:
        notes.append("One held-out cohort only: predict another centre's patients (crc-time predict --from, or below) to "
                     "see whether the AUC holds there, and to pool.")
        m = result.metrics[cohorts[0]]
        table = pd.DataFrame([{"cohort": cohorts[0], "label": cohort_name(cohorts[0]), "n": m["n"], "value": m["auc"],
                               "low": m["auc_low"], "high": m["auc_high"], "weight": 100.0}])
        return CentreComparison(table, None, notes)
    forest = forest_table(rows, "cohort")
    table = forest[forest["cohort"] != POOLED].rename(columns={"auc": "value", "weight_percent": "weight"})
    table["label"] = table["cohort"].map(cohort_name)
    pooled = pooled_auc(rows, "cohort")
    notes.append(f"Pooled by DerSimonian-Laird random effects on the logit AUC over {pooled['n_cohorts']} cohorts: "
                 f"I² {pooled['i2_percent']:.0f}%, Cochran's Q {pooled['q']:.2f} (df {pooled['q_df']}, p {pooled['q_p']:.3f}), "
                 f"τ² {pooled['tau2']:.3f}; each cohort's CI on the logit scale, back-transformed.")
    return CentreComparison(table.reset_index(drop=True), pooled, notes)


def centre_figure(comparison: CentreComparison, title: str):
    from crc_core import figures

    pooled = None
    if comparison.pooled is not None:
        pooled = {"value": comparison.pooled["auc"], "low": comparison.pooled["auc_low"], "high": comparison.pooled["auc_high"],
                  "label": "pooled (random effects)"}
    return figures.forest_plot(comparison.cohorts, title, pooled=pooled)


@dataclass
class Recalibrated:
    """An external cohort's probabilities updated to it: the fit (intercept, slope and their CIs),
    and the calibration statistics before and after."""

    cohort: str
    method: str
    fit: dict[str, Any]
    before: dict[str, float]
    after: dict[str, float]
    y_true: Any
    y_prob: Any


def recalibrate_cohort(result, cohort: str, method: str = "intercept") -> Recalibrated:
    """Update the run's model to ``cohort`` (an external cohort, with labels) by recalibration:
    ``intercept`` (calibration-in-the-large, R ``glm(y ~ offset(logit(p)), binomial)``) or
    ``logistic`` (intercept and slope, ``glm(y ~ logit(p), binomial)``). This fits on that cohort's
    outcomes: its numbers afterwards describe an updated model, not the run's."""
    from crc_core import evaluation as ev
    from crc_core.model_evaluation import labelled
    from crc_core.recalibration import recalibrate

    rows = labelled(result.predictions, cohort)
    if rows.empty:
        raise CrcInputError(f"The {cohort} cohort of run {result.run.run_id} has no labels: recalibration needs outcomes.")
    y, prob = rows["y_true"].astype(int).to_numpy(), rows["prob"].to_numpy()
    fit = recalibrate(y, prob, method, what=f"the {cohort} cohort")
    return Recalibrated(cohort, method, fit, ev.calibration_stats(y, prob), ev.calibration_stats(y, fit["y_prob_recalibrated"]),
                        y, fit["y_prob_recalibrated"])


def recalibration_figure(recalibrated: Recalibrated, title: str):
    from crc_core import evaluation as ev
    from crc_core import figures

    bins, smooth = ev.calibration_curve(recalibrated.y_true, recalibrated.y_prob)
    return figures.calibration_plot(bins, smooth, recalibrated.y_prob, recalibrated.after, title)


def validation_size(result, cohort: str | None = None, threshold: float | None = None) -> pd.DataFrame:
    """The sample size needed to validate the run's model externally (Riley et al. 2021, as
    ``pmvalsampsize``), from its validation (or cross-validated) C-statistic, prevalence and
    linear-predictor distribution: one row per criterion, the inputs as columns. ``cohort``: the
    held-out cohort to start from (``validation``, ``cv`` or ``external:NAME`` — an external
    centre's C-statistic, prevalence and linear predictor, for planning the next centre); by default
    the validation (or cross-validated) predictions."""
    from crc_core.model_evaluation import labelled
    from crc_core.sample_size import linear_predictor_summary, validation_sample_size

    if cohort is not None and cohort not in held_out_cohorts(result):
        offered = ", ".join(held_out_cohorts(result)) or "none"
        raise CrcInputError(f"Run {result.run.run_id} has no held-out cohort {cohort!r} to start the sample size from; "
                            f"it has: {offered}. (The training cohort is not held out: its C-statistic is optimistic.)")
    cohort = cohort or next((c for c in HELD_OUT if c in result.metrics), None)
    if cohort is None:
        raise CrcInputError(f"Run {result.run.run_id} has no validation or cross-validated predictions to start from.")
    rows = labelled(result.predictions, cohort)
    summary = linear_predictor_summary(rows["y_true"].astype(int), rows["prob"])
    if not summary["cstatistic"] > 0.5:
        raise CrcInputError(f"Run {result.run.run_id} has a {cohort} C-statistic of {summary['cstatistic']:.3f}, no better "
                            "than chance: Riley et al.'s criteria need a model that discriminates, so there is no sample "
                            "size to plan for validating this one. Train a better model first.")
    table = validation_sample_size(**summary, threshold=threshold)
    return table.assign(source_cohort=cohort)


def events_needed(events: float) -> int:
    """Patients of the high class the sample must hold, rounded up as pmvalsampsize prints them
    (1034.2 → 1035: fewer would not meet the criterion); a float's last-digit noise is not a patient.

    >>> events_needed(1034.2), events_needed(81.792), events_needed(4544 * 0.25)
    (1035, 82, 1136)
    """
    return int(math.ceil(round(float(events), 9)))


def validation_size_in_words(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`validation_size`'s criteria as the page and the report show them: whole patients,
    column names in words, no CI width on the "largest" row."""
    shown = table[["criterion", "n", "events", "target_ci_width"]].rename(columns={
        "criterion": "Criterion", "n": "Patients", "events": "High class", "target_ci_width": "CI width aimed at"})
    shown["High class"] = shown["High class"].map(events_needed)
    shown["CI width aimed at"] = shown["CI width aimed at"].map(lambda width: "" if pd.isna(width) else f"{width:g}")
    return shown
