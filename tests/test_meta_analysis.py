"""crc_core.metrics.meta_analysis against R ``metafor::rma`` (tests/reference/meta_analysis.R) and
statsmodels' combine_effects (method_re="dl", where Q >= df) fed with effects and variances computed
here from their definitions (scikit-learn's AUC, DeLong's variance by pairs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special
from sklearn.metrics import roc_auc_score
from statsmodels.stats.meta_analysis import combine_effects

from crc_core.errors import CrcInputError
from crc_core.metrics.roc import auc_ci
from crc_core.metrics.meta_analysis import POOLED, cohort_aucs, forest_table, pool_logit, pooled_auc

Z = 1.959963984540054


def cohort(name: str, n: int, separation: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame({"cohort": name, "y_true": y, "prob": special.expit(rng.normal(y * separation - 0.5, 1))})


# Four centres of one model, the external ones weaker: heterogeneous, so τ² > 0.
CENTRES = pd.concat([cohort("training", 200, 1.6, 1), cohort("internal", 90, 1.2, 2),
                     cohort("external A", 120, 0.7, 3), cohort("external B", 60, 1.0, 4)], ignore_index=True)


def logit_effect(group: pd.DataFrame) -> tuple[float, float]:
    """logit(AUC) and its variance: DeLong (1988) from every case-control pair, delta method."""
    y, score = group["y_true"].to_numpy(), group["prob"].to_numpy()
    cases, controls = score[y == 1], score[y == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    variance = psi.mean(axis=1).var(ddof=1) / cases.size + psi.mean(axis=0).var(ddof=1) / controls.size
    auc = roc_auc_score(y, score)
    return math.log(auc / (1 - auc)), variance / (auc * (1 - auc)) ** 2


def reference(predictions: pd.DataFrame):
    effects, variances = zip(*(logit_effect(g) for _, g in predictions.groupby("cohort", sort=False)))
    return combine_effects(np.array(effects), np.array(variances), method_re="dl")


def test_pooled_auc_equals_statsmodels_dersimonian_laird():
    # statsmodels combine_effects(logit AUCs, their variances, method_re="dl"): its z interval.
    ref = reference(CENTRES)
    got = pooled_auc(CENTRES, test="z")
    assert ref.tau2 > 0 and got["n_cohorts"] == 4 and got["n_patients"] == 470
    assert (got["logit_auc"], got["logit_se"]) == pytest.approx((ref.mean_effect_re, ref.sd_eff_w_re), rel=1e-10)
    assert (got["fixed_logit_auc"], got["fixed_logit_se"]) == pytest.approx((ref.mean_effect_fe, ref.sd_eff_w_fe), rel=1e-10)
    ci_fe, ci_re = ref.conf_int()[:2]
    assert (got["auc_low"], got["auc_high"]) == pytest.approx(tuple(special.expit(ci_re)), rel=1e-10)
    assert (got["fixed_low"], got["fixed_high"]) == pytest.approx(tuple(special.expit(ci_fe)), rel=1e-10)
    assert got["auc"] == pytest.approx(special.expit(ref.mean_effect_re), rel=1e-10)
    assert got["fixed_auc"] == pytest.approx(special.expit(ref.mean_effect_fe), rel=1e-10)
    assert (got["tau2"], got["q"], got["q_df"]) == pytest.approx((ref.tau2, ref.q, ref.df), rel=1e-10)
    assert got["q_p"] == pytest.approx(ref.test_homogeneity().pvalue, rel=1e-10)
    assert got["i2_percent"] == pytest.approx(100 * ref.i2, rel=1e-10)
    # the random-effects CI is wider than the fixed-effect one when the centres disagree
    assert got["auc_high"] - got["auc_low"] > got["fixed_high"] - got["fixed_low"]


def test_homogeneous_cohorts_keep_tau2_and_i2_at_zero():
    # Three centres of one population: Q = 1.07 < df = 2. DerSimonian-Laird (and metafor) truncate
    # τ² and I² at 0, so the random-effects estimate is the fixed-effect one; statsmodels leaves
    # τ² = (Q - df) / c = -0.029 and I² = 1 - df / Q = -0.87.
    same = pd.concat([cohort(name, 120, 1.2, 110 + i) for i, name in enumerate("ABC")])
    ref = reference(same)
    got = pooled_auc(same, test="z")
    assert ref.tau2 == pytest.approx(-0.0289, abs=1e-4) and ref.i2 < 0
    assert (got["tau2"], got["i2_percent"], got["q_df"]) == (0.0, 0.0, 2)
    assert got["q"] == pytest.approx(ref.q, rel=1e-10) and got["q"] == pytest.approx(1.0705, abs=1e-4)
    assert (got["logit_auc"], got["logit_se"]) == pytest.approx((ref.mean_effect_fe, ref.sd_eff_w_fe), rel=1e-10)
    assert (got["auc"], got["auc_low"], got["auc_high"]) == (got["fixed_auc"], got["fixed_low"], got["fixed_high"])
    # the fixed-effect weights: inverse variances
    weights = 1 / cohort_aucs(same)["logit_variance"]
    assert forest_table(same)["weight_percent"][:3].tolist() == pytest.approx((100 * weights / weights.sum()).tolist())


def test_cohort_aucs_are_delong_on_the_logit_scale():
    table = cohort_aucs(CENTRES).set_index("cohort")
    for name, group in CENTRES.groupby("cohort"):
        logit_auc, logit_variance = logit_effect(group)
        row = table.loc[name]
        assert row["auc"] == pytest.approx(auc_ci(group["y_true"], group["prob"])[0], rel=1e-12)
        assert (row["logit_auc"], row["logit_variance"]) == pytest.approx((logit_auc, logit_variance), rel=1e-10)
        half = Z * math.sqrt(logit_variance)
        assert (row["low"], row["high"]) == pytest.approx(tuple(special.expit([logit_auc - half, logit_auc + half])))
        assert (row["n"], row["n_positive"]) == (len(group), group["y_true"].sum())
    assert table.index.tolist() == ["training", "internal", "external A", "external B"]


def test_forest_table_rows_weights_and_the_pooled_row():
    ref = reference(CENTRES)
    table = forest_table(CENTRES)
    assert table.columns.tolist() == ["cohort", "n", "auc", "low", "high", "logit_low", "logit_high", "weight_percent",
                                      "pooled"]
    assert table["cohort"].tolist() == ["training", "internal", "external A", "external B", POOLED]
    assert table["weight_percent"][:4].tolist() == pytest.approx((100 * ref.weights_rel_re).tolist(), rel=1e-10)
    assert table["weight_percent"][:4].sum() == pytest.approx(100)
    last, pooled = table.iloc[-1], pooled_auc(CENTRES)
    assert bool(last["pooled"]) and not table["pooled"][:4].any()
    assert (last["n"], last["auc"], last["low"], last["high"]) == (470, pooled["auc"], pooled["auc_low"], pooled["auc_high"])
    # One CI per AUC: each cohort's row carries Table 2's CI (DeLong on the AUC scale, pROC::ci.auc),
    # and the logit-scale one the pooling works with only under its own name.
    logit = cohort_aucs(CENTRES)
    for i, (name, group) in enumerate(CENTRES.groupby("cohort", sort=False)):
        assert (table["low"][i], table["high"][i]) == pytest.approx(auc_ci(group["y_true"], group["prob"])[1:], rel=1e-12)
        assert (table["logit_low"][i], table["logit_high"][i]) == (logit["low"][i], logit["high"][i])
        assert table["low"][i] != pytest.approx(logit["low"][i], rel=1e-4)


def test_run_store_predictions_pool_by_any_column_and_unlabelled_patients_are_left_out():
    # As RunStore.predictions gives them: run_id, cohort, fold, patient_id, y_true (Int64), prob.
    store = CENTRES.assign(run_id="r1", fold=np.arange(len(CENTRES)) % 2, patient_id=range(len(CENTRES)))
    store["y_true"] = store["y_true"].astype("Int64")
    unlabelled = store.head(5).assign(y_true=pd.NA, cohort="external C")
    store = pd.concat([store, unlabelled.astype({"y_true": "Int64"})], ignore_index=True)
    numbers = lambda pooled: {k: v for k, v in pooled.items() if isinstance(v, (int, float))}  # noqa: E731
    assert numbers(pooled_auc(store)) == pytest.approx(numbers(pooled_auc(CENTRES)))
    assert pooled_auc(store)["warnings"] == pooled_auc(CENTRES)["warnings"]
    by_fold = cohort_aucs(store, by="fold")
    assert by_fold["cohort"].tolist() == [0, 1] and by_fold["n"].sum() == 470


def test_refusals_name_the_cohort_and_the_fix():
    with pytest.raises(CrcInputError, match=r"at least two cohort values with labelled patients; got one \('training'\)"):
        pooled_auc(CENTRES[CENTRES["cohort"] == "training"])
    with pytest.raises(CrcInputError, match="got none with labelled patients"):
        pooled_auc(CENTRES.head(0))
    with pytest.raises(CrcInputError, match="lack the column.* prob"):
        pooled_auc(CENTRES.drop(columns="prob"))
    perfect = CENTRES.copy()
    perfect.loc[perfect["cohort"] == "internal", "prob"] = perfect["y_true"] * 0.5 + 0.25
    with pytest.raises(CrcInputError, match="cohort 'internal' has AUC 1.000: the model separates its classes perfectly"):
        pooled_auc(perfect)
    one_class = CENTRES[(CENTRES["cohort"] != "external B") | (CENTRES["y_true"] == 0)]
    with pytest.raises(CrcInputError, match="cohort 'external B' has one class only"):
        forest_table(one_class)
    single_case = pd.concat([one_class, CENTRES[(CENTRES["cohort"] == "external B") & (CENTRES["y_true"] == 1)].head(1)])
    with pytest.raises(CrcInputError, match="cohort 'external B' has 1 patient.* at least two of each"):
        pooled_auc(single_case)
    with pytest.raises(CrcInputError, match="hold 2 runs .*keep the rows of one run"):
        pooled_auc(CENTRES.assign(run_id=np.where(CENTRES.index % 2, "a", "b")))
    with pytest.raises(CrcInputError, match="CI level must lie between 0 and 1"):
        pooled_auc(CENTRES, level=95)


REFERENCE = Path(__file__).resolve().parent / "reference"


def _r_cases() -> tuple[pd.DataFrame, dict]:
    data = pd.read_csv(REFERENCE / "meta_analysis_data.csv", dtype={"case": str, "cohort": str})
    return data, json.loads((REFERENCE / "meta_analysis_r.json").read_text())


@pytest.mark.parametrize("case", ["four_heterogeneous", "three_homogeneous", "two_heterogeneous", "two_homogeneous",
                                  "six_mixed"])
def test_pooling_equals_metafor_rma_with_z_and_with_hartung_knapp(case):
    # tests/reference/meta_analysis.R: metafor::rma(yi, vi, method = "DL", test = "z" / "knha"), and "FE".
    data, r = _r_cases()
    rows = data[data["case"] == case]
    for test in ("z", "knha"):
        ref, got = r[case][test], pool_logit(rows["yi"], rows["vi"], test=test)
        assert got["test"] == test and got["ci_df"] == (len(rows) - 1 if test == "knha" else None)
        for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("low", "low"), ("high", "high"), ("p", "p"),
                             ("q", "q"), ("q_p", "q_p"), ("i2_percent", "i2")):
            assert got[ours] == pytest.approx(ref[theirs], rel=1e-6, abs=1e-12), (test, ours)
        assert got["tau2"] == pytest.approx(ref["tau2"], rel=1e-6, abs=1e-12) and got["q_df"] == ref["q_df"]
        assert got["weights_percent"].tolist() == pytest.approx(ref["weights"], rel=1e-6)
    fixed = r[case]["fixed"]
    assert (got["fixed"], got["fixed_se"], got["fixed_low"], got["fixed_high"]) == pytest.approx(
        (fixed["estimate"], fixed["se"], fixed["low"], fixed["high"]), rel=1e-6)
    # "auto": Hartung-Knapp below five cohorts, z from five on.
    assert pool_logit(rows["yi"], rows["vi"])["test"] == ("knha" if len(rows) < 5 else "z")


def test_with_q_below_its_df_metafor_floors_tau2_where_statsmodels_does_not():
    # The README's "equal to statsmodels combine_effects" holds only when Q >= df.
    data, r = _r_cases()
    for case in ("three_homogeneous", "two_homogeneous"):
        rows = data[data["case"] == case]
        assert r[case]["z"]["q"] < r[case]["z"]["q_df"] and r[case]["z"]["tau2"] == 0 and r[case]["z"]["i2"] == 0
        theirs = combine_effects(rows["yi"].to_numpy(), rows["vi"].to_numpy(), method_re="dl")
        assert theirs.tau2 < 0 and theirs.i2 < 0
        assert pool_logit(rows["yi"], rows["vi"], test="z")["tau2"] == 0.0


def test_few_cohorts_take_hartung_knapp_and_say_why_and_two_cannot_estimate_tau2():
    data, r = _r_cases()
    two = pd.concat([cohort("A", 150, 1.8, 21), cohort("B", 120, 0.6, 22)], ignore_index=True)
    got = pooled_auc(two)
    ref = r["two_heterogeneous"]["knha"]
    assert got["test"] == "knha" and got["ci_df"] == 1
    assert (got["auc_low"], got["auc_high"]) == pytest.approx(tuple(special.expit([ref["low"], ref["high"]])), rel=1e-6)
    dl = pooled_auc(two, test="z")
    assert got["auc_high"] - got["auc_low"] > dl["auc_high"] - dl["auc_low"]  # HKSJ's t with 1 df: far wider
    words = " ".join(got["warnings"])
    assert "Hartung-Knapp-Sidik-Jonkman" in words and "fewer than 5" in words and "τ² cannot be estimated from two" in words
    assert "Hartung-Knapp-Sidik-Jonkman CI (t, 1 df)" in got["method"]
    assert "z interval is too narrow" in " ".join(dl["warnings"])
    five = pd.concat([cohort(f"C{i}", 80, 1.0, 60 + i) for i in range(5)], ignore_index=True)
    assert pooled_auc(five)["test"] == "z" and pooled_auc(five)["warnings"] == []
    with pytest.raises(CrcInputError, match="test must be one of auto, z, knha"):
        pooled_auc(two, test="t")
