"""Recalibrating a model's probabilities in a new cohort (the external centre), as R's ``glm`` fits
it: calibration-in-the-large (a new intercept) or logistic recalibration (a new intercept and
slope), fitted on that cohort's outcomes and then applied to any other probabilities.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import special, stats

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary, logit

#: ``glm(y ~ offset(logit(p)), family = binomial)``: the intercept alone, the slope fixed at 1.
INTERCEPT = "intercept"
#: ``glm(y ~ logit(p), family = binomial)``: intercept and slope together.
LOGISTIC = "logistic"


def _log_likelihood(y: np.ndarray, eta: np.ndarray) -> float:
    return float((y * eta - np.logaddexp(0.0, eta)).sum())


def _fit_logistic(y: np.ndarray, design: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood of a logistic model with an offset by Newton-Raphson (Fisher scoring, as
    ``glm``'s IRLS for the canonical link), halving a step that lowers the likelihood; returns the
    coefficients and their covariance (the inverse Fisher information)."""
    beta = np.zeros(design.shape[1])
    current = _log_likelihood(y, offset)
    for _ in range(100):
        risk = special.expit(offset + design @ beta)
        information = design.T @ (design * (risk * (1 - risk))[:, None])
        step = np.linalg.solve(information, design.T @ (y - risk))
        scale = 1.0
        while scale > 1e-10 and _log_likelihood(y, offset + design @ (beta + scale * step)) < current - 1e-12:
            scale /= 2
        beta = beta + scale * step
        current = _log_likelihood(y, offset + design @ beta)
        if np.abs(scale * step).max() < 1e-10:
            break
    else:  # pragma: no cover - the checks before a fit leave a finite maximum
        raise RuntimeError("logistic recalibration did not converge in 100 iterations")
    risk = special.expit(offset + design @ beta)
    information = design.T @ (design * (risk * (1 - risk))[:, None])
    return beta, np.linalg.inv(information)


def recalibrate(y_true: Sequence, y_prob: Sequence, method: str = INTERCEPT, *, level: float = 0.95,
                what: str = "the new cohort") -> dict:
    """Recalibrate a model's probabilities ``y_prob`` to the outcomes ``y_true`` of a new cohort.

    ``method="intercept"`` (:data:`INTERCEPT`), calibration-in-the-large: the intercept ``a`` of
    ``glm(y ~ offset(logit(p)), family = binomial)``, new risk = expit(a + logit(p)); ``a`` > 0
    means the model under-predicts in this cohort. ``method="logistic"`` (:data:`LOGISTIC`):
    ``glm(y ~ logit(p), family = binomial)``, new risk = expit(a + b·logit(p)); its intercept and
    slope are ``rms::val.prob``'s "Intercept" and "Slope" (and
    :func:`crc_core.metrics.calibration.calibration_stats`'), b < 1 meaning predictions too extreme.

    logit(p) is :func:`crc_core.metrics.inputs.logit`, which clips p to [1e-12, 1 − 1e-12]: a
    probability of exactly 0 or 1 has an infinite logit, and one such patient with the other
    outcome would make the likelihood zero for every intercept, so no fit would exist. The clip
    is the one ``calibration_stats`` uses, so both report the same slope.

    Returns ``method``, ``n``, ``n_positive``, ``intercept`` with ``intercept_se`` and its
    ``level`` Wald CI ``intercept_low``/``intercept_high`` (as ``confint.default(fit)``, not the
    profile-likelihood ``confint``), ``slope`` with ``slope_se``, ``slope_low``, ``slope_high``
    (1 and NaN for intercept-only), and ``y_prob_recalibrated`` (an array, one per patient). Pass
    the dict to :func:`apply_recalibration` to recalibrate other patients' probabilities.

    >>> fit = recalibrate([0, 1, 0, 1, 1], [0.2, 0.3, 0.1, 0.5, 0.4])
    >>> round(fit["intercept"], 4)
    1.4181
    """
    if method not in (INTERCEPT, LOGISTIC):
        raise CrcInputError(f"The recalibration method must be {INTERCEPT!r} (calibration-in-the-large) or "
                            f"{LOGISTIC!r} (intercept and slope); got {method!r}.")
    if not 0 < level < 1:
        raise CrcInputError(f"The CI level must lie between 0 and 1, e.g. 0.95; got {level!r}.")
    y, prob = check_binary(y_true, y_prob, what=what, need_both=False)
    if y.size == 0:
        raise CrcInputError(f"{what} has no patients: recalibration needs the outcomes and predicted probabilities "
                            f"of its patients.")
    events = int(y.sum())
    if events in (0, y.size):
        only = "without" if events == 0 else "with"
        raise CrcInputError(f"{what} has one outcome only (all {y.size} patients {only} the outcome): the "
                            f"recalibration intercept is infinite there. Recalibrate on a cohort with both outcomes.")
    lp = logit(prob)
    if method == INTERCEPT:
        beta, covariance = _fit_logistic(y.astype(float), np.ones((y.size, 1)), lp)
        intercept, slope = float(beta[0]), 1.0
        intercept_se, slope_se = math.sqrt(covariance[0, 0]), math.nan
    else:
        if np.ptp(lp) == 0:
            raise CrcInputError(f"{what}: every patient has the same predicted probability, so a recalibration slope "
                                f"cannot be estimated. Use method='intercept'.")
        if lp[y == 0].max() <= lp[y == 1].min() or lp[y == 1].max() <= lp[y == 0].min():
            raise CrcInputError(f"{what}: the probabilities separate the outcomes perfectly, so the recalibration "
                                f"slope is infinite. Use method='intercept', or a larger cohort.")
        beta, covariance = _fit_logistic(y.astype(float), np.column_stack([np.ones(y.size), lp]), np.zeros(y.size))
        intercept, slope = float(beta[0]), float(beta[1])
        intercept_se, slope_se = math.sqrt(covariance[0, 0]), math.sqrt(covariance[1, 1])
    z = stats.norm.ppf(0.5 + level / 2)
    return {"method": method, "n": int(y.size), "n_positive": events,
            "intercept": intercept, "intercept_se": intercept_se,
            "intercept_low": intercept - z * intercept_se, "intercept_high": intercept + z * intercept_se,
            "slope": slope, "slope_se": slope_se, "slope_low": slope - z * slope_se, "slope_high": slope + z * slope_se,
            "y_prob_recalibrated": special.expit(intercept + slope * lp)}


def apply_recalibration(y_prob: Sequence, recalibration: Mapping) -> np.ndarray:
    """``y_prob`` recalibrated by a fit of :func:`recalibrate` (its ``intercept`` and ``slope``):
    expit(intercept + slope · logit(p)), with the same clip of p as the fit."""
    _, prob = check_binary(np.zeros(np.size(y_prob)), y_prob, what="the probabilities to recalibrate", need_both=False)
    return special.expit(float(recalibration["intercept"]) + float(recalibration["slope"]) * logit(prob))
