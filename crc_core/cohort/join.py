"""The cohort: users' tables mapped onto the project's columns, checked, and joined on the patient
ID; and the cohort of a workspace as every later step sees it (clinical ⋈ pathology, with the
labels and the saved split).

Files are read by :mod:`crc_core.tables`; variable types come from :mod:`crc_core.variables`;
bringing tables into a workspace is :mod:`crc_core.cohort.importing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.cohort.pathology import renamed_to_fields
from crc_core.cohort.splits import (
    FOLD_COLUMN,
    SPLIT_ALIASES,
    SPLIT_COLUMN,
    TRAIN,
    SplitConfig,
    make_split,
    read_split,
    save_split,
)
from crc_core.tables import PATIENT_ID, TableRead, listing, patient_ids, spreadsheet_rows
from crc_core.variables import check_variable_types, name_key, read_numeric_columns
from crc_core.workspace import Workspace, atomic_write_text

#: Column names recognised as the patient ID, compared by :func:`~crc_core.variables.name_key`.
#: Chinese hospital exports use 住院号 (inpatient number), 病历号/病案号 (record number),
#: 患者编号/患者ID/编号 or ID号.
ID_COLUMN_NAMES = (
    "patientid", "patient", "id", "pid", "subjectid", "caseid", "mrn", "studyid",
    "住院号", "病历号", "病案号", "患者编号", "患者id", "编号", "id号",
)


@dataclass(frozen=True)
class ColumnMapping(JsonConfig):
    """How the user's columns map onto the cohort: which holds the patient ID, which (optionally)
    the group (train/validation, or any two groups) and in what order its groups are shown, each
    variable's type (``continuous``, ``categorical`` or ``ordinal``; see
    :mod:`crc_core.variables`), and for a pathology table which column holds each field the labels
    need (``tsr_percent`` → ``"TSR (%)"``)."""

    id_column: str | None = None
    group_column: str | None = None
    group_order: tuple[str, ...] = ()
    variable_types: tuple[tuple[str, str], ...] | Mapping[str, str] = field(default_factory=tuple)
    pathology_columns: tuple[tuple[str, str], ...] | Mapping[str, str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        types = check_variable_types(dict(_pairs(self.variable_types)))
        if self.id_column is not None and self.id_column == self.group_column:
            raise CrcInputError(
                f"Column {self.id_column!r} cannot be both the patient ID and the group column. Pick two different columns."
            )
        object.__setattr__(self, "variable_types", tuple(sorted(types.items())))
        object.__setattr__(self, "pathology_columns", tuple(sorted(dict(_pairs(self.pathology_columns)).items())))
        object.__setattr__(self, "group_order", tuple(str(g) for g in self.group_order))

    @property
    def type_overrides(self) -> dict[str, str]:
        return dict(self.variable_types)

    @property
    def pathology_map(self) -> dict[str, str]:
        return dict(self.pathology_columns)

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values["variable_types"] = self.type_overrides
        values["pathology_columns"] = self.pathology_map
        return values


def _pairs(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    return [(str(k), str(v)) for k, v in raw]


def detect_id_column(table: pd.DataFrame) -> str | None:
    """The column that holds the patient ID, or ``None``: a column whose name is one of
    :data:`ID_COLUMN_NAMES` (``patient_id``, ``Patient ID``, ``id``, ``MRN``, ``住院号`` ...);
    earlier names in that list win. No guessing from the values."""
    keys = {name_key(column): column for column in reversed(list(table.columns))}
    for candidate in ID_COLUMN_NAMES:
        if candidate in keys:
            return keys[candidate]
    return None


#: Column names that usually hold the training/validation assignment.
GROUP_COLUMN_NAMES = ("split", "set", "cohort", "group", "dataset", "subset", "gruppe", "分组", "组别")


def detect_group_column(table: pd.DataFrame, exclude: tuple[str | None, ...] = ()) -> str | None:
    """The column that holds the split, or ``None``: the first whose values all read as
    train/validation/external (any spelling of :data:`crc_core.cohort.splits.SPLIT_ALIASES`) with a
    training group, preferring the names of :data:`GROUP_COLUMN_NAMES`."""
    def readable(column: str) -> bool:
        values = table[column].dropna().astype(str).str.strip().str.lower()
        roles = values.map(SPLIT_ALIASES)
        return len(values) > 0 and roles.notna().all() and (roles == TRAIN).any() and roles.nunique() >= 2

    candidates = [c for c in table.columns if c not in exclude]
    named = sorted(candidates, key=lambda c: name_key(c) not in GROUP_COLUMN_NAMES)
    return next((c for c in named if readable(c)), None)


# ---------------------------------------------------------------------------------------------
# Checking a table


@dataclass(frozen=True)
class CheckedTable:
    """A table checked by :func:`check_table`, with what the user should be told about its reading
    (how many missing-value codes were read as missing in which column)."""

    table: pd.DataFrame
    missing_notes: tuple[str, ...] = ()


def check_table(
    source: TableRead | pd.DataFrame,
    mapping: ColumnMapping | None = None,
    *,
    name: str | None = None,
) -> CheckedTable:
    """Check a read table and return it with the ID column renamed ``patient_id`` and put first,
    and a pathology table's mapped columns renamed to the fields the labels use.

    Refuses, naming rows as a spreadsheet shows them: no ID column (listing the columns), empty,
    duplicate or path-like IDs, and a word in a column of numbers (by the rule of
    :func:`crc_core.variables.read_numeric_columns`, or any word in a column declared continuous).
    IDs become text (see :func:`crc_core.tables.id_text`). Columns of numbers are converted to
    numbers, their missing-value codes (n.d., NA, - ...) read as missing and counted in
    ``missing_notes``; the group column stays as text, and so do a few codes with a word among
    them (pT 1-4 and "is") unless the column is declared continuous.
    """
    mapping = mapping or ColumnMapping()
    if isinstance(source, TableRead):
        table, shown = source.table.copy(), name or source.name
        rows = spreadsheet_rows(source.table, source.row_numbers or None)
    else:
        table, shown = source.copy(), name or "the table"
        rows = spreadsheet_rows(source)
    table = table.reset_index(drop=True)
    table.columns = [str(column).strip() for column in table.columns]

    id_column = mapping.id_column or detect_id_column(table)
    if id_column is None or id_column not in table.columns:
        what = f"has no column {id_column!r}" if id_column else "has no patient ID column"
        raise CrcInputError(
            f"{shown} {what}. Its columns are: {', '.join(table.columns)}. "
            f"Rename the ID column to '{PATIENT_ID}' or choose it as the ID column in the column mapping."
        )
    named = [mapping.group_column, *mapping.type_overrides, *mapping.pathology_map.values()]
    absent = [c for c in named if c is not None and c not in table.columns]
    if absent:
        raise CrcInputError(
            f"{shown} has no column {', '.join(map(repr, absent))} named in the column mapping. "
            f"Its columns are: {', '.join(table.columns)}."
        )
    if id_column != PATIENT_ID and PATIENT_ID in table.columns:
        raise CrcInputError(
            f"{shown} has both {id_column!r} (chosen as the ID) and a column named '{PATIENT_ID}'. "
            f"Rename or remove one of them."
        )
    table[id_column] = patient_ids(table, what=shown, id_column=id_column, row_numbers=rows)

    skip = {id_column} | ({mapping.group_column} if mapping.group_column else set())
    table, notes = read_numeric_columns(table, shown=shown, rows=rows, skip=skip, declared=mapping.type_overrides)

    if mapping.pathology_columns:
        table = renamed_to_fields(table, mapping.pathology_map)
    table = table.rename(columns={id_column: PATIENT_ID})
    table = table[[PATIENT_ID, *[c for c in table.columns if c != PATIENT_ID]]].reset_index(drop=True)
    return CheckedTable(table, tuple(notes))


def validate_table(
    source: TableRead | pd.DataFrame,
    mapping: ColumnMapping | None = None,
    *,
    name: str | None = None,
) -> pd.DataFrame:
    """The table of :func:`check_table`, without its notes."""
    return check_table(source, mapping, name=name).table


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

    def unmatched_text(self) -> str:
        return (
            f"Only in the clinical table: {listing(list(self.only_in_clinical), 10) or 'none'}. "
            f"Only in the pathology table: {listing(list(self.only_in_pathology), 10) or 'none'}. "
            "These patients are left out of the cohort, and of its labels."
            + near_miss_text(self.only_in_pathology, self.only_in_clinical)
        )


def id_spelling_key(patient: str) -> str:
    """An ID with its spaces and case dropped: two IDs with one key are one patient written twice
    two ways (``CRC007`` and ``crc 007``)."""
    return "".join(str(patient).split()).casefold()


def near_misses(ids: Sequence[str], others: Sequence[str]) -> list[tuple[str, str]]:
    """Pairs (an ID of ``ids``, one of ``others``) that differ only by spaces or case."""
    by_key: dict[str, list[str]] = {}
    for other in others:
        by_key.setdefault(id_spelling_key(other), []).append(other)
    return [(patient, other) for patient in ids for other in by_key.get(id_spelling_key(patient), []) if other != patient]


def near_miss_text(pathology_only: Sequence[str], clinical_only: Sequence[str]) -> str:
    """The sentence pointing out IDs of the two tables that differ only by spaces or case, or ''."""
    pairs = near_misses(pathology_only, clinical_only)
    if not pairs:
        return ""
    shown = listing([f"{p!r} (pathology) and {c!r} (clinical)" for p, c in pairs], 5)
    return (
        f" These IDs differ only by spaces or case: {shown}. If each pair is one patient, write the ID the "
        "same way in both tables and import them again."
    )


def join_tables(clinical: pd.DataFrame, pathology: pd.DataFrame, id_column: str = PATIENT_ID) -> JoinResult:
    """Inner-join clinical and pathology rows on the patient ID, compared as text.

    Clinical rows keep their order. A column present in both tables is kept from the clinical
    table and the pathology copy gets the suffix ``_pathology``. Patients found in only one table
    are listed (not an error) so the page can show them before the user continues.
    """
    left, right = clinical.copy(), pathology.copy()
    left[id_column] = patient_ids(clinical, what="The clinical table", id_column=id_column).to_numpy()
    right[id_column] = patient_ids(pathology, what="The pathology table", id_column=id_column).to_numpy()
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


# ---------------------------------------------------------------------------------------------
# The cohort of a workspace


def load_workspace_cohort(workspace: Workspace, *, with_saved_split: bool = True) -> pd.DataFrame:
    """The cohort of a workspace: clinical inner-joined with pathology, then ``labels.csv`` and
    the split (left joins).

    The split is the one of :func:`crc_core.cohort.splits.read_split`: a saved split replaces any
    ``split``/``fold`` column of the clinical table, so the split the user chose is the one every
    later step uses. ``with_saved_split=False`` gives the tables as imported (the clinical
    table's own columns): what a new split is made from.
    """
    workspace = Workspace.of(workspace)
    workspace.require_usable()
    cohort = join_tables(workspace.read_clinical(), workspace.read_pathology()).table
    if workspace.labels_csv.exists():
        labels = workspace.read_table(workspace.labels_csv)
        cohort = cohort.merge(labels, on=PATIENT_ID, how="left", suffixes=("", "_label"), sort=False)
    if with_saved_split:
        saved = read_split(workspace)
        if saved is not None:
            lookup = saved.table.set_index(PATIENT_ID)
            for column in (SPLIT_COLUMN, FOLD_COLUMN):
                if column in lookup.columns:  # in place, where the clinical table had it
                    cohort[column] = cohort[PATIENT_ID].map(lookup[column])
                elif column in cohort.columns:
                    cohort = cohort.drop(columns=[column])
    return cohort.reset_index(drop=True)


def split_workspace(workspace: Workspace, config: SplitConfig | None = None) -> pd.DataFrame:
    """Split a workspace's cohort (as imported, so a column split reads the clinical table's own
    column) and save it: what ``crc-time split`` and the Cohort page run."""
    workspace = Workspace.of(workspace)
    config = config or SplitConfig()
    split_table = make_split(load_workspace_cohort(workspace, with_saved_split=False), config)
    save_split(workspace, split_table, config)
    return split_table


def save_column_mapping(workspace: Workspace, mapping: ColumnMapping) -> None:
    atomic_write_text(Workspace.of(workspace).column_mapping_json, mapping.to_json())


def read_column_mapping(workspace: Workspace) -> ColumnMapping:
    """The ID and group columns, group order and variable types saved at import; empty when none
    were saved. A damaged file is named, with what to do."""
    path = Workspace.of(workspace).column_mapping_json
    if not path.exists():
        return ColumnMapping()
    try:
        return ColumnMapping.from_json(path.read_text(encoding="utf-8"), source=str(path))
    except (CrcInputError, OSError, UnicodeDecodeError) as exc:
        raise CrcInputError(f"{path} is damaged ({exc}); delete it or import the tables again.") from exc
