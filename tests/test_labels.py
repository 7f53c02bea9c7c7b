"""Pathology labels: TSR, TILs, IS, TIME (crc_core.labels.rules)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from crc_core.labels import rules as lab
from crc_core import paper
from crc_core.metrics.kappa import pathologist_agreement
from crc_core.errors import CrcInputError
from crc_core.labels.rules import MARKERS, LabelConfig, LabelResult, build_labels
from crc_core.workspace import Workspace

GIVEN = {m: 10.0 for m in MARKERS}


def pathology_frame(n: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "patient_id": [f"CRC{i:03d}" for i in range(1, n + 1)],
            "tsr_percent": rng.integers(1, 10, n) * 10,
            "til_grade": rng.integers(0, 4, n),
            **{marker: rng.integers(0, 200, n).astype(float) for marker in MARKERS},
        }
    )


def split_frame(table: pd.DataFrame, n_train: int) -> pd.DataFrame:
    n = len(table)
    return pd.DataFrame({"patient_id": table["patient_id"], "split": ["train"] * n_train + ["validation"] * (n - n_train)})


def given_config(**changes) -> LabelConfig:
    return LabelConfig(**{"is_cutoff_source": "given", "marker_cutoffs": GIVEN, **changes})


# ---------------------------------------------------------------------------------------------
# The paper's rules


def test_defaults_are_the_papers():
    config = LabelConfig()
    assert config.tsr_cutoff_percent == 50  # "TSR greater than 50%"
    assert config.til_high_min_grade == 2  # "high TILs group (... graded as 2-3 ...)"
    assert config.is_high_above == 2  # "A high IS was defined as an IS of > 2"
    assert config.time_high_min_score == 2  # "scores of 2 or 3 indicated a high TIME"
    assert config.time_points == lab.DEFAULT_TIME_POINTS == {"tsr": "high", "til": "high", "is": "high"}
    assert config.resolution == "max" and config.is_cutoff_source == "train_median"


def test_defaults_say_what_the_quoted_sentences_say():
    # The numbers in the paper's own sentences (crc_core.paper) fix the defaults: a change to either
    # side without the other fails here.
    import re

    config = LabelConfig()
    assert re.search(r"TSR greater than (\d+)%", paper.TSR_RULE).group(1) == f"{config.tsr_cutoff_percent:g}"
    assert re.search(r"in (\d+)% increments", paper.TSR_STEP_RULE).group(1) == f"{config.tsr_step_percent:g}"
    assert "maximum value was finally selected" in paper.TSR_MAX_RULE and config.resolution == "max"
    assert re.search(r"high TILs group \(consisting of cases graded as (\d)-3", paper.TIL_RULE).group(1) == str(config.til_high_min_grade)
    assert re.search(r"high IS was defined as an IS of > (\d)", paper.IS_RULE).group(1) == str(config.is_high_above)
    assert re.search(r"scores of (\d) or 3 indicated a high TIME", paper.TIME_RULE).group(1) == str(config.time_high_min_score)
    assert paper.TIME_DIRECTION_SOURCE in paper.TIME_RULE and "elevated levels" in paper.TIME_DIRECTION_SOURCE
    assert set(config.time_points.values()) == {"high"}


def test_tsr_high_is_strictly_above_the_cutoff_and_adjustable():
    table = pathology_frame(4)
    table["tsr_percent"] = [40, 50, 60, 90]
    assert build_labels(table, None, given_config()).labels["tsr_high"].tolist() == [0, 0, 1, 1]
    assert build_labels(table, None, given_config(tsr_cutoff_percent=40)).labels["tsr_high"].tolist() == [0, 1, 1, 1]


def test_til_high_is_grade_2_to_3_and_adjustable():
    table = pathology_frame(4)
    table["til_grade"] = [0, 1, 2, 3]
    assert build_labels(table, None, given_config()).labels["til_high"].tolist() == [0, 0, 1, 1]
    assert build_labels(table, None, given_config(til_high_min_grade=3)).labels["til_high"].tolist() == [0, 0, 0, 1]


def test_is_score_counts_markers_above_given_cutoffs_and_is_high_above_2():
    table = pathology_frame(5)
    # markers above 10: none, one, two, three, four
    rows = [[0, 0, 0, 0], [11, 0, 0, 0], [11, 11, 0, 0], [11, 11, 11, 10], [50, 50, 50, 50]]
    table[list(MARKERS)] = np.array(rows, dtype=float)
    result = build_labels(table, None, given_config())
    assert result.labels["is_score"].tolist() == [0, 1, 2, 3, 4]
    assert result.labels["is_high"].tolist() == [0, 0, 0, 1, 1]
    assert result.cutoffs["cd3_ca"] == {"value": 10.0, "source": "given", "n": None}
    lower = build_labels(table, None, given_config(is_high_above=1)).labels["is_high"].tolist()
    assert lower == [0, 0, 1, 1, 1]


def test_training_median_cutoffs_use_training_rows_only():
    table = pathology_frame(20, seed=3)
    split = split_frame(table, 14)
    result = build_labels(table, split, LabelConfig())
    for marker in MARKERS:
        # numpy's median of the 14 training rows: the reference the docstring promises (R median)
        assert result.cutoffs[marker]["value"] == pytest.approx(np.median(table[marker][:14]))
        assert result.cutoffs[marker]["n"] == 14

    changed = table.copy()
    changed.loc[14:, list(MARKERS)] = 10_000.0  # only validation patients change
    moved = build_labels(changed, split, LabelConfig())
    assert moved.cutoffs == result.cutoffs
    pd.testing.assert_frame_equal(moved.labels.iloc[:14], result.labels.iloc[:14])
    assert moved.labels["is_score"].iloc[14:].tolist() == [4] * 6

    # ...whereas a change to training patients does move the cut-offs (so the check can fail)
    changed_train = table.copy()
    changed_train.loc[:13, "cd3_ca"] = changed_train.loc[:13, "cd3_ca"] + 1000
    assert build_labels(changed_train, split, LabelConfig()).cutoffs["cd3_ca"]["value"] != result.cutoffs["cd3_ca"]["value"]


def test_a_count_equal_to_the_median_scores_no_point():
    table = pathology_frame(3)
    table[list(MARKERS)] = np.array([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]], dtype=float)
    result = build_labels(table, split_frame(table, 3), LabelConfig())
    assert result.cutoffs["cd8_im"]["value"] == 2
    assert result.labels["is_score"].tolist() == [0, 0, 4]


def test_split_as_series_and_renamed_training_split():
    table = pathology_frame(6)
    by_row = pd.Series(["Training"] * 4 + ["test"] * 2, index=table.index)
    by_id = pd.Series(["Training"] * 4 + ["test"] * 2, index=table["patient_id"]).iloc[::-1]
    config = LabelConfig(train_split="training")
    first = build_labels(table, by_row, config)
    second = build_labels(table, by_id, config)
    assert first.cutoffs == second.cutoffs
    assert first.cutoffs["cd3_im"]["value"] == pytest.approx(np.median(table["cd3_im"][:4]))


def test_is_column_mode_takes_the_given_score():
    table = pathology_frame(5).drop(columns=list(MARKERS))
    table["is_score"] = [0, 1, 2, 3, 4]
    result = build_labels(table, None, LabelConfig(is_cutoff_source="is_column"))
    assert result.labels["is_high"].tolist() == [0, 0, 0, 1, 1]
    assert result.cutoffs == {}
    with pytest.raises(CrcInputError, match=r"row 3 \(patient CRC002\), column is_score: 5 is not an immune score"):
        table.loc[1, "is_score"] = 5
        build_labels(table, None, LabelConfig(is_cutoff_source="is_column"))


def test_time_score_one_point_per_high_component_and_flippable_direction():
    table = pathology_frame(40, seed=5)
    result = build_labels(table, None, given_config(marker_cutoffs={m: 100.0 for m in MARKERS}))
    labels = result.labels
    # independent reading of the paper: count of high components, high TIME at 2-3
    expected = (table["tsr_percent"] > 50).astype(int) + (table["til_grade"] >= 2).astype(int) + labels["is_high"].astype(int)
    assert labels["time_score"].tolist() == expected.tolist()
    assert labels["time_high"].tolist() == (expected >= 2).astype(int).tolist()

    flipped = build_labels(
        table, None, given_config(marker_cutoffs={m: 100.0 for m in MARKERS}, time_tsr_point="low")
    ).labels
    expected_flipped = expected - labels["tsr_high"].astype(int) + (1 - labels["tsr_high"].astype(int))
    assert flipped["time_score"].tolist() == expected_flipped.tolist()
    strict = build_labels(table, None, given_config(time_high_min_score=3)).labels
    assert strict["time_high"].tolist() == (strict["time_score"] == 3).astype(int).tolist()


def test_labels_table_columns_and_integer_types():
    result = build_labels(pathology_frame(), None, given_config())
    assert list(result.labels.columns) == [
        "patient_id", "tsr_percent", "til_grade", *MARKERS,
        "tsr_high", "til_high", "is_score", "is_high", "time_score", "time_high",
    ]
    for column in lab.LABEL_COLUMNS:
        assert str(result.labels[column].dtype) == "Int64"
    assert set(result.labels["tsr_high"].dropna().unique()) <= {0, 1}


# ---------------------------------------------------------------------------------------------
# Two pathologists


def two_readers() -> pd.DataFrame:
    table = pathology_frame(5)
    table["tsr_percent"] = [40, 50, 60, 30, 70]
    table["tsr_percent_r2"] = [50, 50, 40, np.nan, 80]
    table["til_grade"] = [1, 2, 0, 3, 1]
    table["til_grade_r2"] = [2, 2, 1, 3, np.nan]
    return table


def test_resolution_max():
    labels = build_labels(two_readers(), None, given_config()).labels
    assert labels["tsr_percent"].tolist() == [50, 50, 60, 30, 80]
    assert labels["til_grade"].tolist() == [2, 2, 1, 3, 1]


def test_resolution_mean_rounds_half_up_to_the_step():
    labels = build_labels(two_readers(), None, given_config(resolution="mean")).labels
    # (40+50)/2 = 45 → 50; (60+40)/2 = 50; one reader only → that reading; (70+80)/2 = 75 → 80
    assert labels["tsr_percent"].tolist() == [50, 50, 50, 30, 80]
    # (1+2)/2 = 1.5 → 2; (0+1)/2 = 0.5 → 1
    assert labels["til_grade"].tolist() == [2, 2, 1, 3, 1]


def test_resolution_first_ignores_reader_two():
    labels = build_labels(two_readers(), None, given_config(resolution="first")).labels
    assert labels["tsr_percent"].tolist() == [40, 50, 60, 30, 70]


def test_resolution_consensus():
    table = two_readers()
    table["tsr_percent_consensus"] = [40, np.nan, 50, np.nan, 70]
    table["til_grade_consensus"] = [1, np.nan, 0, np.nan, np.nan]
    labels = build_labels(table, None, given_config(resolution="consensus")).labels
    assert labels["tsr_percent"].tolist() == [40, 50, 50, 30, 70]
    assert labels["til_grade"].tolist() == [1, 2, 0, 3, 1]
    table.loc[0, "til_grade_consensus"] = np.nan
    with pytest.raises(CrcInputError, match=r"til_grade: the pathologists differ and there is no consensus value for row 2 \(patient CRC001\)"):
        build_labels(table, None, given_config(resolution="consensus"))
    with pytest.raises(CrcInputError, match="needs a column tsr_percent_consensus"):
        build_labels(two_readers(), None, given_config(resolution="consensus"))


def test_agreement_summary_matches_scikit_learn():
    table = pathology_frame(30, seed=11)
    rng = np.random.default_rng(1)
    table["til_grade_r2"] = np.clip(table["til_grade"] + rng.choice([-1, 0, 0, 1], 30), 0, 3)
    table["tsr_percent_r2"] = np.clip(table["tsr_percent"] + 10 * rng.choice([-1, 0, 0, 1], 30), 10, 90)
    summary = pathologist_agreement(table)
    assert len(summary) == 6
    til = summary.set_index(["item", "weights"]).loc["til_grade"]
    for weights in ("none", "linear", "quadratic"):
        expected = cohen_kappa_score(
            table["til_grade"], table["til_grade_r2"], weights=None if weights == "none" else weights, labels=[0, 1, 2, 3]
        )
        assert til.loc[weights, "kappa"] == pytest.approx(expected, abs=1e-12)
        assert til.loc[weights, "ci_low"] < til.loc[weights, "kappa"] < til.loc[weights, "ci_high"]
    assert til.loc["none", "percent_agreement"] == pytest.approx(100 * (table["til_grade"] == table["til_grade_r2"]).mean())
    assert pathologist_agreement(pathology_frame()).empty


# ---------------------------------------------------------------------------------------------
# Missing and bad input


def test_missing_markers_give_no_is_not_zero():
    table = pathology_frame(4)
    table.loc[2, "cd8_im"] = np.nan
    result = build_labels(table, None, given_config())
    assert pd.isna(result.labels["is_score"].iloc[2])
    assert pd.isna(result.labels["is_high"].iloc[2]) and pd.isna(result.labels["time_score"].iloc[2])
    assert result.labels["is_score"].notna().sum() == 3
    assert any("row 4 (patient CRC003): cd8_im" in w for w in result.warnings)


def test_missing_tsr_gives_empty_tsr_label_and_warning():
    table = pathology_frame(3)
    table["tsr_percent"] = table["tsr_percent"].astype(float)
    table.loc[0, "tsr_percent"] = np.nan
    result = build_labels(table, None, given_config())
    assert pd.isna(result.labels["tsr_high"].iloc[0]) and pd.isna(result.labels["time_high"].iloc[0])
    assert any("No tsr_percent for row 2 (patient CRC001)" in w for w in result.warnings)


def test_tsr_off_the_10_percent_grid_is_a_warning_not_an_error():
    table = pathology_frame(3)
    table["tsr_percent"] = [45, 50, 60]
    result = build_labels(table, None, given_config())
    assert result.labels["tsr_high"].tolist() == [0, 0, 1]
    assert any("row 2 (patient CRC001), column tsr_percent: TSR 45% is not a multiple of 10%" in w for w in result.warnings)


def test_duplicate_patient_ids_are_named_with_their_rows():
    table = pathology_frame(5)
    table.loc[3, "patient_id"] = "CRC002"
    with pytest.raises(CrcInputError, match=r"duplicate patient IDs in column 'patient_id': CRC002 \(rows 3, 5\)"):
        build_labels(table, None, given_config())


def test_no_patient_id_column():
    with pytest.raises(CrcInputError, match="The pathology table has no 'patient_id' column. Its columns are: id, tsr_percent"):
        build_labels(pathology_frame().rename(columns={"patient_id": "id"}), None, given_config())


def test_empty_table():
    with pytest.raises(CrcInputError, match="The pathology table is empty"):
        build_labels(pathology_frame().iloc[0:0], None, given_config())
    with pytest.raises(CrcInputError, match="The pathology table is empty"):
        build_labels(pd.DataFrame(), None, given_config())


def test_blank_patient_id():
    table = pathology_frame(4)
    table.loc[1, "patient_id"] = "  "
    with pytest.raises(CrcInputError, match=r"the patient ID \(column 'patient_id'\) is empty in row\(s\) 3"):
        build_labels(table, None, given_config())


def test_missing_required_column():
    with pytest.raises(CrcInputError, match=r"lacks column\(s\) cd8_im"):
        build_labels(pathology_frame().drop(columns=["cd8_im"]), None, given_config())


def test_text_in_a_numeric_column_names_row_patient_and_column():
    table = pathology_frame(12).astype({"cd3_ca": object})
    table.loc[10, "cd3_ca"] = "n/a"
    with pytest.raises(CrcInputError, match=r"row 12 \(patient CRC011\), column cd3_ca: 'n/a' is not a number"):
        build_labels(table, None, given_config())


def test_empty_text_cells_count_as_missing_not_as_text():
    table = pathology_frame(3).astype({"cd3_ca": object})
    table.loc[0, "cd3_ca"] = " "
    assert pd.isna(build_labels(table, None, given_config()).labels["is_score"].iloc[0])


@pytest.mark.parametrize("value", [-10, 110])
def test_tsr_outside_0_to_100(value):
    table = pathology_frame(3)
    table.loc[1, "tsr_percent"] = value
    with pytest.raises(CrcInputError, match=rf"row 3 \(patient CRC002\), column tsr_percent: {value} is outside 0-100"):
        build_labels(table, None, given_config())


def test_tsr_of_second_reader_is_checked_too():
    table = two_readers()
    table.loc[4, "tsr_percent_r2"] = 180
    with pytest.raises(CrcInputError, match=r"row 6 \(patient CRC005\), column tsr_percent_r2: 180 is outside 0-100"):
        build_labels(table, None, given_config())


@pytest.mark.parametrize("value", [4, -1, 1.5])
def test_til_grade_outside_0_to_3_or_not_whole(value):
    table = pathology_frame(3).astype({"til_grade": float})
    table.loc[2, "til_grade"] = value
    with pytest.raises(CrcInputError, match=rf"row 4 \(patient CRC003\), column til_grade: {value:g} is not a TIL grade"):
        build_labels(table, None, given_config())


def test_negative_marker_count():
    table = pathology_frame(3)
    table.loc[0, "cd8_ca"] = -3
    with pytest.raises(CrcInputError, match=r"row 2 \(patient CRC001\), column cd8_ca: -3 is negative"):
        build_labels(table, None, given_config())


def test_row_numbers_can_come_from_the_reader():
    table = pathology_frame(3).astype({"cd3_im": object})
    table.loc[2, "cd3_im"] = "many"
    with pytest.raises(CrcInputError, match=r"row 9 \(patient CRC003\), column cd3_im"):
        build_labels(table, None, given_config(), row_numbers=[2, 3, 9])


def test_split_problems():
    table = pathology_frame(8)
    split = split_frame(table, 5).iloc[:5]
    with pytest.raises(CrcInputError, match=r"3 patient\(s\) of the pathology table have no split: CRC006, CRC007, CRC008"):
        build_labels(table, split, LabelConfig())
    with pytest.raises(CrcInputError, match="training cohort's medians, so the split is needed"):
        build_labels(table, None, LabelConfig())
    with pytest.raises(CrcInputError, match="No patient is in the training split 'train'"):
        build_labels(table, pd.DataFrame({"patient_id": table["patient_id"], "split": "validation"}), LabelConfig())
    with pytest.raises(CrcInputError, match="The split table has no 'split' column"):
        build_labels(table, table[["patient_id"]], LabelConfig())
    blank = split_frame(table, 5)
    blank.loc[6, "split"] = None
    with pytest.raises(CrcInputError, match=r"1 patient\(s\) of the pathology table have no split: CRC007"):
        build_labels(table, blank, LabelConfig())
    extra = pd.concat([split_frame(table, 5), pd.DataFrame({"patient_id": ["CRC999"], "split": ["train"]})])
    assert any("CRC999" in w for w in build_labels(table, extra, LabelConfig()).warnings)


def test_no_training_value_for_a_marker():
    table = pathology_frame(4)
    table.loc[:1, "cd3_ca"] = np.nan
    with pytest.raises(CrcInputError, match="No training patient has a cd3_ca value"):
        build_labels(table, split_frame(table, 2), LabelConfig())


# ---------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tsr_cutoff_percent": 120}, "TSR cut-off must be a percentage from 0 to 99"),
        ({"tsr_cutoff_percent": "fifty"}, "TSR cut-off must be a number"),
        ({"til_high_min_grade": 4}, "TIL cut-off grade must be 1, 2 or 3"),
        ({"til_high_min_grade": 1.5}, "TIL cut-off grade must be a whole number"),
        ({"is_high_above": 4}, "IS cut-off must be 0, 1, 2 or 3"),
        ({"time_high_min_score": 0}, "TIME cut-off must be 1, 2 or 3"),
        ({"is_cutoff_source": "median"}, "IS cut-off source must be one of train_median, given, is_column"),
        ({"time_tsr_point": "up"}, "TSR point of the TIME score goes to 'high' or 'low'"),
        ({"resolution": "min"}, "must be one of max, mean, first, consensus"),
        ({"is_cutoff_source": "given", "marker_cutoffs": {"cd3_ca": 1}}, "missing: cd3_im, cd8_ca, cd8_im"),
        ({"marker_cutoffs": {"cd4_ca": 1}}, "'cd4_ca' is not an IS marker"),
        ({"marker_cutoffs": {"cd3_ca": -1}}, "cd3_ca cut-off must be 0 or more"),
        ({"train_split": " "}, "Name the training split"),
    ],
)
def test_config_refuses_bad_values(changes, message):
    with pytest.raises(CrcInputError, match=message):
        LabelConfig(**changes)


def test_config_round_trips_through_json():
    config = given_config(tsr_cutoff_percent=40, time_tsr_point="low", resolution="mean")
    restored = LabelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.marker_cutoff_map == GIVEN
    with pytest.raises(CrcInputError, match=r"unknown setting\(s\) 'tsr_cut' for LabelConfig"):
        LabelConfig.from_dict({"tsr_cut": 50})
    assert LabelConfig.from_json(config.to_json()).fingerprint() == config.fingerprint()


# ---------------------------------------------------------------------------------------------
# Workspace


def test_save_labels_writes_csv_and_json(tmp_path):
    table = pathology_frame(6)
    config = LabelConfig()
    result = build_labels(table, split_frame(table, 4), config)
    csv_path, json_path = lab.save_labels(Workspace(tmp_path), result, config)
    saved = pd.read_csv(csv_path, dtype={"patient_id": str})
    assert saved["patient_id"].tolist() == table["patient_id"].tolist()
    assert saved["time_high"].tolist() == result.labels["time_high"].tolist()
    meta = json.loads(json_path.read_text())
    assert LabelConfig.from_dict(meta["config"]) == config
    assert meta["cutoffs"]["cd3_ca"]["value"] == result.cutoffs["cd3_ca"]["value"]
    assert lab.read_label_config(tmp_path) == config
    assert not list(tmp_path.glob(".*.tmp"))


def test_save_labels_refuses_bad_result_and_leaves_files(tmp_path):
    table = pathology_frame(4)
    config = given_config()
    good = build_labels(table, None, config)
    lab.save_labels(tmp_path, good, config)
    before = (tmp_path / "labels.csv").read_bytes(), (tmp_path / "labels.json").read_bytes()
    duplicated = LabelResult(pd.concat([good.labels, good.labels.iloc[:1]]), good.cutoffs, [])
    with pytest.raises(CrcInputError, match=r"The labels table: duplicate patient IDs in column .patient_id.: CRC001 \(rows 2, 6\)"):
        lab.save_labels(tmp_path, duplicated, config)
    with pytest.raises(CrcInputError, match=r"lack column\(s\) time_high"):
        lab.save_labels(tmp_path, LabelResult(good.labels.drop(columns=["time_high"])), config)
    assert ((tmp_path / "labels.csv").read_bytes(), (tmp_path / "labels.json").read_bytes()) == before


def test_label_workspace_reads_pathology_and_split_and_counts_rows_like_a_spreadsheet(tmp_path):
    table = pathology_frame(6)
    table["patient_id"] = [f"00{i}" for i in range(1, 7)]  # leading zeros stay
    table.to_csv(tmp_path / "pathology.csv", index=False)
    split_frame(table, 4).to_csv(tmp_path / "split.csv", index=False)
    result = lab.label_workspace(tmp_path)
    assert result.labels["patient_id"].tolist() == table["patient_id"].tolist()
    assert (tmp_path / "labels.csv").exists() and (tmp_path / "labels.json").exists()
    assert lab.describe_labels(result).startswith("6 patients: tsr_high ")

    # a blank line keeps its spreadsheet row number: the bad cell is on row 5
    lines = (tmp_path / "pathology.csv").read_text().splitlines()
    lines.insert(2, "")
    lines[4] = lines[4].replace(lines[4].split(",")[3], "x", 1)
    (tmp_path / "pathology.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(CrcInputError, match=r"row 5 \(patient 003\), column cd3_ca: 'x' is not a number"):
        lab.label_workspace(tmp_path)


def test_label_workspace_takes_the_clinical_split_when_no_split_csv(tmp_path):
    table = pathology_frame(5)
    table.to_csv(tmp_path / "pathology.csv", index=False)
    split_frame(table, 3).to_csv(tmp_path / "clinical.csv", index=False)
    result = lab.label_workspace(tmp_path)
    assert result.cutoffs["cd8_ca"]["value"] == pytest.approx(np.median(table["cd8_ca"][:3]))


# ---------------------------------------------------------------------------------------------
# Summaries


def test_label_prevalence_per_split():
    table = pathology_frame(10, seed=2)
    split = split_frame(table, 7)
    labels = build_labels(table, split, LabelConfig()).labels
    prevalence = lab.label_prevalence(labels, split).set_index(["label", "split"])
    train = labels["tsr_high"].iloc[:7]
    assert prevalence.loc[("tsr_high", "train"), "n_high"] == train.sum()
    assert prevalence.loc[("tsr_high", "train"), "percent_high"] == round(100 * train.mean(), 1)
    assert prevalence.loc[("tsr_high", "all"), "n"] == 10
    assert list(prevalence.index.get_level_values("split")[:3]) == ["train", "validation", "all"]
    assert set(lab.label_prevalence(labels)["split"]) == {"all"}


def test_label_crosstab_counts_with_totals():
    labels = pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(7)],
        "tsr_high": pd.array([1, 1, 0, 0, 0, 1, pd.NA], dtype="Int64"),
        "time_high": pd.array([1, 0, 0, 0, 1, 1, 1], dtype="Int64"),
    })
    table = lab.label_crosstab(labels, "tsr_high", "time_high")
    # counted by hand: tsr 0 → time 0 twice, time 1 once; tsr 1 → time 0 once, time 1 twice; P6 has no TSR
    assert table.loc[0, 0] == 2 and table.loc[0, 1] == 1 and table.loc[1, 0] == 1 and table.loc[1, 1] == 2
    assert table.loc[0, "total"] == 3 and table.loc["total", 1] == 3 and table.loc["total", "total"] == 6
    with pytest.raises(CrcInputError, match="no 'stage' column"):
        lab.label_crosstab(labels, "tsr_high", "stage")


def test_pathology_columns_are_recognised_with_the_markers_plus_sign():
    # Found in use: a table with "CD3+ CT", "CD8+ IM" ... was not mapped.
    from crc_core.cohort.pathology import detect_pathology_columns

    found = detect_pathology_columns(["ID", "TSR (%)", "TILs", "CD3+ CT", "CD3+ IM", "CD8+ CT", "CD8+ IM"])
    assert found == {"tsr_percent": "TSR (%)", "til_grade": "TILs", "cd3_ca": "CD3+ CT", "cd3_im": "CD3+ IM",
                     "cd8_ca": "CD8+ CT", "cd8_im": "CD8+ IM"}


def test_a_cutoff_that_puts_everyone_in_one_class_is_warned_about():
    # Found in use: TSR > 0% made all 315 patients TSR-high and was saved without a word.
    table = pathology_frame(10)
    result = build_labels(table, None, given_config(tsr_cutoff_percent=0))
    assert result.labels["tsr_high"].tolist() == [1] * 10
    warned = [w for w in result.warnings if w.startswith("TSR high:")]
    assert warned == ["TSR high: every one of the 10 patients is high by the rule TSR > 0%, so the label separates "
                      "no one and no model can learn it. Choose another cut-off."]
    assert not [w for w in build_labels(table, None, given_config()).warnings if w.startswith("TSR high:")]
