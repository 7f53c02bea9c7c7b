"""k-fold cross-validation on the saved 7:3 split keeps the folds it drew: they are saved beside
the split, a change of labels keeps every patient's fold (and says so), and a change of patients
draws them again with a message naming who was added or removed — never silently."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from crc_core.runs.store import RunStore
from crc_core.cohort.splits import folds_csv
from crc_core.training.grid import TrainConfig, train_run

QUICK = dict(backbones=("resnet34",), evaluation="kfold", n_folds=5, weights="random", device="cpu", precision="fp32")


def folds_of(root, run_id) -> dict[str, int]:
    parts = json.loads((root / "runs" / run_id / "partitions.json").read_text())["partitions"]
    return {patient: part["fold"] for part in parts for patient in part["cv"]}


def test_changing_the_labels_keeps_every_patients_fold_and_says_so(training_workspace):
    from sklearn.model_selection import StratifiedKFold

    root = training_workspace
    first = train_run(root, TrainConfig(**QUICK))
    before = folds_of(root, first)
    saved = pd.read_csv(folds_csv(root, "tsr", 5, 0), dtype={"patient_id": str})
    labels = pd.read_csv(root / "labels.csv", dtype={"patient_id": str})
    # The first draw is scikit-learn's StratifiedKFold on that day's labels, as before.
    y = labels.set_index("patient_id").loc[saved["patient_id"], "tsr_high"].astype(int).to_numpy()
    drawn = np.full(len(y), -1)
    for k, (_, held) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y)):
        drawn[held] = k
    assert saved["fold"].tolist() == drawn.tolist() and dict(zip(saved["patient_id"], saved["fold"])) == before

    flipped = labels["patient_id"].isin(sorted(before)[::3])  # a third of the patients change class
    labels.loc[flipped, "tsr_high"] = 1 - labels.loc[flipped, "tsr_high"]
    labels.to_csv(root / "labels.csv", index=False)
    second = train_run(root, TrainConfig(**QUICK))
    assert folds_of(root, second) == before
    message = RunStore(root).run(second).message
    assert f"The labels of {int(flipped.sum())} patient(s)" in message and "keeps its fold" in message
    assert "labels of" not in RunStore(root).run(first).message


def test_a_patient_added_since_the_folds_were_drawn_is_named_and_the_folds_redrawn(training_workspace):
    root = training_workspace
    first = train_run(root, TrainConfig(**QUICK))
    path = folds_csv(root, "tsr", 5, 0)
    saved = pd.read_csv(path, dtype={"patient_id": str})
    newcomer = saved["patient_id"].iloc[7]
    saved.drop(index=7).to_csv(path, index=False)  # the folds as drawn before this patient came
    said = []
    second = train_run(root, TrainConfig(**QUICK), say=said.append)
    message = RunStore(root).run(second).message
    assert f"1 patient(s) added ({newcomer})" in message and "drawn again" in message
    assert any(f"added ({newcomer})" in line for line in said)
    kept = pd.read_csv(path, dtype={"patient_id": str})  # saved again: the next run keeps these
    assert dict(zip(kept["patient_id"], kept["fold"])) == folds_of(root, second)
    assert len(kept) == len(folds_of(root, first))
