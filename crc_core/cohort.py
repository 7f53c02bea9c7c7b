"""Cohort tables: reading clinical and pathology files (CSV, TSV, XLSX), mapping their columns and
joining them on the patient ID. Inputs come from uploads on the Cohort page or the workspace.

Row numbers in every message are spreadsheet rows, 1-based as a user sees them in Excel: the header
is row 1 and the first patient is row 2 (blank lines and empty rows keep their numbers, so a user
can go straight to the cell). ``crc_core.labels`` follows the same convention.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.splits import SPLIT_CSV
from crc_core.workspace import Workspace

#: Largest upload accepted, in bytes: Streamlit's ``server.maxUploadSize`` (200, in MiB), which
#: ``.streamlit/config.toml`` sets and Streamlit multiplies by 1024 * 1024.
MAX_UPLOAD_MB = 200
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + EXCEL_SUFFIXES

#: The canonical name of the ID column once a table has been mapped.
PATIENT_ID = "patient_id"

VARIABLE_TYPES = ("continuous", "categorical", "ordinal")

#: Numeric columns with at most this many distinct values are treated as categorical codes
#: (sex 0/1, TIL grade 0-3, ...), as SPSS users usually declare them "nominal" or "ordinal".
MAX_CATEGORICAL_LEVELS = 10

#: Column names recognised as the patient ID, compared after lower-casing and dropping spaces,
#: dashes, dots and underscores. Chinese hospital exports use 住院号 (inpatient number),
#: 病历号/病案号 (record number), 患者编号/患者ID/编号 or ID号.
ID_COLUMN_NAMES = (
    "patientid",
    "patient",
    "id",
    "pid",
    "subjectid",
    "caseid",
    "mrn",
    "studyid",
    "住院号",
    "病历号",
    "病案号",
    "患者编号",
    "患者id",
    "编号",
    "id号",
)

#: Column names that are ordinal by nature (TNM stages, grades), compared like ID names.
ORDINAL_COLUMN_NAMES = (
    "pt",
    "ptstage",
    "pn",
    "pnstage",
    "tstage",
    "nstage",
    "stage",
    "tnmstage",
    "grade",
    "tilgrade",
    "tils",
    "tsr",
    "immunoscore",
    "is",
)

#: Fraction of a column's filled cells that must read as numbers for the column to be numeric;
#: the others are then typing mistakes the user should fix, not categories.
NUMERIC_COLUMN_FRACTION = 0.8


@dataclass(frozen=True)
class TableRead:
    """A table as read from one file, with how it was read.

    ``row_numbers[i]`` is the spreadsheet row (header = row 1) of ``table.iloc[i]``.
    """

    table: pd.DataFrame
    name: str
    encoding: str | None = None
    sheet: str | None = None
    notes: tuple[str, ...] = ()
    row_numbers: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------
# Reading


def _size_text(n_bytes: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if n_bytes >= scale:
            return f"{round(n_bytes / scale, 1):g} {unit}"
    return f"{n_bytes} bytes"


def _too_big(shown: str, size: int, max_bytes: int) -> CrcInputError:
    return CrcInputError(
        f"{shown} is {_size_text(size)}, over the upload limit of {_size_text(max_bytes)}. "
        "Remove unused columns or sheets, or split the file."
    )


def _source_bytes(source: Any, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    """The file's bytes and the name to show, refusing anything over ``max_bytes`` before reading."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        shown = name or path.name
        if not path.is_file():
            raise CrcInputError(f"{shown}: the file {path} does not exist. Check the path.")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(shown, size, max_bytes)
        return path.read_bytes(), shown
    if hasattr(source, "getvalue"):  # Streamlit's UploadedFile and io.BytesIO
        shown = name or getattr(source, "name", None) or "upload"
        data = source.getvalue()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        shown = name or "upload"
        data = bytes(source)
    else:
        raise TypeError(f"read_table expects a path or bytes, not {type(source).__name__}")
    if len(data) > max_bytes:
        raise _too_big(shown, len(data), max_bytes)
    return bytes(data), shown


def _suffix(shown: str, data: bytes) -> str:
    suffix = Path(shown).suffix.lower()
    if suffix:
        return suffix
    # An upload without a file name: a zip container is taken for a workbook, anything else for text.
    return ".xlsx" if data[:4] == b"PK\x03\x04" else ".csv"


def _looks_chinese(data: bytes, text: str) -> bool:
    """True when GB18030 is the better reading than cp1252.

    Chinese text in GBK/GB18030 has its non-ASCII bytes in pairs, so every run of bytes >= 0x80
    has even length, and decodes to CJK ideographs; Western accented text (``Müller``, ``Café``)
    has single high bytes between ASCII letters.
    """
    runs = re.findall(rb"[\x80-\xff]+", data)
    if not runs or any(len(run) % 2 for run in runs):
        return False
    wide = [ch for ch in text if ord(ch) > 127]
    cjk = [
        ch
        for ch in wide
        if "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"
    ]
    # Half, not all: GBK exports also hold symbols such as ≤, ℃ and full-width brackets.
    return len(cjk) >= 0.5 * len(wide)


def _decode(data: bytes, shown: str) -> tuple[str, str, list[str]]:
    """Decode text: UTF-8 (with or without BOM), UTF-16 with BOM, then GB18030, cp1252, latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig", []
        except UnicodeDecodeError:
            pass
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Excel's "Unicode text" export: UTF-16 with a byte-order mark, tab separated.
        try:
            return data.decode("utf-16"), "utf-16", [f"{shown} was read as UTF-16 (Excel 'Unicode text')."]
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
        if _looks_chinese(data, text):
            return (
                text,
                "gb18030",
                [
                    f"{shown} was read as GB18030 (Chinese GBK) because it is not UTF-8; "
                    "check that names and categories look right."
                ],
            )
    except UnicodeDecodeError:
        pass
    for encoding, label in (("cp1252", "cp1252 (Windows Western)"), ("latin-1", "latin-1")):
        try:
            return (
                data.decode(encoding),
                encoding,
                [
                    f"{shown} was read as {label} because it is not UTF-8; "
                    "check that accented letters look right, or save it as CSV UTF-8."
                ],
            )
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _delimiter(text: str, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    head = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        # One column, or nothing to go on: the suffix decides.
        return "\t" if "\t" in head and "," not in head else ","


_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _read_text(data: bytes, shown: str, suffix: str) -> tuple[pd.DataFrame, str, list[str], list[int]]:
    text, encoding, notes = _decode(data, shown)
    if not text.strip():
        raise CrcInputError(
            f"{shown} is empty. Export the table again with a header row and one row per patient."
        )
    sep = _delimiter(text, suffix)
    expected = "\t" if suffix == ".tsv" else ","
    if sep != expected:
        notes.append(f"{shown} was read with {_DELIMITER_NAMES[sep]} between columns.")
    try:
        # Everything as text first: numbers are parsed later, so that a stray word can be
        # reported by row and column instead of silently turning the column into text.
        table = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, skip_blank_lines=False, keep_default_na=True
        )
    except pd.errors.EmptyDataError as exc:
        raise CrcInputError(
            f"{shown} is empty. Export the table again with a header row and one row per patient."
        ) from exc
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        where = f" at row {found.group(1)}" if found else ""
        raise CrcInputError(
            f"{shown} could not be read as a table{where}: a row has more cells than the header. "
            "Check for separators inside unquoted cells."
        ) from exc
    if sep == ";":
        # Semicolon CSVs come from Excel in locales that write 3,5 for 3.5.
        decimal_comma = re.compile(r"-?\d+(,\d+)?")
        converted = []
        for column in table.columns:
            cells = table[column].dropna().astype(str).str.strip()
            if (
                len(cells)
                and cells.map(decimal_comma.fullmatch).notna().all()
                and cells.str.contains(",").any()
            ):
                table[column] = table[column].str.replace(",", ".", regex=False)
                converted.append(str(column))
        if converted:
            notes.append(f"{shown}: decimal commas read as decimal points in {', '.join(converted)}.")
    row_numbers = list(range(2, len(table) + 2))
    return table, encoding, notes, row_numbers


def _open_workbook(data: bytes, shown: str):
    import openpyxl

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CrcInputError(
            f"{shown} is not an Excel spreadsheet (it may be a renamed text or .xls file). "
            "Open it in Excel and save it as .xlsx, or save it as CSV."
        )
    try:
        return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for damaged or foreign zip files
        raise CrcInputError(
            f"{shown} is not an Excel spreadsheet that can be opened ({exc}). "
            "Open it in Excel and save it as .xlsx, or save it as CSV."
        ) from exc


def list_sheets(source: Any, *, name: str | None = None, max_bytes: int = MAX_UPLOAD_BYTES) -> list[str]:
    """The sheet names of an XLSX workbook, in workbook order (empty for CSV/TSV)."""
    data, shown = _source_bytes(source, name, max_bytes)
    suffix = _suffix(shown, data)
    if suffix not in EXCEL_SUFFIXES:
        return []
    workbook = _open_workbook(data, shown)
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()


def _cell_text(value: Any) -> Any:
    if value is None:
        return np.nan
    if isinstance(value, str):
        return value if value.strip() else np.nan
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_excel(
    data: bytes, shown: str, sheet: str | int | None
) -> tuple[pd.DataFrame, str, list[str], list[int]]:
    workbook = _open_workbook(data, shown)
    try:
        names = list(workbook.sheetnames)
        if sheet is None:
            chosen = names[0]
        elif isinstance(sheet, int):
            if not 0 <= sheet < len(names):
                raise CrcInputError(
                    f"{shown} has {len(names)} sheet(s) ({', '.join(names)}); sheet number {sheet + 1} does not exist."
                )
            chosen = names[sheet]
        elif sheet in names:
            chosen = sheet
        else:
            raise CrcInputError(f"{shown} has no sheet named {sheet!r}. Its sheets are: {', '.join(names)}.")
        rows = [list(row) for row in workbook[chosen].iter_rows(values_only=True)]
    finally:
        workbook.close()
    notes = [f"{shown}: read sheet {chosen!r} of {len(names)}."] if len(names) > 1 else []
    # Leading empty rows are skipped (the header is the first filled row), keeping row numbers.
    start = next((i for i, row in enumerate(rows) if any(_cell_text(v) is not np.nan for v in row)), None)
    if start is None:
        raise CrcInputError(
            f"{shown} (sheet {chosen!r}) is empty. Put a header row and one row per patient on it."
        )
    header = [_cell_text(v) for v in rows[start]]
    width = max(i for i, v in enumerate(header) if v is not np.nan) + 1
    columns = [str(v).strip() if v is not np.nan else f"Unnamed: {i}" for i, v in enumerate(header[:width])]
    body = [[_cell_text(v) for v in (row + [None] * width)[:width]] for row in rows[start + 1 :]]
    table = pd.DataFrame(body, columns=columns, dtype=object)
    row_numbers = list(range(start + 2, start + 2 + len(body)))
    return table, chosen, notes, row_numbers


def read_table(
    source: Any,
    *,
    name: str | None = None,
    sheet: str | int | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> TableRead:
    """Read a CSV, TSV or XLSX table from a path or an upload's bytes, cells kept as text.

    ``name`` is the file name shown in messages (and decides the format for bytes). CSV files
    may be separated by commas, semicolons or tabs (sniffed); text is decoded as UTF-8 (with or
    without BOM), UTF-16 with BOM, GB18030 when the bytes look like Chinese, else cp1252, else
    latin-1, and ``notes`` says which. ``sheet`` picks an XLSX sheet by name or 0-based number
    (default: the first; see :func:`list_sheets`). Fully empty rows are dropped and
    ``row_numbers`` keeps each remaining row's spreadsheet row. Column names are stripped.
    """
    data, shown = _source_bytes(source, name, max_bytes)
    if not data:
        raise CrcInputError(
            f"{shown} is empty (0 bytes). Export the table again with a header row and one row per patient."
        )
    suffix = _suffix(shown, data)
    if suffix in TEXT_SUFFIXES:
        table, encoding, notes, rows = _read_text(data, shown, suffix)
        sheet_name = None
    elif suffix in EXCEL_SUFFIXES:
        table, sheet_name, notes, rows = _read_excel(data, shown, sheet)
        encoding = None
    else:
        hint = " Old .xls workbooks: open in Excel and save as .xlsx." if suffix == ".xls" else ""
        raise CrcInputError(
            f"{shown}: files ending in {suffix!r} cannot be read. "
            f"Use one of {', '.join(SUPPORTED_SUFFIXES)}.{hint}"
        )
    table.columns = [str(column).strip() for column in table.columns]
    table = table.map(lambda v: v.strip() if isinstance(v, str) else v)
    table = table.replace("", np.nan)
    filled = table.notna().any(axis=1).to_numpy()
    table = table.loc[filled].reset_index(drop=True)
    rows = [row for row, keep in zip(rows, filled) if keep]
    if table.empty:
        raise CrcInputError(
            f"{shown} has a header row ({', '.join(map(str, table.columns))}) but no data rows. "
            "Add one row per patient below the header."
        )
    return TableRead(
        table=table,
        name=shown,
        encoding=encoding,
        sheet=sheet_name,
        notes=tuple(notes),
        row_numbers=tuple(rows),
    )


# ---------------------------------------------------------------------------------------------
# Column mapping


def _name_key(column: Any) -> str:
    return re.sub(r"[\s_\-.:/()]+", "", str(column)).lower()


def _row_numbers(table: pd.DataFrame, row_numbers: Sequence[int] | None) -> list[int]:
    if row_numbers is not None and len(row_numbers) == len(table):
        return list(row_numbers)
    return list(range(2, len(table) + 2))


@dataclass(frozen=True)
class ColumnMapping:
    """How the user's columns map onto the cohort: which holds the patient ID, which (optionally)
    the train/validation group, and type overrides for variables (``continuous``,
    ``categorical`` or ``ordinal``) where :func:`detect_variable_types` guessed wrong."""

    id_column: str | None = None
    group_column: str | None = None
    variable_types: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        raw = self.variable_types
        pairs = tuple(sorted((raw.items() if isinstance(raw, Mapping) else raw), key=lambda p: str(p[0])))
        for column, kind in pairs:
            if kind not in VARIABLE_TYPES:
                raise CrcInputError(
                    f"Column {column!r}: type {kind!r} is not one of {', '.join(VARIABLE_TYPES)}."
                )
        if self.id_column is not None and self.id_column == self.group_column:
            raise CrcInputError(
                f"Column {self.id_column!r} cannot be both the patient ID and the group column. Pick two different columns."
            )
        object.__setattr__(self, "variable_types", pairs)

    @property
    def type_overrides(self) -> dict[str, str]:
        return dict(self.variable_types)


def detect_id_column(table: pd.DataFrame) -> str | None:
    """The column that holds the patient ID, or ``None``.

    A column whose name, lower-cased and without spaces/underscores/dashes, is one of
    :data:`ID_COLUMN_NAMES` (``patient_id``, ``Patient ID``, ``id``, ``MRN``, ``住院号`` ...);
    earlier names in that list win. No guessing from the values.
    """
    keys = {_name_key(column): column for column in reversed(list(table.columns))}
    for candidate in ID_COLUMN_NAMES:
        if candidate in keys:
            return keys[candidate]
    return None


def _as_numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce")


def detect_variable_types(
    table: pd.DataFrame,
    exclude: Iterable[str] = (),
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Guess each variable's type: ``ordinal`` for known stage/grade names (pT, pN, grade, TSR,
    TILs ...); ``continuous`` for numeric columns with more than :data:`MAX_CATEGORICAL_LEVELS`
    distinct values; ``categorical`` otherwise (text, or few distinct numeric codes).
    ``overrides`` (column → type) win; ``exclude`` (ID, split) columns are left out.
    """
    overrides = dict(overrides or {})
    for column, kind in overrides.items():
        if kind not in VARIABLE_TYPES:
            raise CrcInputError(
                f"Column {column!r}: type {kind!r} is not one of {', '.join(VARIABLE_TYPES)}."
            )
    skipped = set(exclude)
    types: dict[str, str] = {}
    for column in table.columns:
        if column in skipped:
            continue
        if column in overrides:
            types[column] = overrides[column]
            continue
        values = table[column].dropna()
        numbers = _as_numbers(values)
        numeric = len(values) > 0 and numbers.notna().all()
        if _name_key(column) in ORDINAL_COLUMN_NAMES:
            types[column] = "ordinal"
        elif numeric and numbers.nunique() > MAX_CATEGORICAL_LEVELS:
            types[column] = "continuous"
        else:
            types[column] = "categorical"
    return types


def _check_numeric_cells(
    table: pd.DataFrame,
    shown: str,
    rows: list[int],
    skip: set[str],
    declared: Mapping[str, str],
) -> None:
    problems: list[str] = []
    for column in table.columns:
        if column in skip or declared.get(column) in ("categorical", "ordinal"):
            continue
        values = table[column]
        filled = values.notna()
        if not filled.any():
            continue
        numbers = _as_numbers(values)
        bad = filled & numbers.isna()
        share_numeric = 1 - bad.sum() / filled.sum()
        numeric_column = declared.get(column) == "continuous" or (
            filled.sum() - bad.sum() >= 2 and share_numeric >= NUMERIC_COLUMN_FRACTION
        )
        if not numeric_column or not bad.any():
            continue
        for position in np.flatnonzero(bad.to_numpy())[:5]:
            value = values.iloc[position]
            hint = " (use a point as the decimal mark)" if re.fullmatch(r"-?\d+,\d+", str(value)) else ""
            problems.append(f"row {rows[position]}, column {column!r}: {value!r}{hint}")
        if bad.sum() > 5:
            problems.append(f"and {bad.sum() - 5} more in column {column!r}")
    if problems:
        raise CrcInputError(
            f"{shown}: text in a numeric column — {'; '.join(problems)}. "
            "Correct these cells to numbers, or leave them empty if the value is missing."
        )


def validate_table(
    source: TableRead | pd.DataFrame,
    mapping: ColumnMapping | None = None,
    *,
    name: str | None = None,
) -> pd.DataFrame:
    """Check a read table and return it with the ID column renamed ``patient_id`` and put first.

    Refuses, naming rows as a spreadsheet shows them: no ID column (listing the columns), empty
    IDs, duplicate IDs, and text in a numeric column. IDs become stripped strings (so ``007`` and
    ``7`` stay different: IDs are labels, not numbers). Numeric columns are converted to numbers;
    the group column and columns declared categorical/ordinal stay as text.
    """
    mapping = mapping or ColumnMapping()
    if isinstance(source, TableRead):
        table, shown, rows = (
            source.table.copy(),
            name or source.name,
            _row_numbers(source.table, source.row_numbers),
        )
    else:
        table, shown, rows = source.copy(), name or "the table", _row_numbers(source, None)
    table = table.reset_index(drop=True)
    table.columns = [str(column).strip() for column in table.columns]

    id_column = mapping.id_column or detect_id_column(table)
    if id_column is None or id_column not in table.columns:
        what = f"has no column {id_column!r}" if id_column else "has no patient ID column"
        raise CrcInputError(
            f"{shown} {what}. Its columns are: {', '.join(table.columns)}. "
            f"Rename the ID column to '{PATIENT_ID}' or choose it as the ID column in the column mapping."
        )
    for column in [mapping.group_column, *mapping.type_overrides]:
        if column is not None and column not in table.columns:
            raise CrcInputError(
                f"{shown} has no column {column!r} named in the column mapping. "
                f"Its columns are: {', '.join(table.columns)}."
            )
    if id_column != PATIENT_ID and PATIENT_ID in table.columns:
        raise CrcInputError(
            f"{shown} has both {id_column!r} (chosen as the ID) and a column named '{PATIENT_ID}'. "
            f"Rename or remove one of them."
        )

    ids = table[id_column].map(lambda v: str(v).strip() if pd.notna(v) else "")
    ids = ids.map(lambda v: v[:-2] if re.fullmatch(r"\d+\.0", v) else v)  # Excel stores 1001 as 1001.0
    empty = [rows[i] for i in np.flatnonzero((ids == "").to_numpy())]
    if empty:
        raise CrcInputError(
            f"{shown}: the patient ID (column {id_column!r}) is empty in row(s) {', '.join(map(str, empty[:10]))}"
            f"{' ...' if len(empty) > 10 else ''}. Fill in the ID or delete the row."
        )
    duplicated = ids[ids.duplicated(keep=False)]
    if not duplicated.empty:
        parts = []
        for patient, positions in duplicated.groupby(duplicated, sort=False).groups.items():
            where = ", ".join(str(rows[position]) for position in positions)
            parts.append(f"{patient} (rows {where})")
        raise CrcInputError(
            f"{shown}: duplicate patient IDs in column {id_column!r}: {'; '.join(parts[:10])}"
            f"{' ...' if len(parts) > 10 else ''}. Each patient must appear once; remove or merge the repeated rows."
        )
    table[id_column] = ids

    skip = {id_column} | ({mapping.group_column} if mapping.group_column else set())
    _check_numeric_cells(table, shown, rows, skip, mapping.type_overrides)
    for column in table.columns:
        if column in skip or mapping.type_overrides.get(column) in ("categorical", "ordinal"):
            continue
        numbers = _as_numbers(table[column])
        if table[column].notna().any() and numbers.notna().sum() == table[column].notna().sum():
            table[column] = numbers

    table = table.rename(columns={id_column: PATIENT_ID})
    return table[[PATIENT_ID, *[c for c in table.columns if c != PATIENT_ID]]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Joining


@dataclass(frozen=True)
class JoinResult:
    """The inner join of two tables, and the IDs that were only in one of them (sorted)."""

    table: pd.DataFrame
    only_in_clinical: tuple[str, ...]
    only_in_pathology: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.only_in_clinical and not self.only_in_pathology


def _id_strings(table: pd.DataFrame, id_column: str, role: str) -> pd.Series:
    if id_column not in table.columns:
        raise CrcInputError(
            f"The {role} table has no column {id_column!r}. Its columns are: {', '.join(map(str, table.columns))}. "
            "Map its ID column first."
        )
    ids = table[id_column].map(lambda v: str(v).strip() if pd.notna(v) else "")
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise CrcInputError(
            f"The {role} table has duplicate patient IDs: {', '.join(duplicated[:10])}. Each patient must appear once."
        )
    if (ids == "").any():
        raise CrcInputError(
            f"The {role} table has rows without a patient ID. Fill in the ID or delete the rows."
        )
    return ids


def join_tables(
    clinical: pd.DataFrame,
    pathology: pd.DataFrame,
    id_column: str = PATIENT_ID,
) -> JoinResult:
    """Inner-join clinical and pathology rows on the patient ID, compared as stripped strings.

    Clinical rows keep their order. A column present in both tables is kept from the clinical
    table and the pathology copy gets the suffix ``_pathology``. Patients found in only one table
    are listed (not an error) so the page can show them before the user continues.
    """
    left = clinical.copy()
    right = pathology.copy()
    left[id_column] = _id_strings(clinical, id_column, "clinical")
    right[id_column] = _id_strings(pathology, id_column, "pathology")
    joined = left.merge(right, on=id_column, how="inner", suffixes=("", "_pathology"), sort=False)
    left_ids, right_ids = set(left[id_column]), set(right[id_column])
    if joined.empty:
        raise CrcInputError(
            f"No patient ID is in both tables (clinical e.g. {', '.join(sorted(left_ids)[:3])}; "
            f"pathology e.g. {', '.join(sorted(right_ids)[:3])}). Check that both ID columns hold the same IDs."
        )
    return JoinResult(
        table=joined.reset_index(drop=True),
        only_in_clinical=tuple(sorted(left_ids - right_ids)),
        only_in_pathology=tuple(sorted(right_ids - left_ids)),
    )


def _read_workspace_table(path: Path) -> pd.DataFrame:
    read = read_table(path)
    return validate_table(read, ColumnMapping(id_column=PATIENT_ID), name=str(path))


def load_workspace_cohort(workspace: Workspace) -> pd.DataFrame:
    """The cohort of a workspace: clinical inner-joined with pathology, then ``labels.csv`` and the
    saved ``split.csv`` (left joins) when present.

    A saved split replaces any ``split``/``fold`` column of the clinical table, so the split the
    user chose on the Cohort page is the one every later step uses.
    """
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    workspace.require_usable()
    clinical = _read_workspace_table(workspace.clinical_csv)
    pathology = _read_workspace_table(workspace.pathology_csv)
    cohort = join_tables(clinical, pathology).table
    if workspace.labels_csv.exists():
        labels = _read_workspace_table(workspace.labels_csv)
        cohort = cohort.merge(labels, on=PATIENT_ID, how="left", suffixes=("", "_label"), sort=False)
    split_path = workspace.root / SPLIT_CSV
    if split_path.exists():
        split = _read_workspace_table(split_path)
        split = split[[c for c in (PATIENT_ID, "split", "fold") if c in split.columns]]
        cohort = cohort.drop(columns=[c for c in ("split", "fold") if c in cohort.columns])
        cohort = cohort.merge(split, on=PATIENT_ID, how="left", sort=False)
    return cohort.reset_index(drop=True)


COLUMN_MAPPING_JSON = "column_mapping.json"


def import_cohort_tables(
    root: Path,
    clinical: pd.DataFrame,
    pathology: pd.DataFrame,
    mapping: ColumnMapping | None = None,
) -> JoinResult:
    """Make ``root`` a workspace holding these (validated) clinical and pathology tables.

    Everything is checked first (the join must match at least one patient; the folder must be
    writable); only then are both tables written, each atomically. ``mapping`` (the group column
    and the user's type overrides) is kept in ``column_mapping.json`` so that Table 1 starts from
    the user's choices. Returns the join so that the page can list the patients found in only
    one table.
    """
    from crc_core.workspace import CLINICAL_CSV, PATHOLOGY_CSV, atomic_write_csv, atomic_write_text, ensure_writable_dir

    joined = join_tables(clinical, pathology)
    if mapping is not None:
        named = [c for c in [mapping.group_column, *mapping.type_overrides] if c]
        absent = [c for c in named if c not in joined.table.columns]
        if absent:
            raise CrcInputError(f"The column mapping names columns the tables do not have: {', '.join(absent)}.")
    folder = ensure_writable_dir(Path(root))
    atomic_write_csv(folder / CLINICAL_CSV, clinical)
    atomic_write_csv(folder / PATHOLOGY_CSV, pathology)
    stored = folder / COLUMN_MAPPING_JSON
    if mapping is not None and (mapping.group_column or mapping.variable_types):
        document = {"group_column": mapping.group_column, "variable_types": mapping.type_overrides}
        atomic_write_text(stored, json.dumps(document, indent=2, ensure_ascii=False))
    elif stored.exists():
        stored.unlink()  # a mapping of earlier tables does not describe these
    return joined


def read_column_mapping(workspace: Workspace) -> ColumnMapping:
    """The group column and type overrides saved with the tables; empty when none were saved.
    A damaged file is named, with what to do."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    path = workspace.root / COLUMN_MAPPING_JSON
    if not path.exists():
        return ColumnMapping()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return ColumnMapping(
            group_column=document.get("group_column"),
            variable_types=dict(document.get("variable_types") or {}),
        )
    except (ValueError, AttributeError, TypeError) as exc:
        raise CrcInputError(f"{path} is damaged ({exc}); delete it or import the tables again.") from exc
