"""Specifications for crc_core.cohort.splits: the paper's seeded 7:3 split, column, k-fold and external
splits, refusals a user can act on, and atomic saving."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.cli import main as cli_main
from crc_core.cohort.join import split_workspace
from crc_core.cohort.splits import (
    SplitConfig,
    align_split,
    describe_split,
    make_split,
    read_split,
    save_split,
)
from crc_core.workflow import cohort_summary
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
    assert (split["split"] == "train").sum() == n_train


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
        match=r"holds '1' \(2\) ✗, '2' \(1\) ✗; the values marked ✗ are not train, validation or external\. Recode",
    ) as refused:
        make_split(table, SplitConfig(method="column", column="group"))
    assert str(refused.value).count("'1'") == 1  # each value named once
    mixed = pd.DataFrame({"patient_id": ["a", "b", "c"], "group": ["train", "test", None]})
    with pytest.raises(CrcInputError, match=r"'train' \(1\), 'test' \(1\), '\(empty\)' \(1\) ✗"):
        make_split(mixed, SplitConfig(method="column", column="group"))
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
    with pytest.raises(CrcInputError, match=r"duplicate patient IDs in column 'patient_id': P1 \(rows 2, 4\)"):
        make_split(pd.DataFrame({"patient_id": ["P1", "P2", "P1 "]}))


def test_save_and_read_split_roundtrip(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    config = SplitConfig(method="kfold", n_folds=5, seed=4, stratify_by="tsr_high")
    split = make_split(cohort(50, 20), config)
    csv_path, json_path = save_split(workspace, split, config)
    assert csv_path == workspace.split_csv and json_path == workspace.split_json
    meta = json.loads(json_path.read_text())
    assert meta["counts"] == {"train": 50} and meta["n_folds"] == 5
    assert meta["fingerprint"] == config.fingerprint()
    saved = read_split(workspace)
    assert saved.config == config and saved.source == "split.csv"
    assert saved.table["fold"].tolist() == split["fold"].tolist()
    assert saved.table["patient_id"].tolist() == split["patient_id"].tolist()
    assert saved.describe() == "50 train in 5 folds"
    assert not list(workspace.root.glob(".*tmp"))  # no temporary files left behind


def test_split_config_round_trips_and_refuses_unknown_keys(tmp_path):
    config = SplitConfig(method="external", centre_column="centre", external_centres=("B", "C"), seed=3)
    assert SplitConfig.from_json(config.to_json()) == config
    assert SplitConfig.load(config.save(tmp_path / "split.json")) == config
    assert config.fingerprint() == SplitConfig.from_dict(config.to_dict()).fingerprint()
    assert config.fingerprint() != SplitConfig(method="external", centre_column="centre", external_centres=("B",)).fingerprint()
    with pytest.raises(CrcInputError, match=r"unknown setting\(s\) 'sed' for SplitConfig\. Known settings: method"):
        SplitConfig.from_dict({"sed": 4})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CrcInputError, match=r"bad\.json is not valid JSON"):
        SplitConfig.load(tmp_path / "bad.json")


def test_refused_split_leaves_saved_one_untouched(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    good = make_split(cohort(20, 8))
    save_split(workspace, good, SplitConfig())
    before = workspace.split_csv.read_bytes()
    bad = good.assign(split=["train"] * 19 + ["holdout"])
    with pytest.raises(CrcInputError, match="holds 'holdout'; only train, validation, external are allowed"):
        save_split(workspace, bad, SplitConfig())
    assert workspace.split_csv.read_bytes() == before
    assert read_split(Workspace(tmp_path / "empty")) is None


def test_a_damaged_split_is_named_with_what_to_do(tmp_path):
    workspace = Workspace(tmp_path)
    save_split(workspace, make_split(cohort(10, 4)), SplitConfig())
    workspace.split_json.write_text('{"config": {"method": "random", "sed": 1}}')
    with pytest.raises(CrcInputError, match=r"The saved split .* is damaged .*unknown setting.*Make the split again"):
        read_split(workspace)


def small_workspace(root, n=40):
    root.mkdir()
    table = cohort(n, 16)
    table.assign(age=range(n), split=["train"] * 28 + ["validation"] * (n - 28)).drop(columns="tsr_high").to_csv(
        root / "clinical.csv", index=False)
    table.to_csv(root / "pathology.csv", index=False)
    return Workspace(root)


def test_split_workspace_as_the_cli_runs_it(tmp_path):
    workspace = small_workspace(tmp_path / "ws", 30)
    split = split_workspace(workspace, SplitConfig(stratify_by="tsr_high"))
    assert split["split"].value_counts().to_dict() == {"train": 21, "validation": 9}
    assert workspace.split_csv.exists()


def test_one_count_after_kfold_and_the_clinical_column_can_be_restored(tmp_path, capsys):
    # Found in use: after `split --kfold 5`, `info` counted the clinical column (28/12 of 40) while
    # split.csv put all 40 in training folds; and a column split then read the saved split.
    workspace = small_workspace(tmp_path / "ws")
    assert read_split(workspace).describe() == "28 train / 12 validation"  # the clinical column, before any split
    assert cli_main(["--workspace", str(workspace.root), "split", "--kfold", "5"]) == 0
    assert cohort_summary(workspace).describe() == "40 patients · 40 train in 5 folds"
    capsys.readouterr()
    assert cli_main(["--workspace", str(workspace.root), "info"]) == 0
    info = capsys.readouterr().out
    assert "split (split.csv): 40 train in 5 folds" in info and "validation" not in info
    assert cli_main(["--workspace", str(workspace.root), "split", "--column", "split"]) == 0
    restored = read_split(workspace)
    assert restored.describe() == "28 train / 12 validation" and "fold" not in restored.table.columns


def test_align_split_names_patients_without_a_split():
    split = pd.DataFrame({"patient_id": ["a", "b", "c"], "split": ["train", "validation", None]})
    assert align_split(split, ["b", "a"], what="the labels") == (["validation", "train"], ["1 patient(s) in the split are not in the labels: c."])
    with pytest.raises(CrcInputError, match=r"2 patient\(s\) of the labels have no split: c, d"):
        align_split(split, ["a", "c", "d"], what="the labels")


def test_replacing_the_tables_own_split_asks_first(tmp_path):
    # Found in use: one click on the split form replaced the table's own Group split with a random one.
    from crc_core.cohort.splits import SavedSplit, SplitConfig, replaces_table_split

    table = pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "split": ["train", "train", "validation"]})
    own = SavedSplit(table, SplitConfig(method="column", column="cohort"), "split.csv")
    question = replaces_table_split(own, SplitConfig(method="random"))
    assert "your table's own (column 'cohort': 2 train / 1 validation)" in question and "random split replaces it" in question
    assert replaces_table_split(own, SplitConfig(method="column", column="cohort")) == ""
    assert replaces_table_split(SavedSplit(table, None, "clinical.csv"), SplitConfig(method="kfold")) != ""
    assert replaces_table_split(SavedSplit(table, SplitConfig(method="random"), "split.csv"), SplitConfig(seed=3)) == ""
    assert replaces_table_split(None, SplitConfig()) == ""
