"""What a new model adds over an old one on the same patients (the combined clinical + DL model
against the DL model alone): the category-free NRI with its events and non-events parts, the IDI,
and the likelihood-ratio test of the added variables. Inputs are the two models' probabilities.

The NRI and IDI are Pencina's (2008; category-free NRI 2011) as R ``Hmisc::improveProb`` computes
them, which ``PredictABEL::reclassification`` prints: a patient whose probability rises counts as
up, falls as down, unchanged as neither; the SEs are the asymptotic ones not conditional on H0
(Hmisc since 2013). Both CIs here treat each patient's two probabilities as given: they cover the
sampling of patients, which is the whole uncertainty on a cohort that neither model was fitted on;
on the cohort the models were fitted on they miss the fitting, and whether the added variables help
is then a question for :func:`likelihood_ratio_test` (Pepe et al., Stat Med 2013;32:1467; Kerr et
al., Epidemiology 2014;25:114).

:func:`reclassification` still returns a p for each measure (PredictABEL prints one), but nothing
shows it: tests of the NRI are invalid and can be "significant" when the added marker has no value
(Pepe, Janes & Li, J Natl Cancer Inst 2014;106:dju041). The pages and the report lead with the
likelihood-ratio test and the AUC difference, and show the NRI and IDI with their CIs and that
caveat (:data:`crc_core.evaluate.combined_model.NRI_CAVEAT`).
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary

#: PredictABEL's CI is the estimate ± 1.96 SE (the constant, not qnorm(0.975)).
Z_95 = 1.96
MEASURES = ("NRI", "NRI events", "NRI non-events", "IDI")
CI_METHODS = ("bootstrap", "asymptotic")


# ---------------------------------------------------------------------------------------------
# Checking inputs


def _aligned(y_true, prob_old, prob_new) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The outcome and both models' probabilities of the same patients, in one order. Series are
    matched on their index (patient ids); plain arrays must have one entry per patient each."""
    series = {name: values for name, values in (("outcomes", y_true), ("the old model", prob_old),
                                                ("the new model", prob_new)) if isinstance(values, pd.Series)}
    if len(series) == 3:
        patients = y_true.index
        if patients.has_duplicates:
            twice = patients[patients.duplicated()].unique()[:5].tolist()
            raise CrcInputError(f"Patient(s) {twice} appear more than once among the outcomes; give one row per patient.")
        for name in ("the old model", "the new model"):
            other = series[name].index
            if other.has_duplicates:
                twice = other[other.duplicated()].unique()[:5].tolist()
                raise CrcInputError(f"Patient(s) {twice} appear more than once in {name}'s predictions.")
            missing, extra = patients.difference(other), other.difference(patients)
            if len(missing) or len(extra):
                said = []
                if len(missing):
                    said.append(f"{len(missing)} patient(s) without a prediction from {name} (e.g. {missing[:3].tolist()})")
                if len(extra):
                    said.append(f"{len(extra)} predicted by {name} without an outcome (e.g. {extra[:3].tolist()})")
                raise CrcInputError("The two models must be compared on the same patients: " + "; ".join(said) + ".")
        prob_old, prob_new = prob_old.reindex(patients), prob_new.reindex(patients)
    y, old = check_binary(y_true, prob_old, what="the old model", need_both=False)
    _, new = check_binary(y_true, prob_new, what="the new model", need_both=False)
    for name, count in (("events (label 1)", int(y.sum())), ("non-events (label 0)", int((1 - y).sum()))):
        if count < 2:
            raise CrcInputError(f"The cohort has {count} {name}: the NRI and IDI compare events with non-events and "
                                "need at least two of each.")
    return y, old, new


# ---------------------------------------------------------------------------------------------
# NRI and IDI


def _statistics(up_minus_down: np.ndarray, change: np.ndarray, events: np.ndarray) -> np.ndarray:
    """NRI, NRI events, NRI non-events and IDI of one sample; ``up_minus_down`` is each patient's
    sign of change (+1 up, -1 down, 0 unchanged), ``change`` the new minus the old probability."""
    nri_events = up_minus_down[events].mean()
    nri_nonevents = -up_minus_down[~events].mean()
    idi = change[events].mean() - change[~events].mean()
    return np.array([nri_events + nri_nonevents, nri_events, nri_nonevents, idi])


def _asymptotic(y: np.ndarray, change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The estimates and their SEs as ``Hmisc::improveProb``: for the events' NRI
    (up + down)/n² − (up − down)²/n³ (a difference of two multinomial proportions), likewise for
    the non-events, summed for the NRI; for the IDI var(Δ events)/n₁ + var(Δ non-events)/n₀ with
    R's ``var`` (n − 1)."""
    events = y == 1
    variances = []
    for group in (events, ~events):
        n = group.sum()
        up, down = (change[group] > 0).sum(), (change[group] < 0).sum()
        variances.append(float((up + down) / n**2 - (up - down) ** 2 / n**3))
    idi_variance = change[events].var(ddof=1) / events.sum() + change[~events].var(ddof=1) / (~events).sum()
    estimates = _statistics(np.sign(change), change, events)
    se = np.sqrt([variances[0] + variances[1], variances[0], variances[1], idi_variance])
    return estimates, se


def bootstrap_reclassification(y_true: Sequence, prob_old: Sequence, prob_new: Sequence, n_boot: int = 2000,
                               seed: int = 0) -> np.ndarray:
    """NRI, NRI events, NRI non-events and IDI (columns, in :data:`MEASURES` order) of ``n_boot``
    stratified bootstrap resamples: events and non-events resampled apart, so that every resample
    keeps the cohort's numbers of each, as ``pROC``'s ``boot.stratified = TRUE``. Seeded."""
    y, old, new = _aligned(y_true, prob_old, prob_new)
    change = new - old
    sign = np.sign(change)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == 1), np.flatnonzero(y == 0)]
    out = np.empty((n_boot, 4))
    block = max(1, min(n_boot, 5_000_000 // y.size))
    for start in range(0, n_boot, block):
        reps = min(block, n_boot - start)
        # Each resample's mean sign and mean change, per class: all four measures are linear in them.
        means = []
        for group in groups:
            pick = group[rng.integers(0, group.size, (reps, group.size))]
            means.append((sign[pick].mean(axis=1), change[pick].mean(axis=1)))
        (sign_events, change_events), (sign_nonevents, change_nonevents) = means
        out[start:start + reps] = np.column_stack([sign_events - sign_nonevents, sign_events, -sign_nonevents,
                                                   change_events - change_nonevents])
    return out


def _bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p of H0: measure = 0, the smallest level at which the percentile
    interval leaves 0 out: 2 · min(share of resamples ≤ 0, share ≥ 0), each share counted as
    (k + 1)/(B + 1) so that it is never 0 (Davison & Hinkley 1997, §4.4), at most 1."""
    b = draws.size
    below, above = (np.sum(draws <= 0) + 1) / (b + 1), (np.sum(draws >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def reclassification(y_true: Sequence, prob_old: Sequence, prob_new: Sequence, *, ci: str = "bootstrap",
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The category-free NRI (NRI(>0)), its events and non-events parts, and the IDI of the new
    model over the old on the same patients, each with a 95% CI and a two-sided p.

    Estimates are those of ``PredictABEL::reclassification`` ("NRI(Continuous)", "IDI") and
    ``Hmisc::improveProb`` ("NRI for events", "NRI for non-events"): NRI events = P(up | event) −
    P(down | event), NRI non-events = P(down | non-event) − P(up | non-event), NRI their sum (−2 …
    2), IDI = mean change among events − mean change among non-events.

    ``ci``:

    - ``"bootstrap"`` (default): percentile interval of ``n_boot`` stratified resamples
      (:func:`bootstrap_reclassification`), ``se`` their SD, ``p`` the bootstrap p of H0: 0
      (:func:`_bootstrap_p`; never below 2/(n_boot + 1), 0.001 for 2000), so the p and the CI
      agree. The default because Kerr et al.
      (2014) found the asymptotic NRI intervals unreliable and recommend the bootstrap; the
      percentile interval also stays inside the measure's range and follows its skew in a
      validation cohort of tens of patients, where a Wald interval does neither.
    - ``"asymptotic"``: estimate ± 1.96 SE and p = 2Φ(−|estimate/SE|), exactly as PredictABEL
      prints them (with Hmisc's SEs; Hmisc's own print uses qnorm(0.975), which differs below the
      printed digits); p is NaN where the SE is 0 (every patient of a class moved the same way),
      where R would print 0 or NaN.

    Series are matched on their index (patient ids); arrays by position. Returns one row per
    measure (:data:`MEASURES`): ``measure``, ``estimate``, ``low``, ``high``, ``p``, ``se``,
    ``ci`` (the method). Refuses different patients or lengths, probabilities outside [0, 1], and
    a cohort with fewer than two patients of a class.

    >>> table = reclassification([0, 0, 1, 1, 0, 1], [0.2, 0.4, 0.5, 0.6, 0.3, 0.4],
    ...                          [0.1, 0.5, 0.7, 0.6, 0.2, 0.6], ci="asymptotic")
    >>> table.set_index("measure")["estimate"].round(4).tolist()
    [1.0, 0.6667, 0.3333, 0.1667]
    """
    if ci not in CI_METHODS:
        raise CrcInputError(f"The NRI/IDI CI method must be 'bootstrap' or 'asymptotic'; got {ci!r}.")
    if ci == "bootstrap" and (not isinstance(n_boot, (int, np.integer)) or n_boot < 100):
        raise CrcInputError(f"Use at least 100 bootstrap resamples for a 95% CI (2000 is usual); got {n_boot!r}.")
    y, old, new = _aligned(y_true, prob_old, prob_new)
    estimates, se = _asymptotic(y, new - old)
    if ci == "asymptotic":
        low, high = estimates - Z_95 * se, estimates + Z_95 * se
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(se > 0, 2 * stats.norm.sf(np.abs(estimates / np.where(se > 0, se, 1.0))), math.nan)
        method = "asymptotic (Pencina; PredictABEL/Hmisc)"
    else:
        draws = bootstrap_reclassification(y, old, new, n_boot, seed)
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
        se = draws.std(axis=0, ddof=1)
        p = np.array([_bootstrap_p(draws[:, k]) for k in range(4)])
        method = f"bootstrap ({n_boot} stratified resamples, percentile, seed {seed})"
    return pd.DataFrame({"measure": MEASURES, "estimate": estimates, "low": low, "high": high, "p": p, "se": se,
                         "ci": method})


def reclassification_counts(y_true: Sequence, prob_old: Sequence, prob_new: Sequence) -> pd.DataFrame:
    """How many patients of each class the new model moved up, down or left unchanged, and the mean
    change of their probability (``Hmisc::improveProb``'s "Proportions of Positive and Negative
    Changes" and "Mean Change in Probability"): rows ``events``, ``non-events``; columns ``n``,
    ``up``, ``down``, ``unchanged``, ``mean_change``."""
    y, old, new = _aligned(y_true, prob_old, prob_new)
    change = new - old
    rows = []
    for name, group in (("events", y == 1), ("non-events", y == 0)):
        up, down = int((change[group] > 0).sum()), int((change[group] < 0).sum())
        rows.append({"group": name, "n": int(group.sum()), "up": up, "down": down,
                     "unchanged": int(group.sum()) - up - down, "mean_change": float(change[group].mean())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Likelihood-ratio test of nested logistic models


def _design(design, n: int, what: str) -> pd.DataFrame:
    if design is None:
        return pd.DataFrame(index=range(n))
    table = design.copy() if isinstance(design, pd.DataFrame) else pd.DataFrame(np.asarray(design, dtype=float))
    if table.ndim != 2 or len(table) != n:
        raise CrcInputError(f"The {what} model's table has {len(table)} rows but there are {n} outcomes; give one row "
                            "per patient.")
    table = table.reset_index(drop=True)
    table.columns = [str(c) for c in table.columns]
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0.0))
        if bad.any():
            rows = ", ".join(str(i + 1) for i in np.flatnonzero(bad.to_numpy())[:5])
            raise CrcInputError(f"{column!r} of the {what} model is missing or not a number in row(s) {rows}. Both models "
                                "must be fitted on the same patients: fill in or leave those patients out of both.")
        table[column] = values.astype(float)
    return table


def _logistic_loglik(y: np.ndarray, design: pd.DataFrame, what: str) -> tuple[float, int]:
    """Maximised log-likelihood and the number of estimated coefficients (the rank of the design
    with its intercept) of the logistic regression of ``y`` on ``design``, as R ``glm(family =
    binomial)``: statsmodels' ``Logit`` by Newton's method. Perfect separation is refused."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    x = sm.add_constant(design.to_numpy(), has_constant="add")
    rank = int(np.linalg.matrix_rank(x))
    if rank < x.shape[1]:
        raise CrcInputError(f"The {what} model's variables are collinear (one is a combination of the others and the "
                            "intercept, e.g. an indicator for every level of a category): leave one out.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            fit = sm.Logit(y, x).fit(disp=0, method="newton", maxiter=200)
        except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
            raise CrcInputError(f"The {what} model cannot be fitted: its variables separate high from low perfectly "
                                f"({type(exc).__name__}), so its likelihood has no maximum. Leave a variable out.") from exc
    if not fit.mle_retvals.get("converged", True):
        raise CrcInputError(f"The {what} model's fit did not converge; leave out a variable that (nearly) separates the "
                            "outcome.")
    return float(fit.llf), rank


def likelihood_ratio_test(y_true: Sequence, design_small, design_large) -> dict:
    """The likelihood-ratio test of a logistic model against a larger one that contains it (the DL
    score alone against the DL score plus clinical variables), fitted by maximum likelihood with an
    intercept each: LR = 2 (logLik(large) − logLik(small)), df = the number of added coefficients,
    p from χ²(df), as R ``anova(glm_small, glm_large, test = "LRT")`` ("Deviance", "Df",
    "Pr(>Chi)") and ``lmtest::lrtest(glm_small, glm_large)``.

    ``design_small``/``design_large``: one row per patient, one numeric column per term (categories
    as indicators), no intercept column; ``design_small`` may be ``None`` (intercept only). The
    small model must be nested in the large: each of its columns is one of the large model's (same
    name and values, for DataFrames) or, for arrays, lies in the span of the large model's columns.
    Returns ``lr_statistic``, ``df``, ``p``, ``loglik_small``, ``loglik_large``, ``added`` (the
    large model's column names not in the small one), ``n``.
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise CrcInputError("Give one outcome per patient.")
    y, _ = check_binary(y, np.zeros(y.size), what="the cohort", need_both=False)
    if len(set(y.tolist())) < 2:
        raise CrcInputError(f"The cohort has one class only ({y.size} patients, all {'high' if y[0] == 1 else 'low'}): "
                            "no logistic model can be fitted.")
    small = _design(design_small, y.size, "smaller")
    large = _design(design_large, y.size, "larger")
    named = isinstance(design_large, pd.DataFrame) and (design_small is None or isinstance(design_small, pd.DataFrame))
    if named:
        for column in small.columns:
            if column not in large.columns:
                raise CrcInputError(f"The models are not nested: {column!r} is in the smaller model but not in the larger. "
                                    "The likelihood-ratio test compares a model with the same model plus variables.")
            if not np.allclose(small[column].to_numpy(), large[column].to_numpy(), rtol=1e-12, atol=0):
                raise CrcInputError(f"The models are not nested: {column!r} has different values in the two models. Give "
                                    "both the same patients, in the same order.")
    span = np.column_stack([np.ones(y.size), large.to_numpy()])
    for column in small.columns:
        values = small[column].to_numpy()
        residual = values - span @ np.linalg.lstsq(span, values, rcond=None)[0]
        if np.abs(residual).max() > 1e-8 * max(1.0, np.abs(values).max()):
            raise CrcInputError(f"The models are not nested: the smaller model's {column!r} is not among the larger "
                                "model's variables. The likelihood-ratio test compares a model with the same model plus "
                                "variables.")
    loglik_small, k_small = _logistic_loglik(y, small, "smaller")
    loglik_large, k_large = _logistic_loglik(y, large, "larger")
    df = k_large - k_small
    if df < 1:
        raise CrcInputError("The larger model adds no variable to the smaller one (its extra columns repeat the smaller "
                            "model's): there is nothing to test.")
    lr = max(0.0, 2.0 * (loglik_large - loglik_small))
    added = [c for c in large.columns if c not in small.columns] if named else []
    return {"lr_statistic": lr, "df": int(df), "p": float(stats.chi2.sf(lr, df)), "loglik_small": loglik_small,
            "loglik_large": loglik_large, "added": added, "n": int(y.size)}
