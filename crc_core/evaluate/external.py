"""Does a run hold in another centre? Its AUC in each held-out cohort and external centre side by
side with the pooled AUC and its heterogeneity (:mod:`crc_core.metrics.meta_analysis`), its calibration in
an external cohort and that cohort's recalibration (:mod:`crc_core.metrics.recalibration`, named as
updating the model), and the sample size an external validation would need
(:mod:`crc_core.metrics.sample_size`, Riley et al. 2021). Everything from the run store's predictions.
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


#: How each cohort's AUC CI in Table 2 was computed (RunEvaluation.ci_method), as a column names it.
CI_WORDS = {"delong": "DeLong", "bootstrap": "bootstrap"}


@dataclass
class CentreComparison:
    """Per held-out cohort ``cohort``, ``label``, ``n``, ``value``/``low``/``high`` (the AUC and
    the CI Table 2 shows for it: DeLong's on the AUC scale, or the bootstrap's when the evaluation
    asked for it — one CI per AUC in the whole report), ``logit_low``/``logit_high`` (the
    logit-scale CI the pooling works with, back-transformed; NaN outside the pooling), ``pooled``
    (whether the cohort is in the pooled estimate) and ``weight`` (% in it; NaN outside); the pooled
    random-effects AUC of :func:`crc_core.metrics.meta_analysis.pooled_auc` (None with fewer than two
    cohorts to pool); ``ci_method`` (Table 2's, in words) and the notes to show under the figure."""

    cohorts: pd.DataFrame
    pooled: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    ci_method: str = "DeLong"
    include_internal: bool = False


def compare_centres(result, include_internal: bool = False) -> CentreComparison:
    """The run's AUC in each held-out cohort and centre, and pooled across the external centres
    (:func:`crc_core.metrics.meta_analysis.pooled_auc`: DerSimonian-Laird random effects on the logit AUC,
    ``metafor::rma(method = "DL")``, with Hartung-Knapp-Sidik-Jonkman's CI below five cohorts).

    The internal validation cohort (or the cross-validated predictions) is a random split of the
    development data, not another centre: by default it is shown beside the centres but kept out of
    the pooled AUC, which then answers "how does the model do in other hospitals". With
    ``include_internal`` it is pooled with them. With one external centre there is nothing to pool,
    and the notes say so.

    Each cohort's CI is the one Table 2 prints for it (``result.metrics``), so the page and the
    report show one CI per AUC; the logit-scale CI the pooling rests on is kept apart, in
    ``logit_low``/``logit_high``, and named as such wherever it appears."""
    from crc_core.metrics.meta_analysis import POOLED, forest_table, pooled_auc
    from crc_core.runs.views import cohort_name

    cohorts = held_out_cohorts(result)
    labelled_rows = result.predictions[result.predictions["y_true"].notna()]
    cohorts = [c for c in cohorts if c in set(labelled_rows["cohort"])]
    if not cohorts:
        raise CrcInputError(f"Run {result.run.run_id} has no held-out cohort with labels to compare.")
    external = [c for c in cohorts if c.startswith("external:")]
    internal = [c for c in cohorts if c not in external]
    pooled_cohorts = external + internal if include_internal else external
    pooled_cohorts = [c for c in cohorts if c in pooled_cohorts]  # the table's order
    ci_method = CI_WORDS.get(getattr(result, "ci_method", "delong"), str(getattr(result, "ci_method", "delong")))
    table = pd.DataFrame([{"cohort": c, "label": cohort_name(c), "n": int(result.metrics[c]["n"]),
                           "value": result.metrics[c]["auc"], "low": result.metrics[c]["auc_low"],
                           "high": result.metrics[c]["auc_high"]} for c in cohorts])
    table = table.assign(logit_low=float("nan"), logit_high=float("nan"), pooled=table["cohort"].isin(pooled_cohorts),
                         weight=float("nan"))
    notes: list[str] = []
    pooled = None
    if len(pooled_cohorts) >= 2:
        rows = labelled_rows[labelled_rows["cohort"].isin(pooled_cohorts)]
        forest = forest_table(rows, "cohort").set_index("cohort").drop(index=POOLED)
        at = table["pooled"]
        table.loc[at, "logit_low"] = table.loc[at, "cohort"].map(forest["logit_low"]).to_numpy()
        table.loc[at, "logit_high"] = table.loc[at, "cohort"].map(forest["logit_high"]).to_numpy()
        table.loc[at, "weight"] = table.loc[at, "cohort"].map(forest["weight_percent"]).to_numpy()
        pooled = pooled_auc(rows, "cohort")
        what = (f"{pooled['n_cohorts']} cohorts (the internal validation with the external centres, as chosen)"
                if include_internal and internal else f"{pooled['n_cohorts']} external centres")
        notes.append(f"Pooled over {what}: {pooled['method']}. I² {pooled['i2_percent']:.0f}%, Cochran's Q "
                     f"{pooled['q']:.2f} (df {pooled['q_df']}, p {pooled['q_p']:.3f}), τ² {pooled['tau2']:.3f}.")
        notes.extend(pooled["warnings"])
    elif len(external) == 1:
        notes.append(f"One external centre ({cohort_name(external[0])}): there is nothing to pool, so its AUC stands on "
                     "its own. Predict another centre's patients to pool across centres"
                     + (", or include the internal validation cohort in the pooling (it is a random split of the "
                        "development data, not another centre)." if internal and not include_internal else "."))
    else:
        notes.append("No external centre yet: predict another centre's patients (crc-time predict --from, or below) to "
                     "see whether the AUC holds there, and to pool across centres.")
    if internal and not include_internal and external:
        notes.append(f"The internal {', '.join(cohort_name(c) for c in internal)} cohort is shown but kept out of the "
                     "pooled AUC: it is a random split of the development data, not another centre.")
    notes.append(f"Each cohort's 95% CI is Table 2's ({ci_method}, on the AUC scale)"
                 + ("; the pooled AUC's 95% CI is computed on the logit scale, where the cohorts are pooled." if pooled
                    else "."))
    return CentreComparison(table, pooled, notes, ci_method, include_internal)


def centre_table(comparison: CentreComparison) -> pd.DataFrame:
    """:func:`compare_centres` as the page and the report show it: per cohort its AUC and Table 2's
    95% CI (the column named with its method), whether it is pooled, and its weight; then the pooled
    row, whose CI (logit scale, for pooling) is named as such."""
    from crc_core.metrics.meta_analysis import POOLED

    ci = f"95% CI ({comparison.ci_method})"
    rows = [{"Cohort": r["label"], "n": int(r["n"]), "AUC": f"{r['value']:.3f}", ci: f"{r['low']:.3f}-{r['high']:.3f}",
             "Pooled CI (logit scale, for pooling)": "",
             "In the pooled AUC": (f"yes, weight {r['weight']:.1f}%" if r["pooled"] and pd.notna(r["weight"]) else
                                   "no (internal: not another centre)" if not r["cohort"].startswith("external:") else "no")}
            for _, r in comparison.cohorts.iterrows()]
    pooled = comparison.pooled
    if pooled is not None:
        rows.append({"Cohort": POOLED, "n": pooled["n_patients"], "AUC": f"{pooled['auc']:.3f}", ci: "",
                     "Pooled CI (logit scale, for pooling)": f"{pooled['auc_low']:.3f}-{pooled['auc_high']:.3f}",
                     "In the pooled AUC": pooled["method"]})
    return pd.DataFrame(rows, columns=["Cohort", "n", "AUC", ci, "Pooled CI (logit scale, for pooling)", "In the pooled AUC"])


def centre_figure(comparison: CentreComparison, title: str):
    """The forest plot of :func:`compare_centres`: each cohort's AUC with Table 2's CI (its method
    on the axis), the internal cohort marked when it is not pooled, and the pooled diamond named
    with its CI's method."""
    from crc_core import figures

    rows = comparison.cohorts.copy()
    outside = ~rows["pooled"] & ~rows["cohort"].str.startswith("external:")
    rows.loc[outside, "label"] = rows.loc[outside, "label"] + " (internal, not pooled)"
    pooled = None
    axis = f"AUC, 95% CI ({comparison.ci_method}, as Table 2)"
    if comparison.pooled is not None:
        test = "HKSJ" if comparison.pooled["test"] == "knha" else "DL z"
        pooled = {"value": comparison.pooled["auc"], "low": comparison.pooled["auc_low"], "high": comparison.pooled["auc_high"],
                  "label": f"pooled (random effects, {test})"}
        axis += f"; pooled: 95% CI (logit scale, {test})"
    return figures.forest_plot(rows, title, axis=axis, pooled=pooled)


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
    import crc_core.metrics as ev
    from crc_core.evaluate.run_evaluation import labelled
    from crc_core.metrics.recalibration import recalibrate

    rows = labelled(result.predictions, cohort)
    if rows.empty:
        raise CrcInputError(f"The {cohort} cohort of run {result.run.run_id} has no labels: recalibration needs outcomes.")
    y, prob = rows["y_true"].astype(int).to_numpy(), rows["prob"].to_numpy()
    fit = recalibrate(y, prob, method, what=f"the {cohort} cohort")
    return Recalibrated(cohort, method, fit, ev.calibration_stats(y, prob), ev.calibration_stats(y, fit["y_prob_recalibrated"]),
                        y, fit["y_prob_recalibrated"])


def recalibration_figure(recalibrated: Recalibrated, title: str):
    import crc_core.metrics as ev
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
    from crc_core.evaluate.run_evaluation import labelled
    from crc_core.metrics.sample_size import linear_predictor_summary, validation_sample_size

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


def recalibrations(result) -> dict[str, Any]:
    """Each labelled external cohort's calibration-in-the-large (the update the Other centres tab
    offers first), by cohort; a cohort that cannot be recalibrated (one class) is left out."""
    out = {}
    for cohort in external_cohorts(result):
        try:
            out[cohort] = recalibrate_cohort(result, cohort, "intercept")
        except CrcInputError:
            continue
    return out


def recalibration_words(recalibrated) -> str:
    """A recalibration in a sentence: the new intercept with its CI, and calibration-in-the-large
    before and after (what the update changed)."""
    from crc_core.runs.views import cohort_name

    fit = recalibrated.fit
    return (f"Updated to the {cohort_name(recalibrated.cohort)} cohort by calibration-in-the-large (R glm(y ~ "
            f"offset(logit(p)), binomial)), fitted on its {fit['n']} patients' outcomes: intercept {fit['intercept']:.3f} "
            f"(95% CI {fit['intercept_low']:.3f} to {fit['intercept_high']:.3f}); calibration-in-the-large "
            f"{round(recalibrated.before['citl'], 3) + 0.0:.3f} before, {round(recalibrated.after['citl'], 3) + 0.0:.3f} after "
            "(0 by construction). The numbers "
            "after describe an updated model, not the run's.")
