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

from crc_core.cohort import table1 as stats
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


# R 4.2.2, nortest 1.0.4: lillie.test((1:n)^power), printed with 17 digits. Above 0.1 lillie.test
# leaves Dallal-Wilkinson for Stephens' modified statistic (found in use: FBG 0.1278 against R's
# 0.1335); the cases cover both of its reachable intervals, n over 100, and below 0.1.
LILLIE_TEST = [
    (20, 1.5, 0.10734327769794544, 0.78966590607232767),  # D* in (0.302, 0.5]
    (50, 1.0, 0.064912870022925784, 0.86330371389727256),  # D* in (0.302, 0.5]
    (30, 2.0, 0.13199720049471131, 0.20095551343457885),  # D* in (0.5, 0.9]
    (80, 1.2, 0.074842915235092067, 0.32715379485291773),
    (150, 1.0, 0.059764947457377482, 0.21160378715156725),  # n > 100
    (50, 2.0, 0.13174122900503954, 0.02998287840669011),  # Dallal-Wilkinson
    (220, 1.0, 0.058946667926800922, 0.061011578755226781),
    (150, 1.2, 0.07276800063924424, 0.050262268231595325),
]


@pytest.mark.parametrize(("n", "power", "d", "p"), LILLIE_TEST)
def test_lilliefors_p_equals_r_nortest_lillie_test_above_and_below_point_one(n, power, d, p):
    result = stats.ks_lilliefors(np.arange(1, n + 1) ** power)
    assert result.statistic == pytest.approx(d, rel=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert not result.p_is_lower_bound


def test_lilliefors_p_of_values_as_normal_as_they_get_is_one_as_r_prints():
    x = sps.norm.ppf((np.arange(1, 51) - 0.5) / 50)  # R: D = 0.01062908215848013, p = 1
    result = stats.ks_lilliefors(x)
    assert result.statistic == pytest.approx(0.01062908215848013, rel=1e-9) and result.p_value == 1.0


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
    # age: normal in both, equal variances (Levene p ≥ 0.05) → Student's t, as the paper's Methods.
    assert sps.levene(train.age, validation.age, center="mean").pvalue >= 0.05
    expected = sps.ttest_ind(train.age, validation.age, equal_var=True)
    assert table.loc["age", "test"] == stats.T_STUDENT
    assert table.loc["age", "statistic"] == pytest.approx(expected.statistic)
    assert table.loc["age", "p_value"] == pytest.approx(expected.pvalue)
    assert table.loc["age", "mark"] == "1"
    assert f"{train.age.mean():.2f} ± {train.age.std():.2f}" == table.loc["age", "train (n = 70)"]
    assert table.loc["age", "reason"].endswith("normal in both groups with equal variances → Student's t-test")
    # crp: log-normal → Mann-Whitney; p equals scipy's asymptotic p without continuity correction.
    assert table.loc["crp", "test"] == stats.MANN_WHITNEY
    mw = sps.mannwhitneyu(train.crp, validation.crp, method="asymptotic", use_continuity=False)
    assert table.loc["crp", "p_value"] == pytest.approx(mw.pvalue)
    assert table.loc["crp", "mark"] == "2"
    assert "KS p" in table.loc["crp", "reason"]


def unequal_variances(seed: int = 2) -> pd.DataFrame:
    r = rng(seed)
    return pd.DataFrame({
        "split": ["train"] * 80 + ["validation"] * 40,
        "tc": np.r_[r.normal(4.1, 1.0, 80), r.normal(4.4, 3.0, 40)],
    })


def test_normal_data_with_unequal_variances_get_mann_whitney_by_default_and_welch_on_request():
    # The paper: "a Mann-Whitney U test was utilized for those with skewed distributions or unequal variance".
    df = unequal_variances()
    train, validation = df.tc[:80], df.tc[80:]
    assert sps.levene(train, validation, center="mean").pvalue < 0.001
    assert min(stats.ks_lilliefors(train).p_value, stats.ks_lilliefors(validation).p_value) >= 0.05
    row = stats.table_one(df, "split", ["tc"]).iloc[0]
    assert row["test"] == stats.MANN_WHITNEY and row["level"] == "median (Q1, Q3)"
    assert "normal in both groups but unequal variances (Levene p < 0.001)" in row["reason"]
    welch = stats.table_one(df, "split", ["tc"], options=stats.TableOneOptions(unequal_variance="welch")).iloc[0]
    expected = sps.ttest_ind(train, validation, equal_var=False)
    assert welch["test"] == stats.T_WELCH and welch["mark"] == "5"
    assert welch["statistic"] == pytest.approx(expected.statistic) and welch["p_value"] == pytest.approx(expected.pvalue)
    assert "Welch's t-test" in stats.used_footnotes(stats.table_one(df, "split", ["tc"],
                                                   options=stats.TableOneOptions(unequal_variance="welch")))[0]


def test_the_reason_names_the_group_that_is_not_normal():
    r = rng(4)
    df = pd.DataFrame({"split": ["train"] * 60 + ["validation"] * 60,
                       "x": np.r_[r.normal(0, 1, 60), r.exponential(1, 60) ** 2]})
    reason = stats.table_one(df, "split", ["x"]).iloc[0]["reason"]
    assert "not normal in the validation group (KS p " in reason
    assert "train group" not in reason and "both" not in reason
    assert "p 0.000" not in reason and "KS p < 0.001" in reason


def test_the_papers_tc_row_is_students_t_on_its_own_summaries():
    # Paper, Table 1: TC 4.11 ± 2.47 (n = 220) vs 7.22 ± 31.31 (n = 95): t = -1.4691, P = 0.143.
    # The printed summaries are rounded to 0.01, so t is known only within the range their
    # rounding allows; Student's t covers the paper's value, Welch's (about -0.97) is far off.
    corners = [(a, b, c, d) for a in (4.105, 4.115) for b in (2.465, 2.475) for c in (7.215, 7.225) for d in (31.305, 31.315)]
    student = [sps.ttest_ind_from_stats(a, b, 220, c, d, 95, equal_var=True).statistic for a, b, c, d in corners]
    welch = [sps.ttest_ind_from_stats(a, b, 220, c, d, 95, equal_var=False).statistic for a, b, c, d in corners]
    assert min(student) <= -1.4691 <= max(student)
    assert not min(welch) <= -1.4691 <= max(welch)
    assert stats.format_p(2 * sps.t.sf(1.4691, 220 + 95 - 2)) == "0.143"


@pytest.mark.parametrize(("p", "paper", "spss"), [(0.1664, "0.166", ".166"), (0.0004, "< 0.001", ".000"),
                                                  (1.0, "1.000", "1.000"), (0.05, "0.050", ".050")])
def test_p_values_in_the_papers_style_and_spss_style(p, paper, spss):
    assert stats.format_p(p) == paper and stats.format_p(p, "spss") == spss


def test_p_style_reaches_the_journal_view():
    df = two_groups()
    spss = stats.journal_view(stats.table_one(df, "split", ["age"], options=stats.TableOneOptions(p_style="spss")))
    assert spss["P value"].iloc[0].startswith(".")


def test_groups_are_ordered_training_first_whatever_their_spelling():
    # Found in use: a user's group column put "test" before "train".
    df = pd.DataFrame({"group": ["test"] * 10 + ["train"] * 10, "x": np.arange(20.0)})
    table = stats.table_one(df, "group", ["x"])
    assert [c for c in table.columns if "(n = " in c] == ["train (n = 10)", "test (n = 10)"]
    swapped = stats.table_one(df, "group", ["x"], groups=["test", "train"])
    assert [c for c in swapped.columns if "(n = " in c] == ["test (n = 10)", "train (n = 10)"]
    assert stats.group_order(pd.Series(["Validation", "Training"])) == ["Training", "Validation"]
    assert stats.group_order(pd.Series(["B", "A"])) == ["A", "B"]


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
    as_continuous = stats.table_one(df.assign(grade=df.index % 3), "split", ["grade"], continuous=["grade"])
    assert as_continuous.iloc[0]["level"] in ("mean ± SD", "median (Q1, Q3)")
    with pytest.raises(CrcInputError, match="categorical"):
        stats.table_one(df, "split", ["sex"], options=stats.TableOneOptions(force_test={"sex": "t"}))


def test_a_sparse_table_larger_than_two_by_two_keeps_chi_square_and_says_so_everywhere():
    # As SPSS and the paper's pT row (T1: 5 and 1 patients): χ², with a note, never Fisher.
    df = pd.DataFrame({"split": ["train"] * 40 + ["validation"] * 20,
                       "pT": ["T1"] * 3 + ["T2"] * 12 + ["T3"] * 25 + ["T1"] * 1 + ["T2"] * 7 + ["T3"] * 12})
    table = stats.table_one(df, "split", ["pT"])
    header = table.iloc[0]
    assert header["test"] == stats.CHI_SQUARE and header["sparse_cells"] == 2
    view = stats.journal_view(table)
    assert view["t/Z/χ² value"].iloc[0].endswith("³ᵃ")
    notes = stats.used_footnotes(table)
    assert notes[-1] == "a χ² on a table with expected counts below 5 (pT: 2 of 6 cells); interpret with care."


def test_table_one_counts_missing_values_per_variable_and_the_journal_view_shows_them():
    df = two_groups()
    df.loc[[0, 5, 90], "age"] = np.nan
    table = stats.table_one(df, "split", ["age", "crp"])
    assert table.iloc[0]["missing"] == 3
    view = stats.journal_view(table)
    assert view["Missing, n"].tolist() == ["3", "0"]
    assert "Missing, n" not in stats.journal_view(stats.table_one(two_groups(), "split", ["age"])).columns


def test_table_one_compares_by_a_binary_label_with_named_groups():
    df = two_groups().assign(tsr_high=lambda d: (d.index % 2).astype(int))
    table = stats.table_one(df, "tsr_high", ["age"])
    assert "tsr_high = 0 (n = 50)" in table.columns and "tsr_high = 1 (n = 50)" in table.columns


def test_table_one_refuses_three_groups_and_says_which():
    df = two_groups()
    df.loc[:9, "split"] = "external"
    with pytest.raises(CrcInputError, match=r"has 3: train \(60\), validation \(30\), external \(10\)"):
        stats.table_one(df, "split", ["age"])
    table = stats.table_one(df, "split", ["age"], groups=["train", "validation"])
    assert "validation (n = 30)" in table.columns
    with pytest.raises(CrcInputError, match="Name two groups"):
        stats.table_one(df, "split", ["age"], groups=["train", "test"])


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
    df = two_groups()
    table = stats.table_one(df, "split", options=stats.TableOneOptions(smd=True))
    smd = table[table["test"] != ""].set_index("variable")["smd"]
    train, validation = df[df.split == "train"], df[df.split == "validation"]
    # By hand: |mean difference| / sqrt of the mean of the two variances; for a binary variable the
    # proportions' form, as R tableone::ExtractSmd prints.
    assert smd["age"] == pytest.approx(abs(train.age.mean() - validation.age.mean())
                                       / math.sqrt((train.age.var() + validation.age.var()) / 2))
    p1, p2 = (train.sex == "male").mean(), (validation.sex == "male").mean()
    assert smd["sex"] == pytest.approx(abs(p1 - p2) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2))
    view = stats.journal_view(table)
    assert list(view.columns) == ["Variable", "train (n = 70)", "validation (n = 30)", "t/Z/χ² value", "P value", "SMD"]
    assert view.set_index("Variable").loc["age, mean ± SD", "SMD"] == f"{smd['age']:.3f}"
    assert view.set_index("Variable").loc["age, mean ± SD", "t/Z/χ² value"].endswith("¹")
    assert stats.TableOneOptions.from_json(stats.TableOneOptions(smd=True, force_test={"age": "welch"}).to_json()) == \
        stats.TableOneOptions(smd=True, force_test={"age": "welch"})
    assert [note[0] for note in stats.used_footnotes(table)] == ["1", "2", "3", "a"]  # pT T1 is sparse


def test_shapiro_option_is_used_for_normality():
    table = stats.table_one(two_groups(), "split", ["age"], options=stats.TableOneOptions(normality="shapiro"))
    assert "SW p" in table.iloc[0]["reason"]


def test_detect_kind_is_the_one_rule_of_crc_core_variables():
    from crc_core.variables import detect_variable_type

    eleven_levels = pd.Series(list(range(11)) * 3, name="score")
    # Found in review: cohort.py cut at 10 levels and stats.py at 12, so an 11-level integer column
    # was continuous on one path and categorical on the other.
    assert detect_variable_type(eleven_levels) == "continuous" == stats.detect_kind(eleven_levels)
    ten_levels = pd.Series(list(range(10)) * 3, name="score")
    assert detect_variable_type(ten_levels) == "categorical" == stats.detect_kind(ten_levels)
    assert stats.detect_kind(pd.Series(np.linspace(0, 1, 50))) == "continuous"
    assert stats.detect_kind(pd.Series(["a", "b"])) == "categorical"
    assert stats.detect_kind(pd.Series([1, 2, 3, 4] * 3, name="pT")) == "categorical"  # ordinal: compared as categorical


def test_p_in_words_never_prints_zero_or_an_exponent():
    from crc_core.cohort.table1 import p_words

    assert [p_words(p) for p in (0.0434, 1.2e-5, 0.0, float("nan"), 1.0)] == [
        "p 0.043", "p < 0.001", "p < 0.001", "p —", "p 1.000"]


def test_missing_value_codes_in_a_measurement_are_counted_missing_with_a_note():
    # Found in use: one "n.d." among 278 albumin values made the column a 278-level categorical.
    df = two_groups()
    df["crp"] = df["crp"].astype(str).astype(object)
    df.loc[[3, 50, 80], "crp"] = ["n.d.", "NA", "—"]
    table = stats.table_one(df, "split", ["crp"])
    assert len(table) == 1 and table["test"].iloc[0] in (stats.T_STUDENT, stats.MANN_WHITNEY)
    assert table["missing"].iloc[0] == 3
    assert "crp: 3 cells with a missing-value code ('n.d.', 'NA', '—') counted as missing." in stats.used_footnotes(table)
    assert stats.journal_view(table)["Missing, n"].tolist() == ["3"]


def test_a_word_in_a_measurement_is_refused_naming_it():
    df = two_groups()
    df["crp"] = df["crp"].astype(str).astype(object)
    df.loc[3, "crp"] = "n.d.x"
    with pytest.raises(CrcInputError, match=r"Column 'crp' holds text where numbers are expected: 'n\.d\.x'"):
        stats.table_one(df, "split", ["crp"])


def test_a_date_column_is_left_out_of_table_one_and_said_in_a_footnote():
    # Found in use: an operation date (dd.mm.yyyy) became a categorical row with one level per day.
    df = pd.DataFrame({
        "split": ["train"] * 6 + ["validation"] * 4,
        "op_date": [f"{d:02d}.03.2021" for d in range(1, 11)],
        "sex": list("MFMFMFMFMF"),
    })
    table = stats.table_one(df, "split", ["op_date", "sex"])
    assert set(table["variable"]) == {"sex"}
    assert "op_date holds dates (e.g. 01.03.2021) and is left out; mark it categorical or continuous to compare it." \
        in stats.used_footnotes(table)
    chosen = stats.table_one(df, "split", ["op_date"], ["op_date"])  # the user's choice wins
    assert "op_date" in set(chosen["variable"])
