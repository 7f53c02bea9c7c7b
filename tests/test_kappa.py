"""Cohen's kappa and its Fleiss-Cohen-Everitt standard error (crc_core.metrics.kappa)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa

from crc_core.errors import CrcInputError
from crc_core.metrics.kappa import agreement_weights, cohen_kappa, kappa_from_table

# SAS/STAT User's Guide, PROC FREQ, "Getting Started: Agreement Study" (data set SkinCondition):
# two dermatologists rate 88 patients terrible / poor / marginal / clear.
SKIN_CONDITION = [[10, 4, 1, 0], [5, 10, 12, 2], [2, 4, 12, 5], [0, 2, 6, 13]]


def _expand(table) -> tuple[list[int], list[int]]:
    """Per-patient ratings (category positions) from a contingency table."""
    first, second = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            first += [i] * int(count)
            second += [j] * int(count)
    return first, second


def test_sas_skin_condition_simple_kappa_ase_and_ci():
    result = kappa_from_table(SKIN_CONDITION)
    # SAS PROC FREQ printout, "Simple Kappa Coefficient": Kappa 0.3449, ASE 0.0724,
    # 95% Lower Conf Limit 0.2030, 95% Upper Conf Limit 0.4868.
    assert result.kappa == pytest.approx(0.3449, abs=5e-5)
    assert result.se == pytest.approx(0.0724, abs=5e-5)
    assert result.ci_low == pytest.approx(0.2030, abs=5e-5)
    assert result.ci_high == pytest.approx(0.4868, abs=5e-5)
    assert result.n == 88


def test_sas_skin_condition_weighted_kappa_cicchetti_allison():
    first, second = _expand(SKIN_CONDITION)
    result = cohen_kappa(first, second, weights="linear")
    # SAS PROC FREQ printout, "Weighted Kappa Coefficient" (default Cicchetti-Allison weights):
    # Weighted Kappa 0.5082, ASE 0.0655, 95% Confidence Limits 0.3798 0.6366.
    assert result.kappa == pytest.approx(0.5082, abs=5e-5)
    assert result.se == pytest.approx(0.0655, abs=5e-5)
    assert result.ci_low == pytest.approx(0.3798, abs=5e-5)
    assert result.ci_high == pytest.approx(0.6366, abs=5e-5)


def test_sas_printout_quoted_in_statsmodels_tests_including_h0_test():
    table = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
    simple = kappa_from_table(table)
    # SAS printout quoted in statsmodels/stats/tests/test_inter_rater.py (TestUnweightedCohens):
    # Kappa 0.4842, ASE 0.1380, CI 0.2137-0.7547; ASE under H0 0.1484, Z 3.2626, two-sided p 0.0011.
    assert [simple.kappa, simple.se, simple.ci_low, simple.ci_high] == pytest.approx(
        [0.4842, 0.1380, 0.2137, 0.7547], abs=5e-5
    )
    assert [simple.se_null, simple.z, simple.p_value] == pytest.approx([0.1484, 3.2626, 0.0011], abs=5e-5)
    weighted = kappa_from_table(table, weights="linear")
    # Same source (TestWeightedCohens): Kappa 0.4701, ASE 0.1457, CI 0.1845-0.7558,
    # ASE under H0 0.1426, Z 3.2971, two-sided p 0.0010.
    assert [weighted.kappa, weighted.se, weighted.ci_low, weighted.ci_high] == pytest.approx(
        [0.4701, 0.1457, 0.1845, 0.7558], abs=5e-5
    )
    assert [weighted.se_null, weighted.z, weighted.p_value] == pytest.approx([0.1426, 3.2971, 0.0010], abs=5e-5)


@pytest.mark.parametrize("weights", ["none", "linear", "quadratic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_estimate_matches_scikit_learn(weights, seed):
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 4, 60)
    # a second reader who mostly agrees, sometimes one grade off
    second = np.clip(first + rng.choice([-1, 0, 0, 0, 1], 60), 0, 3)
    expected = cohen_kappa_score(first, second, weights=None if weights == "none" else weights, labels=[0, 1, 2, 3])
    assert cohen_kappa(first, second, weights=weights).kappa == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("weights", ["linear", "quadratic"])
def test_weights_use_values_so_an_unused_middle_step_still_counts(weights):
    # TSR read in 10% steps; nobody scored 40%, but 30% vs 50% is still two steps apart.
    first = [30, 30, 50, 50, 60, 30, 60, 50]
    second = [30, 50, 50, 60, 60, 30, 50, 30]
    full_scale = list(range(0, 101, 10))
    expected = cohen_kappa_score(first, second, weights=weights, labels=full_scale)
    assert cohen_kappa(first, second, weights=weights).kappa == pytest.approx(expected, abs=1e-12)
    # scikit-learn's default (observed levels by position) differs here, which is why we use values
    observed_only = cohen_kappa_score(first, second, weights=weights)
    assert abs(observed_only - expected) > 1e-3


@pytest.mark.parametrize("wt", [None, "linear", "quadratic"])
def test_se_ci_and_null_test_match_statsmodels(wt):
    rng = np.random.default_rng(7)
    table = rng.integers(0, 12, size=(4, 4)) + np.diag([15, 9, 11, 14])
    reference = sm_cohens_kappa(table, wt=wt)
    ours = kappa_from_table(table, weights=wt or "none")
    assert ours.kappa == pytest.approx(reference.kappa, abs=1e-12)
    assert ours.se == pytest.approx(reference.std_kappa, abs=1e-12)
    assert ours.se_null == pytest.approx(reference.std_kappa0, abs=1e-12)
    assert ours.ci_low == pytest.approx(reference.kappa_low, abs=1e-9)
    assert ours.ci_high == pytest.approx(reference.kappa_upp, abs=1e-9)
    assert ours.p_value == pytest.approx(reference.pvalue_two_sided, abs=1e-9)


def test_missing_pairs_are_left_out_and_percent_agreement():
    result = cohen_kappa([1, 2, None, 3, 2], [1, 2, 2, float("nan"), 1])
    assert result.n == 3
    assert result.percent_agreement == pytest.approx(200 / 3)
    assert result.kappa == pytest.approx(cohen_kappa_score([1, 2, 2], [1, 2, 1]))


def test_perfect_agreement_has_kappa_one_and_zero_se():
    result = cohen_kappa([0, 1, 2, 3, 1, 2], [0, 1, 2, 3, 1, 2], weights="quadratic")
    assert result.kappa == pytest.approx(1.0)
    assert result.se == pytest.approx(0.0, abs=1e-12)


def test_one_category_for_everyone_gives_nan_not_an_error():
    result = cohen_kappa([2, 2, 2], [2, 2, 2])
    assert np.isnan(result.kappa) and np.isnan(result.se)
    assert result.percent_agreement == 100


def test_wider_confidence_gives_wider_interval():
    narrow = kappa_from_table(SKIN_CONDITION, confidence=0.90)
    wide = kappa_from_table(SKIN_CONDITION, confidence=0.99)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low


def test_agreement_weights_linear_and_quadratic():
    linear = agreement_weights([0, 1, 2, 3], "linear")
    quadratic = agreement_weights([0, 1, 2, 3], "quadratic")
    assert linear[0].tolist() == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert quadratic[0].tolist() == pytest.approx([1, 8 / 9, 5 / 9, 0])


def test_bad_inputs():
    with pytest.raises(CrcInputError, match="different numbers of ratings"):
        cohen_kappa([1, 2, 3], [1, 2])
    with pytest.raises(CrcInputError, match="at least 2 patients read by both pathologists"):
        cohen_kappa([1, None], [1, 2])
    with pytest.raises(CrcInputError, match="not among the categories"):
        cohen_kappa([0, 1, 4], [0, 1, 1], categories=[0, 1, 2, 3])
    with pytest.raises(CrcInputError, match="must be square"):
        kappa_from_table([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(CrcInputError, match="weights must be one of none, linear, quadratic"):
        kappa_from_table(SKIN_CONDITION, weights="cubic")
    with pytest.raises(CrcInputError, match="confidence level must be between 0 and 1"):
        kappa_from_table(SKIN_CONDITION, confidence=95)


def test_the_agreement_table_for_people_has_words_and_one_number_of_decimals_per_column():
    # Found in use: the Labels page showed item/weights/ci_low with raw names and 0.6 beside 0.61234.
    import pandas as pd

    from crc_core.metrics.kappa import agreement_for_people

    raw = pd.DataFrame({"item": ["tsr_percent", "til_grade"], "weights": ["none", "quadratic"], "n": [315, 315],
                        "percent_agreement": [60.0, 71.42857], "kappa": [0.6, 0.812345], "se": [0.04, 0.0251],
                        "ci_low": [0.52, 0.763], "ci_high": [0.68, 0.8615]})
    shown = agreement_for_people(raw)
    assert list(shown.columns) == ["Reading", "Kappa", "Patients", "Agreement (%)", "κ", "SE", "95% CI"]
    assert shown.iloc[0].tolist() == ["TSR (% stroma)", "unweighted", 315, "60.0", "0.600", "0.040", "0.520 to 0.680"]
    assert shown.iloc[1].tolist() == ["TIL grade (0-3)", "quadratic weights", 315, "71.4", "0.812", "0.025", "0.763 to 0.862"]
