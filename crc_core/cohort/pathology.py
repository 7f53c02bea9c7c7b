"""The pathology table: its columns, how users' own column names map onto them, and the readings
as checked numbers with one value per patient where two pathologists read the slide.

Input is ``pathology.csv`` (``patient_id``, ``tsr_percent``, ``til_grade``, ``cd3_ca``,
``cd3_im``, ``cd8_ca``, ``cd8_im``; a second reader's ``*_r2``; optionally ``is_score``) or an
upload mapped onto those names at import.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.tables import listing
from crc_core.variables import name_key

TSR_COLUMN = "tsr_percent"
TIL_COLUMN = "til_grade"
IS_COLUMN = "is_score"
#: CD3+ and CD8+ cell densities (cells/mm²) at the tumour centre (CA) and invasive margin (IM).
MARKERS: tuple[str, ...] = ("cd3_ca", "cd3_im", "cd8_ca", "cd8_im")
#: The markers in words: CD3+ or CD8+ T-cell density in the tumour's central area (CA) or at its
#: invasive margin (IM), counted in cells per mm².
MARKER_NAMES: dict[str, str] = {"cd3_ca": "CD3+ centre", "cd3_im": "CD3+ margin", "cd8_ca": "CD8+ centre",
                                "cd8_im": "CD8+ margin"}
MARKER_UNIT = "cells/mm²"
SECOND_READER_SUFFIX = "_r2"

#: Every column the labels can use: canonical name → (what it holds, names users give it,
#: compared by :func:`crc_core.variables.name_key`).
PATHOLOGY_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    TSR_COLUMN: ("TSR, % stroma (10-90)", ("tsr", "tsrpercent", "tsrr1", "tumourstromaratio", "tumorstromaratio", "stroma", "stromapercent")),
    TIL_COLUMN: ("TIL grade (0-3)", ("til", "tils", "tilgrade", "tilsgrade", "tilr1", "tilgrader1")),
    "cd3_ca": ("CD3+ cells/mm², tumour centre", ("cd3ca", "cd3ct", "cd3center", "cd3centre", "cd3core", "cd3tumourcentre", "cd3tumorcenter")),
    "cd3_im": ("CD3+ cells/mm², invasive margin", ("cd3im", "cd3margin", "cd3invasivemargin")),
    "cd8_ca": ("CD8+ cells/mm², tumour centre", ("cd8ca", "cd8ct", "cd8center", "cd8centre", "cd8core", "cd8tumourcentre", "cd8tumorcenter")),
    "cd8_im": ("CD8+ cells/mm², invasive margin", ("cd8im", "cd8margin", "cd8invasivemargin")),
    f"{TSR_COLUMN}{SECOND_READER_SUFFIX}": ("TSR, second pathologist (optional)", ("tsrr2", "tsrpercentr2", "tsrreader2")),
    f"{TIL_COLUMN}{SECOND_READER_SUFFIX}": ("TIL grade, second pathologist (optional)", ("tilr2", "tilgrader2", "tilsr2", "tilreader2")),
    IS_COLUMN: ("Immune Score 0-4, if already scored (optional)", ("isscore", "immunescore", "immunoscore", "is")),
}
REQUIRED_FIELDS = (TSR_COLUMN, TIL_COLUMN)
OPTIONAL_FIELDS = tuple(f for f in PATHOLOGY_FIELDS if f not in REQUIRED_FIELDS and f not in MARKERS)


def field_key(column: object) -> str:
    """A column name compared against the fields: :func:`~crc_core.variables.name_key` without
    ``+`` too, as pathologists write the markers (``CD3+ CT`` is ``cd3ct``)."""
    return name_key(column).replace("+", "")


def detect_pathology_columns(columns: Iterable[str]) -> dict[str, str]:
    """Canonical field → the user's column, for every field whose name is recognised (compared by
    :func:`field_key`). A column already named canonically wins over an alias."""
    columns = list(columns)
    found: dict[str, str] = {}
    for field, (_, aliases) in PATHOLOGY_FIELDS.items():
        if field in columns:
            found[field] = field
            continue
        taken = set(found.values())
        keys = {field_key(field), *aliases}
        match = next((c for c in columns if c not in taken and field_key(c) in keys), None)
        if match is not None:
            found[field] = match
    return found


def missing_pathology_fields(fields: Iterable[str]) -> list[str]:
    """What the labels still lack: TSR and TIL, and either all four markers or an IS column."""
    present = set(fields)
    missing = [f for f in REQUIRED_FIELDS if f not in present]
    if IS_COLUMN not in present:
        missing += [m for m in MARKERS if m not in present]
    return missing


def describe_fields(fields: Sequence[str]) -> str:
    return ", ".join(f"{PATHOLOGY_FIELDS[f][0]} ({f})" for f in fields)


# ---------------------------------------------------------------------------------------------
# Readings as numbers


def where(rows: Sequence[int], ids: Sequence[str], position: int) -> str:
    patient = ids[position] if ids is not None and ids[position] else "no ID"
    return f"row {rows[position]} (patient {patient})"


def readings(table: pd.DataFrame, columns: Sequence[str], rows: Sequence[int], ids: Sequence[str]) -> pd.DataFrame:
    """The columns as floats (empty = NaN); text that is not a number is refused by row and column."""
    converted: dict[str, pd.Series] = {}
    problems: list[str] = []
    for column in columns:
        values = table[column].reset_index(drop=True)
        blank = values.map(lambda v: isinstance(v, str) and not v.strip())
        values = values.mask(blank)
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        bad = values.notna() & numbers.isna()
        for position in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{where(rows, ids, position)}, column {column}: {values.iloc[position]!r} is not a number")
        converted[column] = numbers
    if problems:
        raise CrcInputError(
            f"Text in a numeric column: {listing(problems, 8)}. "
            "Correct these cells to numbers, or leave them empty if the value is missing."
        )
    return pd.DataFrame(converted)


def on_step(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9


def check_ranges(values: pd.DataFrame, rows: Sequence[int], ids: Sequence[str], tsr_step_percent: float) -> list[str]:
    """Refuse impossible readings (naming each cell); return warnings for off-step TSR values."""
    problems: list[str] = []
    warnings: list[str] = []
    for column in values.columns:
        series = values[column]
        for position in np.flatnonzero(series.notna().to_numpy()):
            value = series.iloc[position]
            cell = f"{where(rows, ids, position)}, column {column}"
            if column.startswith(TSR_COLUMN):
                if not 0 <= value <= 100:
                    problems.append(f"{cell}: {value:g} is outside 0-100 (TSR is the percentage of stroma)")
                elif not on_step(value, tsr_step_percent):
                    warnings.append(
                        f"{cell}: TSR {value:g}% is not a multiple of {tsr_step_percent:g}% "
                        "(the paper scores TSR in 10% steps); used as given."
                    )
            elif column.startswith(TIL_COLUMN):
                if value not in (0, 1, 2, 3):
                    problems.append(f"{cell}: {value:g} is not a TIL grade (a whole number 0, 1, 2 or 3)")
            elif column == IS_COLUMN:
                if value not in (0, 1, 2, 3, 4):
                    problems.append(f"{cell}: {value:g} is not an immune score (a whole number 0-4)")
            elif value < 0:
                problems.append(f"{cell}: {value:g} is negative (a cell count cannot be)")
    if problems:
        raise CrcInputError(f"Impossible pathology values: {listing(problems, 8)}. Correct these cells.")
    return warnings


# ---------------------------------------------------------------------------------------------
# Two pathologists


def round_half_up(values: pd.Series, step: float) -> pd.Series:
    # Half up (45% → 50%, grade 1.5 → 2), as Excel's ROUND and SPSS RND do for positive numbers;
    # Python's round() would send 45 to 40 and 55 to 60 (banker's rounding).
    return np.floor(values / step + 0.5 + 1e-9) * step


def resolve_readings(
    first: pd.Series,
    second: pd.Series | None,
    consensus: pd.Series | None,
    rule: str,
    step: float,
    *,
    column: str,
    rows: Sequence[int],
    ids: Sequence[str],
) -> pd.Series:
    """One reading per patient from two pathologists' (floats, NaN = not read).

    Where only one pathologist read a patient, that reading is used (except under ``first``).
    ``max`` takes the higher (the paper's rule for TSR areas); ``mean`` rounds half up to ``step``
    where the two differ, equal readings are kept as read; ``consensus`` takes the consensus value
    where one is filled in, and refuses patients on whom the readers differ without one.
    """
    first = first.reset_index(drop=True)
    if second is None or rule == "first":
        return first
    second = second.reset_index(drop=True)
    if rule == "max":
        return pd.Series(np.fmax(first.to_numpy(), second.to_numpy()))
    differ = first.notna() & second.notna() & (first != second)
    either = first.fillna(second)
    if rule == "mean":
        mean = (first + second) / 2
        return either.where(~differ, round_half_up(mean, step))
    if consensus is None:
        raise CrcInputError(
            f"The 'consensus' rule needs a column {column}_consensus (or the suffix you chose) "
            "holding the agreed reading where the pathologists differ. Add it or choose max, mean or first."
        )
    consensus = consensus.reset_index(drop=True)
    unresolved = differ & consensus.isna()
    if unresolved.any():
        cells = [where(rows, ids, p) for p in np.flatnonzero(unresolved.to_numpy())]
        raise CrcInputError(
            f"Column {column}: the pathologists differ and there is no consensus value for {listing(cells)}. "
            "Fill in the consensus column for these patients or choose another rule."
        )
    return consensus.fillna(either)


def renamed_to_fields(table: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """The table with the user's columns renamed to the canonical fields (``field → column``)."""
    clashes = [f for f, c in columns.items() if c != f and f in table.columns]
    if clashes:
        raise CrcInputError(
            f"The pathology table has both {', '.join(repr(columns[f]) for f in clashes)} (chosen) and "
            f"{', '.join(map(repr, clashes))}. Rename or remove one of each pair."
        )
    return table.rename(columns={c: f for f, c in columns.items()})
