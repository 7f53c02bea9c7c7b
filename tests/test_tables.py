"""Specifications for crc_core.tables: reading CSV/TSV/XLSX in the encodings hospitals export, from
a path or an upload, refusing what is not a table with a message a user can act on; patient IDs."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from crc_core.cohort.join import detect_id_column, validate_table
from crc_core.errors import CrcInputError
from tests.table_files import workbook_bytes, write
from crc_core.tables import MAX_UPLOAD_BYTES, TableRead, list_sheets, patient_ids, read_id_table, read_table


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
    # Ten more ages after P2's word, so that age is a column of numbers by the type rule.
    rest = "".join(f"P{i},{57 + i}\n" for i in range(3, 13)).encode()
    path = write(tmp_path / "gaps.csv", b"patient_id,age\nP1,56\n,\nP2,abc\n" + rest)
    read = read_table(path)
    assert read.table["patient_id"].tolist()[:4] == ["P1", "P2", "P3", "P4"]
    assert read.row_numbers[:4] == (2, 4, 5, 6)
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


def test_a_png_renamed_to_csv_is_named_for_what_it_is(tmp_path):
    # Found in use: reported as "a row has more cells than the header".
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with pytest.raises(CrcInputError, match=r"photo\.csv is not a text table: it looks like a PNG image\. Choose the table"):
        read_table(write(tmp_path / "photo.csv", png))
    with pytest.raises(CrcInputError, match=r"looks like a zip archive or an Excel workbook.*Rename it to \.xlsx"):
        read_table(write(tmp_path / "book.csv", b"PK\x03\x04" + b"\x00" * 40))
    with pytest.raises(CrcInputError, match=r"looks like a binary file"):
        read_table(write(tmp_path / "blob.csv", b"id,x\n\x00\x01\x02"))
    # UTF-16 text has NUL bytes too, but is text.
    assert read_table(write(tmp_path / "u16.txt", "id\tx\n1\t2\n".encode("utf-16"))).table.shape == (1, 2)


def test_notes_name_the_file_once(tmp_path):
    read = read_table(write(tmp_path / "clinical_eu.csv", "patient_id;alb\nP1;38,5\nP2;Müller\n".encode("cp1252")))
    assert read.notes
    for note in read.notes:
        assert note.count("clinical_eu.csv") == 1


def test_patient_ids_are_text_and_every_problem_names_its_rows():
    table = pd.DataFrame({"patient_id": ["007", 7, "1001.0", " P4 "]})
    assert patient_ids(table, what="t").tolist() == ["007", "7", "1001", "P4"]
    with pytest.raises(CrcInputError, match=r"t: duplicate patient IDs in column 'patient_id': P1 \(rows 2, 4\)"):
        patient_ids(pd.DataFrame({"patient_id": ["P1", "P2", "P1 "]}), what="t")
    with pytest.raises(CrcInputError, match=r"t: the patient ID \(column 'patient_id'\) is empty in row\(s\) 9"):
        patient_ids(pd.DataFrame({"patient_id": ["P1", None]}), what="t", row_numbers=[2, 9])
    with pytest.raises(CrcInputError, match=r"t has no 'patient_id' column\. Its columns are: id"):
        patient_ids(pd.DataFrame({"id": ["P1"]}), what="t")


def test_read_id_table_types_numbers_and_keeps_ids_as_text(tmp_path):
    table = read_id_table(write(tmp_path / "t.csv", b"patient_id,age,sex,mixed\n007,56,M,1\n12,61.5,F,a\n"))
    assert table["patient_id"].tolist() == ["007", "12"]
    assert table["age"].tolist() == [56, 61.5]
    assert table["mixed"].tolist() == ["1", "a"]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("../../../../outside/x", "'/'"),
        ("/outside/x", "'/'"),
        ("CRC\\001", "'\\\\\\\\'"),
        ("..", "a dot"),
        (".hidden", "a dot"),
        ("CRC\x00001", "a control character"),
        ("CRC\n001", "a control character"),
        ("CRC\t001", "a control character"),
    ],
)
def test_a_patient_id_is_never_a_path_and_is_refused_by_file_and_row(bad, why):
    # Found in review: the crop files were named by the ID, so "../../../../outside/x" in
    # manifest.csv wrote x.png outside the workspace.
    table = pd.DataFrame({"patient_id": ["CRC000", bad, "CRC002"]})
    with pytest.raises(
        CrcInputError,
        match=rf"manifest\.csv: the patient ID in row 7 \({re.escape(repr(bad))}\) .*{why}.* an ID names a patient, "
        r"never a file or folder\. Use letters, digits",
    ):
        patient_ids(table, what="manifest.csv", row_numbers=[2, 7, 8])


def test_ids_with_dots_and_spaces_inside_are_kept():
    table = pd.DataFrame({"patient_id": ["CRC.001", "St Mary 12", "a..b", "病例1"]})
    assert patient_ids(table, what="t").tolist() == ["CRC.001", "St Mary 12", "a..b", "病例1"]


@pytest.mark.parametrize("name, data", [
    ("clinical.csv", b"patient_id,age,sex,age\nP1,50,F,51\nP2,60,M,61\n"),
    ("clinical.tsv", b"patient_id\tage\tsex\tage \nP1\t50\tF\t51\n"),
    ("clinical.csv", "patient_id;age;sex;age\nP1;50,5;F;51\n".encode()),
])
def test_a_column_named_twice_in_a_text_table_is_refused_by_name(tmp_path, name, data):
    # Found in use: `age` twice was read silently as age and age.1, one taken for the other.
    with pytest.raises(CrcInputError, match=rf"{re.escape(name)}: the header names a column more than once: 'age' \(columns 2, 4\)"):
        read_table(write(tmp_path / name, data))


def test_a_column_named_twice_in_a_workbook_is_refused_by_name_and_letter(tmp_path):
    # Found in use: a repeated header in an XLSX ended in a TypeError from to_numeric.
    data = workbook_bytes({"Labs": [["patient_id", "ALB", "age", "ALB", "age"], ["P1", 34.6, 50, 35, 51]]})
    with pytest.raises(CrcInputError) as refused:
        read_table(write(tmp_path / "labs.xlsx", data))
    assert str(refused.value).startswith("labs.xlsx (sheet 'Labs'): the header names columns more than once: "
                                         "'ALB' (columns B, D); 'age' (columns C, E).")


def test_blank_header_cells_are_not_a_repeated_name(tmp_path):
    read = read_table(write(tmp_path / "c.csv", b"patient_id,,age,\nP1,x,50,y\n"))
    assert read.table.columns.tolist() == ["patient_id", "Unnamed: 1", "age", "Unnamed: 3"]


def test_decimal_commas_are_read_beside_missing_codes_but_not_beside_words_or_points(tmp_path):
    read = read_table(write(tmp_path / "eu.csv", "patient_id;alb;note;mix\nP1;34,6;a;1.234\nP2;n.d.;b;2,5\nP3;40;c;3\n".encode()))
    assert read.table["alb"].tolist() == ["34.6", "n.d.", "40"]  # the code is read as missing later
    assert read.table["mix"].tolist() == ["1.234", "2,5", "3"]  # 1.234 may be a German thousand: left as is
    assert read.notes == ("eu.csv was read with semicolons between columns.",
                          "eu.csv: decimal commas read as decimal points in alb.")
    words = read_table(write(tmp_path / "w.csv", b"patient_id;alb\nP1;34,6\nP2;high\n"))
    assert words.table["alb"].tolist() == ["34,6", "high"]  # a word: refused by row at import, with the hint


def test_decimal_commas_typed_as_text_in_a_workbook_are_read(tmp_path):
    data = workbook_bytes({"Labor": [["patient_id", "ALB", "PLT"], ["P1", "34,6", 210], ["P2", 35.2, "n.d."],
                                     ["P3", "N.D.", 199]]})
    read = read_table(write(tmp_path / "labor.xlsx", data))
    assert read.table["ALB"].tolist() == ["34.6", "35.2", "N.D."]
    assert read.table["PLT"].tolist() == ["210", "n.d.", "199"]
    assert "labor.xlsx: decimal commas read as decimal points in ALB." in read.notes
