"""Table 1 of the built-in sample cohort against R, every row: the statistic and P value our rule
chose, and the normality and Levene p values it chose them by.

The reference values (tests/reference/table1_sample_r.csv) were computed by
tests/reference/table1_sample.R with R 4.2.2 — the paper's version — from data/sample/clinical.csv:
``nortest::lillie.test``, ``car::leveneTest(center = mean)``, ``t.test(var.equal = TRUE/FALSE)``,
``wilcox.test(exact = FALSE, correct = FALSE)`` with Z = ``qnorm(p / 2)``, ``quantile(type = 6)``
and ``chisq.test(correct = FALSE)``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crc_core.cohort import table1 as stats

REPO_ROOT = Path(__file__).resolve().parents[1]
R_VALUES = pd.read_csv(REPO_ROOT / "tests" / "reference" / "table1_sample_r.csv").set_index("variable")
CLINICAL = pd.read_csv(REPO_ROOT / "data" / "sample" / "clinical.csv")
CATEGORICAL = ["sex", "age_group", "pT", "pN"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    variables = [c for c in CLINICAL.columns if c not in ("patient_id", "split")]
    return stats.table_one(CLINICAL, "split", variables, CATEGORICAL)


def headers(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["test"] != ""].set_index("variable")


def test_every_variable_is_compared(table):
    assert sorted(headers(table).index) == sorted(R_VALUES.index)


@pytest.mark.parametrize("variable", [v for v in R_VALUES.index if R_VALUES.loc[v, "kind"] == "continuous"])
def test_continuous_rows_equal_r(table, variable):
    r = R_VALUES.loc[variable]
    row = headers(table).loc[variable]
    assert int(row["missing"]) == int(r["missing"])
    # The rule's inputs: Lilliefors p per group (R's lillie.test over the whole range: Dallal-
    # Wilkinson below 0.1, Stephens' formula above; found in use: FBG 0.1278 against 0.1335) and Levene's p.
    train = CLINICAL.loc[CLINICAL.split == "train", variable].dropna()
    validation = CLINICAL.loc[CLINICAL.split == "validation", variable].dropna()
    for values, d, p in ((train, r["ks_d_train"], r["ks_p_train"]), (validation, r["ks_d_validation"], r["ks_p_validation"])):
        ours = stats.ks_lilliefors(values)
        assert ours.statistic == pytest.approx(d, rel=1e-12)
        assert ours.p_value == pytest.approx(p, rel=1e-9)
    normal = r["ks_p_train"] >= 0.05 and r["ks_p_validation"] >= 0.05
    equal_var = r["levene_p"] >= 0.05
    assert stats.levene_mean(train, validation).p_value == pytest.approx(r["levene_p"], rel=1e-9)
    if normal and equal_var:
        assert row["test"] == stats.T_STUDENT
        assert row["statistic"] == pytest.approx(r["t_student"], rel=1e-9)
        assert row["p_value"] == pytest.approx(r["p_student"], rel=1e-9)
        assert row["train (n = 220)"] == f"{r['mean_train']:.2f} ± {r['sd_train']:.2f}"
    else:
        assert row["test"] == stats.MANN_WHITNEY
        assert row["statistic"] == pytest.approx(r["mw_z"], rel=1e-9)
        assert row["p_value"] == pytest.approx(r["mw_p"], rel=1e-9)
        assert row["validation (n = 95)"] == (
            f"{r['median_validation']:.2f} ({r['q1_validation']:.2f}, {r['q3_validation']:.2f})"
        )


@pytest.mark.parametrize("variable", CATEGORICAL)
def test_categorical_rows_equal_r(table, variable):
    r = R_VALUES.loc[variable]
    row = headers(table).loc[variable]
    assert row["test"] == stats.CHI_SQUARE
    assert row["statistic"] == pytest.approx(r["chi2"], rel=1e-12)
    assert row["p_value"] == pytest.approx(r["chi2_p"], rel=1e-9)


def test_the_sample_exercises_both_branches_of_the_rule(table):
    # So that the row-by-row comparison above covers Student's t as well as Mann-Whitney.
    tests = headers(table)["test"].value_counts().to_dict()
    assert tests == {stats.MANN_WHITNEY: 19, stats.T_STUDENT: 4, stats.CHI_SQUARE: 4}
