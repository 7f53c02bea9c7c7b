"""The combined clinical + DL model: odds ratios against an independent fit (scikit-learn without
penalty), fitted on training only, stored as a run; refusals that name the variable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crc_core.combined_model import DL_SCORE, CombinedConfig, fit_combined, nomogram_axes
from crc_core.errors import CrcInputError
from crc_core.runs import RunStore


def make_dl_run(writable_workspace):
    """A DL run's predictions for the sample's 220 training and 95 validation patients."""
    clinical = pd.read_csv(writable_workspace / "clinical.csv")
    labels_y = np.random.default_rng(0).integers(0, 2, len(clinical))
    store = RunStore(writable_workspace)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"})
    rng = np.random.default_rng(1)
    prob = 1 / (1 + np.exp(-(1.5 * (2 * labels_y - 1) + rng.normal(0, 1.2, len(clinical)))))
    for cohort in ("train", "validation"):
        rows = clinical["split"] == cohort
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": clinical.loc[rows, "patient_id"],
                                                            "y_true": labels_y[rows], "prob": prob[rows]}))
    store.finish(run_id, "done")
    return writable_workspace, run_id, clinical.assign(y=labels_y, prob=prob)


@pytest.fixture
def dl_run(writable_workspace):
    return make_dl_run(writable_workspace)


def test_odds_ratios_equal_an_unpenalised_fit_on_the_training_cohort_only(dl_run):
    from sklearn.linear_model import LogisticRegression

    workspace, run_id, table = dl_run
    result = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("age", "sex")))
    train = table[table["split"] == "train"]
    logit = np.log(train["prob"] / (1 - train["prob"]))
    x = np.column_stack([(logit - logit.mean()) / logit.std(ddof=1), train["age"], (train["sex"] == "M").astype(float)])
    reference = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10).fit(x, train["y"])  # no penalty
    odds = result.odds_ratios.set_index("term")
    np.testing.assert_allclose(odds.loc[[DL_SCORE, "age", "sex = M"], "odds_ratio"], np.exp(reference.coef_[0]), rtol=1e-4)
    assert (odds["low"] < odds["odds_ratio"]).all() and (odds["odds_ratio"] < odds["high"]).all()
    store = RunStore(workspace)
    combined = store.run(result.run_id)
    assert combined.mode == "combined" and combined.info["parent_run"] == run_id
    assert set(store.predictions(result.run_id)["cohort"]) == {"train", "validation"}
    from crc_core.training import runs_overview
    from sklearn.metrics import roc_auc_score

    overview = runs_overview(store).set_index("run_id")
    validation = store.predictions(result.run_id, "validation")
    assert overview.loc[result.run_id, "AUC validation"] == f"{roc_auc_score(validation['y_true'], validation['prob']):.3f}"
    axes, outcome = nomogram_axes(result.coefficients, result.design_ranges)
    assert axes.groupby("term")["points"].max().max() == pytest.approx(100)
    assert 0 < outcome["probability"][0] < outcome["probability"][-1] < 1


def test_a_constant_or_empty_variable_is_named(dl_run):
    workspace, run_id, _ = dl_run
    clinical = pd.read_csv(workspace / "clinical.csv")
    clinical["centre"] = "Lanzhou"
    clinical["CEA"] = np.nan
    clinical.to_csv(workspace / "clinical.csv", index=False)
    with pytest.raises(CrcInputError, match=r"'centre' is constant in the training cohort \('Lanzhou' for all\)"):
        fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("centre",)))
    with pytest.raises(CrcInputError, match=r"'CEA' is missing for every training patient"):
        fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("CEA",)))


def test_perfect_separation_names_the_variable(dl_run):
    workspace, run_id, table = dl_run
    clinical = pd.read_csv(workspace / "clinical.csv")
    clinical["leak"] = table["y"] * 10.0 + np.random.default_rng(2).random(len(table))  # the label itself, disguised
    clinical.to_csv(workspace / "clinical.csv", index=False)
    with pytest.raises(CrcInputError, match=r"'leak' separates high from low perfectly in the training cohort"):
        fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("age", "leak")))


def test_a_regularised_score_with_a_narrow_spread_gets_a_readable_odds_ratio(writable_workspace):
    """A strongly penalised DL model scores every patient within a few hundredths of 0.47: per unit of
    logit its odds ratio would be astronomically large (1e42 on the sample); per SD it is readable,
    and the nomogram reads the DL score as the DL model's own probability."""
    from crc_core.combined_model import odds_ratio_table

    workspace, run_id, table = make_dl_run(writable_workspace)
    store = RunStore(workspace)
    narrow = store.create_run(target="tsr", backbone="resnet34", mode="features", config={"evaluation": "holdout"})
    logit = np.log(table["prob"] / (1 - table["prob"]))
    squeezed = 1 / (1 + np.exp(-(-0.12 + 0.01 * logit)))  # the same ranking, a hundredth of the spread
    for cohort in ("train", "validation"):
        rows = table["split"] == cohort
        store.set_predictions(narrow, cohort, pd.DataFrame({"patient_id": table.loc[rows, "patient_id"],
                                                            "y_true": table.loc[rows, "y"], "prob": squeezed[rows]}))
    store.finish(narrow, "done")
    wide = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("age",)))
    tight = fit_combined(workspace, CombinedConfig(run_id=narrow, variables=("age",)))
    score = tight.odds_ratios.set_index("term").loc[DL_SCORE]
    assert 1 < score["odds_ratio"] < 1000 and score["p"] < 0.05  # per unit of logit it would be e^(100 x log OR)
    # A linear squeeze in logit space leaves the standardised fit unchanged.
    assert score["odds_ratio"] == pytest.approx(wide.odds_ratios.set_index("term").loc[DL_SCORE, "odds_ratio"], rel=1e-3)
    axes, _ = nomogram_axes(tight.coefficients, tight.design_ranges, tight.dl_scaling)
    ticks = axes[axes["term"] == DL_SCORE]
    train_probs = squeezed[table["split"] == "train"]
    assert set(ticks["scale"]) == {"DL model's probability"}
    assert float(ticks["label"].iloc[0]) == pytest.approx(train_probs.min(), abs=1e-3)
    assert float(ticks["label"].iloc[-1]) == pytest.approx(train_probs.max(), abs=1e-3)
    printed = odds_ratio_table(pd.DataFrame({"term": ["x", "y"], "odds_ratio": [3.456e42, 0.9718], "low": [6.28e12, 0.8401],
                                             "high": [1.9e72, 1.1242], "p": [0.0051, 0.0004]}))
    assert printed["OR (95% CI)"].tolist() == ["3.46e+42 (6.28e+12–1.90e+72)", "0.972 (0.84–1.12)"]
    assert printed["P"].tolist() == ["0.005", "< 0.001"]
