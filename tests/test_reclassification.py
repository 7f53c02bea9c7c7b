"""crc_core.metrics.reclassification against R (PredictABEL 1.2-4's own ``reclassification``, Hmisc 4.8-0's
``improveProb``, ``anova(test = "LRT")`` and ``lmtest::lrtest``; tests/reference/reclassification.R),
a worked example from the defining formulas, a patient-by-patient second implementation,
statsmodels' GLM and scipy's chi-square."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from crc_core.metrics import reclassification as rc
from crc_core.errors import CrcInputError

REFERENCE = Path(__file__).resolve().parent / "reference"
DATA = pd.read_csv(REFERENCE / "reclassification_data.csv")
R = json.loads((REFERENCE / "reclassification_r.json").read_text())
Y = DATA["y"].to_numpy()
P_OLD, P_NEW = np.array(R["p_old"]), np.array(R["p_new"])  # round(fitted(glm), 2) of the two R models
CLINICAL = ["dl", "age", "t34", "log_cea"]


def by_measure(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("measure")


# ---------------------------------------------------------------------------------------------
# NRI and IDI against R


def test_nri_idi_and_their_ses_equal_hmisc_improveprob():
    # Hmisc::improveProb(p_old, p_new, y): every estimate and SE, to full precision.
    ip = R["improveProb"]
    table = by_measure(rc.reclassification(Y, P_OLD, P_NEW, ci="asymptotic"))
    for measure, key in (("NRI", "nri"), ("NRI events", "nri.ev"), ("NRI non-events", "nri.ne"), ("IDI", "idi")):
        assert table.loc[measure, "estimate"] == pytest.approx(ip[key], abs=1e-12), measure
        assert table.loc[measure, "se"] == pytest.approx(ip[f"se.{key}"], abs=1e-12), measure
        # print.improveProb's 2P = 2 * pnorm(-abs(z))
        assert table.loc[measure, "p"] == pytest.approx(2 * stats.norm.sf(abs(ip[f"z.{key}"])), rel=1e-9), measure
    counts = rc.reclassification_counts(Y, P_OLD, P_NEW).set_index("group")
    assert counts.loc["events", "n"] == ip["na"] == 73 and counts.loc["non-events", "n"] == ip["nb"] == 77
    assert counts.loc["events", "up"] / 73 == pytest.approx(ip["pup.ev"], abs=1e-15)
    assert counts.loc["events", "down"] / 73 == pytest.approx(ip["pdown.ev"], abs=1e-15)
    assert counts.loc["non-events", "up"] / 77 == pytest.approx(ip["pup.ne"], abs=1e-15)
    assert counts.loc["non-events", "down"] / 77 == pytest.approx(ip["pdown.ne"], abs=1e-15)
    # Some patients tie (rounded probabilities): they count neither up nor down.
    assert counts["unchanged"].tolist() == [1, 5]
    assert counts.loc["events", "mean_change"] == pytest.approx(ip["improveSens"], abs=1e-15)
    assert -counts.loc["non-events", "mean_change"] == pytest.approx(ip["improveSpec"], abs=1e-15)


def test_asymptotic_ci_and_p_are_what_predictabel_prints():
    # PredictABEL::reclassification(data, cOutcome = 1, p_old, p_new, cutoff = c(0, .3, .7, 1)) prints
    #  NRI(Continuous) [95% CI]: 0.6362 [ 0.3399 - 0.9325 ] ; p-value: 3e-05
    #  IDI [95% CI]: 0.0959 [ 0.0494 - 0.1425 ] ; p-value: 5e-05
    printed = {line.split("[")[0].strip(): [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", line.split(":", 1)[1])]
               for line in R["predictabel_printed"]}
    assert printed["NRI(Continuous)"] == [0.6362, 0.3399, 0.9325, 3e-05]
    assert printed["IDI"] == [0.0959, 0.0494, 0.1425, 5e-05]
    table = by_measure(rc.reclassification(Y, P_OLD, P_NEW, ci="asymptotic"))
    for measure, key in (("NRI", "NRI(Continuous)"), ("IDI", "IDI")):
        row = table.loc[measure]
        # PredictABEL rounds the estimate and limits to 4 decimals and the p to 5.
        assert [round(row["estimate"], 4), round(row["low"], 4), round(row["high"], 4), round(row["p"], 5)] == printed[key]
        # ... and its limits are the estimate ± 1.96 SE (the constant).
        assert row["high"] - row["estimate"] == pytest.approx(1.96 * row["se"], rel=1e-12)


def test_worked_example_from_the_defining_formulas():
    # Four events: up, up, down, unchanged; four non-events: down, down, down, up.
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    old = [0.30, 0.50, 0.60, 0.40, 0.50, 0.40, 0.20, 0.10]
    new = [0.50, 0.60, 0.40, 0.40, 0.30, 0.20, 0.10, 0.40]
    table = by_measure(rc.reclassification(y, old, new, ci="asymptotic"))
    # Events: P(up) - P(down) = 2/4 - 1/4 = 0.25; var = (up + down)/n^2 - (up - down)^2/n^3
    # = 3/16 - 1/64 = 11/64.
    assert table.loc["NRI events", "estimate"] == pytest.approx(0.25, abs=1e-15)
    assert table.loc["NRI events", "se"] == pytest.approx(math.sqrt(11 / 64), abs=1e-15)
    # Non-events: P(down) - P(up) = 3/4 - 1/4 = 0.5; var = 4/16 - 4/64 = 12/64.
    assert table.loc["NRI non-events", "estimate"] == pytest.approx(0.5, abs=1e-15)
    assert table.loc["NRI non-events", "se"] == pytest.approx(math.sqrt(12 / 64), abs=1e-15)
    # NRI = 0.25 + 0.5, var = 11/64 + 12/64.
    assert table.loc["NRI", "estimate"] == pytest.approx(0.75, abs=1e-15)
    assert table.loc["NRI", "se"] == pytest.approx(math.sqrt(23 / 64), abs=1e-15)
    # IDI: events' changes 0.2, 0.1, -0.2, 0 (mean 0.025), non-events' -0.2, -0.2, -0.1, 0.3
    # (mean -0.05): IDI = 0.075; SE^2 = var(0.2, 0.1, -0.2, 0)/4 + var(-0.2, -0.2, -0.1, 0.3)/4 with
    # R's var: (0.0875/3)/4 + (0.17/3)/4.
    assert table.loc["IDI", "estimate"] == pytest.approx(0.075, abs=1e-12)
    assert table.loc["IDI", "se"] == pytest.approx(math.sqrt((0.0875 / 3 + 0.17 / 3) / 4), abs=1e-12)
    # CI: estimate ± 1.96 SE; p: two-sided normal.
    assert table.loc["NRI", "low"] == pytest.approx(0.75 - 1.96 * math.sqrt(23 / 64), abs=1e-12)
    assert table.loc["NRI", "p"] == pytest.approx(2 * stats.norm.sf(0.75 / math.sqrt(23 / 64)), rel=1e-12)


def loop_improve_prob(y, old, new):
    """A second implementation, patient by patient, of the same definitions."""
    tallies = {1: {"n": 0, "up": 0, "down": 0, "changes": []}, 0: {"n": 0, "up": 0, "down": 0, "changes": []}}
    for label, before, after in zip(y, old, new):
        tally = tallies[int(label)]
        tally["n"] += 1
        tally["up"] += after > before
        tally["down"] += after < before
        tally["changes"].append(after - before)
    out = {}
    for label, name in ((1, "ev"), (0, "ne")):
        t = tallies[label]
        sign = 1 if label == 1 else -1
        out[f"nri.{name}"] = sign * (t["up"] - t["down"]) / t["n"]
        p_up, p_down = t["up"] / t["n"], t["down"] / t["n"]
        out[f"var.{name}"] = (p_up + p_down - (p_up - p_down) ** 2) / t["n"]  # multinomial: Var(up - down) / n
        mean = sum(t["changes"]) / t["n"]
        out[f"mean.{name}"] = mean
        out[f"var.change.{name}"] = sum((c - mean) ** 2 for c in t["changes"]) / (t["n"] - 1) / t["n"]
    return {"nri": out["nri.ev"] + out["nri.ne"], "se.nri": math.sqrt(out["var.ev"] + out["var.ne"]),
            "nri.ev": out["nri.ev"], "se.nri.ev": math.sqrt(out["var.ev"]),
            "nri.ne": out["nri.ne"], "se.nri.ne": math.sqrt(out["var.ne"]),
            "idi": out["mean.ev"] - out["mean.ne"], "se.idi": math.sqrt(out["var.change.ev"] + out["var.change.ne"])}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equals_a_patient_by_patient_implementation(seed):
    rng = np.random.default_rng(seed)
    y = rng.binomial(1, 0.3, 90)
    old = np.round(rng.uniform(0, 1, 90), 1)  # one decimal: many ties
    new = np.round(np.clip(old + rng.normal(0.05 * (2 * y - 1), 0.2), 0, 1), 1)
    expected = loop_improve_prob(y, old, new)
    table = by_measure(rc.reclassification(y, old, new, ci="asymptotic"))
    for measure, key in (("NRI", "nri"), ("NRI events", "nri.ev"), ("NRI non-events", "nri.ne"), ("IDI", "idi")):
        assert table.loc[measure, "estimate"] == pytest.approx(expected[key], abs=1e-12)
        assert table.loc[measure, "se"] == pytest.approx(expected[f"se.{key}"], abs=1e-12)


def test_a_new_model_equal_to_the_old_improves_nothing():
    table = by_measure(rc.reclassification(Y, P_OLD, P_OLD, ci="asymptotic"))
    assert (table["estimate"] == 0).all()
    assert table["p"].isna().all()  # SE 0: no test (R would print NaN from 0/0)
    boot = by_measure(rc.reclassification(Y, P_OLD, P_OLD, n_boot=200))
    assert (boot[["estimate", "low", "high"]] == 0).all().all() and (boot["p"] == 1).all()


# ---------------------------------------------------------------------------------------------
# The bootstrap


def test_bootstrap_is_stratified_seeded_and_agrees_with_the_asymptotic_se():
    draws = rc.bootstrap_reclassification(Y, P_OLD, P_NEW, n_boot=20000, seed=7)
    assert draws.shape == (20000, 4)
    # Stratified: every resample keeps 73 events and 77 non-events, so the events' NRI is a
    # whole number of events over 73 and the non-events' over 77.
    assert np.allclose(draws[:, 1] * 73, np.round(draws[:, 1] * 73), atol=1e-9)
    assert np.allclose(draws[:, 2] * 77, np.round(draws[:, 2] * 77), atol=1e-9)
    assert np.allclose(draws[:, 0], draws[:, 1] + draws[:, 2])
    # The bootstrap variance of a class's mean is the class's variance (over n) divided by n: for
    # the NRI parts that is exactly Hmisc's (up + down)/n^2 - (up - down)^2/n^3, for the IDI
    # (n - 1)/n of its SE^2. 20000 resamples get within 2%.
    ip = R["improveProb"]
    sd = draws.std(axis=0, ddof=1)
    assert sd[1] == pytest.approx(ip["se.nri.ev"], rel=0.02)
    assert sd[2] == pytest.approx(ip["se.nri.ne"], rel=0.02)
    assert sd[0] == pytest.approx(ip["se.nri"], rel=0.02)
    assert sd[3] == pytest.approx(ip["se.idi"], rel=0.02)
    again = rc.bootstrap_reclassification(Y, P_OLD, P_NEW, n_boot=20000, seed=7)
    assert np.array_equal(draws, again)
    assert not np.array_equal(draws, rc.bootstrap_reclassification(Y, P_OLD, P_NEW, n_boot=20000, seed=8))


def test_bootstrap_ci_and_p_are_the_percentiles_of_the_resamples():
    table = by_measure(rc.reclassification(Y, P_OLD, P_NEW, n_boot=2000, seed=3))
    draws = rc.bootstrap_reclassification(Y, P_OLD, P_NEW, n_boot=2000, seed=3)
    for k, measure in enumerate(rc.MEASURES):
        row = table.loc[measure]
        assert (row["low"], row["high"]) == pytest.approx(tuple(np.percentile(draws[:, k], [2.5, 97.5])), abs=1e-15)
        assert row["se"] == pytest.approx(draws[:, k].std(ddof=1), abs=1e-15)
        assert row["low"] <= row["estimate"] <= row["high"]
        assert row["ci"].startswith("bootstrap (2000 stratified resamples")
    # Every interval leaves 0 out here, so every p is below 0.05; none of the 2000 resamples is
    # at or below 0 for the NRI, so its p is the smallest a 2000-resample bootstrap gives: 2/2001.
    assert (table["low"] > 0).all() and (table["p"] < 0.05).all()
    assert table.loc["NRI", "p"] == pytest.approx(2 / 2001, abs=1e-15)
    k = 1  # the events' NRI: its p counts the resamples at or below 0
    assert table.loc["NRI events", "p"] == pytest.approx(2 * (np.sum(draws[:, k] <= 0) + 1) / 2001, abs=1e-15)
    # Bootstrap and asymptotic intervals agree closely on 150 patients.
    asymptotic = by_measure(rc.reclassification(Y, P_OLD, P_NEW, ci="asymptotic"))
    assert np.allclose(table[["low", "high"]], asymptotic[["low", "high"]], atol=0.02)


def test_the_default_is_the_bootstrap():
    table = rc.reclassification(Y, P_OLD, P_NEW)
    assert table["ci"].str.startswith("bootstrap").all()
    assert table.equals(rc.reclassification(Y, P_OLD, P_NEW, ci="bootstrap", n_boot=2000, seed=0))


# ---------------------------------------------------------------------------------------------
# Patients and refusals


def test_series_are_matched_by_patient():
    ids = [f"P{i:03d}" for i in range(Y.size)]
    y = pd.Series(Y, index=ids)
    shuffled = np.random.default_rng(0).permutation(Y.size)
    old = pd.Series(P_OLD, index=ids).iloc[shuffled]
    new = pd.Series(P_NEW, index=ids).iloc[shuffled[::-1]]
    assert rc.reclassification(y, old, new, ci="asymptotic").equals(rc.reclassification(Y, P_OLD, P_NEW, ci="asymptotic"))


def test_refuses_different_patients():
    y = pd.Series([0, 1, 0, 1, 1], index=["a", "b", "c", "d", "e"])
    old = pd.Series([0.2, 0.6, 0.3, 0.7, 0.5], index=["a", "b", "c", "d", "e"])
    new = pd.Series([0.1, 0.7, 0.2, 0.8, 0.6], index=["a", "b", "c", "d", "x"])
    with pytest.raises(CrcInputError, match=r"same patients: 1 patient\(s\) without a prediction from the new model \(e.g. \['e'\]\)"):
        rc.reclassification(y, old, new)
    twice = pd.Series([0.2, 0.6, 0.3, 0.7, 0.5], index=["a", "b", "c", "d", "d"])
    with pytest.raises(CrcInputError, match=r"\['d'\] appear more than once in the old model"):
        rc.reclassification(y, twice, new)


def test_refuses_different_lengths():
    with pytest.raises(CrcInputError, match="the new model: 5 outcomes but 4 predictions"):
        rc.reclassification([0, 1, 0, 1, 1], [0.2, 0.6, 0.3, 0.7, 0.5], [0.1, 0.7, 0.2, 0.8])


def test_refuses_one_class_and_a_single_event():
    with pytest.raises(CrcInputError, match=r"0 events \(label 1\).*at least two of each"):
        rc.reclassification([0, 0, 0, 0], [0.2, 0.6, 0.3, 0.7], [0.1, 0.7, 0.2, 0.8])
    with pytest.raises(CrcInputError, match=r"1 events \(label 1\)"):
        rc.reclassification([0, 0, 0, 1], [0.2, 0.6, 0.3, 0.7], [0.1, 0.7, 0.2, 0.8])


def test_refuses_probabilities_outside_zero_one_naming_the_row():
    with pytest.raises(CrcInputError, match=r"the new model: predictions must be probabilities between 0 and 1; not so in row 2 \(1.3\)"):
        rc.reclassification([0, 1, 0, 1], [0.2, 0.6, 0.3, 0.7], [0.1, 1.3, 0.2, 0.8])
    with pytest.raises(CrcInputError, match=r"the old model: .* row 3 \(nan\)"):
        rc.reclassification([0, 1, 0, 1], [0.2, 0.6, np.nan, 0.7], [0.1, 0.3, 0.2, 0.8])
    with pytest.raises(CrcInputError, match="outcome must be 0 or 1"):
        rc.reclassification([0, 1, 2, 1], [0.2, 0.6, 0.3, 0.7], [0.1, 0.3, 0.2, 0.8])


def test_refuses_an_unknown_ci_method_and_too_few_resamples():
    with pytest.raises(CrcInputError, match="'bootstrap' or 'asymptotic'; got 'delong'"):
        rc.reclassification(Y, P_OLD, P_NEW, ci="delong")
    with pytest.raises(CrcInputError, match="at least 100 bootstrap resamples"):
        rc.reclassification(Y, P_OLD, P_NEW, n_boot=10)


# ---------------------------------------------------------------------------------------------
# The likelihood-ratio test


def test_likelihood_ratio_test_equals_r_anova_and_lrtest():
    # anova(glm(y ~ dl), glm(y ~ dl + age + t34 + log_cea), test = "LRT"): Deviance 16.928, Df 3,
    # Pr(>Chi) 0.0007313; lmtest::lrtest gives the same Chisq and logLik -86.014 / -77.550.
    result = rc.likelihood_ratio_test(Y, DATA[["dl"]], DATA[CLINICAL])
    assert result["lr_statistic"] == pytest.approx(R["lrt_deviance"], rel=1e-8)
    assert result["lr_statistic"] == pytest.approx(R["lrtest_chisq"], rel=1e-8)
    assert result["df"] == R["lrt_df"] == R["lrtest_df"] == 3
    assert result["p"] == pytest.approx(R["lrt_p"], rel=1e-7)
    assert result["loglik_small"] == pytest.approx(R["loglik_small"], rel=1e-10)
    assert result["loglik_large"] == pytest.approx(R["loglik_large"], rel=1e-10)
    assert result["added"] == ["age", "t34", "log_cea"] and result["n"] == 150


def test_likelihood_ratio_test_equals_statsmodels_glm_and_scipy_chi2():
    # A second fitting path (GLM by IRLS rather than Logit by Newton), scipy's chi-square.
    small = sm.GLM(Y, sm.add_constant(DATA[["dl", "age"]]), family=sm.families.Binomial()).fit()
    large = sm.GLM(Y, sm.add_constant(DATA[CLINICAL]), family=sm.families.Binomial()).fit()
    lr = 2 * (large.llf - small.llf)
    result = rc.likelihood_ratio_test(Y, DATA[["dl", "age"]].to_numpy(), DATA[CLINICAL].to_numpy())
    assert result["lr_statistic"] == pytest.approx(lr, rel=1e-8)
    assert result["lr_statistic"] == pytest.approx(small.deviance - large.deviance, rel=1e-8)
    assert result["p"] == pytest.approx(stats.chi2.sf(lr, 2), rel=1e-7)
    assert result["df"] == 2 and result["added"] == []
    # Intercept only against the DL score: the GLM's null deviance minus its deviance.
    dl = sm.GLM(Y, sm.add_constant(DATA[["dl"]]), family=sm.families.Binomial()).fit()
    null = rc.likelihood_ratio_test(Y, None, DATA[["dl"]])
    assert null["lr_statistic"] == pytest.approx(dl.null_deviance - dl.deviance, rel=1e-8)
    assert null["df"] == 1 and null["added"] == ["dl"]


def test_likelihood_ratio_test_refuses_non_nested_models():
    with pytest.raises(CrcInputError, match="not nested: 'age' is in the smaller model but not in the larger"):
        rc.likelihood_ratio_test(Y, DATA[["dl", "age"]], DATA[["dl", "t34"]])
    other = DATA[CLINICAL].assign(dl=DATA["dl"] * 2)
    with pytest.raises(CrcInputError, match="not nested: 'dl' has different values in the two models"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], other)
    with pytest.raises(CrcInputError, match="not nested: the smaller model's '1' is not among the larger model's"):
        rc.likelihood_ratio_test(Y, DATA[["dl", "age"]].to_numpy(), DATA[["dl", "t34"]].to_numpy())


def test_likelihood_ratio_test_refuses_bad_designs():
    with pytest.raises(CrcInputError, match="adds no variable"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], DATA[["dl"]])
    with pytest.raises(CrcInputError, match="larger model's table has 149 rows but there are 150 outcomes"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], DATA[CLINICAL].iloc[1:])
    missing = DATA[CLINICAL].copy()
    missing.loc[4, "age"] = np.nan
    with pytest.raises(CrcInputError, match=r"'age' of the larger model is missing or not a number in row\(s\) 5"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], missing)
    collinear = DATA[CLINICAL].assign(age_months=DATA["age"] * 12)
    with pytest.raises(CrcInputError, match="larger model's variables are collinear"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], collinear)
    with pytest.raises(CrcInputError, match="one class only"):
        rc.likelihood_ratio_test(np.zeros(150, int), DATA[["dl"]], DATA[CLINICAL])
    separating = DATA[CLINICAL].assign(leak=Y.astype(float))
    with pytest.raises(CrcInputError, match="larger model cannot be fitted: its variables separate high from low"):
        rc.likelihood_ratio_test(Y, DATA[["dl"]], separating)
