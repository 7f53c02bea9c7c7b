"""Picking the best of several runs says on which cohort it was picked, and warns when that is the
cohort whose AUC is then reported: the pick by the training out-of-fold AUC (ours) equals
scikit-learn's roc_auc_score over the stored out-of-fold scores, and leaves validation out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crc_core.runs import views as run_views
from crc_core.runs.store import OUT_OF_FOLD, RunStore
from tests.test_model_evaluation import stored_run

EXTERNAL = "external:Lanzhou"


def with_out_of_fold(store: RunStore, run_id: str, signal: float, seed: int) -> None:
    """Out-of-fold scores of the run's training patients, separating the classes by ``signal``."""
    train = store.predictions(run_id, "train")
    y = train["y_true"].astype(int).to_numpy()
    noise = np.random.default_rng(seed).normal(0, 1, len(y))
    store.set_predictions(run_id, OUT_OF_FOLD, train[["patient_id", "y_true"]].assign(prob=1 / (1 + np.exp(-(signal * (2 * y - 1) + noise)))))


@pytest.fixture
def runs(tmp_path: Path) -> tuple[RunStore, list[str], str]:
    """Three features runs whose out-of-fold and validation rankings disagree, and a fine-tuned run
    that keeps no out-of-fold scores."""
    store = RunStore(tmp_path)
    ids = []
    for seed, (validation_signal, oof_signal) in enumerate([(0.4, 1.6), (1.8, 0.3), (1.0, 0.9)]):
        run_id = stored_run(store, seed=seed, signal=validation_signal, cohorts=("train", "validation", EXTERNAL), n=70,
                            backbone=("densenet121", "resnet34", "resnet50")[seed])
        with_out_of_fold(store, run_id, oof_signal, seed)
        ids.append(run_id)
    tuned = store.create_run(target="tsr", backbone="resnet34", mode="finetune", config={"evaluation": "holdout"},
                             info={"weights": {"pretrained": True}})
    store.set_predictions(tuned, "validation", store.predictions(ids[0], "validation")[["patient_id", "y_true", "prob"]])
    store.finish(tuned, "done")
    return store, ids, tuned


def test_the_pick_by_out_of_fold_auc_equals_sklearn_over_the_stored_scores(runs):
    from sklearn.metrics import roc_auc_score

    store, ids, tuned = runs
    expected = {}
    for run_id in ids:
        rows = store.predictions(run_id, OUT_OF_FOLD)
        expected[run_id] = roc_auc_score(rows["y_true"].astype(int), rows["prob"])
    validation = {r: roc_auc_score(v["y_true"].astype(int), v["prob"]) for r in ids for v in [store.predictions(r, "validation")]}
    picked = run_views.select_best(store, [*ids, tuned])
    assert picked.by == OUT_OF_FOLD and picked.best == max(expected, key=expected.get)
    assert picked.aucs == pytest.approx(expected, abs=1e-12) and picked.skipped == (tuned,)
    assert max(validation, key=validation.get) != picked.best  # the cohorts disagree here: the choice matters
    text = picked.describe()
    assert text.startswith("Picked on the training out-of-fold AUC: ") and f"({expected[picked.best]:.3f})" in text
    assert "took no part in the pick" in text and "Not in the pick: ResNet-34 (fine-tuned)" in text

    on_validation = run_views.select_best(store, [*ids, tuned], by="validation")
    validation[tuned] = roc_auc_score(*(lambda v: (v["y_true"].astype(int), v["prob"]))(store.predictions(tuned, "validation")))
    assert on_validation.best == max(validation, key=validation.get) and on_validation.skipped == ()


@pytest.mark.parametrize("by", [OUT_OF_FOLD, "validation", EXTERNAL])
@pytest.mark.parametrize("reported", ["validation", EXTERNAL])
def test_the_warning_appears_exactly_when_the_pick_is_made_on_the_reported_cohort(runs, by, reported):
    store, ids, _ = runs
    picked = run_views.select_best(store, ids, by=by, reported=reported)
    assert bool(picked.warning) == (by == reported)
    assert picked.describe().startswith(f"Picked on the {run_views.selection_name(by)} AUC")
    if picked.warning:
        assert f"picked on the {run_views.selection_name(reported)} cohort" in picked.warning and "optimistic" in picked.warning
    assert run_views.select_best(store, ids[:1], by=by, reported=by).warning == ""  # one run: nothing was picked


def test_the_report_says_on_which_cohort_each_pick_is_made_and_which_this_run_is(runs):
    store, ids, _ = runs
    by_validation = run_views.select_best(store, ids, by="validation").best
    lines = run_views.selection_summary(store, ids, by_validation)
    assert lines[0].startswith("Picked on the training out-of-fold AUC") and "optimistic" not in lines[0]
    assert lines[1].startswith("Picked on the validation AUC") and "optimistic" in lines[1]
    assert "is the pick on the validation AUC" in lines[2] and "Table 2 is optimistic" in lines[2]
    by_oof = run_views.select_best(store, ids).best
    assert run_views.selection_summary(store, ids, by_oof)[2].endswith("is the pick on the training out-of-fold AUC.")
    assert run_views.selection_summary(store, ids[:1], ids[0]) == []


def test_the_reports_models_section_carries_the_picks(runs, tmp_path):
    from crc_core.reporting import report

    store, ids, _ = runs
    for name in ("clinical.csv", "pathology.csv"):
        (tmp_path / name).write_text("patient_id,x\nP1,1\nP2,2\n")
    by_validation = run_views.select_best(store, ids, by="validation").best
    document = report.build_report(tmp_path, report.ReportConfig(run_id=by_validation))
    models = document.split("<section id='models'>", 1)[1].split("</section>", 1)[0]
    assert "Picked on the training out-of-fold AUC" in models and "Picked on the validation AUC" in models
    assert "if it was chosen for it, its validation AUC in Table 2 is optimistic" in models


def test_the_compare_view_names_the_cohort_of_its_pick_and_warns_on_validation(runs, use_workspace):
    from tests.test_pages import open_view, run_page

    store, ids, _ = runs
    for name in ("clinical.csv", "pathology.csv"):
        (store.workspace.root / name).write_text("patient_id,x\nP1,1\nP2,2\n")
    use_workspace(store.workspace.root)
    app = open_view(run_page("evaluate"), "compare")
    assert not app.exception, app.exception
    said = [i.value for i in app.info if i.value.startswith("Picked on")]
    assert len(said) == 1 and said[0].startswith("Picked on the training out-of-fold AUC") and not [
        w for w in app.warning if "picked on the validation cohort" in w.value]
    app.radio(key="compare_select_by").set_value("validation").run()
    warned = [w.value for w in app.warning if w.value.startswith("Picked on the validation AUC")]
    assert len(warned) == 1 and "picked on the validation cohort" in warned[0] and "optimistic" in warned[0]
