"""What kind of variable a column holds: continuous, categorical or ordinal, by one rule; and when a
column of text cells is a column of numbers (with missing-value codes, or a stray word to refuse).

The import's column mapping, the workspace's table reader, Table 1 and the CLI all type a column
here, so a column is never continuous on one path and categorical on another. The user's choice,
saved at import in ``column_mapping.json``, always wins over the type rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError

CONTINUOUS, CATEGORICAL, ORDINAL, DATE = "continuous", "categorical", "ordinal", "date"
VARIABLE_TYPES = (CONTINUOUS, CATEGORICAL, ORDINAL, DATE)

#: How dates are written in hospital exports: 31.12.2020 or 31.12.20 (German), 2020-12-31 with or
#: without a time (ISO, and a workbook's date cells), 31/12/2020 or 12/31/2020, 2020/12/31, and
#: 2020年12月31日. A column of them is a date, never 300 categories.
DATE_PATTERNS = tuple(re.compile(p) for p in (
    r"(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>\d{4}|\d{2})",
    r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?",
    r"(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})",
    r"(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})",
    r"(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日",
))

#: A column of whole numbers with at most this many distinct values holds codes (sex 0/1, TIL
#: grade 0-3, ...), as SPSS users declare them "nominal" or "ordinal"; with more, a measurement.
MAX_CATEGORICAL_LEVELS = 10

#: What laboratory and registry exports write in a numeric cell for "no value" (not determined, not
#: available, a dash, a dot as SPSS prints system-missing), compared stripped and in lower case.
#: They are missing values, not categories: without this, one "n.d." among 278 albumin values made
#: the column a 278-level categorical. Only read in a column of numbers; in a text column "-" can be
#: a level (a negative marker) and stays one. "none" is left out: in a count it means 0.
MISSING_CODES = frozenset({
    "", ".", "-", "--", "—", "–", "?", "na", "n/a", "n.a.", "n.a", "#n/a", "nan", "null",
    "nd", "n.d.", "n.d", "n/d", "not done", "not determined", "not available", "missing", "unknown", "unk",
})

#: A column of text cells is a column of numbers when every non-missing cell is a number, or when
#: at least this share of them is and they take more than :data:`HANDFUL_OF_CODES` distinct
#: values: a measurement, in which any other word is a typing mistake to correct, not a category.
NUMERIC_SHARE = 0.9

#: A few distinct numbers with a word among them are categories (pT 1-4 and "is", grade 1-3 and
#: "x"), however many rows carry them; with more distinct numbers the word is the odd one out.
HANDFUL_OF_CODES = 5

#: Column names that are ordinal by nature (TNM stages, grades), compared after :func:`name_key`.
ORDINAL_COLUMN_NAMES = (
    "pt", "ptstage", "pn", "pnstage", "tstage", "nstage", "stage", "tnmstage",
    "grade", "tilgrade", "tils", "tsr", "immunoscore", "is",
)

#: The rule in words, for the page and the exports.
TYPE_RULE = (
    "Date: every filled cell a date (31.12.2020, 2020-12-31, 31/12/2020); left out of Table 1. "
    "Ordinal: a column named like a stage or grade (pT, pN, stage, grade, TSR, TIL, IS). "
    f"Continuous: numbers with more than {MAX_CATEGORICAL_LEVELS} distinct values, or more than 2 "
    "distinct values of which some are not whole numbers. Categorical: everything else (text, "
    f"yes/no, up to {MAX_CATEGORICAL_LEVELS} whole-number codes). Ordinal and categorical variables "
    "are described as n (%) and compared with χ². A column counts as numbers when every filled cell is "
    f"a number, or at least {NUMERIC_SHARE:.0%} are and they take more than {HANDFUL_OF_CODES} values (then "
    "any other word is refused, by row); missing-value codes in it (n.d., NA, -, ., missing ...) are missing."
)


def name_key(column: Any) -> str:
    """A column name compared loosely: lower case, without spaces, ``_-.:/()%``."""
    return re.sub(r"[\s_\-.:/()%]+", "", str(column)).lower()


def detect_variable_type(values: pd.Series, name: Any = None) -> str:
    """The type of one column by :data:`TYPE_RULE`; ``name`` defaults to the series' name."""
    name = values.name if name is None else name
    if name is not None and name_key(name) in ORDINAL_COLUMN_NAMES:
        return ORDINAL
    filled = values.dropna()
    if filled.empty or pd.api.types.is_bool_dtype(filled):
        return CATEGORICAL
    if holds_dates(filled):
        return DATE
    reading = read_numbers(filled)
    if not reading.numeric:
        return CATEGORICAL
    # A stray word does not change what the numbers say; the import refuses it by row.
    numbers = reading.numbers.dropna().to_numpy(dtype=float)
    if numbers.size == 0:
        return CATEGORICAL
    distinct = len(np.unique(numbers))
    if distinct > MAX_CATEGORICAL_LEVELS:
        return CONTINUOUS
    whole = bool(np.all(np.equal(np.mod(numbers, 1), 0)))
    return CONTINUOUS if distinct > 2 and not whole else CATEGORICAL


def is_date_text(value: Any) -> bool:
    """True for a cell written as a date by one of :data:`DATE_PATTERNS` (day 1-31, month 1-12)."""
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        return True
    text = str(value).strip()
    for pattern in DATE_PATTERNS:
        found = pattern.fullmatch(text)
        if found:
            parts = found.groupdict()
            if "a" in parts:  # day and month in either order
                first, second = int(parts["a"]), int(parts["b"])
                return 1 <= min(first, second) and first <= 31 and second <= 31 and min(first, second) <= 12
            return 1 <= int(parts["d"]) <= 31 and 1 <= int(parts["m"]) <= 12
    return False


def holds_dates(values: pd.Series) -> bool:
    """True when every filled cell of ``values`` (missing-value codes aside) is a date."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    cells = [v for v in values.dropna() if not is_missing_code(v)]
    return bool(cells) and all(is_date_text(v) for v in cells)


def check_variable_types(types: Mapping[str, str]) -> dict[str, str]:
    """Refuse a type that is not one of :data:`VARIABLE_TYPES`, naming the column."""
    for column, kind in types.items():
        if kind not in VARIABLE_TYPES:
            raise CrcInputError(
                f"Column {column!r}: type {kind!r} is not one of {', '.join(VARIABLE_TYPES)}."
            )
    return dict(types)


def detect_variable_types(
    table: pd.DataFrame,
    exclude: Iterable[str | None] = (),
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every column's type (``exclude``: the ID and group columns), ``overrides`` winning."""
    overrides = check_variable_types(overrides or {})
    skipped = {c for c in exclude if c is not None}
    return {
        column: overrides.get(column) or detect_variable_type(table[column], column)
        for column in table.columns
        if column not in skipped
    }


def chosen_types(
    categorical: Iterable[str], continuous: Iterable[str], saved: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """Two lists of type choices (a page's "treat as categorical" and "treat as continuous"), both
    offering every variable, made into one choice each: a variable in both lists goes where the
    user moved it, away from its ``saved`` type (ALB saved categorical, then named continuous, is
    continuous; age saved continuous, then named categorical, is categorical)."""
    categorical, continuous = list(dict.fromkeys(categorical)), list(dict.fromkeys(continuous))
    both = set(categorical) & set(continuous)
    to_continuous = {v for v in both if saved.get(v) in (CATEGORICAL, ORDINAL)}
    return ([v for v in categorical if v not in to_continuous],
            [v for v in continuous if v not in both or v in to_continuous])


# ---------------------------------------------------------------------------------------------
# Numbers in text cells


def is_missing_code(value: Any) -> bool:
    """True for a cell holding one of :data:`MISSING_CODES`."""
    return isinstance(value, str) and value.strip().lower() in MISSING_CODES


@dataclass(frozen=True)
class NumberReading:
    """One column's cells read as numbers: ``numbers`` (NaN where a cell is empty, a missing code
    or a word), which cells held a missing code and which held other ``text``."""

    numbers: pd.Series
    coded_missing: pd.Series
    text: pd.Series

    @property
    def numeric(self) -> bool:
        """The column is a column of numbers by :data:`NUMERIC_SHARE` and :data:`HANDFUL_OF_CODES`."""
        counted = int(self.numbers.notna().sum())
        if counted == 0:
            return False
        if not self.text.any():
            return True
        share = counted / (counted + int(self.text.sum()))
        return share >= NUMERIC_SHARE and self.numbers.nunique() > HANDFUL_OF_CODES


def read_numbers(values: pd.Series) -> NumberReading:
    """Read a column's cells as numbers (see :class:`NumberReading`)."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(object)
    if pd.api.types.is_numeric_dtype(values):
        none = pd.Series(False, index=values.index)
        return NumberReading(values.astype(float), none, none)
    numbers = pd.to_numeric(values, errors="coerce")
    # A blank cell is empty, not a code: only codes are counted in the note.
    empty = values.isna() | values.map(lambda v: isinstance(v, str) and not v.strip())
    coded = values.map(is_missing_code) & ~empty
    text = numbers.isna() & ~empty & ~coded
    return NumberReading(numbers.astype(float), coded.astype(bool), text.astype(bool))


def _shown_value(value: Any) -> str:
    hint = " (use a point as the decimal mark)" if re.fullmatch(r"-?\d+,\d+", str(value)) else ""
    return f"{value!r}{hint}"


def read_numeric_columns(
    table: pd.DataFrame,
    *,
    shown: str,
    rows: Sequence[int],
    skip: Iterable[str] = (),
    declared: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The table with every column of numbers (by :attr:`NumberReading.numeric`, or declared
    continuous in ``declared``) turned into numbers, missing codes read as missing; and a note
    saying how many codes were read as missing in which column. Other columns keep their text.

    A word in a column of numbers is refused with :class:`CrcInputError` naming ``shown`` (the
    file), the spreadsheet row (``rows[i]`` is row ``i``'s, header = row 1), the column and the
    value; every such cell is checked before anything is returned.
    """
    declared = declared or {}
    skipped = set(skip)
    typed = table.copy()
    problems: list[str] = []
    coded: list[str] = []
    n_coded = 0
    for column in typed.columns:
        if column in skipped:
            continue
        reading = read_numbers(typed[column])
        if not (declared.get(column) == CONTINUOUS or reading.numeric):
            continue
        words = np.flatnonzero(reading.text.to_numpy())
        if words.size:
            problems += [
                f"row {rows[position]}, column {column!r}: {_shown_value(typed[column].iloc[position])}"
                for position in words[:5]
            ]
            if words.size > 5:
                problems.append(f"and {words.size - 5} more in column {column!r}")
            continue
        typed[column] = reading.numbers
        found = typed.loc[:, column].index[reading.coded_missing.to_numpy()]
        if len(found):
            originals = table[column].loc[found].astype(str).str.strip()
            n_coded += len(found)
            coded.append(f"{column} {len(found)} ({', '.join(map(repr, dict.fromkeys(originals)))})")
    if problems:
        raise CrcInputError(
            f"{shown}: text in a numeric column — {'; '.join(problems)}. Correct these cells to numbers, or "
            "leave them empty if the value is missing (codes such as n.d., NA, - and . are read as missing)."
        )
    cells = f"{n_coded} cell{'s' if n_coded != 1 else ''}"
    notes = [f"{shown}: {cells} read as missing in numeric columns: {'; '.join(coded)}."] if coded else []
    return typed, notes
