"""The combined clinical + DL model: odds ratios against an independent fit (scikit-learn without
penalty) and against R's glm on a published data set, fitted on training only and on out-of-fold
DL scores, stored as a run; the reference level; refusals that name the variable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crc_core.evaluate.combined_model import DL_SCORE, CombinedConfig, fit_combined, logistic_fit, nomogram_axes
from crc_core.errors import CrcInputError
from crc_core.runs.store import OUT_OF_FOLD, RunStore


def make_dl_run(writable_workspace):
    """A DL run's predictions for the sample's 220 training and 95 validation patients, and the
    out-of-fold scores of its training patients: as a features run stores them, an over-confident
    score on the patients it was fitted on and a weaker one from the models that never saw them."""
    clinical = pd.read_csv(writable_workspace / "clinical.csv")
    labels_y = np.random.default_rng(0).integers(0, 2, len(clinical))
    store = RunStore(writable_workspace)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"})
    rng = np.random.default_rng(1)
    prob = 1 / (1 + np.exp(-(1.5 * (2 * labels_y - 1) + rng.normal(0, 1.2, len(clinical)))))
    resubstituted = 1 / (1 + np.exp(-(4.0 * (2 * labels_y - 1) + rng.normal(0, 1.2, len(clinical)))))
    train = clinical["split"] == "train"
    for cohort, rows, values in (("train", train, resubstituted), ("validation", ~train, prob), (OUT_OF_FOLD, train, prob)):
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": clinical.loc[rows, "patient_id"],
                                                            "y_true": labels_y[rows], "prob": values[rows]}))
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
    other = "F" if (train["sex"] == "M").sum() >= (train["sex"] == "F").sum() else "M"  # the largest level is the reference
    x = np.column_stack([(logit - logit.mean()) / logit.std(ddof=1), train["age"], (train["sex"] == other).astype(float)])
    reference = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10).fit(x, train["y"])  # no penalty
    odds = result.odds_ratios.set_index("term")
    np.testing.assert_allclose(odds.loc[[DL_SCORE, "age", f"sex = {other}"], "odds_ratio"], np.exp(reference.coef_[0]), rtol=1e-4)
    assert (odds["low"] < odds["odds_ratio"]).all() and (odds["odds_ratio"] < odds["high"]).all()
    store = RunStore(workspace)
    combined = store.run(result.run_id)
    assert combined.mode == "combined" and combined.info["parent_run"] == run_id
    assert set(store.predictions(result.run_id)["cohort"]) == {"train", "validation"}
    from crc_core.runs.views import runs_overview
    from sklearn.metrics import roc_auc_score

    overview = runs_overview(store).set_index("Run")
    validation = store.predictions(result.run_id, "validation")
    assert overview.loc[result.run_id, "AUC validation"] == f"{roc_auc_score(validation['y_true'], validation['prob']):.3f}"
    axes, outcome = nomogram_axes(result.coefficients, result.design_ranges)
    assert axes.groupby("term")["points"].max().max() == pytest.approx(100)
    assert 0 < outcome["probability"][0] < outcome["probability"][-1] < 1


def assert_round(values) -> None:
    """Evenly spaced multiples of a step of 1, 2, 2.5 or 5 × 10^k (as R's pretty())."""
    values = np.asarray(values, dtype=float)
    steps = np.diff(values)
    assert steps == pytest.approx(np.full(len(steps), steps[0]))
    magnitude = 10 ** np.floor(np.log10(steps[0]) + 1e-9)
    assert any(steps[0] == pytest.approx(m * magnitude) for m in (1, 2, 2.5, 5))
    assert values / steps[0] == pytest.approx(np.round(values / steps[0]))


def test_a_nomograms_ticks_are_round_and_its_labels_never_run_together():
    """Found in use: age ticks at 37.2, 48.9, …, and the T levels printed over each other ("T3T2")."""
    from crc_core import figures

    coefficients = pd.Series({"const": -1.0, DL_SCORE: 1.2, "age": 0.03, "T = T2": 0.05, "T = T3": 0.12, "T = T4": 1.5})
    ranges = {DL_SCORE: (-2.1, 2.3), "age": (31.3, 84.7), "T = T2": (0, 1), "T = T3": (0, 1), "T = T4": (0, 1)}
    axes, outcome = nomogram_axes(coefficients, ranges, references={"T": "T1"})
    age = axes[axes["term"] == "age"]
    assert age["value"].min() == pytest.approx(31.3) and age["value"].max() == pytest.approx(84.7)  # the range's extent
    shown = age[age["label"] != ""]
    assert_round(shown["value"]) and len(shown) >= 3
    assert shown["label"].tolist() == [f"{v:g}" for v in shown["value"]]

    figure = figures.nomogram(axes, outcome, "t")
    # Every label as drawn: (x, the line it belongs to, how far above or below it, text); a label
    # of a scatter trace's text stands at its textposition.
    drawn = [(a.x, a.y, a.yshift or 0, a.text) for a in figure.layout.annotations]
    for trace in figure.data:
        if trace.text is not None:
            positions = trace.textposition if isinstance(trace.textposition, (list, tuple)) else [trace.textposition] * len(trace.x)
            drawn += [(x, y, position, text) for x, y, position, text in zip(trace.x, trace.y, positions, trace.text)]
    levels = [text for *_, text in drawn if text in ("T1", "T2", "T3", "T4")]
    assert sorted(levels) == ["T1", "T2", "T3", "T4"]
    # Two labels on one side of one line never overlap on the page's narrowest chart (~700 px for
    # 120 units: a 15-px character is ~1.5 units).
    for i, (x1, y1, shift1, text1) in enumerate(drawn):
        for x2, y2, shift2, text2 in drawn[i + 1:]:
            if text1 and text2 and y1 == y2 and shift1 == shift2:
                assert abs(x1 - x2) >= 1.5 * (len(str(text1)) + len(str(text2))) / 2, (text1, text2, x1, x2)


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


def test_a_combined_model_without_a_clinical_variable_is_refused():
    # Found in use: "Fit the combined model" with nothing chosen stored the DL score recalibrated
    # as a "combined" run.
    with pytest.raises(CrcInputError, match="Choose at least one clinical variable"):
        CombinedConfig(run_id="some-run")
    with pytest.raises(CrcInputError, match="Choose at least one clinical variable"):
        CombinedConfig(run_id="some-run", variables=())


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
    from crc_core.evaluate.combined_model import odds_ratio_table

    workspace, run_id, table = make_dl_run(writable_workspace)
    store = RunStore(workspace)
    narrow = store.create_run(target="tsr", backbone="resnet34", mode="features", config={"evaluation": "holdout"})
    logit = np.log(table["prob"] / (1 - table["prob"]))
    squeezed = 1 / (1 + np.exp(-(-0.12 + 0.01 * logit)))  # the same ranking, a hundredth of the spread
    for cohort, split in (("train", "train"), ("validation", "validation"), (OUT_OF_FOLD, "train")):
        rows = table["split"] == split
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
    # The scale spans the training patients' DL probabilities, labelled at round ones inside them.
    mean, sd = tight.dl_scaling
    ends = 1 / (1 + np.exp(-(mean + sd * ticks["value"].iloc[[0, -1]].to_numpy())))
    assert ends == pytest.approx([train_probs.min(), train_probs.max()], abs=1e-6)
    labelled = ticks[ticks["label"] != ""]["label"].astype(float).to_numpy()
    assert len(labelled) >= 3 and (train_probs.min() <= labelled).all() and (labelled <= train_probs.max()).all()
    assert_round(labelled)
    printed = odds_ratio_table(pd.DataFrame({"term": ["x", "y"], "odds_ratio": [3.456e42, 0.9718], "low": [6.28e12, 0.8401],
                                             "high": [1.9e72, 1.1242], "p": [0.0051, 0.0004]}))
    assert printed["OR (95% CI)"].tolist() == ["3.46e+42 (6.28e+12–1.90e+72)", "0.972 (0.84–1.12)"]
    assert printed["P"].tolist() == ["0.005", "< 0.001"]


def test_training_patients_enter_with_their_out_of_fold_scores_not_their_own(dl_run):
    """The resubstituted training scores separate the classes far better than the model does on
    patients it never saw; the combined model must take the out-of-fold ones (the DL odds ratio
    then matches what the validation cohort shows, not an inflated one)."""
    workspace, run_id, table = dl_run
    result = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("age",)))
    train = table[table["split"] == "train"]
    logit = np.log(train["prob"] / (1 - train["prob"]))  # the out-of-fold scores
    fit, _ = logistic_fit(pd.DataFrame({DL_SCORE: (logit - logit.mean()) / logit.std(ddof=1), "age": train["age"]}),
                          train["y"])
    assert result.odds_ratios.set_index("term").loc[DL_SCORE, "odds_ratio"] == pytest.approx(np.exp(fit.params[DL_SCORE]))
    assert result.dl_scaling == pytest.approx((logit.mean(), logit.std(ddof=1)))
    assert any("out-of-fold score" in note for note in result.notes)
    store = RunStore(workspace)
    scored = store.predictions(result.run_id)
    assert OUT_OF_FOLD not in set(scored["cohort"])  # stored under the training cohort's own name


def test_a_run_without_out_of_fold_scores_is_refused_and_a_finetune_says_what_it_uses(dl_run):
    workspace, run_id, table = dl_run
    store = RunStore(workspace)
    for mode in ("features", "finetune"):
        other = store.create_run(target="tsr", backbone="densenet121", mode=mode, config={"evaluation": "holdout"})
        for cohort in ("train", "validation"):
            rows = table["split"] == cohort
            store.set_predictions(other, cohort, pd.DataFrame({"patient_id": table.loc[rows, "patient_id"],
                                                               "y_true": table.loc[rows, "y"], "prob": table.loc[rows, "prob"]}))
        store.finish(other, "done")
        if mode == "features":
            with pytest.raises(CrcInputError, match="keeps no out-of-fold scores of its training patients"):
                fit_combined(workspace, CombinedConfig(run_id=other, variables=("age",)))
        else:
            notes = fit_combined(workspace, CombinedConfig(run_id=other, variables=("age",))).notes
            assert any("fine-tuned network's own score" in note and "optimistic" in note for note in notes)


def test_the_reference_level_is_the_largest_unless_chosen_and_a_small_one_is_warned_about(dl_run):
    from crc_core.evaluate.combined_model import reference_choices

    workspace, run_id, table = dl_run
    train = table[table["split"] == "train"]
    variable = "pT"
    counts = train[variable].astype(str).value_counts()
    largest, smallest = counts.idxmax(), counts.idxmin()
    choices = reference_choices(workspace, (variable, "age"))
    assert list(choices) == [variable] and choices[variable][0] == (largest, int(counts.max()))
    default = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=(variable,)))
    assert f"{variable} = {largest}" not in set(default.odds_ratios["term"])
    assert any(f"relative to {variable} = {largest}" in note for note in default.notes)
    chosen = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=(variable,), reference_levels={variable: smallest}))
    assert f"{variable} = {largest}" in set(chosen.odds_ratios["term"])
    warned = [note for note in chosen.notes if note.startswith("Warning")]
    assert (counts.min() < 10) == bool(warned)
    if warned:
        assert f"{variable} = {smallest} holds only {counts.min()} training patients" in warned[0]


def test_odds_ratios_cis_and_p_equal_r_glm_on_a_published_example():
    """Spector & Mazzeo (1980), 32 students (statsmodels.datasets.spector, Greene's Econometric
    Analysis). R 4.x: fit <- glm(GRADE ~ GPA + TUCE + PSI, family = binomial); summary(fit) gives
    estimates -13.02135, 2.82611, 0.09516, 2.37869 with SE 4.93127, 1.26293, 0.14155, 1.06456 and
    Pr(>|z|) 0.00828, 0.02524, 0.50143, 0.02545; exp(confint.default(fit)) is exp(estimate ±
    qnorm(0.975) × SE)."""
    from statsmodels.datasets import spector

    data = spector.load_pandas().data
    _, odds = logistic_fit(data[["GPA", "TUCE", "PSI"]], data["GRADE"].astype(int))
    estimate = np.array([2.82611, 0.09516, 2.37869])
    se = np.array([1.26293, 0.14155, 1.06456])
    odds = odds.set_index("term").loc[["GPA", "TUCE", "PSI"]]
    np.testing.assert_allclose(odds["odds_ratio"], np.exp(estimate), rtol=5e-5)
    np.testing.assert_allclose(odds["low"], np.exp(estimate - 1.959964 * se), rtol=5e-5)
    np.testing.assert_allclose(odds["high"], np.exp(estimate + 1.959964 * se), rtol=5e-5)
    np.testing.assert_allclose(odds["p"], [0.02524, 0.50143, 0.02545], atol=1e-5)  # to the printed digit


def test_an_external_cohort_enters_with_its_own_centres_clinical_variables(dl_run, tmp_path):
    # Found in review: another centre's patients took the clinical values of this workspace's
    # patients with the same ID (or none at all).
    workspace, run_id, clinical = dl_run
    store = RunStore(workspace)
    centre = tmp_path / "centre"
    centre.mkdir()
    ids = clinical["patient_id"].head(40)  # the same IDs as home patients, other people
    (centre / "clinical.csv").write_text("patient_id,age\n" + "".join(f"{p},{30 + i}\n" for i, p in enumerate(ids)))
    (centre / "pathology.csv").write_text("patient_id,tsr_percent\n" + "".join(f"{p},50\n" for p in ids))
    prob = np.linspace(0.2, 0.8, len(ids))
    store.set_predictions(run_id, "external:B", pd.DataFrame({"patient_id": ids, "y_true": [0, 1] * 20, "prob": prob}))
    store.update(run_id, info={"external_sources": {"external:B": str(centre)}})
    result = fit_combined(workspace, CombinedConfig(run_id=run_id, variables=("age",)))
    external = store.predictions(result.run_id, "external:B").set_index("patient_id").loc[ids]
    coefficients = result.coefficients
    dl = (np.log(prob / (1 - prob)) - result.dl_scaling[0]) / result.dl_scaling[1]
    expected = 1 / (1 + np.exp(-(coefficients["const"] + coefficients[DL_SCORE] * dl
                                 + coefficients["age"] * (30 + np.arange(len(ids))))))
    np.testing.assert_allclose(external["prob"].to_numpy(), expected, rtol=1e-9)
