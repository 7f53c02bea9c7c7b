"""Reading tables from files: CSV, TSV and XLSX from a path or an upload, and the patient IDs in them.

One reader for every table the project takes in (an upload on the Cohort page, a workspace file,
a file named on the command line), so a Windows-1252 or GB18030 export reads the same everywhere.
Cells are kept as text; :mod:`crc_core.cohort.join` turns them into numbers by column.

Row numbers in every message are spreadsheet rows, 1-based as a user sees them in Excel: the header
is row 1 and the first patient is row 2 (blank lines and empty rows keep their numbers, so a user
can go straight to the cell).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.variables import is_missing_code, read_numeric_columns


#: Largest table accepted, in bytes: Streamlit's ``server.maxUploadSize`` (200, in MiB), which
#: ``.streamlit/config.toml`` sets and Streamlit multiplies by 1024 * 1024. Imaging zips have their
#: own, larger limit (:data:`crc_core.imaging.archive.MAX_EXTRACTED_MB`).
MAX_UPLOAD_MB = 200
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + EXCEL_SUFFIXES

#: The canonical name of the ID column once a table has been mapped.
PATIENT_ID = "patient_id"


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


#: File signatures of things users pick by mistake, so that "clinical.csv" holding a PNG is named
#: for what it is instead of failing as a table with odd rows.
_SIGNATURES = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive or an Excel workbook"),
    (b"\x1f\x8b", "a gzip file (a compressed image?)"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (.xls or .doc)"),
    (b"$FL2", "an SPSS data file (.sav)"),
)


def _binary_kind(data: bytes) -> str | None:
    """What a non-text file seems to be, or None for text (UTF-16 with its BOM counts as text)."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if len(data) > 132 and data[128:132] == b"DICM":
        return "a DICOM image"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    return "a binary file" if b"\x00" in data[:4096] else None


def _read_text(data: bytes, shown: str, suffix: str) -> tuple[pd.DataFrame, str, list[str], list[int]]:
    kind = _binary_kind(data)
    if kind:
        hint = " Rename it to .xlsx if it is a workbook." if kind.startswith("a zip") else ""
        raise CrcInputError(
            f"{shown} is not a text table: it looks like {kind}. Choose the table itself, saved as "
            f"CSV (comma or semicolon separated), TSV or XLSX.{hint}"
        )
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
    header = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, header=None, nrows=1, skip_blank_lines=False,
                         keep_default_na=False).iloc[0].tolist() if len(table.columns) else []
    _refuse_repeated_columns(header, shown, lambda i: str(i + 1))
    if sep != ",":
        # Semicolon and tab separated text comes from Excel in locales that write 3,5 for 3.5.
        notes += _read_decimal_commas(table, shown, points_too=False)
    row_numbers = list(range(2, len(table) + 2))
    return table, encoding, notes, row_numbers


_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


def _read_decimal_commas(table: pd.DataFrame, shown: str, *, points_too: bool) -> list[str]:
    """Turn decimal commas (``34,6``) into points, in place, in every column whose filled cells are
    all numbers of that form, whole numbers or missing-value codes (``n.d.``: they stay, to be
    counted as missing later); a note names the columns. ``points_too`` admits cells already
    written with a point (a workbook's number cells beside its text cells); a text file's
    ``1.234`` may be a German thousand, so there a point keeps the column as it is."""
    allowed = re.compile(r"-?\d+([.,]\d+)?" if points_too else r"-?\d+(,\d+)?")
    converted = []
    for column in table.columns:
        cells = table[column].dropna().astype(str).str.strip()
        cells = cells[~cells.map(is_missing_code)]
        if len(cells) and cells.map(allowed.fullmatch).notna().all() and cells.map(_DECIMAL_COMMA.fullmatch).notna().any():
            table[column] = table[column].map(
                lambda v: v.strip().replace(",", ".") if isinstance(v, str) and _DECIMAL_COMMA.fullmatch(v.strip()) else v
            )
            converted.append(str(column))
    return [f"{shown}: decimal commas read as decimal points in {', '.join(converted)}."] if converted else []


def _refuse_repeated_columns(header: Sequence[Any], shown: str, column_name: Any) -> None:
    """Refuse a header that names a column twice (``age`` and ``age``, or ``age `` once trimmed):
    pandas would rename one ``age.1`` silently, or keep both and fail on them later, and either way
    one of the two would be taken for the other. ``column_name(i)`` is how column ``i`` (0-based) is
    shown: its number, or its Excel letter."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        text = "" if name is None or (isinstance(name, float) and np.isnan(name)) else str(name).strip()
        if text:
            positions.setdefault(text, []).append(i)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        parts = [f"{name!r} (columns {', '.join(column_name(i) for i in where)})" for name, where in repeated.items()]
        raise CrcInputError(
            f"{shown}: the header names {'a column' if len(parts) == 1 else 'columns'} more than once: "
            f"{'; '.join(parts)}. Each column needs a name of its own: rename or remove the repeated "
            "column, then load the file again."
        )


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
    from openpyxl.utils import get_column_letter

    _refuse_repeated_columns(columns, f"{shown} (sheet {chosen!r})", lambda i: get_column_letter(i + 1))
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
    if suffix in EXCEL_SUFFIXES:  # numbers typed as text in a German workbook: 34,6
        notes = [*notes, *_read_decimal_commas(table, shown, points_too=True)]
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
# Patient IDs


def spreadsheet_rows(table: pd.DataFrame, row_numbers: Sequence[int] | None = None) -> list[int]:
    """Each row's spreadsheet row (header = row 1), default 2, 3, ... ."""
    if row_numbers is None:
        return list(range(2, len(table) + 2))
    if len(row_numbers) != len(table):
        raise ValueError(f"row_numbers has {len(row_numbers)} entries for {len(table)} rows")
    return [int(r) for r in row_numbers]


def listing(items: Sequence[str], limit: int = 5) -> str:
    """``a, b, c and 4 more``: enough to act on without a wall of text."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def id_text(value: Any) -> str:
    """A patient ID as text: stripped, ``1001.0`` (a number Excel stored as float) read as ``1001``.
    IDs are labels, not numbers, so ``007`` and ``7`` stay different."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    text = str(value).strip()
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


def _path_like(patient: str) -> str | None:
    """Why an ID could be taken for a path, or None. IDs name files on some paths (crops, maps,
    exports), so none may hold a separator of any system, be ``..`` or hidden (a leading dot), or
    hold a control character (NUL ends a C path; newline and tab break the CSVs that list it)."""
    for separator in ("/", "\\"):
        if separator in patient:
            return f"contains {separator!r}"
    if patient.startswith("."):
        return "starts with a dot"
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in patient):
        return "contains a control character"
    return None


def patient_ids(
    table: pd.DataFrame,
    *,
    what: str,
    id_column: str = PATIENT_ID,
    row_numbers: Sequence[int] | None = None,
) -> pd.Series:
    """The table's patient IDs as text (see :func:`id_text`), checked: the column exists, no ID is
    empty, none could be taken for a path (``/``, ``\\``, a leading dot as in ``..``, a control
    character) and none repeats. ``what`` names the table in messages ("clinical.csv", "The split
    table"), which name the spreadsheet rows of every offending ID."""
    rows = spreadsheet_rows(table, row_numbers)
    if id_column not in table.columns:
        raise CrcInputError(
            f"{what} has no {id_column!r} column. Its columns are: {', '.join(map(str, table.columns))}. "
            f"Rename the ID column to '{PATIENT_ID}' or choose it as the ID column on the Cohort page."
        )
    ids = table[id_column].map(id_text).reset_index(drop=True)
    empty = [str(rows[i]) for i in np.flatnonzero((ids == "").to_numpy())]
    if empty:
        raise CrcInputError(
            f"{what}: the patient ID (column {id_column!r}) is empty in row(s) {listing(empty, 10)}. "
            "Fill in the ID or delete the row."
        )
    path_like = [(rows[i], patient, why) for i, patient in enumerate(ids) if (why := _path_like(patient))]
    if path_like:
        parts = [f"row {row} ({patient!r}) {why}" for row, patient, why in path_like]
        more = f", and {len(parts) - 10} more" if len(parts) > 10 else ""
        raise CrcInputError(
            f"{what}: the patient ID in {', in '.join(parts[:10])}{more}; an ID names a patient, never a file or "
            "folder. Use letters, digits, spaces, '-', '_' or '.' (not first) for it, the same in every table."
        )
    repeated = ids[ids.duplicated(keep=False)]
    if not repeated.empty:
        parts = [
            f"{patient} (rows {', '.join(str(rows[p]) for p in positions)})"
            for patient, positions in repeated.groupby(repeated, sort=False).groups.items()
        ]
        shown = "; ".join(parts[:10]) + (f"; and {len(parts) - 10} more" if len(parts) > 10 else "")
        raise CrcInputError(
            f"{what}: duplicate patient IDs in column {id_column!r}: {shown}. "
            "Each patient must appear once; remove or merge the repeated rows."
        )
    return ids


def read_id_table(path: Path, *, what: str | None = None) -> pd.DataFrame:
    """A table file with a ``patient_id`` column, IDs checked, numbers typed by the rule of
    :func:`crc_core.variables.read_numeric_columns` (missing-value codes read as missing, a word in a
    column of numbers refused by row): how every workspace table (clinical, pathology, labels) is
    read, whatever its encoding or delimiter, and as an upload is at import."""
    read = read_table(path)
    shown = what or str(path)
    table = read.table
    table[PATIENT_ID] = patient_ids(table, what=shown, row_numbers=read.row_numbers)
    typed, _ = read_numeric_columns(table, shown=shown, rows=read.row_numbers, skip=(PATIENT_ID,))
    return typed.reset_index(drop=True)
