"""Discrimination: the ROC curve, the AUC with its CI (DeLong or a stratified bootstrap) and
DeLong's test of two AUCs, as ``pROC`` computes them (``direction = "<"``: higher scores mean
the positive class).

Every function takes plain arrays, ``y_true`` (0/1) and ``y_score`` (the predicted probability of
class 1), checked first by :func:`crc_core.metrics.inputs.check_binary`. Inputs come from the run
store's predictions (:mod:`crc_core.runs.store`), so a run from a GPU server or a radiomics
baseline is evaluated alike.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary


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
