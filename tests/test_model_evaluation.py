"""A run's evaluation from its stored predictions: Table 2 with the training threshold applied
unchanged, notes instead of errors for cohorts that cannot be evaluated, runs compared with
DeLong's test, and the files crc-time evaluate writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crc_core.metrics as ev
from crc_core.evaluate import run_evaluation as me
from crc_core.cli import main as cli_main
from crc_core.errors import CrcInputError
from crc_core.runs.store import RunStore


def stored_run(store: RunStore, *, seed: int = 0, signal: float = 1.0, cohorts=("train", "validation"), n=80,
               evaluation: str = "holdout", backbone: str = "densenet121") -> str:
    rng = np.random.default_rng(seed)
    run_id = store.create_run(target="tsr", backbone=backbone, mode="features", config={"evaluation": evaluation, "seed": seed},
                              info={"weights": {"pretrained": True}})
    for k, cohort in enumerate(cohorts):
        ids = [f"P{k}{i:03d}" for i in range(n)] if cohort != "validation" else [f"V{i:03d}" for i in range(n)]
        y = np.random.default_rng(100 + k).integers(0, 2, n)  # the same outcomes for every run of a cohort
        prob = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, n))))
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": ids, "y_true": y, "prob": prob}))
    store.finish(run_id, "done")
    return run_id


def test_the_training_threshold_is_applied_unchanged_and_the_table_has_the_papers_columns(tmp_path):
    store = RunStore(tmp_path)
    run_id = stored_run(store)
    result = me.evaluate_run(store, run_id)
    predictions = store.predictions(run_id)
    train = predictions[predictions["cohort"] == "train"]
    threshold = ev.youden_threshold(train["y_true"].astype(int), train["prob"])
    assert result.metrics["train"]["threshold"] == result.metrics["validation"]["threshold"] == threshold
    table = result.table2()
    assert list(table.columns) == ["Model", "ACC", "AUC", "95% CI", "Sensitivity", "Specificity", "PPV", "NPV",
                                   "Precision", "Recall", "F1", "Threshold", "Cohort"]
    assert table["Cohort"].tolist() == ["training (apparent: resubstituted)", "validation"]
    per_cohort = me.evaluate_run(store, run_id, threshold_rule="per_cohort")
    assert per_cohort.table2()["Cohort"].tolist() == ["training (apparent: resubstituted)", "validation (own threshold: optimistic)"]
    validation = predictions[predictions["cohort"] == "validation"]
    assert per_cohort.metrics["validation"]["threshold"] == ev.youden_threshold(validation["y_true"].astype(int), validation["prob"])


def sklearn_youden(y, prob) -> float:
    """Youden's optimum by scikit-learn's ROC (every threshold kept; of tied ones, the lowest). pROC
    (and ours) puts its thresholds midway between scores, so the two give the same calls, not the
    same number (:func:`same_calls`)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, prob, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    j = tpr - fpr
    return float(thresholds[finite & np.isclose(j, j[finite].max(), rtol=0, atol=1e-12)].min())


def same_calls(prob, threshold: float, other: float) -> bool:
    prob = np.asarray(prob)
    return bool(((prob >= threshold) == (prob >= other)).all())


def test_the_default_threshold_comes_from_the_training_patients_out_of_fold_scores(tmp_path):
    """Found in an audit: Youden on the fitted model's own training predictions (resubstituted,
    optimistic) gave TSR 0.42 where the stored out-of-fold scores give 0.54. Where a run keeps
    out-of-fold training scores they set the threshold by default, said as ours; the training
    cohort's rule stays selectable; Table 2 labels the training AUC apparent and shows the
    out-of-fold one beside it."""
    from sklearn.metrics import roc_auc_score

    from crc_core.reporting.methods import methods_text
    from crc_core.runs.views import runs_overview
    from crc_core.runs.store import OUT_OF_FOLD

    store = RunStore(tmp_path)
    run_id = stored_run(store, signal=1.5)
    train = store.predictions(run_id, "train")
    # Out-of-fold: the same patients scored by models that never saw them — less separated, shifted.
    rng = np.random.default_rng(5)
    oof = train.assign(prob=1 / (1 + np.exp(-(0.6 * (2 * train["y_true"] - 1) + 0.8 + rng.normal(0, 1, len(train))))))
    store.set_predictions(run_id, OUT_OF_FOLD, oof[["patient_id", "y_true", "prob"]])
    y_oof, y_train = oof["y_true"].astype(int), train["y_true"].astype(int)
    honest, resubstituted = sklearn_youden(y_oof, oof["prob"]), sklearn_youden(y_train, train["prob"])
    assert abs(honest - resubstituted) > 0.05  # the two rules differ here

    result = me.evaluate_run(store, run_id)
    assert result.threshold_rule == "out_of_fold" and me.DEFAULT_THRESHOLD_RULE == "out_of_fold"
    chosen = result.metrics["validation"]["threshold"]
    assert same_calls(oof["prob"], chosen, honest) and not same_calls(oof["prob"], chosen, resubstituted)
    assert result.metrics["train"]["threshold"] == chosen
    validation = store.predictions(run_id, "validation")
    called = validation["prob"] >= chosen
    high = validation["y_true"] == 1
    assert result.metrics["validation"]["sensitivity"] == pytest.approx((called & high).sum() / high.sum())
    assert result.metrics["validation"]["specificity"] == pytest.approx((~called & ~high).sum() / (~high).sum())
    table = result.table2()
    assert table["Cohort"].tolist() == ["training (apparent: resubstituted)", "training (out-of-fold)", "validation"]
    assert table["AUC"].tolist()[:2] == pytest.approx([roc_auc_score(y_train, train["prob"]), roc_auc_score(y_oof, oof["prob"])])
    assert "out-of-fold" in result.threshold_words and "ours" in result.threshold_words
    assert "ours" in dict(methods_text(result.run, result.threshold_rule))["Threshold"]
    assert result.metrics_table()["threshold_from"].tolist()[-1] == "training patients' out-of-fold scores"

    paper = me.evaluate_run(store, run_id, threshold_rule="training")
    assert same_calls(train["prob"], paper.metrics["validation"]["threshold"], resubstituted)
    overview = runs_overview(store).iloc[0]
    assert overview["AUC training (apparent: resubstituted)"] == f"{roc_auc_score(y_train, train['prob']):.3f}"
    assert overview["AUC training (out-of-fold)"] == f"{roc_auc_score(y_oof, oof['prob']):.3f}"

    # A run that keeps no out-of-fold scores (a fine-tune) falls back to its training cohort, and says so.
    plain = stored_run(store, seed=3)
    fallback = me.evaluate_run(store, plain)
    assert fallback.threshold_rule == "training" and any("no out-of-fold scores" in n for n in fallback.notes)
    fallback_train = store.predictions(plain, "train")
    assert same_calls(fallback_train["prob"], fallback.metrics["validation"]["threshold"],
                      sklearn_youden(fallback_train["y_true"].astype(int), fallback_train["prob"]))


def test_cohorts_that_cannot_be_evaluated_are_noted_and_the_rest_works(tmp_path):
    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=("train",))
    store.set_predictions(run_id, "external:Lanzhou", pd.DataFrame({"patient_id": ["X1", "X2"], "prob": [0.2, 0.7]}))
    store.set_predictions(run_id, "external:Xian", pd.DataFrame({"patient_id": ["Y1", "Y2", "Y3"], "y_true": [1, 1, 1],
                                                                 "prob": [0.2, 0.7, 0.9]}))
    result = me.evaluate_run(store, run_id)
    assert list(result.metrics) == ["train"]
    notes = " ".join(result.notes)
    assert "no validation predictions" in notes
    assert "The external:Lanzhou cohort has no labels" in notes
    assert "The external:Xian cohort has one class only (3 patients, all high): the AUC is undefined there" in notes


def test_few_cases_flag_the_cis(tmp_path):
    store = RunStore(tmp_path)
    result = me.evaluate_run(store, stored_run(store, n=12))
    assert result.metrics["validation"]["unreliable"]
    assert any("fewer than 10 patients in a class" in n for n in result.notes)


def test_runs_compared_with_delong_on_the_shared_validation_patients(tmp_path):
    store = RunStore(tmp_path)
    strong, weak = stored_run(store, seed=1, signal=2.0), stored_run(store, seed=2, signal=0.3, backbone="resnet50")
    table, pairs = me.compare_runs(store, [strong, weak])
    assert table["auc"].iloc[0] > table["auc"].iloc[1]
    predictions = {r: store.predictions(r, "validation").set_index("patient_id") for r in (strong, weak)}
    y = predictions[strong]["y_true"].astype(int)
    z, p = ev.delong_test(y, predictions[strong]["prob"], predictions[weak].loc[y.index, "prob"])
    assert pairs.iloc[0][["z", "p"]].tolist() == pytest.approx([z, p])
    assert pairs.iloc[0]["n"] == 80


def test_crc_time_evaluate_writes_the_tables_and_figures_that_open_offline(tmp_path, capsys):
    store = RunStore(tmp_path / "ws")
    run_id = stored_run(store)
    out = tmp_path / "evaluation"
    assert cli_main(["--workspace", str(tmp_path / "ws"), "evaluate", "--run", run_id, "--out", str(out)]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"cohort", "auc", "ci", "threshold"} <= set(metrics.columns) and metrics["cohort"].tolist() == ["train", "validation"]
    predictions = pd.read_csv(out / "predictions.csv")
    assert {"patient_id", "cohort", "y_true", "prob"} <= set(predictions.columns) and len(predictions) == 160
    for stem in ("roc", "violin", "decision_curve-validation", "calibration-validation", "clinical_impact-train"):
        html = (out / f"{stem}.html").read_text()
        assert 'src="plotly.min.js"' in html and "https://" not in html.split("<body>")[0]
    assert (out / "plotly.min.js").stat().st_size > 1_000_000
    assert "validation AUC" in capsys.readouterr().out


def test_a_run_without_predictions_is_said_plainly(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(target="is", backbone="resnet34", mode="finetune", config={})
    store.finish(run_id, "failed", "No crops yet")
    with pytest.raises(CrcInputError, match=r"has no predictions \(failed: No crops yet\)"):
        me.evaluate_run(store, run_id)


def test_the_delong_matrix_reads_both_ways(tmp_path):
    store = RunStore(tmp_path)
    a, b = stored_run(store, seed=1, signal=2.0), stored_run(store, seed=2, signal=0.3)
    _, pairs = me.compare_runs(store, [a, b])
    matrix = me.delong_matrix(pairs, {a: "A", b: "B"})
    d = pairs.iloc[0]["difference"]
    assert matrix.loc["A", "B"].startswith(f"{d:+.3f}") and matrix.loc["B", "A"].startswith(f"{-d:+.3f}")
    assert matrix.loc["A", "A"] == "—"
    assert len(me.cohort_curves(store, [a, b])) == 2


def test_comparisons_read_in_words_with_three_decimals(tmp_path):
    store = RunStore(tmp_path)
    a, b = stored_run(store, seed=1, signal=2.0), stored_run(store, seed=2, signal=0.3)
    table, pairs = me.compare_runs(store, [a, b])
    people = me.comparison_for_people(table)
    assert list(people.columns) == ["Model", "Evaluation", "Seed", "AUC (95% CI)", "Patients", "Folds: mean ± SD (n)", "Run"]
    assert people["AUC (95% CI)"].str.fullmatch(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)").all()
    rows = me.delong_pairs_for_people(pairs, {a: "A", b: "B"})
    assert rows[["First model", "Second model"]].values.tolist() == [["A", "B"]]
    d, low, high = pairs.iloc[0][["difference", "low", "high"]]
    assert rows["AUC difference (95% CI)"].iloc[0] == f"{d:+.3f} ({low:+.3f} to {high:+.3f})"
    assert rows["Holm-adjusted p"].iloc[0].startswith("p ") and rows["p, unadjusted"].iloc[0] == rows["Holm-adjusted p"].iloc[0]
