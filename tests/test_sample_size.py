"""crc_core.metrics.sample_size against the pmvalsampsize package (0.2.1, requirements-reference.txt): the
examples its documentation prints, and further cases computed by calling it here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pmvalsampsize.pmvalsampsize import pmvalsampsize
from scipy import special, stats
from sklearn.metrics import roc_auc_score

from crc_core.errors import CrcInputError
from crc_core.metrics.sample_size import (CSTATISTIC, LARGEST, NET_BENEFIT, OE, SLOPE, linear_predictor_summary,
                                  validation_sample_size)

DATA = pd.read_csv(Path(__file__).resolve().parent / "reference" / "evaluation_data.csv")


def sizes(table: pd.DataFrame) -> dict[str, int]:
    return table.set_index("criterion")["n"].to_dict()


def package_sizes(**options) -> tuple[list[int], dict]:
    """The criteria's n as pmvalsampsize lists them (its results_table, separator and "Final SS" left out)."""
    out = pmvalsampsize(type="b", noprint=True, **options)
    rows = [row for row in out["results_table"] if isinstance(row, list) and row[0] != "Final SS"]
    return [int(row[1]) for row in rows], out


# ---------------------------------------------------------------------------------------------
# The examples of pmvalsampsize's documentation (docs/example.ipynb of its repository, from Riley
# et al. 2021's heart-valve example: prevalence 0.018, C 0.8, O/E CI width 1)


def test_normal_linear_predictor_example():
    # pmvalsampsize(type="b", prevalence=0.018, cstatistic=0.8, lpnormal=(-5, 2.5), oeciwidth=1)
    # prints: O/E 905, C-slope 4544, C statistic 4252; final 4544 "with 82 events"
    table = validation_sample_size(0.8, 0.018, -5, 2.5, oe_ci_width=1)
    assert sizes(table) == {OE: 905, SLOPE: 4544, CSTATISTIC: 4252, LARGEST: 4544}
    largest = table.set_index("criterion").loc[LARGEST]
    assert largest["events"] == pytest.approx(4544 * 0.018) and math.ceil(largest["events"]) == 82
    # ... and its SE column: 0.246 (O/E), 0.051 (slope), 0.026 (C statistic)
    assert table["se"].head(3).round(3).tolist() == [0.246, 0.051, 0.026]


def test_beta_risks_example():
    # pmvalsampsize(type="b", prevalence=0.018, cstatistic=0.8, lpbeta=(0.5, 0.5), oeciwidth=1)
    # prints: 905, 1644, 4252; final 4252 "with 77 events"
    table = validation_sample_size(0.8, 0.018, lp_beta=(0.5, 0.5), oe_ci_width=1)
    assert sizes(table) == {OE: 905, SLOPE: 1644, CSTATISTIC: 4252, LARGEST: 4252}
    assert math.ceil(table["events"].iloc[-1]) == 77


def test_binormal_from_the_cstatistic_example():
    # pmvalsampsize(type="b", prevalence=0.018, cstatistic=0.8, lpcstat=-4.7, oeciwidth=1) prints
    # "Mean in non-event group = -4.7" (its first guess within tolerance), then 905, 17080, 4252.
    table = validation_sample_size(0.8, 0.018, lp_nonevent_mean=-4.7, oe_ci_width=1)
    assert sizes(table) == {OE: 905, SLOPE: 17080, CSTATISTIC: 4252, LARGEST: 17080}
    # Without a non-event mean ours is logit(0.018) - probit(0.8)^2 = -4.708 instead of the
    # package's 0.1-step search result -4.7: the same n within 1%.
    default = sizes(validation_sample_size(0.8, 0.018, oe_ci_width=1))
    assert default[SLOPE] != 17080 and default[SLOPE] == pytest.approx(17080, rel=0.01)
    assert (default[OE], default[CSTATISTIC]) == (905, 4252)
    assert "-4.708" in validation_sample_size(0.8, 0.018)["lp_distribution"].iloc[0]
    assert special.logit(0.018) - stats.norm.ppf(0.8) ** 2 == pytest.approx(-4.7076, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Against the package, called here


@pytest.mark.parametrize("options", [
    # pmvalsampsize's README: pmvalsampsize(type="b", cstatistic=0.8, lpbeta=(1.33, 1.75), prevalence=0.43)
    dict(cstatistic=0.8, prevalence=0.43, lpbeta=(1.33, 1.75)),
    # ours: a CT model like the paper's (AUC 0.78, 35% high) with its LP's mean and SD, stricter widths
    dict(cstatistic=0.78, prevalence=0.35, lpnormal=(-0.7, 1.1), oeciwidth=0.3, csciwidth=0.25, cstatciwidth=0.08),
    # O/E anticipated below 1, another seed and fewer simulated patients
    dict(cstatistic=0.7, prevalence=0.2, lpnormal=(-1.6, 0.9), oe=0.8, seed=7, simobs=200_000),
])
def test_equals_pmvalsampsize_without_net_benefit(options):
    expected, out = package_sizes(**options)
    kwargs = dict(oe_ci_width=options.get("oeciwidth", 0.2), slope_ci_width=options.get("csciwidth", 0.2),
                  cstat_ci_width=options.get("cstatciwidth", 0.1), oe=options.get("oe", 1.0),
                  seed=options.get("seed", 123456), simulated_patients=options.get("simobs", 1_000_000))
    if "lpnormal" in options:
        table = validation_sample_size(options["cstatistic"], options["prevalence"], *options["lpnormal"], **kwargs)
    else:
        table = validation_sample_size(options["cstatistic"], options["prevalence"], lp_beta=options["lpbeta"], **kwargs)
    assert table["n"].tolist() == [*expected, out["sample_size"]]
    assert table["events"].iloc[-1] == pytest.approx(out["events"], rel=1e-12)
    assert table["se"].iloc[:3].tolist() == pytest.approx([out["se_oe"], out["se_cslope"], out["se_cstat"]], rel=1e-9)


def test_net_benefit_with_sensitivity_and_specificity_from_the_simulated_cohort():
    # pmvalsampsize(type="b", cstatistic=0.8, prevalence=0.3, lpnormal=(-0.5, 1.4), threshold=0.25)
    expected, out = package_sizes(cstatistic=0.8, prevalence=0.3, lpnormal=(-0.5, 1.4), threshold=0.25)
    table = validation_sample_size(0.8, 0.3, -0.5, 1.4, threshold=0.25)
    assert table["criterion"].tolist() == [OE, SLOPE, CSTATISTIC, NET_BENEFIT, LARGEST]
    assert table["n"].tolist() == [*expected, out["sample_size"]]
    assert (table["sensitivity"].iloc[0], table["specificity"].iloc[0]) == (out["sensitivity"], out["specificity"])
    assert table["se"].iloc[3] == out["se_st_nb"]


def test_net_benefit_with_anticipated_sensitivity_and_specificity():
    # pmvalsampsize 0.2.1 fails when given sensitivity and specificity (UnboundLocalError for its
    # additional metrics), so the reference is its own n for the same values from the simulated
    # cohort: pmvalsampsize(type="b", cstatistic=0.8, prevalence=0.3, lpnormal=(-0.5, 1.4),
    # threshold=0.25) derives sensitivity 0.889, specificity 0.49 and needs 498 for net benefit.
    _, out = package_sizes(cstatistic=0.8, prevalence=0.3, lpnormal=(-0.5, 1.4), threshold=0.25)
    assert (out["sensitivity"], out["specificity"]) == (0.889, 0.49)
    table = validation_sample_size(0.8, 0.3, -0.5, 1.4, threshold=0.25, sensitivity=0.889, specificity=0.49)
    assert table.set_index("criterion").loc[NET_BENEFIT, "n"] == 498
    # Riley et al. (2021) eq. 13 by hand, for other values: w = 0.6/0.4 * 0.1/0.9 and SE 0.026
    # (0.1 / 3.92 on the 0.0001 grid, rounded to three decimals as pmvalsampsize does).
    table = validation_sample_size(0.75, 0.4, -0.5, 1, threshold=0.1, sensitivity=0.95, specificity=0.3,
                                   nb_ci_width=0.1)
    w = 0.6 / 0.4 * 0.1 / 0.9
    by_hand = (0.95 * 0.05 / 0.4 + w * w * 0.3 * 0.7 / 0.6 + w * w * 0.7 ** 2 / (0.4 * 0.6)) / 0.026 ** 2
    assert table.set_index("criterion").loc[NET_BENEFIT, ["n", "se"]].tolist() == [math.ceil(by_hand), 0.026]


def test_every_row_carries_the_inputs_and_the_largest_is_the_maximum():
    table = validation_sample_size(0.8, 0.3, -0.5, 1.4, threshold=0.25)
    assert (table[["cstatistic", "prevalence", "lp_mean", "lp_sd", "threshold"]].drop_duplicates().values.tolist()
            == [[0.8, 0.3, -0.5, 1.4, 0.25]])
    assert table["n"].iloc[-1] == table["n"].iloc[:-1].max() and table["n"].dtype.kind == "i"
    assert table["events"].tolist() == pytest.approx((table["n"] * 0.3).tolist())
    assert "1,000,000 simulated patients, seed 123456" in table["lp_distribution"].iloc[0]
    assert table["lp_mean"].notna().all()
    assert validation_sample_size(0.8, 0.3, lp_beta=(2, 5))[["lp_mean", "lp_sd", "threshold"]].isna().all().all()


# ---------------------------------------------------------------------------------------------
# From a run's validation predictions


def test_linear_predictor_summary_of_a_cohort():
    y, prob = DATA["y"].to_numpy(), DATA["a"].to_numpy()
    summary = linear_predictor_summary(y, prob)
    lp = np.log(prob / (1 - prob))
    assert summary == pytest.approx({"cstatistic": roc_auc_score(y, prob), "prevalence": y.mean(),
                                     "lp_mean": lp.mean(), "lp_sd": pd.Series(lp).std()}, rel=1e-12)
    expected, _ = package_sizes(cstatistic=summary["cstatistic"], prevalence=summary["prevalence"],
                                lpnormal=(summary["lp_mean"], summary["lp_sd"]))
    assert validation_sample_size(**summary)["n"].tolist()[:-1] == expected


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("cstatistic", [0.5, 0.3, 1.0, 1.2, float("nan"), "0.8", True])
def test_a_cstatistic_outside_half_to_one_is_refused(cstatistic):
    with pytest.raises(CrcInputError, match="anticipated C-statistic must"):
        validation_sample_size(cstatistic, 0.3, -1, 1)


@pytest.mark.parametrize("prevalence", [0, 1, -0.1, 30])
def test_a_prevalence_outside_zero_to_one_is_refused(prevalence):
    with pytest.raises(CrcInputError, match=r"prevalence \(the share of patients with the outcome\) must lie between 0 and 1"):
        validation_sample_size(0.8, prevalence, -1, 1)


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.2])
def test_a_threshold_outside_zero_to_one_is_refused(threshold):
    with pytest.raises(CrcInputError, match="risk threshold for the net benefit must lie between 0 and 1"):
        validation_sample_size(0.8, 0.3, -1, 1, threshold=threshold)


@pytest.mark.parametrize("events", [0, 6])
def test_a_cohort_with_one_outcome_only_is_refused(events):
    y = [1] * events + [0] * (6 - events)
    with pytest.raises(CrcInputError, match=f"validation cohort has no patients with{'out' if events else ''} the outcome"):
        linear_predictor_summary(y, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


@pytest.mark.parametrize("options, message", [
    (dict(lp_mean=-1), "both the mean and the SD of the linear predictor, or neither; got only the mean"),
    (dict(lp_sd=1), "got only the SD"),
    (dict(lp_mean=-1, lp_sd=0), "SD of the linear predictor .* must lie above 0"),
    (dict(lp_mean=-1, lp_sd=1, lp_beta=(1, 2)), "one distribution of the linear predictor; got lp_mean and lp_sd and lp_beta"),
    (dict(lp_beta=(1, 0)), "beta distribution's beta must lie above 0"),
    (dict(lp_beta=1.3), r"lp_beta must be the two parameters \(alpha, beta\)"),
    (dict(lp_mean=-1, lp_sd=1, threshold=0.2, sensitivity=0.8), "both the anticipated sensitivity and specificity"),
    (dict(lp_mean=-1, lp_sd=1, sensitivity=0.8, specificity=0.6), "give its risk threshold too"),
    (dict(lp_mean=-1, lp_sd=1, threshold=0.2, sensitivity=1.3, specificity=0.6), "anticipated sensitivity must lie between 0 and 1"),
    (dict(lp_mean=-1, lp_sd=1, oe_ci_width=0), "target CI width of the O/E must lie above 0"),
    (dict(lp_mean=-1, lp_sd=1, simulated_patients=10), "at least 1000"),
])
def test_inconsistent_options_are_refused_by_name(options, message):
    with pytest.raises(CrcInputError, match=message):
        validation_sample_size(0.8, 0.3, **options)
