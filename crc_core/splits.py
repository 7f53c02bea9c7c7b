"""Training/validation splits of a cohort: seeded random (the paper's 7:3, 315 → 220/95), taken from
a column, k-fold cross-validation, or an external cohort by centre. Input is the joined cohort from
``crc_core.cohort``; output is ``split.csv`` + ``split.json`` in the workspace.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace, atomic_write_csv, atomic_write_text

SPLIT_CSV = "split.csv"
SPLIT_JSON = "split.json"

PATIENT_ID = "patient_id"
TRAIN, VALIDATION, EXTERNAL = "train", "validation", "external"
SPLIT_VALUES = (TRAIN, VALIDATION, EXTERNAL)
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
    "external": EXTERNAL,
}


@dataclass(frozen=True)
class SplitConfig:
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, values: dict) -> "SplitConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "external_centres" in known:
            known["external_centres"] = tuple(known["external_centres"])
        return cls(**known)


def _patient_ids(table: pd.DataFrame) -> pd.Series:
    if PATIENT_ID not in table.columns:
        raise CrcInputError(
            f"The cohort has no '{PATIENT_ID}' column (columns: {', '.join(map(str, table.columns))}). "
            "Map the ID column on the Cohort page first."
        )
    ids = table[PATIENT_ID].map(lambda v: str(v).strip() if pd.notna(v) else "")
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise CrcInputError(
            f"Duplicate patient IDs in the cohort: {', '.join(repeated[:10])}. Each patient must appear once."
        )
    if len(ids) == 0:
        raise CrcInputError(
            "The cohort has no patients to split. Load the clinical and pathology tables first."
        )
    return ids.reset_index(drop=True)


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
            f"Cannot stratify by {column!r}: it is missing for patient(s) {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}. Fill these in or stratify by another column."
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
    positions = np.arange(n_patients)
    train_positions, _ = train_test_split(
        positions,
        train_size=n_train,
        test_size=n_validation,
        random_state=config.seed,
        stratify=strata,
        shuffle=True,
    )
    split = np.full(n_patients, VALIDATION, dtype=object)
    split[train_positions] = TRAIN
    return split


def _column_split(table: pd.DataFrame, config: SplitConfig) -> np.ndarray:
    column = config.column
    if column not in table.columns:
        raise CrcInputError(
            f"There is no split column {column!r}. Columns: {', '.join(map(str, table.columns))}."
        )
    raw = table[column].reset_index(drop=True)
    keys = raw.map(lambda v: str(v).strip().lower() if pd.notna(v) else "")
    mapped = keys.map(SPLIT_ALIASES)
    unknown = sorted({str(v) for v, m in zip(raw, mapped) if pd.isna(m)}, key=str)
    if unknown:
        found = sorted({str(v) for v in raw}, key=str)
        raise CrcInputError(
            f"The split column {column!r} holds {', '.join(repr(v) for v in found)}; "
            f"{', '.join(repr(v) for v in unknown)} cannot be read. Map each value to 'train', 'validation' "
            "(or 'external'), e.g. recode 1 → train and 2 → validation, and fill in empty cells."
        )
    if not (mapped == TRAIN).any():
        raise CrcInputError(
            f"The split column {column!r} puts no patient in 'train'. Map at least one value to 'train'."
        )
    return mapped.to_numpy(dtype=object)


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
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=config.seed)
        folds = splitter.split(positions, strata)
    else:
        folds = KFold(n_splits=n_folds, shuffle=True, random_state=config.seed).split(positions)
    for index, (_, held_out) in enumerate(folds):
        fold[held_out] = index
    return fold


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
    ids = _patient_ids(table)
    frame = table.reset_index(drop=True)
    result = pd.DataFrame({PATIENT_ID: ids})
    if config.method == "random":
        result["split"] = _random_split(frame, ids, config)
    elif config.method == "column":
        result["split"] = _column_split(frame, config)
    elif config.method == "kfold":
        result["split"] = TRAIN
        result["fold"] = _kfold(frame, ids, config)
    else:
        result["split"] = _external_split(frame, ids, config)
    return result


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
            f"The centre column {column!r} is empty for patient(s) {', '.join(missing[:10])}. Fill in each patient's centre."
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


def split_counts(split_table: pd.DataFrame) -> dict[str, int]:
    """Patients per split, in train/validation/external order (for messages and split.json)."""
    counts = split_table["split"].value_counts()
    return {name: int(counts[name]) for name in SPLIT_VALUES if name in counts}


def describe_split(split_table: pd.DataFrame) -> str:
    """One line for the CLI and the page, e.g. ``315 patients: 220 train / 95 validation``."""
    parts = " / ".join(f"{count} {name}" for name, count in split_counts(split_table).items())
    text = f"{len(split_table)} patients: {parts}"
    if "fold" in split_table.columns:
        sizes = split_table["fold"].value_counts().sort_index()
        text += f"; {len(sizes)} folds of {', '.join(str(int(v)) for v in sizes)}"
    return text


def _check_split_table(split_table: pd.DataFrame) -> None:
    for column in (PATIENT_ID, "split"):
        if column not in split_table.columns:
            raise CrcInputError(f"The split table has no {column!r} column; make it with make_split.")
    _patient_ids(split_table)
    odd = sorted(set(split_table["split"].astype(str)) - set(SPLIT_VALUES))
    if odd:
        raise CrcInputError(
            f"The split table holds {', '.join(map(repr, odd))}; only {', '.join(SPLIT_VALUES)} are allowed."
        )


def save_split(workspace: Workspace, split_table: pd.DataFrame, config: SplitConfig) -> tuple[Path, Path]:
    """Write ``split.csv`` (patient_id, split[, fold]) and ``split.json`` (the config and the
    counts), each atomically; checks the table first so a refused split leaves the old one."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    _check_split_table(split_table)
    columns = [c for c in (PATIENT_ID, "split", "fold") if c in split_table.columns]
    meta = {
        "config": asdict(config),
        "counts": split_counts(split_table),
        "n_patients": int(len(split_table)),
    }
    csv_path = atomic_write_csv(workspace.root / SPLIT_CSV, split_table[columns])
    json_path = atomic_write_text(
        workspace.root / SPLIT_JSON, json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    )
    return csv_path, json_path


def load_split(workspace: Workspace) -> tuple[pd.DataFrame, SplitConfig] | None:
    """The saved split and its config, or ``None`` when none was saved."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    csv_path, json_path = workspace.root / SPLIT_CSV, workspace.root / SPLIT_JSON
    if not csv_path.exists() or not json_path.exists():
        return None
    try:
        table = pd.read_csv(csv_path, dtype={PATIENT_ID: str, "split": str})
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        config = SplitConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"{csv_path} or {json_path} is damaged ({exc}). Make the split again.") from exc
    _check_split_table(table)
    return table, config


def split_workspace(workspace: Workspace, config: SplitConfig | None = None) -> pd.DataFrame:
    """Split a workspace's cohort and save it: what ``crc-time split`` runs."""
    from crc_core.cohort import load_workspace_cohort

    config = config or SplitConfig()
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    cohort = load_workspace_cohort(workspace)
    split_table = make_split(cohort, config)
    save_split(workspace, split_table, config)
    return split_table


def config_from_cli(
    fraction: float = 0.7, seed: int = 0, stratify: str | None = None, kfold: int | None = None
) -> SplitConfig:
    """The :class:`SplitConfig` for ``crc-time split [--fraction] [--seed] [--stratify] [--kfold]``."""
    if kfold:
        return SplitConfig(
            method="kfold", n_folds=kfold, seed=seed, stratify_by=stratify, train_fraction=fraction
        )
    return SplitConfig(method="random", train_fraction=fraction, seed=seed, stratify_by=stratify)


__all__: Sequence[str] = (
    "SplitConfig",
    "make_split",
    "save_split",
    "load_split",
    "split_workspace",
    "split_counts",
    "describe_split",
    "config_from_cli",
)
