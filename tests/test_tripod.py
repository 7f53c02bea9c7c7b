"""TRIPOD+AI item 12g says, cohort by cohort, what is true of the run's probabilities: the
training rows are the fitted model's own (apparent) unless out-of-fold, the validation cohort is
held out, an external cohort is another centre; and nothing is said of a cohort the run lacks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crc_core.reporting import tripod
from crc_core.evaluate.run_evaluation import evaluate_run
from crc_core.runs.store import OUT_OF_FOLD, RunStore
from tests.test_model_evaluation import stored_run


def item_12g(root, result) -> str:
    row = tripod.checklist(root, result).set_index("Item").loc["12g"]
    assert row["Status"] == tripod.DOCUMENTED
    return row["In this work"]


def clauses(text: str) -> dict[str, str]:
    """'cohort (n patients): words' clauses by their cohort."""
    out = {}
    for clause in text.rstrip(".").split("; "):
        head, found, _ = clause.partition(" (")
        if found:
            out[head] = clause
    return out


def test_item_12g_calls_the_training_rows_apparent_and_says_what_each_cohort_is(tmp_path):
    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=("train", "validation", "external:Lanzhou"), n=60)
    train = store.predictions(run_id, "train")
    store.set_predictions(run_id, OUT_OF_FOLD, train.assign(prob=np.clip(train["prob"] * 0.9, 0, 1)))
    result = evaluate_run(store, run_id)
    text = item_12g(tmp_path, result)
    said = clauses(text)
    assert "never saw that patient" not in text  # the old sentence, false of the training rows
    assert said["training"].startswith("training (60 patients): apparent") and "resubstituted" in said["training"]
    assert said["training out-of-fold"].startswith("training out-of-fold (60 patients)") and "left the patient out" in text
    assert said["validation"].startswith("validation (60 patients): held out") and "epoch" not in said["validation"]
    assert said["external: Lanzhou"].startswith("external: Lanzhou (60 patients): another centre")
    assert list(said) == ["training", "training out-of-fold", "validation", "external: Lanzhou"]

    plain = evaluate_run(store, stored_run(store, seed=3, n=40))  # no out-of-fold scores kept, no external cohort
    said = clauses(item_12g(tmp_path, plain))
    assert list(said) == ["training", "validation"] and "40 patients" in said["validation"]


def test_item_12g_follows_the_mode_and_the_evaluation(tmp_path):
    store = RunStore(tmp_path)
    rng = np.random.default_rng(0)

    def run_of(mode, config, cohorts):
        run_id = store.create_run(target="tsr", backbone="densenet121", mode=mode, config=config,
                                  info={"weights": {"pretrained": True}})
        for cohort, n, fold in cohorts:
            y = rng.integers(0, 2, n)
            ids = [f"{cohort[:2]}{fold}-{i}" for i in range(n)]
            store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": ids, "y_true": y,
                                                                "prob": np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)}),
                                  fold=fold)
        store.finish(run_id, "done")
        return evaluate_run(store, run_id)

    tuned = run_of("finetune", {"evaluation": "holdout", "finetune": {"selection": "validation_loss"}},
                   [("train", 50, None), ("validation", 30, None)])
    said = clauses(item_12g(tmp_path, tuned))
    assert "epoch was chosen on this cohort" in said["validation"] and "apparent" in said["training"]
    inner = run_of("finetune", {"evaluation": "holdout", "finetune": {"selection": "inner_split"}},
                   [("train", 50, None), ("validation", 30, None)])
    assert "epoch" not in clauses(item_12g(tmp_path, inner))["validation"]

    folds = run_of("features", {"evaluation": "kfold", "n_folds": 5}, [("cv", 10, k) for k in range(5)])
    text = item_12g(tmp_path, folds)
    said = clauses(text)
    assert list(said) == ["cross-validation"] and said["cross-validation"].startswith("cross-validation (50 patients): held out")
    assert "apparent" not in text and "validation (" not in text.replace("cross-validation (", "")

    harmonised = run_of("features", {"evaluation": "holdout", "harmonise": "transductive"},
                        [("train", 40, None), ("validation", 20, None)])
    said = clauses(item_12g(tmp_path, harmonised))
    assert "transductive" in said["validation"] and "transductive" not in said["training"]
