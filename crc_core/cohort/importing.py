"""Bringing a user's clinical and pathology tables into a workspace, without losing anything.

An upload is read (:mod:`crc_core.tables`), mapped (ID column, group column, variable types, the
pathology fields) and checked before anything is written. A folder that already holds a cohort is
never overwritten without an explicit ``replace=True``; replacing removes what was derived from
the old tables (split, labels, column mapping, the crop choice), so nothing of the old cohort is
taken for the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as replace_result
from pathlib import Path
from typing import Mapping

import pandas as pd

from crc_core.cohort.join import (
    ColumnMapping,
    JoinResult,
    check_table,
    detect_id_column,
    join_tables,
    save_column_mapping,
)
from crc_core.errors import CrcInputError
from crc_core.cohort.pathology import describe_fields, detect_pathology_columns, missing_pathology_fields
from crc_core.cohort.splits import SavedSplit, SplitConfig, make_split, read_split, save_split
from crc_core.tables import PATIENT_ID, TableRead, read_table
from crc_core.variables import detect_variable_types
from crc_core.workspace import Workspace, atomic_write_csv, ensure_writable_dir

ROLES = ("clinical", "pathology")
SAMPLE_TABLES = Path(__file__).resolve().parents[2] / "data" / "sample"


class WorkspaceOccupied(CrcInputError):
    """The target folder already holds a cohort; the user opens it or confirms replacing it."""

    def __init__(self, workspace: Workspace, summary: str):
        self.workspace = workspace
        self.summary = summary
        super().__init__(
            f"{workspace.root} already holds a cohort ({summary}). Open it instead, or confirm that "
            "its tables are to be replaced: its split, labels and crop choice are removed with them."
        )


@dataclass(frozen=True)
class PreparedTable:
    """One uploaded table, mapped and checked: ready to import. ``notes`` say how the file was read
    (encoding, delimiter); ``missing_notes`` how many missing-value codes were read as missing."""

    role: str
    table: pd.DataFrame
    mapping: ColumnMapping
    notes: tuple[str, ...] = ()
    missing_notes: tuple[str, ...] = ()


def prepare_table(
    read: TableRead,
    role: str,
    *,
    id_column: str | None = None,
    group_column: str | None = None,
    variable_types: Mapping[str, str] | None = None,
    pathology_columns: Mapping[str, str] | None = None,
) -> PreparedTable:
    """Map and check one read table. ``variable_types`` are the user's choices (the rest are
    detected); ``pathology_columns`` (field → the user's column) name where a pathology table
    keeps what the labels need, and a field that is still missing is refused by name."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    id_column = id_column or detect_id_column(read.table)
    types = detect_variable_types(read.table, exclude=[id_column, group_column], overrides=variable_types)
    if pathology_columns is None and role == "pathology":
        pathology_columns = detect_pathology_columns(read.table.columns)
    columns = {f: c for f, c in (pathology_columns or {}).items() if c}
    mapping = ColumnMapping(
        id_column=id_column, group_column=group_column, variable_types=types,
        pathology_columns=columns if role == "pathology" else {},
    )
    checked = check_table(read, mapping)
    table = checked.table
    if role == "pathology":
        missing = missing_pathology_fields(table.columns)
        if missing:
            raise CrcInputError(
                f"{read.name}: no column chosen for {describe_fields(missing)}. Choose the column that holds "
                "each in the pathology column mapping (the labels need TSR, the TIL grade, and the four "
                "CD3/CD8 counts or an Immune Score column)."
            )
        # The table now names the mapped columns by their fields; so must its variable types.
        field_of = {column: field for field, column in mapping.pathology_map.items()}
        types = {field_of.get(column, column): kind for column, kind in types.items()}
        mapping = ColumnMapping(id_column=id_column, variable_types=types, pathology_columns=mapping.pathology_map)
    return PreparedTable(role, table, mapping, tuple(read.notes), checked.missing_notes)


def combined_mapping(clinical: PreparedTable, pathology: PreparedTable | None = None) -> ColumnMapping:
    """The mapping saved with the cohort: the clinical table's group column and both tables'
    variable types (the ID column is ``patient_id`` once imported)."""
    types = {**(pathology.mapping.type_overrides if pathology else {}), **clinical.mapping.type_overrides}
    types.pop(PATIENT_ID, None)
    return ColumnMapping(
        group_column=clinical.mapping.group_column,
        group_order=clinical.mapping.group_order,
        variable_types=types,
        pathology_columns=pathology.mapping.pathology_map if pathology else {},
    )


def cohort_description(workspace: Workspace) -> str:
    """A few words on what a folder holds, for the question whether to replace it."""
    parts = []
    try:
        parts.append(f"{len(workspace.read_clinical())} patients in {workspace.clinical_csv.name}")
    except CrcInputError:
        parts.append("tables that cannot be read" if workspace.holds_cohort() else "no tables")
    try:
        saved = read_split(workspace)
    except CrcInputError:
        saved = None
    if saved is not None:
        parts.append(f"split {saved.describe()}")
    if workspace.labels_csv.exists():
        parts.append("labels")
    if workspace.crops_pointer.exists():
        parts.append("crops")
    return "; ".join(parts)


@dataclass(frozen=True)
class ImportResult:
    workspace: Workspace
    join: JoinResult
    split: SavedSplit | None
    notes: tuple[str, ...] = ()


def _split_from_group_column(table: pd.DataFrame, mapping: ColumnMapping) -> tuple[pd.DataFrame | None, str]:
    """The group column as the split when its values read as train/validation(/external)."""
    column = mapping.group_column
    if not column:
        return None, ""
    try:
        return make_split(table, SplitConfig(method="column", column=column)), ""
    except CrcInputError:
        values = ", ".join(map(str, sorted(table[column].dropna().astype(str).unique())[:6]))
        return None, (
            f"The group column {column!r} ({values}) does not name training and validation patients, so "
            "it is not saved as the split; Table 1 compares by it. Make a split on the Cohort page."
        )


def import_cohort_tables(
    root: Path | str,
    clinical: pd.DataFrame,
    pathology: pd.DataFrame,
    mapping: ColumnMapping | None = None,
    *,
    replace: bool = False,
) -> ImportResult:
    """Make ``root`` a workspace holding these (validated) clinical and pathology tables.

    Everything is checked first (the join must match at least one patient, the mapping's columns
    must exist, the folder must be writable, and a folder holding a cohort is refused with
    :class:`WorkspaceOccupied` unless ``replace``); only then are the tables written, each
    atomically, with ``column_mapping.json``. A group column whose values are train/validation is
    saved as the split (``split.csv``).
    """
    workspace = Workspace(Path(root))
    mapping = mapping or ColumnMapping()
    joined = join_tables(clinical, pathology)
    named = [c for c in [mapping.group_column] if c]
    absent = [c for c in named if c not in joined.table.columns]
    if absent:
        raise CrcInputError(f"The column mapping names columns the tables do not have: {', '.join(absent)}.")
    split_table, note = _split_from_group_column(joined.table, mapping)
    if workspace.holds_cohort() and not replace:
        raise WorkspaceOccupied(workspace, cohort_description(workspace))
    ensure_writable_dir(workspace.root)
    workspace.remove_derived()
    atomic_write_csv(workspace.clinical_csv, clinical)
    atomic_write_csv(workspace.pathology_csv, pathology)
    save_column_mapping(workspace, mapping)
    saved = None
    if split_table is not None:
        config = SplitConfig(method="column", column=mapping.group_column)
        save_split(workspace, split_table, config)
        saved = read_split(workspace)
    notes = tuple(n for n in (note, "" if joined.complete else joined.unmatched_text()) if n)
    return ImportResult(workspace, joined, saved, notes)


def import_prepared(root: Path | str, clinical: PreparedTable, pathology: PreparedTable, *, replace: bool = False) -> ImportResult:
    """Import two prepared uploads (see :func:`prepare_table`); the notes say, besides the
    import's own, how many missing-value codes each table had."""
    result = import_cohort_tables(root, clinical.table, pathology.table, combined_mapping(clinical, pathology), replace=replace)
    return replace_result(result, notes=(*clinical.missing_notes, *pathology.missing_notes, *result.notes))


def import_sample_tables(root: Path | str, *, replace: bool = False) -> ImportResult:
    """The built-in sample's tables through the same import path (to try the step without files)."""
    prepared = {
        role: prepare_table(read_table(SAMPLE_TABLES / f"{role}.csv"), role, id_column=PATIENT_ID,
                            group_column="split" if role == "clinical" else None)
        for role in ROLES
    }
    return import_prepared(root, prepared["clinical"], prepared["pathology"], replace=replace)
