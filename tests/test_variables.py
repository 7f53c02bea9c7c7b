"""Specifications for crc_core.variables: when a column of text cells is a column of numbers, which
cells are missing-value codes, and what a stray word in a measurement does."""

from __future__ import annotations

import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.variables import (
    HANDFUL_OF_CODES,
    MISSING_CODES,
    NUMERIC_SHARE,
    detect_variable_type,
    read_numbers,
    read_numeric_columns,
)


def cells(numbers: list, words: list[str] = ()) -> pd.Series:
    return pd.Series([str(n) for n in numbers] + list(words), dtype=object)


def test_the_rule_is_ninety_percent_numbers_and_more_than_a_handful_of_them():
    assert NUMERIC_SHARE == 0.9 and HANDFUL_OF_CODES == 5
    # 9 numbers and 1 word: exactly 90 %, 9 distinct numbers: a measurement with a stray word.
    at_the_edge = read_numbers(cells(range(40, 49), ["high"]))
    assert at_the_edge.numeric and at_the_edge.text.sum() == 1
    # 8 numbers and 1 word: 88.9 %, below the share: text, kept as categories.
    assert not read_numbers(cells(range(40, 48), ["high"])).numeric
    # 6 distinct numbers among 60 cells and one word: more than a handful, a measurement.
    assert read_numbers(cells(list(range(6)) * 10, ["x"])).numeric
    # 5 distinct codes and one word (pT 0-4 and "is"): categories, however many rows.
    assert not read_numbers(cells(list(range(5)) * 20, ["is"])).numeric
    # Every cell a number (or a missing code): numeric whatever the count, as 0/1 codes.
    assert read_numbers(cells([0, 1, 1, 0], ["n.d."])).numeric


def test_a_genuinely_categorical_column_stays_categorical():
    stages = pd.Series(["T1", "T2", "T3", "T4", "T2", "T3"] * 10, name="primary")
    assert not read_numbers(stages).numeric
    assert detect_variable_type(stages) == "categorical"
    marker = pd.Series(["+", "-", "+", "+", "-"] * 10, name="marker")  # "-" is a level here, not missing
    assert detect_variable_type(marker) == "categorical"
    kept, notes = read_numeric_columns(pd.DataFrame({"marker": marker}), shown="t.csv", rows=list(range(2, 52)))
    assert kept["marker"].tolist() == marker.tolist() and notes == []


@pytest.mark.parametrize("code", ["n.d.", "N.D.", "nd", "NA", "n/a", "N/A", "-", "—", "", ".", "missing", " Missing "])
def test_missing_value_codes_are_missing_in_a_numeric_column(code):
    assert code.strip().lower() in MISSING_CODES
    reading = read_numbers(cells(range(30, 50), [code]))
    assert reading.numeric and not reading.text.any()
    assert reading.coded_missing.sum() == (1 if code.strip() else 0)  # an empty cell is just empty
    assert reading.numbers.isna().sum() == 1


def test_a_lab_column_with_one_word_is_continuous_and_refused_by_row_column_and_value():
    values = [f"{30 + 0.37 * i:.2f}" for i in range(278)]
    values[5] = "n.d.x"
    values[9] = "n.d."
    table = pd.DataFrame({"patient_id": [f"P{i}" for i in range(278)], "ALB": values})
    # Typed by its numbers, never 278 levels.
    assert detect_variable_type(table["ALB"]) == "continuous"
    with pytest.raises(
        CrcInputError,
        match=r"labs\.csv: text in a numeric column — row 7, column 'ALB': 'n\.d\.x'\. Correct these cells to "
        r"numbers, or leave them empty",
    ):
        read_numeric_columns(table, shown="labs.csv", rows=list(range(2, 280)), skip={"patient_id"})


def test_missing_codes_become_missing_and_are_counted_in_a_note():
    table = pd.DataFrame({"ALB": [str(30 + i) for i in range(20)] + ["n.d.", "ND", "-"],
                          "sex": ["M", "F"] * 11 + ["n.d."]})
    read, notes = read_numeric_columns(table, shown="labs.csv", rows=list(range(2, 25)))
    assert read["ALB"].isna().sum() == 3 and read["ALB"].dropna().tolist() == list(range(30, 50))
    assert read["sex"].iloc[-1] == "n.d."  # a text column keeps its words
    assert notes == ["labs.csv: 3 cells read as missing in numeric columns: ALB 3 ('n.d.', 'ND', '-')."]


def test_a_variable_in_both_type_lists_goes_where_the_user_moved_it():
    from crc_core.variables import chosen_types

    saved = {"ALB": "categorical", "age": "continuous", "pT": "ordinal"}
    assert chosen_types(["ALB", "pT", "age"], ["ALB", "age", "FBG"], saved) == (["pT", "age"], ["ALB", "FBG"])
    assert chosen_types(["pT"], ["pT"], saved) == ([], ["pT"])
    assert chosen_types(["sex"], ["sex"], {}) == (["sex"], [])  # no saved type: categorical was the choice


@pytest.mark.parametrize("cells", [
    ["04.03.2021", "17.11.2020", "n.d.", "01.01.21"],
    ["2021-03-04", "2020-11-17 00:00:00", None],  # ISO, and a workbook's date cells read as text
    ["03/04/2021", "17/11/2020"],
    ["2021年3月4日", "2020年11月17日"],
])
def test_a_column_of_dates_is_typed_a_date(cells):
    # Found in use: an operation date written dd.mm.yyyy was typed categorical, 300 levels in Table 1.
    from crc_core.variables import DATE, detect_variable_type

    assert detect_variable_type(pd.Series(cells, name="OP-Datum")) == DATE


@pytest.mark.parametrize("cells", [["1.5", "2.25", "3.0"], ["32.13.2020", "01.01.2020"], ["04.03.2021", "high"],
                                   ["1.2.3", "4.5.6"]])
def test_numbers_and_words_are_not_dates(cells):
    from crc_core.variables import DATE, detect_variable_type

    assert detect_variable_type(pd.Series(cells, name="x")) != DATE
