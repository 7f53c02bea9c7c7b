"""Calibration: curves (R's ``lowess`` and grouped), the band, calibration-in-the-large, slope
and Hosmer-Lemeshow, as ``rms::val.prob`` and ``glm`` report them.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crc_core.metrics.inputs import check_binary, few_cases, logit
from crc_core.metrics.recalibration import INTERCEPT, recalibrate
from crc_core.metrics.threshold import wilson_ci


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
