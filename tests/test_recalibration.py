"""crc_core.metrics.recalibration against R (rms::val.prob's intercept and slope, tests/reference/
evaluation_r.json), statsmodels' GLM fitted here with the same design, and the likelihood's own
score equations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, special

import crc_core.metrics as ev
from crc_core.errors import CrcInputError
from crc_core.metrics.recalibration import INTERCEPT, LOGISTIC, apply_recalibration, recalibrate

REFERENCE = Path(__file__).resolve().parent / "reference"
DATA = pd.read_csv(REFERENCE / "evaluation_data.csv")
R = json.loads((REFERENCE / "evaluation_r.json").read_text())
Y = DATA["y"].to_numpy()


def glm(y, prob, *, slope: bool):
    """statsmodels' binomial GLM: y ~ offset(logit p) or y ~ logit p, logit clipped as documented,
    iterated to a tight tolerance (its default 1e-8 leaves the SEs off in the 7th digit)."""
    lp = np.log(np.clip(prob, 1e-12, 1 - 1e-12) / (1 - np.clip(prob, 1e-12, 1 - 1e-12)))
    if slope:
        return sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-14)
    return sm.GLM(y, np.ones((len(y), 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-14)


@pytest.mark.parametrize("name", ["a", "b"])
def test_calibration_in_the_large_equals_glm_with_an_offset(name):
    # R: glm(y ~ offset(qlogis(p)), family = binomial); here statsmodels GLM(..., offset=logit p)
    prob = DATA[name].to_numpy()
    reference = glm(Y, prob, slope=False)
    fit = recalibrate(Y, prob, INTERCEPT)
    assert (fit["intercept"], fit["intercept_se"]) == pytest.approx((reference.params[0], reference.bse[0]), rel=1e-8)
    assert (fit["intercept_low"], fit["intercept_high"]) == pytest.approx(tuple(reference.conf_int()[0]), rel=1e-8)
    assert (fit["slope"], fit["n"], fit["n_positive"]) == (1.0, 200, int(Y.sum()))
    assert np.isnan([fit["slope_se"], fit["slope_low"], fit["slope_high"]]).all()
    # its score equation: the recalibrated risks add up to the observed events
    assert fit["y_prob_recalibrated"].sum() == pytest.approx(Y.sum(), rel=1e-10)
    assert fit["y_prob_recalibrated"] == pytest.approx(reference.fittedvalues, rel=1e-8)


@pytest.mark.parametrize("name", ["a", "b"])
def test_logistic_recalibration_equals_rms_val_prob_and_glm(name):
    # rms::val.prob(p, y): "Intercept" -0.4567 and "Slope" 2.4586 for model a (R 4.2.2, rms 6.5-0)
    prob = DATA[name].to_numpy()
    fit = recalibrate(Y, prob, LOGISTIC)
    reference = R[f"val_prob_{name}"]
    assert (fit["intercept"], fit["slope"]) == pytest.approx((reference["Intercept"], reference["Slope"]), rel=1e-8)
    stats = ev.calibration_stats(Y, prob)
    assert (fit["intercept"], fit["slope"]) == pytest.approx((stats["intercept"], stats["slope"]), rel=1e-8)
    model = glm(Y, prob, slope=True)
    assert [fit["intercept_se"], fit["slope_se"]] == pytest.approx(model.bse.tolist(), rel=1e-7)
    ci = model.conf_int()  # Wald, as R's confint.default
    assert [fit["intercept_low"], fit["intercept_high"], fit["slope_low"], fit["slope_high"]] == pytest.approx(
        [*ci[0], *ci[1]], rel=1e-7)
    # score equations: sum of risks = events, and sum of risk·logit(p) = sum of y·logit(p)
    lp = ev.logit(prob)
    assert fit["y_prob_recalibrated"].sum() == pytest.approx(Y.sum(), rel=1e-10)
    assert (fit["y_prob_recalibrated"] * lp).sum() == pytest.approx((Y * lp).sum(), rel=1e-10)


def test_a_fitted_recalibration_applies_to_other_patients():
    fit = recalibrate(Y, DATA["a"], LOGISTIC)
    others = np.array([0.05, 0.2, 0.5, 0.8, 0.97])
    expected = special.expit(fit["intercept"] + fit["slope"] * np.log(others / (1 - others)))
    assert apply_recalibration(others, fit) == pytest.approx(expected, rel=1e-12)
    assert apply_recalibration(DATA["a"], fit) == pytest.approx(fit["y_prob_recalibrated"], rel=1e-12)
    assert apply_recalibration(others, {"intercept": 0.0, "slope": 1.0}) == pytest.approx(others, rel=1e-12)
    # a positive calibration-in-the-large intercept raises every risk, keeping their order
    shifted = apply_recalibration(others, recalibrate([1, 1, 0, 1, 1], [0.1, 0.3, 0.2, 0.4, 0.5]))
    assert (shifted > others).all() and (np.diff(shifted) > 0).all()


def test_probabilities_of_exactly_zero_and_one_are_clipped_not_fatal():
    # p = 1 for a patient without the outcome: unclipped, the likelihood is 0 for every intercept.
    # With logits of ±27.6 statsmodels' IRLS runs away from its start, so the reference is the
    # log-likelihood maximised directly by scipy.
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    prob = np.array([0.0, 1.0, 0.7, 1.0, 0.3, 0.4, 0.2, 0.9])
    lp = np.log(np.clip(prob, 1e-12, 1 - 1e-12) / (1 - np.clip(prob, 1e-12, 1 - 1e-12)))

    def minus_log_likelihood(beta):
        eta = beta[0] + beta[1] * lp
        return -(y * eta - np.logaddexp(0, eta)).sum()

    intercept_only = optimize.minimize_scalar(lambda a: minus_log_likelihood([a, 1.0]), bounds=(-10, 10),
                                              method="bounded", options={"xatol": 1e-12}).x
    both = optimize.minimize(minus_log_likelihood, [0.0, 1.0], method="BFGS", options={"gtol": 1e-10}).x
    assert recalibrate(y, prob, INTERCEPT)["intercept"] == pytest.approx(intercept_only, abs=1e-8)
    fit = recalibrate(y, prob, LOGISTIC)
    assert (fit["intercept"], fit["slope"]) == pytest.approx(tuple(both), abs=1e-6)
    assert np.isfinite(fit["y_prob_recalibrated"]).all()


def test_refusals_say_what_is_wrong():
    with pytest.raises(CrcInputError, match=r"one outcome only \(all 4 patients without the outcome\)"):
        recalibrate([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(CrcInputError, match=r"external centre has one outcome only \(all 3 patients with the outcome\)"):
        recalibrate([1, 1, 1], [0.1, 0.2, 0.3], LOGISTIC, what="the external centre")
    with pytest.raises(CrcInputError, match="has no patients"):
        recalibrate([], [])
    with pytest.raises(CrcInputError, match=r"probabilities between 0 and 1; not so in row 2 \(1.2\)"):
        recalibrate([0, 1, 1], [0.1, 1.2, 0.3])
    with pytest.raises(CrcInputError, match=r"not so in row 1 \(-0.1\)"):
        recalibrate([0, 1], [-0.1, 0.3])
    with pytest.raises(CrcInputError, match=r"probabilities to recalibrate: .* row 3 \(nan\)"):
        apply_recalibration([0.2, 0.4, float("nan")], {"intercept": 0.1, "slope": 1.0})
    with pytest.raises(CrcInputError, match="separate the outcomes perfectly, so the recalibration slope is infinite"):
        recalibrate([0, 0, 1, 1], [0.1, 0.2, 0.2, 0.9], LOGISTIC)
    with pytest.raises(CrcInputError, match="same predicted probability"):
        recalibrate([0, 1, 1], [0.3, 0.3, 0.3], LOGISTIC)
    with pytest.raises(CrcInputError, match="method must be 'intercept'"):
        recalibrate([0, 1], [0.3, 0.6], "platt")
    with pytest.raises(CrcInputError, match="3 outcomes but 2 predictions"):
        recalibrate([0, 1, 1], [0.3, 0.6])
