"""What kind of variable a column holds: continuous, categorical or ordinal, by one rule.

The import's column mapping, Table 1 and the CLI all type a column here, so a column is never
continuous on one path and categorical on another. The user's choice, saved at import in
``column_mapping.json``, always wins over the rule.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError

CONTINUOUS, CATEGORICAL, ORDINAL = "continuous", "categorical", "ordinal"
VARIABLE_TYPES = (CONTINUOUS, CATEGORICAL, ORDINAL)

#: A column of whole numbers with at most this many distinct values holds codes (sex 0/1, TIL
#: grade 0-3, ...), as SPSS users declare them "nominal" or "ordinal"; with more, a measurement.
MAX_CATEGORICAL_LEVELS = 10

#: Column names that are ordinal by nature (TNM stages, grades), compared after :func:`name_key`.
ORDINAL_COLUMN_NAMES = (
    "pt", "ptstage", "pn", "pnstage", "tstage", "nstage", "stage", "tnmstage",
    "grade", "tilgrade", "tils", "tsr", "immunoscore", "is",
)

#: The rule in words, for the page and the exports.
TYPE_RULE = (
    "Ordinal: a column named like a stage or grade (pT, pN, stage, grade, TSR, TIL, IS). "
    f"Continuous: numbers with more than {MAX_CATEGORICAL_LEVELS} distinct values, or more than 2 "
    "distinct values of which some are not whole numbers. Categorical: everything else (text, "
    f"yes/no, up to {MAX_CATEGORICAL_LEVELS} whole-number codes). Ordinal and categorical variables "
    "are described as n (%) and compared with χ²."
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
    if pd.api.types.is_numeric_dtype(filled):
        numbers = filled.to_numpy(dtype=float)
    else:
        converted = pd.to_numeric(filled, errors="coerce")
        if converted.isna().any():
            return CATEGORICAL
        numbers = converted.to_numpy(dtype=float)
    distinct = len(np.unique(numbers))
    if distinct > MAX_CATEGORICAL_LEVELS:
        return CONTINUOUS
    whole = bool(np.all(np.equal(np.mod(numbers, 1), 0)))
    return CONTINUOUS if distinct > 2 and not whole else CATEGORICAL


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
