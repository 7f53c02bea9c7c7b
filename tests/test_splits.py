"""Specifications for crc_core.splits: the paper's seeded 7:3 split, column, k-fold and external
splits, refusals a user can act on, and atomic saving."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.splits import (
    SPLIT_CSV,
    SPLIT_JSON,
    SplitConfig,
    config_from_cli,
    describe_split,
    load_split,
    make_split,
    save_split,
    split_workspace,
)
from crc_core.workspace import Workspace


def cohort(n_patients: int = 315, n_positive: int = 126, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.r_[np.ones(n_positive, dtype=int), np.zeros(n_patients - n_positive, dtype=int)]
    rng.shuffle(label)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n_patients)], "tsr_high": label})


def test_paper_split_315_gives_220_and_95():
    # Paper, Methods: "315 ... randomly divided ... training set (n = 220) and a test set (n = 95), 7:3".
    split = make_split(cohort(), SplitConfig())
    assert split.columns.tolist() == ["patient_id", "split"]
    assert split["split"].value_counts().to_dict() == {"train": 220, "validation": 95}
    assert split["patient_id"].tolist() == cohort()["patient_id"].tolist()  # input order kept
    assert describe_split(split) == "315 patients: 220 train / 95 validation"


@pytest.mark.parametrize(
    ("n_patients", "fraction", "n_train"), [(10, 0.7, 7), (11, 0.5, 6), (99, 0.8, 79), (4, 0.5, 2)]
)
def test_train_size_is_n_times_fraction_rounded(n_patients, fraction, n_train):
    # Python's round(): 11 x 0.5 = 5.5 rounds to the even 6.
    split = make_split(cohort(n_patients, 2), SplitConfig(train_fraction=fraction))
    assert (split["split"] == "train").sum() == n_train == round(n_patients * fraction)


def test_same_seed_same_split_other_seed_other_split():
    table = cohort()
    first = make_split(table, SplitConfig(seed=7))
    assert first.equals(make_split(table, SplitConfig(seed=7)))
    assert not first["split"].equals(make_split(table, SplitConfig(seed=8))["split"])


def test_stratified_split_keeps_prevalence_within_one_patient():
    table = cohort(315, 126)
    for seed in range(5):
        split = make_split(table, SplitConfig(seed=seed, stratify_by="tsr_high"))
        train = split["split"] == "train"
        # 126/315 positive; 220 x 126/315 = 88.0 expected in training, 95 x 126/315 = 38.0 in validation.
        assert abs(table.loc[train, "tsr_high"].sum() - 88) <= 1
        assert abs(table.loc[~train, "tsr_high"].sum() - 38) <= 1


def test_kfold_assigns_every_patient_one_fold_of_documented_size():
    split = make_split(cohort(103, 40), SplitConfig(method="kfold", n_folds=10, seed=3))
    assert split.columns.tolist() == ["patient_id", "split", "fold"]
    assert set(split["split"]) == {"train"}
    # scikit-learn KFold docs: "The first n_samples % n_splits folds have size n_samples // n_splits + 1".
    assert split["fold"].value_counts().sort_index().tolist() == [11, 11, 11] + [10] * 7
    again = make_split(cohort(103, 40), SplitConfig(method="kfold", n_folds=10, seed=3))
    assert split.equals(again)


def test_stratified_kfold_keeps_prevalence_per_fold():
    table = cohort(100, 40)
    split = make_split(table, SplitConfig(method="kfold", n_folds=5, stratify_by="tsr_high"))
    for fold in range(5):
        in_fold = split["fold"] == fold
        assert in_fold.sum() == 20
        assert abs(table.loc[in_fold, "tsr_high"].sum() - 8) <= 1  # 20 x 40/100 = 8


def test_column_split_accepts_usual_spellings():
    table = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "set": ["Training", " test", "VAL", "train"]})
    split = make_split(table, SplitConfig(method="column", column="set"))
    assert split["split"].tolist() == ["train", "validation", "validation", "train"]


def test_column_split_with_other_values_names_them_and_the_fix():
    table = pd.DataFrame({"patient_id": ["a", "b", "c"], "group": [1, 2, 1]})
    with pytest.raises(
        CrcInputError,
        match=r"holds '1', '2'; '1', '2' cannot be read\. Map each value to 'train', 'validation'",
    ):
        make_split(table, SplitConfig(method="column", column="group"))
    with pytest.raises(CrcInputError, match="no split column 'cohort'"):
        make_split(table, SplitConfig(method="column", column="cohort"))


def test_external_split_by_centre():
    table = cohort(40, 16)
    table["centre"] = ["A"] * 30 + ["B "] * 10
    split = make_split(table, SplitConfig(method="external", centre_column="centre", external_centres=("B",)))
    assert (split["split"].iloc[30:] == "external").all()
    assert split["split"].iloc[:30].value_counts().to_dict() == {"train": 21, "validation": 9}
    with pytest.raises(
        CrcInputError, match=r"Centre\(s\) 'C' are not in column 'centre', which holds 'A', 'B'"
    ):
        make_split(table, SplitConfig(method="external", centre_column="centre", external_centres=("C",)))
    with pytest.raises(CrcInputError, match="Every patient is from an external centre"):
        make_split(table, SplitConfig(method="external", centre_column="centre", external_centres=("A", "B")))


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(CrcInputError, match=r"training fraction must be between 0 and 1"):
        SplitConfig(train_fraction=fraction)


def test_config_refusals():
    with pytest.raises(
        CrcInputError, match="Split method 'bootstrap' is not one of random, column, kfold, external"
    ):
        SplitConfig(method="bootstrap")
    with pytest.raises(CrcInputError, match="5 or 10 folds; got 3"):
        SplitConfig(method="kfold", n_folds=3)
    with pytest.raises(CrcInputError, match="seed must be a whole number 0 or more"):
        SplitConfig(seed=-1)
    with pytest.raises(CrcInputError, match="needs the name of the column"):
        SplitConfig(method="column")
    with pytest.raises(CrcInputError, match="needs at least one centre"):
        SplitConfig(method="external", centre_column="centre")


def test_split_too_small_for_fraction_is_refused():
    with pytest.raises(CrcInputError, match="gives 2 training and 0 validation patients"):
        make_split(cohort(2, 1), SplitConfig(train_fraction=0.9))


def test_stratify_column_with_missing_values_names_patients():
    table = cohort(10, 4)
    table["tsr_high"] = table["tsr_high"].astype(float)
    table.loc[[2, 5], "tsr_high"] = np.nan
    with pytest.raises(
        CrcInputError, match=r"Cannot stratify by 'tsr_high': it is missing for patient\(s\) P002, P005"
    ):
        make_split(table, SplitConfig(stratify_by="tsr_high"))


def test_stratify_class_with_one_member_is_named():
    table = cohort(20, 1)
    with pytest.raises(CrcInputError, match=r"every class needs at least 2 patients, but '1' has 1"):
        make_split(table, SplitConfig(stratify_by="tsr_high"))
    with pytest.raises(CrcInputError, match=r"no such column"):
        make_split(table, SplitConfig(stratify_by="TIL"))


def test_stratified_kfold_needs_as_many_per_class_as_folds():
    with pytest.raises(CrcInputError, match=r"at least 5 patients, but '1' has 4"):
        make_split(cohort(30, 4), SplitConfig(method="kfold", stratify_by="tsr_high"))


def test_kfold_with_fewer_patients_than_folds_is_refused():
    with pytest.raises(
        CrcInputError, match="10-fold cross-validation needs at least 10 patients; the cohort has 6"
    ):
        make_split(cohort(6, 3), SplitConfig(method="kfold", n_folds=10))


def test_cohort_without_ids_or_with_duplicates_is_refused():
    with pytest.raises(CrcInputError, match="no 'patient_id' column"):
        make_split(pd.DataFrame({"id": [1, 2]}))
    with pytest.raises(CrcInputError, match="Duplicate patient IDs in the cohort: P1"):
        make_split(pd.DataFrame({"patient_id": ["P1", "P2", "P1 "]}))


def test_save_and_load_split_roundtrip(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    config = SplitConfig(method="kfold", n_folds=5, seed=4, stratify_by="tsr_high")
    split = make_split(cohort(50, 20), config)
    csv_path, json_path = save_split(workspace, split, config)
    assert csv_path == workspace.root / SPLIT_CSV and json_path == workspace.root / SPLIT_JSON
    meta = json.loads(json_path.read_text())
    assert meta["counts"] == {"train": 50}
    assert meta["config"]["n_folds"] == 5
    loaded, loaded_config = load_split(workspace)
    assert loaded_config == config
    pd.testing.assert_frame_equal(loaded, split, check_dtype=False)
    assert not list(workspace.root.glob(".*tmp"))  # no temporary files left behind


def test_refused_split_leaves_saved_one_untouched(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    good = make_split(cohort(20, 8))
    save_split(workspace, good, SplitConfig())
    before = (workspace.root / SPLIT_CSV).read_bytes()
    bad = good.assign(split=["train"] * 19 + ["holdout"])
    with pytest.raises(CrcInputError, match="holds 'holdout'; only train, validation, external are allowed"):
        save_split(workspace, bad, SplitConfig())
    assert (workspace.root / SPLIT_CSV).read_bytes() == before
    assert load_split(Workspace(tmp_path / "empty")) is None


def test_split_workspace_as_the_cli_runs_it(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    table = cohort(30, 12)
    table.assign(age=range(30)).drop(columns="tsr_high").to_csv(root / "clinical.csv", index=False)
    table.to_csv(root / "pathology.csv", index=False)
    config = config_from_cli(fraction=0.7, seed=0, stratify="tsr_high")
    split = split_workspace(Workspace(root), config)
    assert split["split"].value_counts().to_dict() == {"train": 21, "validation": 9}
    assert (root / SPLIT_CSV).exists()
    assert config_from_cli(kfold=10).method == "kfold"
