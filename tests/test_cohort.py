"""Specifications for crc_core.cohort.join: column mapping, checking a table with messages a user can act
on, joins, and the workspace cohort as every step sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crc_core.cohort.join import (
    ColumnMapping,
    check_table,
    detect_group_column,
    detect_id_column,
    join_tables,
    load_workspace_cohort,
    read_column_mapping,
    save_column_mapping,
    validate_table,
)
from crc_core.tables import read_table
from crc_core.variables import detect_variable_types
from crc_core.errors import CrcInputError
from tests.table_files import workbook_bytes, write
from crc_core.workspace import Workspace


# --- validation and mapping ------------------------------------------------------------------


def test_no_id_column_lists_columns_and_says_how_to_map():
    table = pd.DataFrame({"name": ["a"], "age": [50]})
    with pytest.raises(
        CrcInputError,
        match=r"has no patient ID column\. Its columns are: name, age\. Rename the ID column to 'patient_id'",
    ):
        validate_table(table, name="clinical.csv")
    mapped = validate_table(table, ColumnMapping(id_column="name"))
    assert mapped.columns.tolist() == ["patient_id", "age"]


def test_mapped_id_column_that_does_not_exist():
    with pytest.raises(CrcInputError, match=r"has no column 'MRN'\. Its columns are: name"):
        validate_table(pd.DataFrame({"name": ["a"]}), ColumnMapping(id_column="MRN"))


def test_duplicate_ids_name_patient_and_rows(tmp_path):
    path = write(tmp_path / "dups.csv", b"patient_id,age\nP1,50\nP2,51\nP1 ,52\nP3,53\nP2,54\n")
    with pytest.raises(CrcInputError, match=r"duplicate patient IDs .*P1 \(rows 2, 4\); P2 \(rows 3, 6\)"):
        validate_table(read_table(path))


def test_empty_id_cell_names_the_row(tmp_path):
    path = write(tmp_path / "ids.csv", b"patient_id,age\nP1,50\n,51\n")
    with pytest.raises(CrcInputError, match=r"empty in row\(s\) 3"):
        validate_table(read_table(path))


def test_text_in_numeric_column_names_row_column_value(tmp_path):
    rows = "".join(f"P{i},{40 + i}\n" for i in range(8))
    path = write(tmp_path / "labs.csv", f"patient_id,ALB\n{rows}P8,<30\nP9,38\n".encode())
    with pytest.raises(
        CrcInputError, match=r"labs\.csv: text in a numeric column — row 10, column 'ALB': '<30'"
    ):
        validate_table(read_table(path))


def test_declared_continuous_column_refuses_any_word_but_reads_missing_codes_as_missing():
    table = pd.DataFrame({"patient_id": ["a", "b", "c"], "CEA": ["1.2", "high", "n.d."]})
    with pytest.raises(CrcInputError, match=r"row 3, column 'CEA': 'high'\. Correct these cells") as refused:
        validate_table(table, ColumnMapping(variable_types={"CEA": "continuous"}))
    assert "'n.d.'" not in str(refused.value)  # a missing-value code, not a mistake
    table.loc[1, "CEA"] = "3.4"
    checked = check_table(table, ColumnMapping(variable_types={"CEA": "continuous"}), name="labs.csv")
    assert checked.table["CEA"].tolist()[:2] == [1.2, 3.4] and pd.isna(checked.table["CEA"].iloc[2])
    assert checked.missing_notes == ("labs.csv: 1 cell read as missing in numeric columns: CEA 1 ('n.d.').",)


def test_a_few_codes_with_a_word_are_left_as_text_unless_declared_continuous():
    table = pd.DataFrame({"patient_id": ["a", "b", "c", "d", "e"], "pT": ["1", "2", "3", "4", "is"]})
    assert validate_table(table)["pT"].tolist() == ["1", "2", "3", "4", "is"]
    kept = validate_table(table, ColumnMapping(variable_types={"pT": "ordinal"}))
    assert kept["pT"].tolist() == ["1", "2", "3", "4", "is"]
    with pytest.raises(CrcInputError, match="column 'pT': 'is'"):
        validate_table(table, ColumnMapping(variable_types={"pT": "continuous"}))


def test_numeric_columns_become_numbers_and_ids_stay_strings(tmp_path):
    path = write(
        tmp_path / "c.xlsx",
        workbook_bytes({"S": [["Patient ID", "age", "sex"], [7, 56, "M"], [12, 61, "F"]]}),
    )
    table = validate_table(read_table(path))
    assert table["patient_id"].tolist() == ["7", "12"]
    assert table["age"].tolist() == [56, 61]
    assert table["sex"].tolist() == ["M", "F"]


def test_column_mapping_refuses_unknown_type_and_same_id_and_group():
    with pytest.raises(
        CrcInputError, match=r"Column 'age': type 'numeric' is not one of continuous, categorical, ordinal"
    ):
        ColumnMapping(variable_types={"age": "numeric"})
    with pytest.raises(CrcInputError, match="cannot be both the patient ID and the group column"):
        ColumnMapping(id_column="id", group_column="id")
    mapping = ColumnMapping(id_column="id", variable_types={"b": "ordinal", "a": "continuous"})
    assert mapping.type_overrides == {"a": "continuous", "b": "ordinal"}
    assert hash(mapping) == hash(
        ColumnMapping(id_column="id", variable_types={"a": "continuous", "b": "ordinal"})
    )


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["age", "patient_id", "id"], "patient_id"),
        (["Patient ID", "age"], "Patient ID"),
        (["ID", "age"], "ID"),
        (["mrn", "age"], "mrn"),
        (["住院号", "年龄"], "住院号"),
        (["age", "sex"], None),
        (["patient_identity_score"], None),
    ],
)
def test_detect_id_column(columns, expected):
    assert detect_id_column(pd.DataFrame(columns=columns)) == expected


def test_detect_variable_types_and_overrides():
    table = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(20)],
            "age": list(range(40, 60)),
            "sex": ["M", "F"] * 10,
            "smoker": [0, 1] * 10,
            "pT stage": ["T1", "T2", "T3", "T4"] * 5,
            "grade": [1, 2, 3, 2] * 5,
            "CEA": [str(v) for v in np.linspace(1, 9, 20)],
        }
    )
    types = detect_variable_types(table, exclude=["patient_id"])
    assert types == {
        "age": "continuous",
        "sex": "categorical",
        "smoker": "categorical",
        "pT stage": "ordinal",
        "grade": "ordinal",
        "CEA": "continuous",
    }
    assert (
        detect_variable_types(table, exclude=["patient_id"], overrides={"age": "ordinal"})["age"] == "ordinal"
    )
    with pytest.raises(CrcInputError, match="type 'number' is not one of"):
        detect_variable_types(table, overrides={"age": "number"})


# --- joining ---------------------------------------------------------------------------------


def test_join_is_inner_and_lists_unmatched_ids():
    clinical = pd.DataFrame(
        {"patient_id": ["P1", " P2", "P3", "P4"], "age": [50, 60, 70, 80], "site": list("abcd")}
    )
    pathology = pd.DataFrame(
        {"patient_id": ["P4", "P2 ", "P1", "P9"], "TSR": [10, 20, 30, 40], "site": list("wxyz")}
    )
    result = join_tables(clinical, pathology)
    assert result.table["patient_id"].tolist() == ["P1", "P2", "P4"]  # clinical order
    assert result.table["TSR"].tolist() == [30, 20, 10]
    assert result.table["site"].tolist() == ["a", "b", "d"]
    assert result.table["site_pathology"].tolist() == ["y", "x", "w"]
    assert result.only_in_clinical == ("P3",)
    assert result.only_in_pathology == ("P9",)
    assert not result.complete


def test_join_compares_ids_as_strings():
    clinical = pd.DataFrame({"patient_id": [1, 2], "age": [50, 60]})
    pathology = pd.DataFrame({"patient_id": ["1", "2"], "TSR": [10, 20]})
    result = join_tables(clinical, pathology)
    assert result.complete
    assert result.table["TSR"].tolist() == [10, 20]


def test_join_refuses_missing_id_column_duplicates_and_no_overlap():
    clinical = pd.DataFrame({"patient_id": ["P1", "P2"]})
    with pytest.raises(
        CrcInputError, match=r"The pathology table has no 'patient_id' column\. Its columns are: id"
    ):
        join_tables(clinical, pd.DataFrame({"id": ["P1"]}))
    with pytest.raises(CrcInputError, match="The pathology table: duplicate patient IDs in column 'patient_id': P1"):
        join_tables(clinical, pd.DataFrame({"patient_id": ["P1", "P1 "]}))
    with pytest.raises(CrcInputError, match="No patient ID is in both tables"):
        join_tables(clinical, pd.DataFrame({"patient_id": ["Q1"]}))


# --- workspace ---------------------------------------------------------------------------------


def make_workspace(root: Path) -> Workspace:
    root.mkdir()
    (root / "clinical.csv").write_text("patient_id,age,split\nP1,50,train\nP2,60,validation\nP3,70,train\n")
    (root / "pathology.csv").write_text("patient_id,TSR\nP1,40\nP2,70\nP3,50\n")
    return Workspace(root)


def test_load_workspace_cohort_joins_labels_and_saved_split(tmp_path):
    workspace = make_workspace(tmp_path / "ws")
    cohort = load_workspace_cohort(workspace)
    assert cohort.columns.tolist() == ["patient_id", "age", "split", "TSR"]
    assert cohort["split"].tolist() == ["train", "validation", "train"]

    (workspace.root / "labels.csv").write_text("patient_id,TSR_high\nP2,1\nP1,0\n")
    (workspace.root / "split.csv").write_text("patient_id,split\nP1,validation\nP2,train\nP3,train\n")
    cohort = load_workspace_cohort(workspace)
    assert cohort["TSR_high"].tolist()[:2] == [0, 1]
    assert np.isnan(cohort["TSR_high"].iloc[2])
    assert cohort["split"].tolist() == ["validation", "train", "train"]


def test_load_workspace_cohort_refuses_missing_tables(tmp_path):
    with pytest.raises(CrcInputError, match="does not exist"):
        load_workspace_cohort(Workspace(tmp_path / "none"))
    workspace = make_workspace(tmp_path / "ws")
    workspace.pathology_csv.unlink()
    with pytest.raises(CrcInputError, match=r"pathology\.csv is missing"):
        load_workspace_cohort(workspace)


def test_damaged_column_mapping_is_named(tmp_path):
    workspace = make_workspace(tmp_path / "ws")
    (workspace.root / "column_mapping.json").write_text("{not json")
    with pytest.raises(CrcInputError, match="column_mapping.json is damaged"):
        read_column_mapping(workspace)


def test_column_mapping_round_trips_with_every_type(tmp_path):
    mapping = ColumnMapping(group_column="cohort", group_order=("b", "a"),
                            variable_types={"grade": "ordinal", "age": "continuous", "sex": "categorical"},
                            pathology_columns={"tsr_percent": "TSR (%)"})
    save_column_mapping(Workspace(tmp_path), mapping)
    assert read_column_mapping(Workspace(tmp_path)) == mapping
    assert ColumnMapping.from_json(mapping.to_json()).fingerprint() == mapping.fingerprint()
    (tmp_path / "column_mapping.json").write_text('{"group_colum": "x"}')
    with pytest.raises(CrcInputError, match=r"column_mapping\.json is damaged .*unknown setting\(s\) 'group_colum'"):
        read_column_mapping(Workspace(tmp_path))


def test_detect_group_column_finds_the_split_in_any_spelling():
    table = pd.DataFrame({"Patient ID": ["a", "b", "c"], "sex": ["M", "F", "M"], "Gruppe": ["Training", "Test", "Training"]})
    assert detect_group_column(table, ("Patient ID",)) == "Gruppe"
    assert detect_group_column(table.assign(Gruppe=["A", "B", "A"]), ("Patient ID",)) is None
    assert detect_group_column(table.assign(Gruppe=["test", "test", "test"]), ("Patient ID",)) is None  # no training group
