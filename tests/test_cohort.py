"""Specifications for crc_core.cohort: reading CSV/TSV/XLSX in the encodings hospitals export,
refusing bad tables with messages a user can act on, column mapping, joins and the workspace cohort."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from crc_core.cohort import (
    MAX_UPLOAD_BYTES,
    ColumnMapping,
    TableRead,
    detect_id_column,
    detect_variable_types,
    import_cohort_tables,
    join_tables,
    list_sheets,
    load_workspace_cohort,
    read_column_mapping,
    read_table,
    validate_table,
)
from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def workbook_bytes(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- reading ---------------------------------------------------------------------------------


def test_utf8_csv_reads_without_notes(tmp_path):
    path = write(tmp_path / "clinical.csv", b"patient_id,age,sex\nP1,56,M\nP2,61,F\n")
    read = read_table(path)
    assert isinstance(read, TableRead)
    assert read.encoding == "utf-8"
    assert read.notes == ()
    assert read.name == "clinical.csv"
    assert list(read.table.columns) == ["patient_id", "age", "sex"]
    assert read.table["sex"].tolist() == ["M", "F"]
    assert read.row_numbers == (2, 3)


def test_bom_is_removed_from_first_column_name(tmp_path):
    # Excel's "CSV UTF-8" export starts with EF BB BF; left in, the first header would be "\ufeffpatient_id".
    path = write(tmp_path / "bom.csv", "\ufeffpatient_id,年龄\nP1,56\n".encode("utf-8"))
    read = read_table(path)
    assert read.encoding == "utf-8-sig"
    assert list(read.table.columns) == ["patient_id", "年龄"]


def test_cp1252_csv_is_decoded_and_noted(tmp_path):
    text = "patient_id,surgeon,site\nP1,Müller,Côlon\nP2,Núñez,Rectum\n"
    read = read_table(write(tmp_path / "west.csv", text.encode("cp1252")))
    assert read.encoding == "cp1252"
    assert read.table["surgeon"].tolist() == ["Müller", "Núñez"]
    assert read.table["site"].tolist() == ["Côlon", "Rectum"]
    assert any("cp1252" in note and "not UTF-8" in note for note in read.notes)


def test_gb18030_csv_from_chinese_hospital_is_decoded(tmp_path):
    text = "住院号,性别,病理分期\n20210001,男,T3\n20210002,女,T2\n"
    read = read_table(write(tmp_path / "临床.csv", text.encode("gb18030")))
    assert read.encoding == "gb18030"
    assert read.table["性别"].tolist() == ["男", "女"]
    assert any("GB18030" in note for note in read.notes)
    assert detect_id_column(read.table) == "住院号"


def test_gb18030_with_symbols_and_western_cp1252_are_told_apart(tmp_path):
    chinese = "住院号,年龄组,体温\nA1,≤50岁,36.5℃\nA2,>65岁,37.0℃\n"
    assert read_table(chinese.encode("gb18030"), name="c.csv").encoding == "gb18030"
    western = "patient_id,surgeon\nP1,Ærøskøbing\nP2,Señor Óscar\n"
    read = read_table(western.encode("cp1252"), name="w.csv")
    assert read.encoding == "cp1252"
    assert read.table["surgeon"].tolist() == ["Ærøskøbing", "Señor Óscar"]


def test_utf16_excel_unicode_text_export(tmp_path):
    text = "patient_id\tage\nP1\t56\n"
    read = read_table(write(tmp_path / "unicode.txt", text.encode("utf-16")))
    assert read.encoding == "utf-16"
    assert read.table["age"].tolist() == ["56"]


def test_tsv_by_suffix_and_sniffed_tabs_in_csv(tmp_path):
    body = b"patient_id\tage\nP1\t56\nP2\t61\n"
    assert read_table(write(tmp_path / "a.tsv", body)).table.shape == (2, 2)
    sniffed = read_table(write(tmp_path / "b.csv", body))
    assert sniffed.table["age"].tolist() == ["56", "61"]
    assert any("tabs" in note for note in sniffed.notes)


def test_semicolon_csv_with_decimal_commas(tmp_path):
    read = read_table(write(tmp_path / "eu.csv", b"patient_id;alb\nP1;38,5\nP2;40\n"))
    assert read.table["alb"].tolist() == ["38.5", "40"]
    assert validate_table(read)["alb"].tolist() == [38.5, 40.0]


def test_bytes_upload_with_name_and_uploaded_file_like_object(tmp_path):
    read = read_table(b"id,x\n1,2\n", name="upload.csv")
    assert read.name == "upload.csv"
    assert read.table.shape == (1, 2)

    class Uploaded(io.BytesIO):  # the two attributes of Streamlit's UploadedFile that are used
        name = "from_browser.tsv"

    read = read_table(Uploaded(b"id\tx\n1\t2\n"))
    assert read.name == "from_browser.tsv"
    assert read.table["x"].tolist() == ["2"]


def test_xlsx_two_sheets_default_first_and_pick_by_name_or_number(tmp_path):
    data = workbook_bytes(
        {
            "Clinical": [["patient_id", "age"], ["P1", 56], ["P2", 61.5]],
            "Pathology": [["patient_id", "TSR"], ["P1", 40], ["P2", 70]],
        }
    )
    path = write(tmp_path / "cohort.xlsx", data)
    assert list_sheets(path) == ["Clinical", "Pathology"]
    first = read_table(path)
    assert first.sheet == "Clinical"
    assert first.encoding is None
    assert first.table["age"].tolist() == ["56", "61.5"]
    assert read_table(path, sheet="Pathology").table.columns.tolist() == ["patient_id", "TSR"]
    assert read_table(data, name="cohort.xlsx", sheet=1).sheet == "Pathology"
    assert list_sheets(write(tmp_path / "x.csv", b"a\n1\n")) == []


def test_xlsx_unknown_sheet_names_the_sheets(tmp_path):
    path = write(tmp_path / "cohort.xlsx", workbook_bytes({"Clinical": [["id"], [1]]}))
    with pytest.raises(CrcInputError, match=r"no sheet named 'Labs'.*Clinical"):
        read_table(path, sheet="Labs")


def test_blank_rows_are_dropped_but_keep_spreadsheet_row_numbers(tmp_path):
    path = write(tmp_path / "gaps.csv", b"patient_id,age\nP1,56\n,\nP2,abc\nP3,60\nP4,70\nP5,80\n")
    read = read_table(path)
    assert read.table["patient_id"].tolist() == ["P1", "P2", "P3", "P4", "P5"]
    assert read.row_numbers == (2, 4, 5, 6, 7)
    # P2 sits on spreadsheet row 4 (header row 1, P1 row 2, empty row 3).
    with pytest.raises(CrcInputError, match=r"text in a numeric column — row 4, column 'age': 'abc'"):
        validate_table(read)


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(CrcInputError, match=r"empty\.csv is empty"):
        read_table(write(tmp_path / "empty.csv", b""))
    with pytest.raises(CrcInputError, match=r"blank\.csv is empty"):
        read_table(write(tmp_path / "blank.csv", b"\n\n  \n"))


def test_header_without_rows_is_refused(tmp_path):
    with pytest.raises(CrcInputError, match=r"has a header row \(patient_id, age\) but no data rows"):
        read_table(write(tmp_path / "header.csv", b"patient_id,age\n"))


def test_empty_xlsx_sheet_is_refused(tmp_path):
    path = write(tmp_path / "blank.xlsx", workbook_bytes({"Sheet1": []}))
    with pytest.raises(CrcInputError, match=r"blank\.xlsx \(sheet 'Sheet1'\) is empty"):
        read_table(path)


def test_renamed_text_file_is_not_a_spreadsheet(tmp_path):
    path = write(tmp_path / "fake.xlsx", b"patient_id,age\nP1,56\n")
    with pytest.raises(CrcInputError, match=r"fake\.xlsx is not an Excel spreadsheet.*save it as \.xlsx"):
        read_table(path)
    with pytest.raises(CrcInputError, match=r"not an Excel spreadsheet"):
        list_sheets(path)


def test_upload_over_the_size_limit_is_refused_and_says_the_limit(tmp_path):
    assert MAX_UPLOAD_BYTES == 200 * 1024 * 1024  # .streamlit/config.toml: maxUploadSize = 200 (MiB)
    big = tmp_path / "big.csv"
    with big.open("wb") as handle:  # sparse: refused from its size, before any byte is read
        handle.truncate(250 * 1024 * 1024)
    with pytest.raises(CrcInputError, match=r"big\.csv is 250 MB, over the upload limit of 200 MB"):
        read_table(big)
    with pytest.raises(CrcInputError, match=r"upload\.csv is .* over the upload limit of 100 bytes"):
        read_table(b"patient_id\n" + b"P1\n" * 100, name="upload.csv", max_bytes=100)


def test_unknown_suffix_is_refused_with_the_supported_ones(tmp_path):
    with pytest.raises(CrcInputError, match=r"'\.sav' cannot be read\. Use one of \.csv, \.tsv"):
        read_table(write(tmp_path / "data.sav", b"abc"))
    with pytest.raises(CrcInputError, match=r"save as \.xlsx"):
        read_table(write(tmp_path / "old.xls", b"abc"))


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(CrcInputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")


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


def test_declared_continuous_column_refuses_any_text():
    table = pd.DataFrame({"patient_id": ["a", "b", "c"], "CEA": ["1.2", "high", "n.d."]})
    with pytest.raises(CrcInputError, match=r"row 3, column 'CEA': 'high'; row 4, column 'CEA': 'n.d.'"):
        validate_table(table, ColumnMapping(variable_types={"CEA": "continuous"}))


def test_declared_categorical_codes_are_left_as_text():
    table = pd.DataFrame({"patient_id": ["a", "b", "c", "d", "e"], "pT": ["1", "2", "3", "4", "is"]})
    with pytest.raises(CrcInputError, match="column 'pT': 'is'"):
        validate_table(table)
    kept = validate_table(table, ColumnMapping(variable_types={"pT": "ordinal"}))
    assert kept["pT"].tolist() == ["1", "2", "3", "4", "is"]


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
        CrcInputError, match=r"The pathology table has no column 'patient_id'\. Its columns are: id"
    ):
        join_tables(clinical, pd.DataFrame({"id": ["P1"]}))
    with pytest.raises(CrcInputError, match="The pathology table has duplicate patient IDs: P1"):
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


def test_import_keeps_the_column_mapping_and_a_plain_import_drops_a_stale_one(tmp_path):
    clinical = validate_table(pd.DataFrame({"id": ["A", "B", "C"], "cohort": ["x", "y", "x"], "grade": [1, 2, 3]}),
                              ColumnMapping(id_column="id", group_column="cohort"))
    pathology = validate_table(pd.DataFrame({"patient_id": ["A", "B", "C"], "TSR": [30, 60, 40]}))
    mapping = ColumnMapping(group_column="cohort", variable_types={"grade": "ordinal", "TSR": "continuous"})
    import_cohort_tables(tmp_path / "ws", clinical, pathology, mapping)
    saved = read_column_mapping(Workspace(tmp_path / "ws"))
    assert saved.group_column == "cohort"
    assert saved.type_overrides == {"TSR": "continuous", "grade": "ordinal"}

    import_cohort_tables(tmp_path / "ws", clinical, pathology)
    assert not (tmp_path / "ws" / "column_mapping.json").exists()
    assert read_column_mapping(Workspace(tmp_path / "ws")) == ColumnMapping()


def test_import_refuses_a_mapping_of_absent_columns_and_writes_nothing(tmp_path):
    clinical = validate_table(pd.DataFrame({"patient_id": ["A", "B"], "age": [50, 60]}))
    pathology = validate_table(pd.DataFrame({"patient_id": ["A", "B"], "TSR": [30, 60]}))
    with pytest.raises(CrcInputError, match="ghost"):
        import_cohort_tables(tmp_path / "ws", clinical, pathology, ColumnMapping(group_column="ghost"))
    assert not (tmp_path / "ws").exists()


def test_damaged_column_mapping_is_named(tmp_path):
    workspace = make_workspace(tmp_path / "ws")
    (workspace.root / "column_mapping.json").write_text("{not json")
    with pytest.raises(CrcInputError, match="column_mapping.json is damaged"):
        read_column_mapping(workspace)
