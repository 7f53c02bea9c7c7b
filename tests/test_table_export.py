"""Table 1 exports: every format opens in the program it is meant for and holds the same numbers."""

from __future__ import annotations


import pandas as pd
import pytest
from docx import Document

from crc_core.errors import CrcInputError
from crc_core.cohort.table1 import table_one
from crc_core.cohort.table_export import export_bytes, export_table_one, to_markdown


@pytest.fixture(scope="module")
def table():
    clinical = pd.read_csv("data/sample/clinical.csv")
    return table_one(clinical, "split", ["sex", "age", "TP", "TC", "pT"])


def test_csv_keeps_exact_statistics(table, tmp_path):
    path = export_table_one(table, tmp_path / "t1.csv")
    again = pd.read_csv(path)
    assert list(again.columns[:7]) == list(table.columns[:7])
    pd.testing.assert_series_equal(again["p_value"], table["p_value"], check_names=False)


def test_xlsx_has_the_journal_table_the_details_and_the_notes(table, tmp_path):
    path = export_table_one(table, tmp_path / "t1.xlsx")
    sheets = pd.read_excel(path, sheet_name=None)
    assert set(sheets) == {"Table 1", "Details", "Notes"}
    assert sheets["Table 1"]["Variable"].iloc[0] == "sex"
    assert any("Mann-Whitney" in str(v) for v in sheets["Notes"]["note"])


def test_markdown_is_a_pipe_table_with_footnotes(table):
    text = to_markdown(table)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Variable"))
    assert "train (n = 220)" in header and "validation (n = 95)" in header
    body = [line for line in lines if line.startswith("| ")]
    assert len(body) == len(table) + 2  # header and rule
    assert all(line.count("|") == header.count("|") for line in body)
    assert any(line.startswith("2 Statistical analysis performed using Mann-Whitney") for line in lines)


def test_docx_holds_one_table_with_every_row(table, tmp_path):
    path = export_table_one(table, tmp_path / "t1.docx")
    document = Document(str(path))
    assert len(document.tables) == 1
    grid = document.tables[0]
    assert len(grid.rows) == len(table) + 1
    assert grid.cell(0, 0).text == "Variable"
    texts = [p.text for p in document.paragraphs]
    assert any(t.startswith("1 Statistical analysis performed using t-test") for t in texts)


def test_unknown_suffix_is_refused_and_nothing_written(table, tmp_path):
    with pytest.raises(CrcInputError, match=r"\.csv, \.xlsx, \.md, \.docx"):
        export_table_one(table, tmp_path / "t1.pdf")
    assert not list(tmp_path.iterdir())


def test_export_bytes_is_deterministic_for_text_formats(table):
    assert export_bytes(table, ".md") == export_bytes(table, ".md")
    assert export_bytes(table, ".csv") == export_bytes(table, ".csv")


def test_xlsx_keeps_numbers_as_numbers_printed_as_the_table_prints_them(table, tmp_path):
    # Found in use: every statistic and P value of the Table 1 sheet was text, so Excel could not
    # sort or compute with them.
    import openpyxl

    path = export_table_one(table, tmp_path / "t1.xlsx")
    sheet = openpyxl.load_workbook(path)["Table 1"]
    header = [c.value for c in sheet[1]]
    statistic, test, p = header.index("t/Z/χ² value") + 1, header.index("Test") + 1, header.index("P value") + 1
    tested = table[table["test"] != ""].reset_index(drop=True)
    cells = [row for row in sheet.iter_rows(min_row=2) if row[p - 1].value is not None]
    assert len(cells) == len(tested)
    for row, (_, expected) in zip(cells, tested.iterrows()):
        assert isinstance(row[p - 1].value, float) and row[p - 1].value == pytest.approx(expected["p_value"])
        assert row[p - 1].number_format == '[<0.001]"< 0.001";0.000'
        assert isinstance(row[statistic - 1].value, float) and row[statistic - 1].number_format == "0.000"
        assert row[test - 1].value in ("¹", "²", "³", "³ᵃ", "⁴", "⁵")
