"""Table 1 statistics against independent implementations (scipy, statsmodels, hand formulas)
and published worked examples — never only against our own code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.diagnostic import lilliefors
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind

from crc_core import stats
from crc_core.errors import CrcInputError


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov with the Lilliefors correction


@pytest.mark.parametrize("n", [8, 30, 95, 220, 1000])
def test_lilliefors_statistic_equals_statsmodels(n):
    x = rng(n).gamma(2.0, size=n)
    ours = stats.ks_lilliefors(x)
    d, _ = lilliefors(x, dist="norm", pvalmethod="approx")
    assert ours.statistic == pytest.approx(d, abs=1e-12)


def test_lilliefors_statistic_equals_scipy_ks_against_the_fitted_normal():
    x = rng(3).normal(5, 2, size=60)
    expected = sps.kstest(x, "norm", args=(x.mean(), x.std(ddof=1))).statistic
    assert stats.ks_lilliefors(x).statistic == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_lilliefors_small_p_equals_the_dallal_wilkinson_approximation_in_statsmodels(seed):
    x = rng(seed).exponential(size=80)  # clearly skewed: p well below 0.1, where the formula holds
    ours = stats.ks_lilliefors(x)
    _, p = lilliefors(x, dist="norm", pvalmethod="approx")
    assert p < 0.1
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    assert not ours.p_is_lower_bound


@pytest.mark.parametrize(
    ("n", "critical_d"),
    # Dallal & Wilkinson (1986), Table 1: corrected 5% critical values of the Lilliefors statistic.
    [(10, 0.2616), (20, 0.1920), (30, 0.1602)],
)
def test_lilliefors_p_is_five_percent_at_published_critical_values(n, critical_d):
    assert stats._dallal_wilkinson_p(critical_d, n) == pytest.approx(0.05, abs=0.005)


def test_lilliefors_p_above_point_two_is_reported_as_spss_does():
    x = sps.norm.ppf((np.arange(1, 51) - 0.5) / 50)  # as normal as 50 values get
    result = stats.ks_lilliefors(x)
    assert result.p_value == stats.KS_P_CAP and result.p_is_lower_bound


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0], [4.0, 4.0, 4.0, 4.0, 4.0]])
def test_lilliefors_refuses_too_few_or_constant_values(values):
    with pytest.raises(CrcInputError):
        stats.ks_lilliefors(values)


# ---------------------------------------------------------------------------------------------
# Shapiro-Wilk


def test_shapiro_wilk_reproduces_shapiro_and_wilks_1965_worked_example():
    # Shapiro & Wilk (1965), section 4: weights (lb) of 11 men; W = 0.79, significant at 1%.
    weights = [148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236]
    result = stats.shapiro_wilk(weights)
    assert result.statistic == pytest.approx(0.79, abs=0.005)
    assert result.p_value < 0.01


# ---------------------------------------------------------------------------------------------
# Levene, t-tests


def test_levene_mean_equals_anova_on_absolute_deviations_from_the_mean():
    a, b = rng(1).normal(0, 1, 40), rng(2).normal(0, 2.5, 55)
    f, p = sps.f_oneway(np.abs(a - a.mean()), np.abs(b - b.mean()))
    result = stats.levene_mean(a, b)
    assert result.statistic == pytest.approx(f, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)


@pytest.mark.parametrize(("equal_var", "usevar"), [(True, "pooled"), (False, "unequal")])
def test_t_test_equals_statsmodels(equal_var, usevar):
    a, b = rng(4).normal(10, 2, 33), rng(5).normal(11, 3, 21)
    t, p, _ = sm_ttest_ind(a, b, usevar=usevar)
    result = stats.t_test(a, b, equal_var)
    assert result.statistic == pytest.approx(t, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert result.test == (stats.T_STUDENT if equal_var else stats.T_WELCH)


# ---------------------------------------------------------------------------------------------
# Mann-Whitney U as Z


def test_mann_whitney_p_equals_scipy_asymptotic_without_continuity_correction():
    a = rng(6).integers(0, 8, 40).astype(float)  # many ties
    b = rng(7).integers(1, 9, 27).astype(float)
    scipy_result = sps.mannwhitneyu(a, b, method="asymptotic", use_continuity=False)
    ours = stats.mann_whitney_z(a, b)
    assert ours.p_value == pytest.approx(scipy_result.pvalue, rel=1e-10)
    assert ours.statistic <= 0  # SPSS's Z comes from the smaller U


def test_mann_whitney_z_by_hand_on_a_small_tied_example():
    # Ranks of [1, 2, 2, 3 | 2, 3, 4, 5]: 1, 3, 3, 5.5 | 3, 5.5, 7, 8 → R1 = 12.5, U1 = 2.5.
    a, b = [1, 2, 2, 3], [2, 3, 4, 5]
    ties = (3**3 - 3) + (2**3 - 2)
    variance = 4 * 4 / 12 * ((8 + 1) - ties / (8 * 7))
    z = (2.5 - 8) / math.sqrt(variance)
    result = stats.mann_whitney_z(a, b)
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(2 * sps.norm.cdf(z), rel=1e-12)
    assert stats.mann_whitney_z(b, a).statistic == pytest.approx(z, rel=1e-12)  # symmetric


def test_mann_whitney_all_tied_gives_z_zero_p_one():
    result = stats.mann_whitney_z([2, 2, 2], [2, 2])
    assert (result.statistic, result.p_value) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# χ² and Fisher


def test_chi_square_equals_the_pearson_formula_without_continuity_correction():
    table = np.array([[20, 15, 9], [30, 12, 14]])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    result, why = stats.chi_square_or_fisher(table)
    assert result.test == stats.CHI_SQUARE
    assert result.statistic == pytest.approx(chi2, rel=1e-12)
    assert result.p_value == pytest.approx(sps.chi2.sf(chi2, 2), rel=1e-12)
    assert "df = 2" in why


def test_fisher_reproduces_the_lady_tasting_tea():
    # Fisher (1935): 8 cups, 3 of 4 milk-first guessed right; two-sided p = 34/70 = 0.4857.
    result, why = stats.chi_square_or_fisher(np.array([[3, 1], [1, 3]]))
    assert result.test == stats.FISHER
    assert result.p_value == pytest.approx(34 / 70, abs=1e-12)
    assert "expected counts < 5" in why


def test_fisher_only_when_forced_or_small_and_only_for_two_by_two():
    big = np.array([[30, 20], [25, 25]])
    assert stats.chi_square_or_fisher(big)[0].test == stats.CHI_SQUARE
    assert stats.chi_square_or_fisher(big, force=stats.FISHER)[0].test == stats.FISHER
    with pytest.raises(CrcInputError, match="2×2"):
        stats.chi_square_or_fisher(np.array([[1, 2, 3], [3, 2, 1]]), force=stats.FISHER)


# ---------------------------------------------------------------------------------------------
# Quartiles and SMD


def test_quartiles_use_spss_weighted_average():
    # SPSS (HAVERAGE) and R type 6 on 1..10: Q1 at 2.75, median 5.5, Q3 at 8.25.
    assert stats.spss_quartiles(range(1, 11)) == pytest.approx((5.5, 2.75, 8.25))


def test_smd_continuous_uses_the_pooled_sd():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0, 7.0]
    pooled = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    assert stats.smd_continuous(a, b) == pytest.approx(abs(np.mean(a) - np.mean(b)) / pooled)


def test_smd_categorical_reduces_to_the_binary_formula():
    p1, p2 = 30 / 100, 45 / 90
    binary = abs(p1 - p2) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    assert stats.smd_categorical([70, 30], [45, 45]) == pytest.approx(binary, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# table_one


def two_groups(n_train: int = 70, n_validation: int = 30, seed: int = 0) -> pd.DataFrame:
    r = rng(seed)
    n = n_train + n_validation
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "split": ["train"] * n_train + ["validation"] * n_validation,
            "age": r.normal(60, 10, n).round(1),
            "crp": r.lognormal(1.0, 1.0, n).round(2),
            "sex": r.choice(["male", "female"], n),
            "pT": r.choice(["T1", "T2", "T3", "T4"], n, p=[0.1, 0.2, 0.5, 0.2]),
        }
    )


def test_table_one_has_the_documented_columns_and_group_headers():
    table = stats.table_one(two_groups(), "split")
    assert list(table.columns[:7]) == [
        "variable", "level", "train (n = 70)", "validation (n = 30)", "statistic", "test", "p_value",
    ]
    assert {"mark", "missing", "reason"} <= set(table.columns)


def test_table_one_chooses_t_for_normal_and_mann_whitney_for_skewed():
    df = two_groups()
    table = stats.table_one(df, "split", ["age", "crp"]).set_index("variable")
    train, validation = (df[df.split == g] for g in ("train", "validation"))
    # age: normal in both → t-test, Student or Welch as Levene says.
    levene_p = sps.levene(train.age, validation.age, center="mean").pvalue
    expected = sps.ttest_ind(train.age, validation.age, equal_var=levene_p >= 0.05)
    assert table.loc["age", "test"] in (stats.T_STUDENT, stats.T_WELCH)
    assert table.loc["age", "statistic"] == pytest.approx(expected.statistic)
    assert table.loc["age", "p_value"] == pytest.approx(expected.pvalue)
    assert table.loc["age", "mark"] == "1"
    assert f"{train.age.mean():.2f} ± {train.age.std():.2f}" == table.loc["age", "train (n = 70)"]
    # crp: log-normal → Mann-Whitney; p equals scipy's asymptotic p without continuity correction.
    assert table.loc["crp", "test"] == stats.MANN_WHITNEY
    mw = sps.mannwhitneyu(train.crp, validation.crp, method="asymptotic", use_continuity=False)
    assert table.loc["crp", "p_value"] == pytest.approx(mw.pvalue)
    assert table.loc["crp", "mark"] == "2"
    assert "KS p" in table.loc["crp", "reason"]


def test_table_one_categorical_rows_percentages_and_chi_square():
    df = two_groups()
    table = stats.table_one(df, "split", ["pT"])
    header = table.iloc[0]
    crosstab = pd.crosstab(df.pT, df.split)
    chi2 = sps.chi2_contingency(crosstab.to_numpy(), correction=False)
    assert header["test"] == stats.CHI_SQUARE and header["mark"] == "3"
    assert header["statistic"] == pytest.approx(chi2.statistic)
    assert list(table["level"][1:]) == ["T1", "T2", "T3", "T4"]
    t3 = table[table.level == "T3"].iloc[0]
    count = int(crosstab.loc["T3", "train"])
    assert t3["train (n = 70)"] == f"{count} ({100 * count / 70:.1f}%)"


def test_table_one_uses_fisher_for_a_sparse_two_by_two():
    df = pd.DataFrame({"split": ["train"] * 12 + ["validation"] * 8, "smoker": ["yes"] * 2 + ["no"] * 10 + ["yes"] * 3 + ["no"] * 5})
    header = stats.table_one(df, "split", ["smoker"]).iloc[0]
    assert header["test"] == stats.FISHER and header["mark"] == "4"
    expected = sps.fisher_exact([[10, 5], [2, 3]]).pvalue
    assert header["p_value"] == pytest.approx(expected)


def test_table_one_forced_tests_and_types():
    df = two_groups()
    options = stats.TableOneOptions(force_test={"age": "mann-whitney", "crp": "welch"})
    table = stats.table_one(df, "split", ["age", "crp"], options=options).set_index("variable")
    assert table.loc["age", "test"] == stats.MANN_WHITNEY
    assert table.loc["crp", "test"] == stats.T_WELCH
    assert "forced" in table.loc["age", "reason"]
    as_categorical = stats.table_one(df.assign(grade=df.index % 3), "split", ["grade"], continuous=["grade"])
    assert as_categorical.iloc[0]["level"] in ("mean ± SD", "median (Q1, Q3)")
    with pytest.raises(CrcInputError, match="categorical"):
        stats.table_one(df, "split", ["sex"], options=stats.TableOneOptions(force_test={"sex": "t"}))


def test_table_one_counts_missing_values_per_variable():
    df = two_groups()
    df.loc[[0, 5, 90], "age"] = np.nan
    row = stats.table_one(df, "split", ["age"]).iloc[0]
    assert row["missing"] == 3


def test_table_one_compares_by_a_binary_label_with_named_groups():
    df = two_groups().assign(tsr_high=lambda d: (d.index % 2).astype(int))
    table = stats.table_one(df, "tsr_high", ["age"])
    assert "tsr_high = 0 (n = 50)" in table.columns and "tsr_high = 1 (n = 50)" in table.columns


def test_table_one_refuses_three_groups_and_says_which():
    df = two_groups()
    df.loc[:9, "split"] = "external"
    with pytest.raises(CrcInputError, match="has 3"):
        stats.table_one(df, "split", ["age"])
    table = stats.table_one(df, "split", ["age"], groups=["train", "validation"])
    assert "validation (n = 30)" in table.columns


def test_table_one_skips_a_test_for_a_group_with_fewer_than_two_values_and_says_why():
    df = pd.DataFrame({"split": ["train"] * 10 + ["validation"], "age": np.arange(11.0)})
    row = stats.table_one(df, "split", ["age"]).iloc[0]
    assert row["test"] == stats.NO_TEST and math.isnan(row["p_value"])
    assert "fewer than 2 values" in row["reason"]


def test_table_one_skips_a_test_for_a_constant_variable_and_says_why():
    df = pd.DataFrame({"split": ["train"] * 10 + ["validation"] * 10, "dose": [5.0] * 20, "site": ["colon"] * 20})
    table = stats.table_one(df, "split", ["dose", "site"], continuous=["dose"])
    headers = table[table.test != ""].set_index("variable")
    assert list(headers.index) == ["dose", "site"]
    assert (headers["test"] == stats.NO_TEST).all()
    assert headers["reason"].str.contains("constant in both groups").all()


def test_table_one_names_a_numeric_column_holding_text():
    df = two_groups().astype({"age": object})
    df.loc[4, "age"] = "sixty"
    with pytest.raises(CrcInputError, match="'age' holds text"):
        stats.table_one(df, "split", ["age"], continuous=["age"])


def test_table_one_smd_option_and_journal_view():
    table = stats.table_one(two_groups(), "split", options=stats.TableOneOptions(smd=True))
    assert "smd" in table.columns and table["smd"].notna().any()
    view = stats.journal_view(table)
    assert list(view.columns) == ["Variable", "train (n = 70)", "validation (n = 30)", "t/Z/χ² value", "P value", "SMD"]
    assert any(v.endswith(("¹", "²", "³", "⁴")) for v in view["t/Z/χ² value"])
    assert stats.used_footnotes(table)[0].startswith("1 ") or stats.used_footnotes(table)[0].startswith("2 ")


def test_shapiro_option_is_used_for_normality():
    table = stats.table_one(two_groups(), "split", ["age"], options=stats.TableOneOptions(normality="shapiro"))
    assert "SW p" in table.iloc[0]["reason"]


def test_detect_kind():
    assert stats.detect_kind(pd.Series(np.linspace(0, 1, 50))) == stats.CONTINUOUS
    assert stats.detect_kind(pd.Series([0, 1, 2, 3] * 5)) == stats.CATEGORICAL
    assert stats.detect_kind(pd.Series(["a", "b"])) == stats.CATEGORICAL
