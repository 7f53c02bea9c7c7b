"""crc_core.metrics.roc against R (pROC, rms; tests/reference/evaluation.R), scikit-learn,
statsmodels and a published example — never only against itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from statsmodels.stats.proportion import proportion_confint

import crc_core.metrics as ev
from crc_core.errors import CrcInputError

REFERENCE = Path(__file__).resolve().parent / "reference"
DATA = pd.read_csv(REFERENCE / "evaluation_data.csv")
R = json.loads((REFERENCE / "evaluation_r.json").read_text())
Y, A, B = DATA["y"].to_numpy(), DATA["a"].to_numpy(), DATA["b"].to_numpy()


# ---------------------------------------------------------------------------------------------
# AUC, its CI and DeLong's test


def test_delong_ci_equals_proc():
    # pROC::ci.auc(roc(y, a, direction = "<"), method = "delong")
    for score, auc, ci in ((A, R["auc_a"], R["ci_a"]), (B, R["auc_b"], R["ci_b"])):
        got = ev.auc_ci(Y, score)
        assert got == pytest.approx((auc, *ci), abs=1e-12)
        assert got[0] == pytest.approx(roc_auc_score(Y, score), abs=1e-15)


def test_delong_test_and_the_ci_of_the_difference_equal_proc():
    # pROC::roc.test(roc_a, roc_b, method = "delong"): Z = 4.3777, p = 1.199e-05
    z, p, difference, ci = ev.delong_difference(Y, A, B)
    assert (z, p) == pytest.approx((R["delong_z"], R["delong_p"]), rel=1e-9)
    assert difference == pytest.approx(R["auc_a"] - R["auc_b"], abs=1e-12)
    assert ci == pytest.approx(R["delong_diff_ci"], abs=1e-12)
    assert ev.delong_test(Y, A, B) == pytest.approx((z, p))
    assert ev.delong_test(Y, A, A) == (0.0, 1.0)


def test_the_delong_ci_is_truncated_at_one_as_proc_prints_it():
    # pROC prints "95% CI: 0.7228-1 (DeLong)" for this small example (R session quoted in the
    # commit that added this test).
    y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    a = [0.1, 0.2, 0.3, 0.35, 0.5, 0.55, 0.4, 0.6, 0.7, 0.8, 0.9, 0.65, 0.45, 0.52, 0.2, 0.95, 0.3, 0.61, 0.15, 0.75]
    auc, low, high = ev.auc_ci(y, a)
    assert (auc, round(low, 4), high) == (0.875, 0.7228, 1.0)


def test_hanley_and_mcneil_1982_published_auc():
    # Hanley & McNeil (1982), Radiology 143:29-36, Table 1: 58 normal and 51 abnormal CT images
    # rated 1-5; the area under the empirical ROC curve is 0.893.
    normal = [33, 6, 6, 11, 2]
    abnormal = [3, 2, 2, 11, 33]
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)]
    truth = np.r_[np.zeros(58, int), np.ones(51, int)]
    assert round(ev.auc_ci(truth, ratings)[0], 3) == 0.893


def test_bootstrap_resamples_are_stratified_and_their_aucs_exact():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.65, 0.4, 0.9, 0.7, 0.3, 0.2])
    aucs = ev.bootstrap_aucs(y, score, n_boot=3, seed=7)
    # The same draws done plainly: controls (sorted) and cases resampled apart, AUC by scikit-learn.
    rng = np.random.default_rng(7)
    controls, cases = np.sort(score[y == 0]), score[y == 1]
    control_picks, case_picks = rng.integers(0, 5, (3, 5)), rng.integers(0, 5, (3, 5))
    for r in range(3):
        resampled = np.r_[controls[control_picks[r]], cases[case_picks[r]]]
        assert aucs[r] == pytest.approx(roc_auc_score(np.r_[np.zeros(5), np.ones(5)], resampled), abs=1e-12)


def test_bootstrap_ci_is_seeded_and_near_delong_for_a_large_cohort():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    score = np.clip(rng.normal(0.45 + 0.15 * y, 0.2), 0, 1)
    delong = ev.auc_ci(y, score)
    boot = ev.auc_ci(y, score, "bootstrap", n_boot=500, seed=1)
    assert boot == ev.auc_ci(y, score, "bootstrap", n_boot=500, seed=1)
    assert boot[0] == delong[0]
    assert boot[1] == pytest.approx(delong[1], abs=0.006) and boot[2] == pytest.approx(delong[2], abs=0.006)


# ---------------------------------------------------------------------------------------------
# Table 2


def test_youden_threshold_and_table_two_proportions_with_wilson_cis_equal_r():
    # pROC::coords(roc_a, "best", best.method = "youden"); Wilson CIs as prop.test(correct = FALSE).
    threshold = ev.youden_threshold(Y, A)
    assert threshold == pytest.approx(R["youden_thresholds"], abs=1e-12)
    row = ev.threshold_metrics(Y, A, threshold)
    assert (row["sensitivity_low"], row["sensitivity_high"]) == pytest.approx(R["sensitivity_ci"], abs=1e-12)
    assert (row["specificity_low"], row["specificity_high"]) == pytest.approx(R["specificity_ci"], abs=1e-12)
    assert (row["ppv_low"], row["ppv_high"]) == pytest.approx(R["ppv_ci"], abs=1e-12)
    predicted = A >= threshold
    assert row["acc"] == pytest.approx((predicted == Y.astype(bool)).mean())
    assert row["f1"] == pytest.approx(2 * row["ppv"] * row["sensitivity"] / (row["ppv"] + row["sensitivity"]))
    assert row["precision"] == row["ppv"] and row["recall"] == row["sensitivity"]
    assert row["auc"] == pytest.approx(R["auc_a"]) and not row["unreliable"]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 95)])
def test_wilson_equals_statsmodels(k, n):
    assert ev.wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    assert all(math.isnan(v) for v in ev.wilson_ci(0, 0))


def test_a_threshold_from_training_is_applied_unchanged():
    row = ev.threshold_metrics([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9], threshold=0.5)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 0, 1)  # 0.5 ≥ 0.5 is called positive, as pROC
    assert row["unreliable"]  # two patients per class: CIs flagged


# ---------------------------------------------------------------------------------------------
# Decision curves and calibration


def test_net_benefit_equals_the_dcurves_formula_in_r():
    curve = ev.decision_curve(Y, A, R["thresholds"])
    assert curve["net_benefit"].tolist() == pytest.approx(R["net_benefit_a"], abs=1e-12)
    prevalence = Y.mean()
    assert curve["treat_all"].tolist() == pytest.approx([prevalence - (1 - prevalence) * t / (1 - t) for t in R["thresholds"]])
    assert (curve["treat_none"] == 0).all()
    assert curve["high_risk_per_1000"].iloc[0] == pytest.approx(1000 * (A >= 0.1).mean())


def test_decision_curve_by_hand():
    # 4 patients, pt = 0.25: called {0.3, 0.6, 0.9}: TP 2, FP 1 -> 2/4 - 1/4 * (0.25/0.75) = 0.41667
    curve = ev.decision_curve([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], [0.25])
    assert curve["net_benefit"].iloc[0] == pytest.approx(0.5 - 0.25 / 3)


@pytest.mark.parametrize("name", ["a", "b"])
def test_decision_curve_equals_dcurves(name):
    """The dcurves package itself (Python port of R dcurves::dca): net benefit of the model and of
    treating all, and the clinical-impact counts, at every threshold 0.01-0.99."""
    import dcurves

    thresholds = np.round(np.arange(0.01, 1.0, 0.01), 2)
    probability = DATA[name].to_numpy()
    ours = ev.decision_curve(Y, probability, thresholds)
    theirs = dcurves.dca(data=pd.DataFrame({"y": Y, "p": probability}), outcome="y", modelnames=["p"], thresholds=thresholds)
    model = theirs[theirs["model"] == "p"].set_index("threshold").loc[thresholds]
    treat_all = theirs[theirs["model"] == "all"].set_index("threshold").loc[thresholds]
    np.testing.assert_allclose(ours["net_benefit"], model["net_benefit"], atol=1e-12)
    np.testing.assert_allclose(ours["treat_all"], treat_all["net_benefit"], atol=1e-12)
    np.testing.assert_allclose(ours["high_risk_per_1000"], 1000 * model["test_pos_rate"], atol=1e-9)
    np.testing.assert_allclose(ours["true_positive_per_1000"], 1000 * model["tp_rate"], atol=1e-9)


def test_the_decision_curve_band_is_the_bootstrap_s_percentiles_and_narrows_with_more_patients():
    thresholds = [0.2, 0.4, 0.6]
    band = ev.decision_curve_band(Y, A, thresholds, n_boot=300, seed=4)
    point = ev.decision_curve(Y, A, thresholds)["net_benefit"].to_numpy()
    assert (band["low"].to_numpy() < point).all() and (point < band["high"].to_numpy()).all()
    # By hand, with the same resamples: the 2.5th and 97.5th percentiles of the resampled net benefits.
    rng = np.random.default_rng(4)
    draws = []
    for _ in range(300):
        pick = rng.integers(0, len(Y), len(Y))
        if len(set(Y[pick])) < 2:
            continue
        called = A[pick][:, None] >= np.asarray(thresholds)[None]
        tp = (called & (Y[pick][:, None] == 1)).sum(axis=0) / len(Y)
        fp = (called & (Y[pick][:, None] == 0)).sum(axis=0) / len(Y)
        draws.append(tp - fp * np.asarray(thresholds) / (1 - np.asarray(thresholds)))
    np.testing.assert_allclose(band["low"], np.percentile(draws, 2.5, axis=0), atol=1e-12)
    np.testing.assert_allclose(band["high"], np.percentile(draws, 97.5, axis=0), atol=1e-12)
    # Four times the patients (the same ones, four times), about half the width: a band of the data's own spread.
    wide = (band["high"] - band["low"]).to_numpy()
    narrow = ev.decision_curve_band(np.tile(Y, 4), np.tile(A, 4), thresholds, n_boot=300, seed=4)
    ratio = (narrow["high"] - narrow["low"]).to_numpy() / wide
    assert ((0.35 < ratio) & (ratio < 0.7)).all(), ratio


@pytest.mark.parametrize("name", ["a", "b"])
def test_calibration_statistics_equal_rms_val_prob(name):
    stats = ev.calibration_stats(Y, DATA[name])
    reference = R[f"val_prob_{name}"]
    assert stats["brier"] == pytest.approx(reference["Brier"], abs=1e-12)
    assert stats["brier"] == pytest.approx(brier_score_loss(Y, DATA[name]), abs=1e-15)
    assert stats["intercept"] == pytest.approx(reference["Intercept"], abs=1e-6)
    assert stats["slope"] == pytest.approx(reference["Slope"], abs=1e-6)
    assert stats["spiegelhalter_z"] == pytest.approx(reference["S:z"], abs=1e-9)
    assert stats["spiegelhalter_p"] == pytest.approx(reference["S:p"], rel=1e-6)


def test_hosmer_lemeshow_equals_hoslem_test_in_r():
    stats = ev.calibration_stats(Y, A)
    assert stats["hl_chi2"] == pytest.approx(R["hoslem_a"]["chisq"], rel=1e-9)
    assert stats["hl_p"] == pytest.approx(R["hoslem_a"]["p"], rel=1e-6) and stats["hl_df"] == 8


def test_expected_calibration_error_by_hand():
    # Two bins of two: predicted (0.1, 0.2) observed (0, 1) -> |0.5 - 0.15|; (0.8, 0.9) observed (0, 1) -> |0.5 - 0.85|
    stats = ev.calibration_stats([0, 1, 0, 1], [0.1, 0.2, 0.8, 0.9], n_bins=2)
    assert stats["ece"] == pytest.approx((2 * 0.35 + 2 * 0.35) / 4)
    table, smooth = ev.calibration_curve(Y, A)
    assert table["n"].sum() == 200 and len(table) == 10 and len(smooth) == 200  # LOESS may overshoot [0, 1], as in R


CALIBRATION_R = json.loads((REFERENCE / "calibration_r.json").read_text())  # tests/reference/calibration.R


@pytest.mark.parametrize("name", ["a", "b"])
def test_calibration_in_the_large_equals_r_glm_with_offset_and_statsmodels(name):
    # Issue 26.1: the reported intercept was val.prob's joint intercept, fitted with the slope.
    import statsmodels.api as sm

    stats = ev.calibration_stats(Y, DATA[name])
    reference = CALIBRATION_R[name]
    assert stats["citl"] == pytest.approx(reference["citl"], rel=1e-6)  # glm(y ~ offset(qlogis(p)), binomial)
    assert [stats["citl_low"], stats["citl_high"]] == pytest.approx(reference["citl_ci"], rel=1e-6)  # confint.default
    offset = np.log(DATA[name] / (1 - DATA[name]))
    theirs = sm.GLM(Y, np.ones(len(Y)), family=sm.families.Binomial(), offset=offset).fit()
    assert stats["citl"] == pytest.approx(theirs.params[0], rel=1e-6)
    assert [stats["citl_low"], stats["citl_high"]] == pytest.approx(theirs.conf_int()[0], rel=1e-6)
    # The joint intercept stays beside the slope, under its own name, and is another number.
    assert stats["intercept_with_slope"] == pytest.approx(reference["intercept_with_slope"], rel=1e-6)
    assert stats["slope"] == pytest.approx(reference["slope"], rel=1e-6)
    assert abs(stats["citl"] - stats["intercept_with_slope"]) > 0.003


@pytest.mark.parametrize("name", ["a", "b"])
def test_the_smoothed_calibration_curve_is_r_lowess_as_val_prob_draws_it(name):
    # rms::val.prob draws lowess(p, y, iter = 0), R's delta included; b has ties (two decimals).
    _, smooth = ev.calibration_curve(Y, DATA[name])
    np.testing.assert_allclose(smooth["predicted"], CALIBRATION_R[name]["lowess_x"], rtol=1e-12)
    np.testing.assert_allclose(smooth["observed"], CALIBRATION_R[name]["lowess_y"], rtol=1e-6, atol=1e-12)
    # val.prob's Eavg, Emax and E90 read that curve at every patient's prediction (approx(Sm, xout = p, ties = mean)).
    x, first = np.unique(smooth["predicted"], return_index=True)
    error = np.abs(DATA[name] - np.interp(DATA[name], x, smooth["observed"].to_numpy()[first]))
    assert [error.mean(), error.max(), np.quantile(error, 0.9)] == pytest.approx(
        [CALIBRATION_R[name][k] for k in ("eavg", "emax", "e90")], rel=1e-6)


def test_calibration_bins_carry_wilson_cis_equal_to_statsmodels():
    table, _ = ev.calibration_curve(Y, A)
    events = (table["observed"] * table["n"]).round().astype(int)
    low, high = proportion_confint(events, table["n"], alpha=0.05, method="wilson")
    np.testing.assert_allclose(table["low"], low, atol=1e-12)
    np.testing.assert_allclose(table["high"], high, atol=1e-12)
    assert ((table["low"] <= table["observed"]) & (table["observed"] <= table["high"])).all()


def test_the_calibration_band_is_the_bootstrap_s_percentiles_and_narrows_with_more_patients():
    from statsmodels.nonparametric.smoothers_lowess import lowess

    band = ev.calibration_band(Y, A, n_boot=100, seed=3, points=9)
    assert band["predicted"].tolist() == pytest.approx(np.linspace(A.min(), A.max(), 9).tolist())
    # By hand, with the same resamples: lowess(p, y, iter = 0) of each, read at the grid, then the percentiles.
    rng = np.random.default_rng(3)
    draws = []
    for _ in range(100):
        pick = rng.integers(0, len(Y), len(Y))
        fit = lowess(Y[pick], A[pick], frac=2 / 3, it=0, delta=0.01 * np.ptp(A[pick]))
        grid = band["predicted"].to_numpy()
        x, first = np.unique(fit[:, 0], return_index=True)
        draws.append(np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, fit[first, 1]), np.nan))
    middle = slice(1, 8)
    np.testing.assert_allclose(band["low"][middle], np.nanpercentile(draws, 2.5, axis=0)[middle], atol=1e-12)
    np.testing.assert_allclose(band["high"][middle], np.nanpercentile(draws, 97.5, axis=0)[middle], atol=1e-12)
    _, smooth = ev.calibration_curve(Y, A)
    curve = np.interp(band["predicted"][middle], smooth["predicted"], smooth["observed"])
    assert ((band["low"][middle] < curve) & (curve < band["high"][middle])).all()
    wide = (band["high"] - band["low"]).to_numpy()[middle]
    narrow = ev.calibration_band(np.tile(Y, 4), np.tile(A, 4), n_boot=100, seed=3, points=9)
    ratio = (narrow["high"] - narrow["low"]).to_numpy()[middle] / wide
    assert ((0.3 < ratio) & (ratio < 0.75)).all(), ratio


def test_the_calibration_band_covers_a_calibrated_model_s_truth_and_not_a_miscalibrated_one():
    # Simulated cohorts whose outcomes follow the predictions: the band at the middle of the
    # predictions (0.5) holds the truth in about 95% of them; a model that halves every risk is
    # caught there (the truth at a prediction q is 2q).
    covered = []
    for rep in range(20):
        rng = np.random.default_rng(rep)
        risk = rng.uniform(0.05, 0.95, 200)
        outcome = (rng.uniform(size=200) < risk).astype(int)
        band = ev.calibration_band(outcome, risk, n_boot=100, seed=rep, points=3)
        covered.append(band["low"][1] <= band["predicted"][1] <= band["high"][1])
    assert np.mean(covered) >= 0.8, covered
    halved = ev.calibration_band(outcome, risk / 2, n_boot=100, points=5)
    assert (halved["low"][1:4] > halved["predicted"][1:4]).all(), halved


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_with_what_to_do():
    with pytest.raises(CrcInputError, match=r"has one class only \(3 patients, all high\): the AUC is undefined"):
        ev.auc_ci([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(CrcInputError, match=r"not so in row 2 \(1\.5\), row 3 \(nan\)"):
        ev.threshold_metrics([0, 1, 1], [0.2, 1.5, float("nan")])
    with pytest.raises(CrcInputError, match=r"the outcome must be 0 or 1 for every patient \(found 0, 2\)"):
        ev.auc_ci([0, 2, 0], [0.1, 0.2, 0.3])
    with pytest.raises(CrcInputError, match="3 outcomes but 2 predictions"):
        ev.auc_ci([0, 1, 1], [0.1, 0.2])
    with pytest.raises(CrcInputError, match="'delong' or 'bootstrap'"):
        ev.auc_ci([0, 1], [0.1, 0.2], method="hanley")


def _delong_variance_by_pairs(y, score):
    """DeLong, DeLong & Clarke-Pearson (1988) from their definition: the structural components are
    the means of ψ(case, control) = 1, ½, 0 over every pair, var = s²(V10)/m + s²(V01)/n."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    cases, controls = score[y == 1], score[y == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    return psi.mean(), psi.mean(axis=1).var(ddof=1) / cases.size + psi.mean(axis=0).var(ddof=1) / controls.size


def test_auc_variance_is_the_untruncated_delong_variance_of_proc():
    # pROC::ci.auc(method = "delong") is AUC ± qnorm(0.975) √var, so var(roc) = (width / (2 · 1.96...))²
    z = 1.959963984540054
    for score, ci in ((A, R["ci_a"]), (B, R["ci_b"])):
        auc, variance = ev.auc_variance(Y, score)
        assert variance == pytest.approx(((ci[1] - ci[0]) / (2 * z)) ** 2, rel=1e-9)
        assert (auc, variance) == pytest.approx(_delong_variance_by_pairs(Y, score), rel=1e-12)
    # The small example pROC prints as "0.7228-1": the variance is what the lower bound implies,
    # not the truncated width.
    y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1]
    a = [0.1, 0.2, 0.3, 0.35, 0.5, 0.55, 0.4, 0.6, 0.7, 0.8, 0.9, 0.65, 0.45, 0.52, 0.2, 0.95, 0.3, 0.61, 0.15, 0.75]
    auc, variance = ev.auc_variance(y, a)
    assert (auc, variance) == pytest.approx(_delong_variance_by_pairs(y, a), rel=1e-12)
    assert round(auc - z * math.sqrt(variance), 4) == 0.7228 and auc + z * math.sqrt(variance) > 1
    with pytest.raises(CrcInputError, match="one class only"):
        ev.auc_variance([1, 1, 1], [0.2, 0.5, 0.9])
