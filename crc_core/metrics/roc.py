"""How good a model's predicted probabilities are: discrimination (ROC, AUC with its CI, DeLong's
test), the paper's Table 2 at a threshold, decision curves and calibration.

Every function takes plain arrays — ``y_true`` (0/1) and ``y_score``/``y_prob`` (the predicted
probability of class 1) — checks them first, and names the R call whose numbers it reproduces:
pROC for ROC analysis (``direction = "<"``: higher scores mean the positive class), rms for
calibration, dcurves for decision curves. Inputs come from the run store's predictions
(:mod:`crc_core.runs.store`), so a run from a GPU server or a radiomics baseline is evaluated alike.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crc_core.errors import CrcInputError

#: Fewer cases than this in a cohort (or in a class): the CIs are flagged as unreliable.
FEW_CASES = 10


# ---------------------------------------------------------------------------------------------
# Checking inputs


def check_binary(y_true: Sequence, y_score: Sequence, *, what: str = "the cohort", probabilities: bool = True,
                 need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as 0/1 and ``y_score`` as floats, after checks a user can act on: equal lengths,
    a binary outcome, finite scores (in [0, 1] for probabilities) — offending rows named — and,
    with ``need_both``, both classes present."""
    y = np.asarray(y_true)
    score = np.asarray(y_score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise CrcInputError(f"{what}: {y.size} outcomes but {score.size} predictions; give one prediction per patient.")
    values = pd.unique(pd.Series(y).dropna())
    try:
        numeric = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        numeric = None
    if numeric is None or not set(values.tolist()) <= {0, 1, True, False} or np.isnan(numeric).any():
        shown = ", ".join(map(repr, values[:6].tolist()))
        raise CrcInputError(f"{what}: the outcome must be 0 or 1 for every patient (found {shown}).")
    bad = ~np.isfinite(score) | ((score < 0) | (score > 1) if probabilities else np.zeros(score.size, bool))
    if bad.any():
        rows = ", ".join(f"row {i + 1} ({float(score[i])!r})" for i in np.flatnonzero(bad)[:5])
        raise CrcInputError(
            f"{what}: predictions must be probabilities between 0 and 1; not so in {rows}"
            f"{' and more' if bad.sum() > 5 else ''}. Check the run's predictions."
        )
    y = numeric.astype(int)
    if need_both and len(set(y.tolist())) < 2:
        only = "high" if y.size and y[0] == 1 else "low"
        raise CrcInputError(f"{what} has one class only ({y.size} patients, all {only}): the AUC is undefined there.")
    return y, score


def few_cases(y: np.ndarray) -> bool:
    """True when the CIs of ``y``'s cohort are unreliable (fewer than :data:`FEW_CASES` in a class)."""
    return int(min((y == 0).sum(), (y == 1).sum())) < FEW_CASES


# ---------------------------------------------------------------------------------------------
# ROC and AUC


def roc_curve(y_true: Sequence, y_score: Sequence) -> pd.DataFrame:
    """The empirical ROC curve: ``threshold`` (pROC's midpoints between adjacent scores, with
    -inf and inf at the ends), ``sensitivity``, ``specificity``; a patient is called positive
    when its score ≥ threshold, as ``pROC::roc(direction = "<")``."""
    y, score = check_binary(y_true, y_score, probabilities=False)
    values = np.unique(score)
    thresholds = np.r_[-np.inf, (values[:-1] + values[1:]) / 2, np.inf]
    positives, negatives = score[y == 1], score[y == 0]
    sensitivity = np.array([(positives >= t).mean() for t in thresholds])
    specificity = np.array([(negatives < t).mean() for t in thresholds])
    return pd.DataFrame({"threshold": thresholds, "sensitivity": sensitivity, "specificity": specificity})


def grouped_auc(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The AUC of ``prob`` against ``y_true`` within each group of ``by``, all groups at once: the
    Mann-Whitney form with midranks for ties, equal to ``pROC::auc`` and scikit-learn's
    ``roc_auc_score`` per group. Rows without a label are left out; a group with one class gets
    NaN. Returns ``by`` + ``auc``, ``n``, ``n_positive``."""
    rows = table[table["y_true"].notna()].copy()
    if rows.empty:
        return pd.DataFrame(columns=[*by, "auc", "n", "n_positive"])
    rows["positive"] = rows["y_true"].astype(int).to_numpy()
    rows["rank"] = rows.groupby(by, sort=False)["prob"].rank(method="average")
    rows["positive_rank"] = rows["rank"].where(rows["positive"] == 1, 0.0)
    groups = rows.groupby(by, sort=True)
    out = groups.agg(n=("positive", "size"), n_positive=("positive", "sum"), rank_sum=("positive_rank", "sum")).reset_index()
    n1, n0 = out["n_positive"].astype(float), (out["n"] - out["n_positive"]).astype(float)
    auc = (out["rank_sum"] - n1 * (n1 + 1) / 2) / (n1 * n0)
    out["auc"] = auc.where((n1 > 0) & (n0 > 0))
    return out[[*by, "auc", "n", "n_positive"]]


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's structural components of ``scores`` (k × n): the fast algorithm of Sun &
    Xu (2014), O(n log n), with midranks for ties."""
    cases, controls = scores[:, y == 1], scores[:, y == 0]
    m, n = cases.shape[1], controls.shape[1]
    aucs, v10, v01 = [], [], []
    for case, control in zip(cases, controls):
        tz = _midranks(np.r_[case, control])
        tx, ty = _midranks(case), _midranks(control)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
        v10.append((tz[:m] - tx) / n)
        v01.append(1.0 - (tz[m:] - ty) / m)
    return np.array(aucs), np.array(v10), np.array(v01)


def _delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    aucs, v10, v01 = _delong_components(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def auc_variance(y_true: Sequence, y_score: Sequence) -> tuple[float, float]:
    """The AUC and its DeLong variance, as ``pROC::var(roc, method = "delong")``: untruncated, for
    what works on the variance itself (a z test, a meta-analysis), where :func:`auc_ci`'s interval
    is truncated to [0, 1] for printing."""
    y, score = check_binary(y_true, y_score, probabilities=False)
    aucs, covariance = _delong_covariance(y, score[None, :])
    return float(aucs[0]), float(covariance[0, 0])


def bootstrap_aucs(y_true: Sequence, y_score: Sequence, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """AUCs of ``n_boot`` stratified bootstrap resamples (cases and controls resampled apart, as
    ``pROC::ci.auc(boot.stratified = TRUE)``). Each resample's AUC comes from counts against the
    sorted controls, so no resample is sorted again."""
    y, score = check_binary(y_true, y_score, probabilities=False)
    cases, controls = score[y == 1], np.sort(score[y == 0])
    m, n = cases.size, controls.size
    below = np.searchsorted(controls, cases, side="left")
    at_most = np.searchsorted(controls, cases, side="right")
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    block = max(1, min(n_boot, 5_000_000 // max(m + n, 1)))
    for start in range(0, n_boot, block):
        reps = min(block, n_boot - start)
        offsets = np.arange(reps)[:, None]
        # How often each sorted control and each case was drawn, per resample (one bincount each).
        control_counts = np.bincount((offsets * (n + 1) + 1 + rng.integers(0, n, (reps, n))).ravel(),
                                     minlength=reps * (n + 1)).reshape(reps, n + 1)
        case_counts = np.bincount((offsets * m + rng.integers(0, m, (reps, m))).ravel(),
                                  minlength=reps * m).reshape(reps, m)
        cumulative = np.cumsum(control_counts, axis=1)  # [:, j]: resampled controls among the j lowest
        wins = cumulative[:, below] + 0.5 * (cumulative[:, at_most] - cumulative[:, below])
        aucs[start:start + reps] = (case_counts * wins).sum(axis=1) / (m * n)
    return aucs


def auc_ci(y_true: Sequence, y_score: Sequence, method: str = "delong", level: float = 0.95, *,
           n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The AUC and its ``level`` CI: ``delong`` (default; as ``pROC::ci.auc(method = "delong")``,
    the interval truncated to [0, 1] as pROC prints it) or ``bootstrap`` (``n_boot`` stratified
    resamples, percentile interval, as ``pROC::ci.auc(method = "bootstrap", boot.stratified =
    TRUE)``; seeded, so the same call gives the same interval).

    >>> auc_ci([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9])[0]
    0.8333333333333334
    """
    if not 0 < level < 1:
        raise CrcInputError(f"The CI level must lie between 0 and 1, e.g. 0.95; got {level!r}.")
    y, score = check_binary(y_true, y_score, probabilities=False)
    if method == "delong":
        aucs, covariance = _delong_covariance(y, score[None, :])
        auc, se = float(aucs[0]), math.sqrt(max(float(covariance[0, 0]), 0.0))
        z = stats.norm.ppf(0.5 + level / 2)
        return auc, float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se))
    if method == "bootstrap":
        aucs = bootstrap_aucs(y, score, n_boot, seed)
        auc = float(_delong_components(y, score[None, :])[0][0])
        low, high = np.percentile(aucs, [50 * (1 - level), 50 * (1 + level)])
        return auc, float(low), float(high)
    raise CrcInputError(f"The AUC CI method must be 'delong' or 'bootstrap'; got {method!r}.")


def delong_test(y_true: Sequence, score_a: Sequence, score_b: Sequence) -> tuple[float, float]:
    """DeLong's test of two correlated ROC curves (the same patients): Z of AUC(a) − AUC(b) and
    its two-sided p, as ``pROC::roc.test(roc_a, roc_b, method = "delong")``."""
    z, p, _, _ = delong_difference(y_true, score_a, score_b)
    return z, p


def delong_difference(y_true: Sequence, score_a: Sequence, score_b: Sequence,
                      level: float = 0.95) -> tuple[float, float, float, tuple[float, float]]:
    """Z, p, AUC(a) − AUC(b) and its ``level`` CI (``roc.test``'s "confidence interval")."""
    y, a = check_binary(y_true, score_a, probabilities=False, what="model A")
    _, b = check_binary(y_true, score_b, probabilities=False, what="model B")
    aucs, covariance = _delong_covariance(y, np.vstack([a, b]))
    difference = float(aucs[0] - aucs[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    if variance <= 0:
        return 0.0, 1.0, difference, (difference, difference)
    se = math.sqrt(variance)
    z = difference / se
    half = stats.norm.ppf(0.5 + level / 2) * se
    return z, float(2 * stats.norm.sf(abs(z))), difference, (difference - half, difference + half)


# ---------------------------------------------------------------------------------------------
# Table 2: metrics at a threshold


def youden_threshold(y_true: Sequence, y_score: Sequence) -> float:
    """The threshold maximising sensitivity + specificity − 1 (Youden's J), as ``pROC::coords(roc,
    "best", best.method = "youden")``; of tied thresholds (pROC lists them all), the lowest."""
    curve = roc_curve(y_true, y_score)
    finite = curve[np.isfinite(curve["threshold"])]
    j = finite["sensitivity"] + finite["specificity"] - 1
    return float(finite.loc[j == j.max(), "threshold"].min())


def wilson_ci(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (as R ``binom::binom.wilson`` and statsmodels'
    ``proportion_confint(method="wilson")``); (nan, nan) when ``total`` is 0."""
    if total == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def threshold_metrics(y_true: Sequence, y_score: Sequence, threshold: float | None = None, *,
                      level: float = 0.95) -> dict[str, Any]:
    """The paper's Table 2 for one cohort: ACC, AUC with its DeLong CI, sensitivity, specificity,
    PPV, NPV, precision, recall and F1 at ``threshold`` (default: this cohort's Youden-optimal
    threshold), every proportion with its Wilson CI (``<name>_low``, ``<name>_high``); a patient
    is positive when its probability ≥ threshold. ``unreliable`` is True with fewer than
    :data:`FEW_CASES` patients in a class."""
    y, prob = check_binary(y_true, y_score)
    if threshold is None:
        threshold = youden_threshold(y, prob)
    predicted = prob >= threshold
    tp, fp = int((predicted & (y == 1)).sum()), int((predicted & (y == 0)).sum())
    fn, tn = int((~predicted & (y == 1)).sum()), int((~predicted & (y == 0)).sum())
    auc, auc_low, auc_high = auc_ci(y, prob, level=level)
    out: dict[str, Any] = {"n": int(y.size), "n_positive": int(y.sum()), "threshold": float(threshold),
                           "auc": auc, "auc_low": auc_low, "auc_high": auc_high, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, k, total in (("acc", tp + tn, y.size), ("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                           ("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        out[name] = k / total if total else math.nan
        out[f"{name}_low"], out[f"{name}_high"] = wilson_ci(k, total, level)
    out["precision"], out["precision_low"], out["precision_high"] = out["ppv"], out["ppv_low"], out["ppv_high"]
    out["recall"], out["recall_low"], out["recall_high"] = out["sensitivity"], out["sensitivity_low"], out["sensitivity_high"]
    p, r = out["ppv"], out["sensitivity"]
    out["f1"] = 2 * p * r / (p + r) if p == p and r == r and p + r > 0 else math.nan
    out["unreliable"] = few_cases(y)
    return out


# ---------------------------------------------------------------------------------------------
# Decision curves


def decision_curve(y_true: Sequence, y_prob: Sequence, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Net benefit of treating the patients whose probability ≥ pt, at each threshold pt:
    TP/n − FP/n · pt/(1 − pt), against treating all and treating none — as ``dcurves::dca``.
    Columns ``threshold``, ``net_benefit``, ``treat_all``, ``treat_none``, and the clinical-impact
    counts per 1000 patients ``high_risk_per_1000`` and ``true_positive_per_1000``."""
    y, prob = check_binary(y_true, y_prob)
    pts = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, dtype=float)
    if (pts <= 0).any() or (pts >= 1).any():
        raise CrcInputError("Decision-curve thresholds must lie strictly between 0 and 1.")
    n, prevalence = y.size, y.mean()
    rows = []
    for pt in pts:
        called = prob >= pt
        tp, fp = (called & (y == 1)).sum(), (called & (y == 0)).sum()
        odds = pt / (1 - pt)
        rows.append({"threshold": pt, "net_benefit": tp / n - fp / n * odds,
                     "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": 0.0,
                     "high_risk_per_1000": 1000 * called.mean(), "true_positive_per_1000": 1000 * tp / n})
    return pd.DataFrame(rows)


def decision_curve_band(y_true: Sequence, y_prob: Sequence, thresholds: Sequence[float] | None = None, *,
                        n_boot: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """A bootstrap band for the net benefit: ``threshold``, ``low``, ``high`` (percentiles of
    ``n_boot`` patient resamples)."""
    y, prob = check_binary(y_true, y_prob)
    base = decision_curve(y, prob, thresholds)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_boot):
        pick = rng.integers(0, y.size, y.size)
        if len(set(y[pick].tolist())) < 2:
            continue
        curves.append(decision_curve(y[pick], prob[pick], base["threshold"])["net_benefit"].to_numpy())
    low, high = np.percentile(np.array(curves), [50 * (1 - level), 50 * (1 + level)], axis=0)
    return pd.DataFrame({"threshold": base["threshold"], "low": low, "high": high})


# ---------------------------------------------------------------------------------------------
# Calibration


def logit(p, eps: float = 1e-12) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [eps, 1 - eps] so that a probability of exactly 0 or 1
    stays finite."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


#: What Hosmer-Lemeshow cannot tell, said wherever its p value is shown (Hosmer et al. 1997;
#: Van Calster et al. 2019): the statistic changes with the number of risk groups, and with a few
#: hundred patients it rarely detects miscalibration.
HL_CAVEAT = ("Hosmer-Lemeshow depends on the number of risk groups (here 10, of about n/10 patients each) and has "
             "little power in small cohorts: a large p is no evidence of good calibration; read the curve, its band, "
             "calibration-in-the-large and the slope instead.")


def r_lowess(x: Sequence, y: Sequence, f: float = 2 / 3, delta: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(x, y, f = 2/3, iter = 0)`` — a port of its C routine ``clowess`` without the
    robustness iterations: the points sorted by x (stably, as R's ``order``), a local linear fit
    with tricube weights over the nearest ``f·n`` points, and ``delta`` (R's default
    ``0.01 * diff(range(x))``) skipping points closer than it to the last fitted one, which are
    interpolated linearly. Returns the sorted x and the fitted values, as R's ``$x`` and ``$y``.
    (statsmodels' ``lowess`` picks its skipped points differently and so differs from R by up to
    1e-5 with the default delta.)"""
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    xs, ys = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    n = xs.size
    if n < 2:
        return xs, ys.copy()
    delta = 0.01 * float(xs[-1] - xs[0]) if delta is None else float(delta)
    fitted = np.empty(n)
    span = max(2, min(n, int(f * n + 1e-7)))
    full_range = xs[-1] - xs[0]
    left, right, last, i = 0, span - 1, -1, 0  # 0-based versions of clowess' nleft, nright, last, i
    while True:
        if right < n - 1 and xs[i] - xs[left] > xs[right + 1] - xs[i]:
            left, right = left + 1, right + 1
            continue
        fitted[i] = _lowess_point(xs, ys, xs[i], left, right, full_range)
        if last < i - 1:
            alpha = (xs[last + 1:i] - xs[last]) / (xs[i] - xs[last])
            fitted[last + 1:i] = alpha * fitted[i] + (1 - alpha) * fitted[last]
        last = i
        cut, j = xs[last] + delta, last + 1
        while j < n and xs[j] <= cut:
            if xs[j] == xs[last]:
                fitted[j] = fitted[last]
                last = j
            j += 1
        i = max(last + 1, j - 1)
        if last >= n - 1:
            return xs, fitted


def _lowess_point(xs: np.ndarray, ys: np.ndarray, at: float, left: int, right: int, full_range: float) -> float:
    """clowess' ``lowest``: the fitted value at ``at`` from the points ``left``..``right`` (and the
    ties beyond ``right``), tricube-weighted, linear where they spread enough."""
    radius = max(at - xs[left], xs[right] - at)
    segment = xs[left:]
    distance = np.abs(segment - at)
    beyond = np.flatnonzero((distance > 0.999 * radius) & (segment > at))
    stop = beyond[0] if beyond.size else segment.size
    segment, distance = segment[:stop], distance[:stop]
    weight = np.where(distance <= 0.999 * radius,
                      np.where(distance <= 0.001 * radius, 1.0, (1 - (distance / radius) ** 3) ** 3) if radius > 0 else 1.0,
                      0.0)
    total = weight.sum()
    if total <= 0:
        return float(ys[left])  # pragma: no cover - the nearest point always has weight 1
    weight = weight / total
    if radius > 0:
        centre = float((weight * segment).sum())
        spread = float((weight * (segment - centre) ** 2).sum())
        if math.sqrt(spread) > 0.001 * full_range:
            weight = weight * ((at - centre) / spread * (segment - centre) + 1)
    return float((weight * ys[left:left + stop]).sum())


def calibration_curve(y_true: Sequence, y_prob: Sequence, n_bins: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reliability curve: ``n_bins`` quantile bins (``bin``, ``n``, ``predicted`` mean,
    ``observed`` share with its Wilson 95% CI ``low``/``high`` — the score interval of
    :func:`wilson_ci`, as Table 2's proportions, chosen over Clopper-Pearson because with about ten
    patients a bin Clopper-Pearson's exact interval is conservative, wider than 95% needs (Brown,
    Cai & DasGupta 2001)), and the smoothed calibration curve (``predicted``, ``observed``) exactly
    as ``rms::val.prob`` draws it: ``lowess(p, y, iter = 0)`` with R's defaults (f = 2/3,
    delta = 0.01 · range(p)), see :func:`r_lowess`."""
    y, prob = check_binary(y_true, y_prob, need_both=False)
    order = np.argsort(prob, kind="stable")
    bins = np.array_split(order, min(n_bins, y.size))
    table = pd.DataFrame([{"bin": i + 1, "n": len(b), "predicted": prob[b].mean(), "observed": y[b].mean(),
                           **dict(zip(("low", "high"), wilson_ci(int(y[b].sum()), len(b))))}
                          for i, b in enumerate(bins) if len(b)])
    x, fitted = r_lowess(prob, y)
    return table, pd.DataFrame({"predicted": x, "observed": fitted})


def calibration_band(y_true: Sequence, y_prob: Sequence, *, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                     points: int = 50) -> pd.DataFrame:
    """A 95% band for the smoothed calibration curve of :func:`calibration_curve`: ``predicted``
    (``points`` values evenly spaced over the cohort's predictions), ``low``, ``high``.

    A percentile bootstrap: ``n_boot`` resamples of the patients (seeded), the same
    ``lowess(p, y, iter = 0)`` refitted on each and read off at ``predicted`` (linearly between
    its fitted points, as the curve is drawn; not beyond the resample's own predictions), and the
    2.5th and 97.5th percentiles where at least 90% of the resamples reach. The resamples are
    smoothed by statsmodels' ``lowess`` with R's f, iter and delta, 30 times faster than
    :func:`r_lowess` and within 1e-5 of it, far inside the band's width. Why a bootstrap:
    ``lowess`` has no standard error (R returns none, and ``val.prob`` draws no band); the
    standard-error band of ``CalibrationCurves::val.prob.ci.2`` belongs to another smoother
    (``loess(y ~ p)``, span 0.75, quadratic), so it would band a curve other than the one drawn.
    The band shows the sampling spread of the curve with the model fixed, not any optimism."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    y, prob = check_binary(y_true, y_prob, need_both=False)
    grid = np.linspace(prob.min(), prob.max(), points)
    rng = np.random.default_rng(seed)
    curves = np.full((n_boot, points), np.nan)
    for k in range(n_boot):
        pick = rng.integers(0, y.size, y.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample of one repeated prediction: no curve (nan)
            smooth = lowess(y[pick], prob[pick], frac=2 / 3, it=0, delta=0.01 * float(np.ptp(prob[pick])),
                            return_sorted=True)
        x, first = np.unique(smooth[:, 0], return_index=True)
        fitted = smooth[:, 1]
        inside = (grid >= x[0]) & (grid <= x[-1])
        curves[k, inside] = np.interp(grid[inside], x, fitted[first])
    reached = np.isfinite(curves).mean(axis=0) >= 0.9
    low, high = np.full(points, np.nan), np.full(points, np.nan)
    if reached.any():
        low[reached], high[reached] = np.nanpercentile(curves[:, reached], [50 * (1 - level), 50 * (1 + level)], axis=0)
    return pd.DataFrame({"predicted": grid, "low": low, "high": high})


def calibration_in_the_large(y_true: Sequence, y_prob: Sequence, level: float = 0.95) -> tuple[float, float, float]:
    """Calibration-in-the-large (Van Calster et al. 2019's "mean calibration"): the intercept ``a``
    of R's ``glm(y ~ offset(qlogis(p)), family = binomial)`` — the slope fixed at 1 — with its Wald
    CI (``confint.default``). 0 when the mean risk is right; > 0 when the model under-predicts.
    Not ``rms::val.prob``'s "Intercept", which is fitted together with the slope."""
    from crc_core.metrics.recalibration import INTERCEPT, recalibrate

    fit = recalibrate(y_true, y_prob, INTERCEPT, level=level)
    return fit["intercept"], fit["intercept_low"], fit["intercept_high"]


def hosmer_lemeshow(y: np.ndarray, prob: np.ndarray, groups: int = 10) -> tuple[float, int, float]:
    """χ², df and p of the Hosmer-Lemeshow test over risk groups cut at the quantiles of the
    predictions (R ``quantile`` type 7, ``include.lowest = TRUE``), as
    ``ResourceSelection::hoslem.test(y, p, g = 10)``: df = groups − 2. Equal quantiles merge
    groups (and lower df)."""
    breaks = np.unique(np.quantile(prob, np.linspace(0, 1, groups + 1)))
    cell = np.clip(np.searchsorted(breaks, prob, side="left"), 1, len(breaks) - 1)
    cell[prob == breaks[0]] = 1
    chi2 = 0.0
    for g in np.unique(cell):
        in_group = cell == g
        expected_1, observed_1 = prob[in_group].sum(), y[in_group].sum()
        expected_0, observed_0 = in_group.sum() - expected_1, in_group.sum() - observed_1
        chi2 += (observed_1 - expected_1) ** 2 / expected_1 + (observed_0 - expected_0) ** 2 / expected_0
    df = len(np.unique(cell)) - 2
    return float(chi2), int(df), float(stats.chi2.sf(chi2, df)) if df > 0 else math.nan


def calibration_stats(y_true: Sequence, y_prob: Sequence, n_bins: int = 10) -> dict[str, float]:
    """``brier`` (mean squared error of the probabilities); ``citl`` with its Wald 95% CI
    ``citl_low``/``citl_high`` — calibration-in-the-large, :func:`calibration_in_the_large`, R
    ``glm(y ~ offset(qlogis(p)), binomial)``; ``slope`` and ``intercept`` (the same value as
    ``intercept_with_slope``): the logistic recalibration of the outcome on logit(p), both fitted
    together, as ``rms::val.prob`` prints "Slope" and "Intercept" — that intercept belongs beside
    the slope and is not calibration-in-the-large (nan with ``separated`` True when the
    probabilities separate the classes perfectly and the slope is infinite);
    ``hl_chi2``/``hl_df``/``hl_p`` (Hosmer-Lemeshow, 10 risk-decile groups, df = 8; see
    :data:`HL_CAVEAT`), ``ece`` (expected calibration error over ``n_bins`` quantile bins), and
    Spiegelhalter's ``spiegelhalter_z``/``spiegelhalter_p`` (``val.prob``'s "S:z", "S:p")."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    y, prob = check_binary(y_true, y_prob)
    logit_prob = logit(prob)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            fit = sm.GLM(y, sm.add_constant(logit_prob), family=sm.families.Binomial()).fit()
            intercept, slope, separated = (*(float(v) for v in fit.params), False)
        except PerfectSeparationWarning:
            # The probabilities separate the classes perfectly: the recalibration slope is infinite.
            intercept, slope, separated = math.nan, math.nan, True
    hl_chi2, hl_df, hl_p = hosmer_lemeshow(y, prob)
    table, _ = calibration_curve(y, prob, n_bins)
    ece = float((table["n"] * (table["observed"] - table["predicted"]).abs()).sum() / y.size)
    numerator = float(((y - prob) * (1 - 2 * prob)).sum())
    denominator = math.sqrt(float(((1 - 2 * prob) ** 2 * prob * (1 - prob)).sum()))
    z = numerator / denominator if denominator > 0 else math.nan
    citl, citl_low, citl_high = calibration_in_the_large(y, prob)
    return {"brier": float(np.mean((prob - y) ** 2)), "citl": citl, "citl_low": citl_low, "citl_high": citl_high,
            "slope": slope, "intercept_with_slope": intercept, "intercept": intercept, "separated": separated,
            "hl_chi2": hl_chi2, "hl_df": hl_df, "hl_p": hl_p, "ece": ece, "spiegelhalter_z": z,
            "spiegelhalter_p": float(2 * stats.norm.sf(abs(z))) if z == z else math.nan, "unreliable": few_cases(y)}
