"""Training/validation splits of a cohort: seeded random (the paper's 7:3, 315 → 220/95), taken from
a column, k-fold cross-validation, or an external cohort by centre; and the one reader of the split
every step uses.

Input is a cohort table with ``patient_id``; output is ``split.csv`` + ``split.json`` in the
workspace. Where no split was saved, the clinical table's own ``split`` column is the split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.tables import PATIENT_ID, listing, patient_ids, read_table
from crc_core.workspace import Workspace, atomic_write_csv, atomic_write_text

TRAIN, VALIDATION, EXTERNAL = "train", "validation", "external"
SPLIT_VALUES = (TRAIN, VALIDATION, EXTERNAL)
SPLIT_COLUMN = "split"
FOLD_COLUMN = "fold"
METHODS = ("random", "column", "kfold", "external")
ALLOWED_FOLDS = (5, 10)

#: Spellings accepted in a user's split column (compared after stripping and lower-casing);
#: the paper itself calls the validation cohort a "test set".
SPLIT_ALIASES = {
    "train": TRAIN,
    "training": TRAIN,
    "validation": VALIDATION,
    "valid": VALIDATION,
    "val": VALIDATION,
    "test": VALIDATION,
    "testing": VALIDATION,
    "external": EXTERNAL,
}


@dataclass(frozen=True)
class SplitConfig(JsonConfig):
    """How to split the cohort. Defaults are the paper's: seeded random 7:3.

    - ``random``: ``round(n × train_fraction)`` patients to ``train``, the rest ``validation``;
      stratified on ``stratify_by`` when given.
    - ``column``: take ``train``/``validation``/``external`` from the user's ``column``.
    - ``kfold``: every patient gets ``split = train`` and a ``fold`` 0..n_folds-1 (the fold in
      which it is held out); stratified on ``stratify_by`` when given.
    - ``external``: patients whose ``centre_column`` is one of ``external_centres`` become
      ``external``; the others are split at random as above.
    """

    method: str = "random"
    train_fraction: float = 0.7
    seed: int = 0
    stratify_by: str | None = None
    column: str | None = None
    n_folds: int = 5
    centre_column: str | None = None
    external_centres: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CrcInputError(f"Split method {self.method!r} is not one of {', '.join(METHODS)}.")
        fraction = self.train_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise CrcInputError(
                f"The training fraction must be between 0 and 1 (exclusive), e.g. 0.7 for 7:3; got {fraction!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise CrcInputError(f"The random seed must be a whole number 0 or more; got {self.seed!r}.")
        if self.n_folds not in ALLOWED_FOLDS:
            raise CrcInputError(f"k-fold cross-validation uses 5 or 10 folds; got {self.n_folds!r}.")
        if self.method == "column" and not self.column:
            raise CrcInputError(
                "The 'column' split needs the name of the column that holds train/validation."
            )
        if self.method == "external":
            if not self.centre_column:
                raise CrcInputError("The 'external' split needs the column that names each patient's centre.")
            if not self.external_centres:
                raise CrcInputError(
                    "The 'external' split needs at least one centre to hold out as the external cohort."
                )
        centres = self.external_centres
        centres = (centres,) if isinstance(centres, str) else tuple(centres)
        object.__setattr__(self, "external_centres", tuple(str(c).strip() for c in centres))
        object.__setattr__(self, "train_fraction", float(fraction))
        object.__setattr__(self, "seed", int(self.seed))


# ---------------------------------------------------------------------------------------------
# Making a split


def _strata(table: pd.DataFrame, column: str, ids: pd.Series, min_members: int) -> np.ndarray:
    """The stratification labels, refusing missing values and classes too small to split."""
    if column not in table.columns:
        raise CrcInputError(
            f"Cannot stratify by {column!r}: no such column. Columns: {', '.join(map(str, table.columns))}."
        )
    values = table[column].reset_index(drop=True)
    missing = ids[values.isna().to_numpy()].tolist()
    if missing:
        raise CrcInputError(
            f"Cannot stratify by {column!r}: it is missing for patient(s) {listing(missing, 10)}. "
            "Fill these in or stratify by another column."
        )
    labels = values.astype(str).str.strip().to_numpy()
    counts = pd.Series(labels).value_counts()
    small = counts[counts < min_members]
    if not small.empty:
        described = ", ".join(f"{value!r} has {count}" for value, count in small.items())
        raise CrcInputError(
            f"Cannot stratify by {column!r}: every class needs at least {min_members} patients, but {described}. "
            "Merge rare classes or do not stratify."
        )
    return labels


def _random_split(table: pd.DataFrame, ids: pd.Series, config: SplitConfig) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    n_patients = len(ids)
    n_train = int(round(n_patients * config.train_fraction))
    n_validation = n_patients - n_train
    if n_train < 1 or n_validation < 1:
        raise CrcInputError(
            f"A training fraction of {config.train_fraction:g} on {n_patients} patients gives "
            f"{n_train} training and {n_validation} validation patients; both need at least one."
        )
    strata = _strata(table, config.stratify_by, ids, 2) if config.stratify_by else None
    if strata is not None:
        n_classes = len(set(strata))
        if min(n_train, n_validation) < n_classes:
            raise CrcInputError(
                f"Cannot stratify by {config.stratify_by!r}: its {n_classes} classes do not fit into "
                f"{n_train} training / {n_validation} validation patients. Do not stratify or change the fraction."
            )
    train_positions, _ = train_test_split(
        np.arange(n_patients),
        train_size=n_train,
        test_size=n_validation,
        random_state=config.seed,
        stratify=strata,
        shuffle=True,
    )
    split = np.full(n_patients, VALIDATION, dtype=object)
    split[train_positions] = TRAIN
    return split


def split_values(values: pd.Series, *, what: str) -> np.ndarray:
    """A column of split names in any accepted spelling (see :data:`SPLIT_ALIASES`) as
    ``train``/``validation``/``external``; refuses values it cannot read, listing each once."""
    raw = values.reset_index(drop=True)
    keys = raw.map(lambda v: str(v).strip().lower() if pd.notna(v) else "")
    mapped = keys.map(SPLIT_ALIASES)
    if mapped.isna().any():
        counts = raw.fillna("(empty)").astype(str).value_counts(sort=False)
        readable = {str(v) for v, m in zip(raw.fillna("(empty)").astype(str), mapped) if pd.notna(m)}
        described = ", ".join(
            f"{value!r} ({count})" + ("" if value in readable else " ✗") for value, count in counts.items()
        )
        raise CrcInputError(
            f"{what} holds {described}; the values marked ✗ are not train, validation or external. "
            "Recode them (e.g. 1 → train, 2 → validation) and fill in empty cells, or choose another split method."
        )
    # A cohort of another centre, every patient external, is a split too: runs from elsewhere are
    # applied to it (predict --from); nothing trains on it.
    if not (mapped == TRAIN).any() and not (mapped == EXTERNAL).all():
        raise CrcInputError(f"{what} puts no patient in 'train'. Map at least one value to 'train'.")
    return mapped.to_numpy(dtype=object)


def _column_split(table: pd.DataFrame, config: SplitConfig) -> np.ndarray:
    if config.column not in table.columns:
        raise CrcInputError(
            f"There is no split column {config.column!r}. Columns: {', '.join(map(str, table.columns))}."
        )
    return split_values(table[config.column], what=f"The split column {config.column!r}")


def _kfold(table: pd.DataFrame, ids: pd.Series, config: SplitConfig) -> np.ndarray:
    from sklearn.model_selection import KFold, StratifiedKFold

    n_patients, n_folds = len(ids), config.n_folds
    if n_patients < n_folds:
        raise CrcInputError(
            f"{n_folds}-fold cross-validation needs at least {n_folds} patients; the cohort has {n_patients}."
        )
    positions = np.arange(n_patients)
    fold = np.empty(n_patients, dtype=int)
    if config.stratify_by:
        strata = _strata(table, config.stratify_by, ids, n_folds)
        folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=config.seed).split(positions, strata)
    else:
        folds = KFold(n_splits=n_folds, shuffle=True, random_state=config.seed).split(positions)
    for index, (_, held_out) in enumerate(folds):
        fold[held_out] = index
    return fold


def _external_split(table: pd.DataFrame, ids: pd.Series, config: SplitConfig) -> np.ndarray:
    column = config.centre_column
    if column not in table.columns:
        raise CrcInputError(
            f"There is no centre column {column!r}. Columns: {', '.join(map(str, table.columns))}."
        )
    centres = table[column].map(lambda v: str(v).strip() if pd.notna(v) else "")
    missing = ids[(centres == "").to_numpy()].tolist()
    if missing:
        raise CrcInputError(
            f"The centre column {column!r} is empty for patient(s) {listing(missing, 10)}. Fill in each patient's centre."
        )
    found = sorted(set(centres))
    absent = [c for c in config.external_centres if c not in found]
    if absent:
        raise CrcInputError(
            f"Centre(s) {', '.join(map(repr, absent))} are not in column {column!r}, which holds "
            f"{', '.join(map(repr, found))}. Pick the external centres from these."
        )
    external = centres.isin(config.external_centres).to_numpy()
    if external.all():
        raise CrcInputError(
            f"Every patient is from an external centre ({', '.join(config.external_centres)}); "
            "leave at least one centre for training and validation."
        )
    split = np.full(len(ids), EXTERNAL, dtype=object)
    internal = ~external
    split[internal] = _random_split(
        table.loc[internal].reset_index(drop=True), ids[internal].reset_index(drop=True), config
    )
    return split


def make_split(table: pd.DataFrame, config: SplitConfig | None = None) -> pd.DataFrame:
    """Assign every patient of ``table`` (which has ``patient_id``) to ``train``/``validation``
    (or ``external``), in the table's row order. Deterministic for a seed: the random split is
    scikit-learn's ``train_test_split(random_state=seed, stratify=...)`` with
    ``train_size = round(n × train_fraction)``; k-fold uses ``KFold``/``StratifiedKFold`` with
    ``shuffle=True, random_state=seed`` and adds a ``fold`` column.

    >>> cohort = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(315)]})
    >>> make_split(cohort)["split"].value_counts().to_dict()
    {'train': 220, 'validation': 95}
    """
    config = config or SplitConfig()
    if len(table) == 0:
        raise CrcInputError("The cohort has no patients to split. Load the clinical and pathology tables first.")
    ids = patient_ids(table, what="The cohort")
    frame = table.reset_index(drop=True)
    result = pd.DataFrame({PATIENT_ID: ids})
    if config.method == "random":
        result[SPLIT_COLUMN] = _random_split(frame, ids, config)
    elif config.method == "column":
        result[SPLIT_COLUMN] = _column_split(frame, config)
    elif config.method == "kfold":
        result[SPLIT_COLUMN] = TRAIN
        result[FOLD_COLUMN] = _kfold(frame, ids, config)
    else:
        result[SPLIT_COLUMN] = _external_split(frame, ids, config)
    return result


# ---------------------------------------------------------------------------------------------
# Counting and describing


def split_counts(split_table: pd.DataFrame) -> dict[str, int]:
    """Patients per split, in train/validation/external order."""
    counts = split_table[SPLIT_COLUMN].value_counts()
    return {name: int(counts[name]) for name in SPLIT_VALUES if name in counts}


def n_folds(split_table: pd.DataFrame) -> int:
    if FOLD_COLUMN not in split_table.columns:
        return 0
    return int(split_table[FOLD_COLUMN].dropna().nunique())


def describe_counts(counts: dict[str, int], folds: int = 0) -> str:
    """``220 train / 95 validation``, or ``40 train in 5 folds`` after k-fold."""
    parts = " / ".join(f"{count} {name}" for name, count in counts.items())
    if folds:
        parts += f" in {folds} folds"
    return parts or "no split yet"


def describe_split(split_table: pd.DataFrame) -> str:
    """One line for the CLI and the page, e.g. ``315 patients: 220 train / 95 validation``."""
    text = f"{len(split_table)} patients: {describe_counts(split_counts(split_table))}"
    if FOLD_COLUMN in split_table.columns:
        sizes = split_table[FOLD_COLUMN].value_counts().sort_index()
        text += f"; {len(sizes)} folds of {', '.join(str(int(v)) for v in sizes)}"
    return text


# ---------------------------------------------------------------------------------------------
# Saving and reading


def _check_split_table(split_table: pd.DataFrame, what: str) -> pd.DataFrame:
    for column in (PATIENT_ID, SPLIT_COLUMN):
        if column not in split_table.columns:
            raise CrcInputError(f"{what} has no {column!r} column; make the split again on the Cohort page.")
    checked = split_table.copy()
    checked[PATIENT_ID] = patient_ids(split_table, what=what)
    odd = sorted(set(checked[SPLIT_COLUMN].astype(str)) - set(SPLIT_VALUES))
    if odd:
        raise CrcInputError(
            f"{what} holds {', '.join(map(repr, odd))}; only {', '.join(SPLIT_VALUES)} are allowed. "
            "Make the split again on the Cohort page."
        )
    return checked


def save_split(workspace: Workspace, split_table: pd.DataFrame, config: SplitConfig) -> tuple[Any, Any]:
    """Write ``split.csv`` (patient_id, split[, fold]) and ``split.json`` (the config and the
    counts), each atomically; checks the table first so a refused split leaves the old one."""
    workspace = Workspace.of(workspace)
    _check_split_table(split_table, "The split table")
    columns = [c for c in (PATIENT_ID, SPLIT_COLUMN, FOLD_COLUMN) if c in split_table.columns]
    meta = {
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "counts": split_counts(split_table),
        "n_folds": n_folds(split_table),
        "n_patients": int(len(split_table)),
    }
    csv_path = atomic_write_csv(workspace.split_csv, split_table[columns])
    json_path = atomic_write_text(workspace.split_json, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return csv_path, json_path


@dataclass(frozen=True)
class SavedSplit:
    """The split every step uses: ``table`` (patient_id, split[, fold]), the config that made it
    (None for a split taken from the clinical table) and where it came from, in words."""

    table: pd.DataFrame
    config: SplitConfig | None
    source: str

    @property
    def counts(self) -> dict[str, int]:
        return split_counts(self.table)

    @property
    def n_folds(self) -> int:
        return n_folds(self.table)

    def describe(self) -> str:
        return describe_counts(self.counts, self.n_folds)

    @property
    def table_column(self) -> str | None:
        """The column of the user's own table this split was taken from (the group column chosen
        at import, or the clinical table's ``split``), or None for a split made here."""
        if self.config is None:
            return SPLIT_COLUMN
        return self.config.column if self.config.method == "column" else None


def replaces_table_split(saved: SavedSplit | None, config: SplitConfig) -> str:
    """Why making the split ``config`` asks for a confirmation first, or ''. A split the user's
    own table holds (its Group column) is the study's assignment: one click on a form must not
    swap it for a random one."""
    column = saved.table_column if saved is not None else None
    if column is None or (config.method == "column" and config.column == column):
        return ""
    return (
        f"The split in use is your table's own (column {column!r}: {saved.describe()}). Saving a "
        f"{config.method} split replaces it for every later step. Tick “Replace the table's own split” to go ahead."
    )


def read_split(workspace: Workspace) -> SavedSplit | None:
    """The one reader of the split: ``split.csv`` with ``split.json`` when saved, else the clinical
    table's ``split`` column (any spelling of :data:`SPLIT_ALIASES`), else ``None``. A damaged
    split file is named, with what to do."""
    workspace = Workspace.of(workspace)
    csv_path, json_path = workspace.split_csv, workspace.split_json
    if csv_path.exists():
        try:
            table = read_table(csv_path).table
            meta = json.loads(json_path.read_text(encoding="utf-8")) if json_path.exists() else {}
            config = SplitConfig.from_dict(meta["config"], source=str(json_path)) if meta else None
        except (CrcInputError, ValueError, KeyError, TypeError) as exc:
            raise CrcInputError(
                f"The saved split ({csv_path.name}, {json_path.name}) in {workspace.root} is damaged ({exc}). "
                "Make the split again on the Cohort page, or delete both files."
            ) from exc
        table = _check_split_table(table, str(csv_path))
        if FOLD_COLUMN in table.columns:
            table[FOLD_COLUMN] = pd.to_numeric(table[FOLD_COLUMN], errors="coerce").astype("Int64")
        return SavedSplit(table.reset_index(drop=True), config, csv_path.name)
    if not workspace.clinical_csv.exists():
        return None
    clinical = workspace.read_clinical()
    if SPLIT_COLUMN not in clinical.columns:
        return None
    values = split_values(clinical[SPLIT_COLUMN], what=f"The {SPLIT_COLUMN!r} column of {workspace.clinical_csv}")
    table = pd.DataFrame({PATIENT_ID: clinical[PATIENT_ID].to_numpy(), SPLIT_COLUMN: values})
    return SavedSplit(table, None, f"the '{SPLIT_COLUMN}' column of {workspace.clinical_csv.name}")


# ---------------------------------------------------------------------------------------------
# Folds of k-fold cross-validation on a split that has none (the saved 7:3 split's patients)

#: Where drawn folds are kept (:attr:`Workspace.folds_dir`), one file per target, number of folds and seed.
FOLDS_FOLDER = "folds"
LABEL_AT_DRAW = "label_at_draw"


def folds_csv(workspace: Workspace, target: str, n_folds: int, seed: int) -> Any:
    """``folds/<target>-<k>fold-seed<seed>.csv``: patient_id, fold, the label it was stratified on."""
    return Workspace.of(workspace).folds_dir / f"{target}-{int(n_folds)}fold-seed{int(seed)}.csv"


@dataclass(frozen=True)
class FoldAssignment:
    """Each patient's fold (in the order asked), the labels the folds were stratified on, and what
    changed since they were saved, in words ('' when nothing did). ``redrawn``: the saved folds no
    longer fit the patients and were drawn again (``save`` keeps the new ones)."""

    patient_ids: tuple[str, ...]
    fold: np.ndarray
    labels_at_draw: np.ndarray
    message: str = ""
    redrawn: bool = False
    path: Any = None

    def save(self) -> Any:
        table = pd.DataFrame({PATIENT_ID: list(self.patient_ids), FOLD_COLUMN: self.fold.astype(int),
                              LABEL_AT_DRAW: self.labels_at_draw.astype(int)})
        return atomic_write_csv(self.path, table)


def _draw_folds(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """scikit-learn's ``StratifiedKFold(n_splits, shuffle=True, random_state=seed)`` on the labels."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.full(len(labels), -1, dtype=int)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held] = k
    return fold


def _read_folds(path: Any) -> pd.DataFrame:
    try:
        table = read_table(path).table
        missing = [c for c in (PATIENT_ID, FOLD_COLUMN, LABEL_AT_DRAW) if c not in table.columns]
        if missing:
            raise CrcInputError(f"it has no {', '.join(missing)} column")
        table[PATIENT_ID] = patient_ids(table, what=str(path))
        table[FOLD_COLUMN] = pd.to_numeric(table[FOLD_COLUMN], errors="raise").astype(int)
        table[LABEL_AT_DRAW] = pd.to_numeric(table[LABEL_AT_DRAW], errors="raise").astype(int)
    except (CrcInputError, ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"The saved folds {path} are damaged ({exc}). Delete the file to draw the folds again.") from exc
    return table


def kfold_assignment(workspace: Workspace, ids: Sequence[str], labels: Sequence[int], *, target: str, n_folds: int,
                     seed: int) -> FoldAssignment:
    """The folds of ``ids``: the saved ones of this target, k and seed when they hold the same
    patients — every patient keeps its fold even when its label changed since, said in
    ``message`` (the folds stay stratified on the labels they were drawn on) — else drawn again by
    :func:`_draw_folds` on today's labels, with a message naming the patients added and removed.
    Nothing is written: ``save()`` the result once the run goes ahead."""
    ids = [str(p) for p in ids]
    labels = np.asarray(labels, dtype=int)
    path = folds_csv(workspace, target, n_folds, seed)
    what = f"{int(n_folds)} folds of {target.upper()} (seed {int(seed)})"
    if not path.exists():
        return FoldAssignment(tuple(ids), _draw_folds(labels, n_folds, seed), labels, path=path)
    saved = _read_folds(path).set_index(PATIENT_ID)
    added = [p for p in ids if p not in saved.index]
    removed = [p for p in saved.index if p not in set(ids)]
    if added or removed:
        changes = []
        if added:
            changes.append(f"{len(added)} patient(s) added ({listing(added)})")
        if removed:
            changes.append(f"{len(removed)} patient(s) removed ({listing(list(removed))})")
        message = (f"The saved {what} were drawn again on today's labels: since they were drawn, "
                   f"{' and '.join(changes)}, so the patients' folds changed and runs before this one used other folds.")
        return FoldAssignment(tuple(ids), _draw_folds(labels, n_folds, seed), labels, message, True, path)
    fold = saved.loc[ids, FOLD_COLUMN].to_numpy(dtype=int)
    at_draw = saved.loc[ids, LABEL_AT_DRAW].to_numpy(dtype=int)
    changed = [p for p, now, then in zip(ids, labels, at_draw) if now != then]
    message = ""
    if changed:
        message = (f"The labels of {len(changed)} patient(s) ({listing(changed)}) changed since the saved {what} were "
                   "drawn; every patient keeps its fold (stratified on the labels at the draw), so runs stay comparable.")
    return FoldAssignment(tuple(ids), fold, at_draw, message, False, path)


def align_split(split: pd.DataFrame, ids: Sequence[str], *, what: str) -> tuple[list[str], list[str]]:
    """Each of ``ids``' split (as saved: train/validation/external), and warnings for patients of
    the split that are not among ``ids``. Refuses patients of ``ids`` that have no split, naming
    them and ``what`` holds them."""
    split_ids = patient_ids(split, what="The split table")
    if SPLIT_COLUMN not in split.columns:
        raise CrcInputError(
            f"The split table has no {SPLIT_COLUMN!r} column. Its columns are: "
            f"{', '.join(map(str, split.columns))}. Make the split on the Cohort page first."
        )
    lookup = {p: ("" if pd.isna(v) else str(v).strip().lower()) for p, v in zip(split_ids, split[SPLIT_COLUMN])}
    absent = [p for p in ids if not lookup.get(p)]
    if absent:
        raise CrcInputError(
            f"{len(absent)} patient(s) of {what} have no split: {listing(absent)}. "
            f"Assign them to train or validation on the Cohort page, or remove them from {what}."
        )
    extra = sorted(set(split_ids) - set(ids))
    warnings = [f"{len(extra)} patient(s) in the split are not in {what}: {listing(extra)}."] if extra else []
    return [lookup[p] for p in ids], warnings


__all__: Sequence[str] = (
    "SplitConfig",
    "SavedSplit",
    "make_split",
    "save_split",
    "read_split",
    "align_split",
    "kfold_assignment",
    "FoldAssignment",
    "replaces_table_split",
    "split_counts",
    "describe_split",
)
