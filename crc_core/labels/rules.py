"""Pathology labels: TSR, TILs, Immune Score (IS) and the TIME score, by the paper's rules.

:func:`build_labels` reads as the paper's chain: the readings (checked numbers) → the two
pathologists resolved into one reading → the marker cut-offs, from the training cohort only → the
Immune Score → the high/low flags → the TIME score. Input is the workspace's pathology table (see
:mod:`crc_core.cohort.pathology`) and the split (:func:`crc_core.cohort.splits.read_split`); output is
``labels.csv`` + ``labels.json``.

Missing readings are never counted as "low": a patient without a TSR, a TIL grade or any of the
four marker counts gets empty (NA) labels for everything that depends on it, and a warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from crc_core import paper
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.cohort.pathology import (
    IS_COLUMN,
    MARKERS,
    SECOND_READER_SUFFIX,
    TIL_COLUMN,
    TSR_COLUMN,
    check_ranges,
    readings,
    resolve_readings,
    where,
)
from crc_core.cohort.splits import SPLIT_VALUES, align_split, read_split
from crc_core.tables import PATIENT_ID, listing, patient_ids, read_table, spreadsheet_rows
from crc_core.workspace import Workspace, atomic_write_csv, atomic_write_text, ensure_writable_dir

#: The binary labels, each 0/1 (NA when a reading is missing).
BINARY_LABELS: tuple[str, ...] = ("tsr_high", "til_high", "is_high", "time_high")
LABEL_COLUMNS: tuple[str, ...] = ("tsr_high", "til_high", "is_score", "is_high", "time_score", "time_high")

#: Our reading of the TIME sentence: one point for each component at its high level (0-3 in all).
DEFAULT_TIME_POINTS: Mapping[str, str] = {"tsr": "high", "til": "high", "is": "high"}
TIME_READING = (
    "One point for each of TSR, TILs and IS at its high level (0-3 in all), as the paper's "
    "'elevated levels of TSR, TILs, and IS were assigned a score'. High stroma is usually an "
    "unfavourable sign, so some groups count low TSR instead: set the TSR point to 'low'."
)
#: Where the IS marker cut-offs come from. The paper cites refs 32-33 for the IS without stating
#: cut-offs; the median of the training cohort is the usual choice and keeps the validation cohort
#: out of the labelling.
IS_CUTOFF_SOURCES: tuple[str, ...] = ("train_median", "given", "is_column")
RESOLUTIONS: tuple[str, ...] = ("max", "mean", "first", "consensus")
TIME_POINT_LEVELS: tuple[str, ...] = ("high", "low")
IsCutoffSource = Literal["train_median", "given", "is_column"]
Resolution = Literal["max", "mean", "first", "consensus"]
TimePoint = Literal["high", "low"]


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class LabelConfig(JsonConfig):
    """How labels are built. Defaults are the paper's.

    - ``tsr_high``: TSR > ``tsr_cutoff_percent`` (50); TSR is expected in ``tsr_step_percent``
      (10) steps — other values are used but warned about.
    - ``til_high``: TIL grade ≥ ``til_high_min_grade`` (2, i.e. grades 2-3 vs 0-1).
    - ``is_score``: one point per marker (CD3/CD8 in the centre CA and invasive margin IM) whose
      count is strictly above its cut-off. Cut-offs (``is_cutoff_source``): ``train_median``
      (median of the training split only), ``given`` (``marker_cutoffs``, one per marker), or
      ``is_column`` (take the table's ``is_score`` 0-4 as given). ``is_high``: IS > ``is_high_above`` (2).
    - ``time_score``: one point per component at the level named by ``time_tsr_point``,
      ``time_til_point``, ``time_is_point`` ("high" or "low"); ``time_high``: score ≥
      ``time_high_min_score`` (2).
    - ``resolution``: how two pathologists' TSR/TIL readings become one: ``max`` (the paper's
      rule for TSR areas), ``mean`` (rounded half up to the scale step where readers differ),
      ``first`` (reader 1 only), ``consensus`` (the ``*_consensus`` column where readers differ).
    - ``train_split``: the split value of the training cohort in the split table's ``split_column``.
    """

    tsr_cutoff_percent: float = 50.0
    tsr_step_percent: float = 10.0
    til_high_min_grade: int = 2
    is_cutoff_source: IsCutoffSource = "train_median"
    #: marker → cut-off for ``is_cutoff_source="given"``; a dict is accepted and stored as pairs.
    marker_cutoffs: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    is_high_above: int = 2
    time_tsr_point: TimePoint = "high"
    time_til_point: TimePoint = "high"
    time_is_point: TimePoint = "high"
    time_high_min_score: int = 2
    resolution: Resolution = "max"
    consensus_suffix: str = "_consensus"
    train_split: str = "train"
    split_column: str = "split"

    def __post_init__(self) -> None:
        tsr = _config_number(self.tsr_cutoff_percent, "The TSR cut-off")
        if not 0 <= tsr < 100:
            raise CrcInputError(
                f"The TSR cut-off must be a percentage from 0 to 99 (the paper uses 50: high TSR is > 50%); got {tsr:g}."
            )
        step = _config_number(self.tsr_step_percent, "The TSR step")
        if not 0 < step <= 100:
            raise CrcInputError(f"The TSR step must be between 0 and 100 percent (the paper uses 10); got {step:g}.")
        til = _config_int(self.til_high_min_grade, "The TIL cut-off grade")
        if not 1 <= til <= 3:
            raise CrcInputError(
                f"The TIL cut-off grade must be 1, 2 or 3 (high TILs = grade ≥ cut-off; the paper uses 2); got {til}."
            )
        is_above = _config_int(self.is_high_above, "The IS cut-off")
        if not 0 <= is_above <= 3:
            raise CrcInputError(
                f"The IS cut-off must be 0, 1, 2 or 3 (high IS = IS > cut-off; the paper uses 2); got {is_above}."
            )
        time_min = _config_int(self.time_high_min_score, "The TIME cut-off")
        if not 1 <= time_min <= 3:
            raise CrcInputError(
                f"The TIME cut-off must be 1, 2 or 3 (high TIME = score ≥ cut-off; the paper uses 2); got {time_min}."
            )
        if self.is_cutoff_source not in IS_CUTOFF_SOURCES:
            raise CrcInputError(
                f"The IS cut-off source must be one of {', '.join(IS_CUTOFF_SOURCES)}; got {self.is_cutoff_source!r}."
            )
        for name in ("time_tsr_point", "time_til_point", "time_is_point"):
            if getattr(self, name) not in TIME_POINT_LEVELS:
                item = name.split("_")[1].upper()
                raise CrcInputError(
                    f"The {item} point of the TIME score goes to 'high' or 'low' levels; got {getattr(self, name)!r}."
                )
        if self.resolution not in RESOLUTIONS:
            raise CrcInputError(
                f"The rule for two pathologists' readings must be one of {', '.join(RESOLUTIONS)}; got {self.resolution!r}."
            )
        if not str(self.train_split).strip():
            raise CrcInputError("Name the training split (e.g. 'train').")
        if not str(self.consensus_suffix).strip() or not str(self.split_column).strip():
            raise CrcInputError("The consensus suffix and the split column name cannot be empty.")
        cutoffs = _marker_cutoff_pairs(self.marker_cutoffs)
        if self.is_cutoff_source == "given":
            missing = [m for m in MARKERS if m not in dict(cutoffs)]
            if missing:
                raise CrcInputError(
                    f"Give a cut-off for every marker; missing: {', '.join(missing)}. "
                    "Or use the training medians."
                )
        object.__setattr__(self, "tsr_cutoff_percent", tsr)
        object.__setattr__(self, "tsr_step_percent", step)
        object.__setattr__(self, "til_high_min_grade", til)
        object.__setattr__(self, "is_high_above", is_above)
        object.__setattr__(self, "time_high_min_score", time_min)
        object.__setattr__(self, "train_split", str(self.train_split).strip())
        object.__setattr__(self, "marker_cutoffs", cutoffs)

    @property
    def marker_cutoff_map(self) -> dict[str, float]:
        return dict(self.marker_cutoffs)

    @property
    def time_points(self) -> dict[str, str]:
        return {"tsr": self.time_tsr_point, "til": self.time_til_point, "is": self.time_is_point}

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values["marker_cutoffs"] = self.marker_cutoff_map
        return values


def _config_number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CrcInputError(f"{what} must be a number; got {value!r}.") from None
    if not math.isfinite(number):
        raise CrcInputError(f"{what} must be a finite number; got {value!r}.")
    return number


def _config_int(value: Any, what: str) -> int:
    number = _config_number(value, what)
    if number != int(number) or isinstance(value, bool):
        raise CrcInputError(f"{what} must be a whole number; got {value!r}.")
    return int(number)


def _marker_cutoff_pairs(raw: Any) -> tuple[tuple[str, float], ...]:
    if raw is None:
        return ()
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    cutoffs: dict[str, float] = {}
    for marker, value in pairs:
        if marker not in MARKERS:
            raise CrcInputError(f"{marker!r} is not an IS marker; the markers are {', '.join(MARKERS)}.")
        number = _config_number(value, f"The {marker} cut-off")
        if number < 0:
            raise CrcInputError(f"The {marker} cut-off must be 0 or more (a cell count); got {number:g}.")
        cutoffs[marker] = number
    return tuple((m, cutoffs[m]) for m in MARKERS if m in cutoffs)


# ---------------------------------------------------------------------------------------------
# The chain, step by step


@dataclass(frozen=True)
class LabelResult:
    """Labels per patient (``patient_id``, resolved readings, ``tsr_high`` ... ``time_high`` as
    nullable 0/1 integers), the marker cut-offs used (marker → value, source, n) and warnings."""

    labels: pd.DataFrame
    cutoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _nullable(values: pd.Series) -> pd.Series:
    return values.astype("Float64").round().astype("Int64")


def _flag(condition: pd.Series, known: pd.Series) -> pd.Series:
    return _nullable(condition.astype(float).where(known))


def required_columns(config: LabelConfig) -> list[str]:
    return [TSR_COLUMN, TIL_COLUMN] + ([IS_COLUMN] if config.is_cutoff_source == "is_column" else list(MARKERS))


def pathology_readings(
    pathology: pd.DataFrame, config: LabelConfig, rows: Sequence[int], ids: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Step 1: every reading the labels use, as checked numbers, and warnings (off-step TSR)."""
    required = required_columns(config)
    missing = [c for c in required if c not in pathology.columns]
    if missing:
        raise CrcInputError(
            f"The pathology table lacks column(s) {', '.join(missing)}. Its columns are: "
            f"{', '.join(map(str, pathology.columns))}. Add them, or map them at import on the Cohort page."
        )
    reading_columns = [
        f"{item}{suffix}"
        for item in (TSR_COLUMN, TIL_COLUMN)
        for suffix in ("", SECOND_READER_SUFFIX, config.consensus_suffix)
        if f"{item}{suffix}" in pathology.columns
    ]
    values = readings(pathology, reading_columns + required[2:], rows, ids)
    return values, check_ranges(values, rows, ids, config.tsr_step_percent)


def resolved_reading(
    values: pd.DataFrame, item: str, step: float, config: LabelConfig, rows: Sequence[int], ids: Sequence[str]
) -> pd.Series:
    """Step 2: one reading of ``item`` per patient from the two pathologists (``config.resolution``)."""
    second, consensus = f"{item}{SECOND_READER_SUFFIX}", f"{item}{config.consensus_suffix}"
    return resolve_readings(
        values[item],
        values[second] if second in values else None,
        values[consensus] if consensus in values else None,
        config.resolution, step, column=item, rows=rows, ids=ids,
    )


def training_rows(
    split: pd.Series | pd.DataFrame, pathology: pd.DataFrame, ids: list[str], config: LabelConfig
) -> tuple[np.ndarray, list[str]]:
    """Which pathology rows are in the training cohort, and warnings (split patients without
    pathology). ``split``: a table (patient_id, split), or a Series aligned with ``pathology``
    or indexed by patient ID."""
    if isinstance(split, pd.Series):
        if split.index.equals(pathology.index):
            split = pd.DataFrame({PATIENT_ID: ids, "split": split.to_numpy()})
        else:
            split = pd.DataFrame({PATIENT_ID: list(split.index), "split": split.to_numpy()})
    elif not isinstance(split, pd.DataFrame):
        raise TypeError(f"split must be a Series or DataFrame, not {type(split).__name__}")
    elif config.split_column != "split" and config.split_column in split.columns:
        split = split[[PATIENT_ID, config.split_column]].rename(columns={config.split_column: "split"})
    per_row, warnings = align_split(split, ids, what="the pathology table")
    train = np.array([v == config.train_split.lower() for v in per_row])
    if not train.any():
        raise CrcInputError(
            f"No patient is in the training split {config.train_split!r} (the split holds "
            f"{', '.join(map(repr, sorted(set(per_row))))}), so the IS cut-offs cannot be computed. "
            "Name the training split or give the marker cut-offs yourself."
        )
    return train, warnings


def marker_cutoffs(markers: pd.DataFrame, config: LabelConfig, train: np.ndarray | None) -> dict[str, dict[str, Any]]:
    """Step 3: each marker's cut-off with where it came from: given, or the median of the training
    patients with that marker filled in (mean of the two middle values for an even count, as R's
    ``median`` and SPSS)."""
    if config.is_cutoff_source == "given":
        return {marker: {"value": value, "source": "given", "n": None} for marker, value in config.marker_cutoffs}
    if train is None:
        raise CrcInputError(
            "The IS cut-offs are the training cohort's medians, so the split is needed: make the "
            "train/validation split on the Cohort page first, or give the four marker cut-offs yourself."
        )
    cutoffs = {}
    for marker in MARKERS:
        training_values = markers[marker][train].dropna()
        if training_values.empty:
            raise CrcInputError(
                f"No training patient has a {marker} value, so its median cut-off cannot be computed. "
                "Fill in the counts or give the cut-off yourself."
            )
        cutoffs[marker] = {
            "value": float(training_values.median()),
            "source": f"median of the {len(training_values)} training patients ({config.train_split})",
            "n": int(len(training_values)),
        }
    return cutoffs


def immune_score(markers: pd.DataFrame, cutoffs: Mapping[str, Mapping[str, Any]]) -> pd.Series:
    """Step 4: one point per marker strictly above its cut-off (0-4); NaN where a count is missing."""
    points = pd.DataFrame({m: (markers[m] > cutoffs[m]["value"]).astype(float) for m in MARKERS})
    return points.sum(axis=1).where(markers.notna().all(axis=1))


def high_flags(tsr: pd.Series, til: pd.Series, is_score: pd.Series, config: LabelConfig) -> pd.DataFrame:
    """Step 5: TSR > cut-off, TIL grade ≥ cut-off, IS > cut-off, as nullable 0/1."""
    return pd.DataFrame({
        "tsr_high": _flag(tsr > config.tsr_cutoff_percent, tsr.notna()),
        "til_high": _flag(til >= config.til_high_min_grade, til.notna()),
        "is_high": _flag(is_score > config.is_high_above, is_score.notna()),
    })


def time_score(flags: pd.DataFrame, config: LabelConfig) -> tuple[pd.Series, pd.Series]:
    """Step 6: one point per component at the level the config names; high from the cut-off."""
    points = []
    for item, name in (("tsr", "tsr_high"), ("til", "til_high"), ("is", "is_high")):
        high = flags[name].astype("Float64")
        points.append(high if config.time_points[item] == "high" else 1 - high)
    score = sum(points)
    high = _flag((score >= config.time_high_min_score).fillna(False).astype(bool), score.notna())
    return _nullable(score), high


def build_labels(
    pathology: pd.DataFrame,
    split: pd.Series | pd.DataFrame | None = None,
    config: LabelConfig | None = None,
    *,
    row_numbers: Sequence[int] | None = None,
) -> LabelResult:
    """Labels for every patient of ``pathology``, by the rules of ``config`` (the paper's by default).

    ``split`` is needed only for the training-median IS cut-offs, which are computed from training
    patients alone so that the validation cohort never shapes its own labels; a marker is high
    when strictly above its cut-off, so a count equal to the median is low. ``row_numbers``
    (spreadsheet rows of the table's rows) default to 2, 3, ... .

    >>> table = pd.DataFrame({"patient_id": ["P1", "P2"], "tsr_percent": [60, 40],
    ...     "til_grade": [2, 1], "cd3_ca": [5, 1], "cd3_im": [5, 1], "cd8_ca": [5, 1], "cd8_im": [5, 1]})
    >>> cut = {m: 2 for m in MARKERS}
    >>> build_labels(table, None, LabelConfig(is_cutoff_source="given", marker_cutoffs=cut)).labels["time_score"].tolist()
    [3, 0]
    """
    config = config or LabelConfig()
    if not isinstance(pathology, pd.DataFrame):
        raise TypeError(f"pathology must be a DataFrame, not {type(pathology).__name__}")
    if len(pathology) == 0:
        raise CrcInputError("The pathology table is empty: it has no patient rows. Load a table with one row per patient.")
    rows = spreadsheet_rows(pathology, row_numbers)
    ids = list(patient_ids(pathology, what="The pathology table", row_numbers=rows))

    values, warnings = pathology_readings(pathology, config, rows, ids)
    tsr = resolved_reading(values, TSR_COLUMN, config.tsr_step_percent, config, rows, ids)
    til = resolved_reading(values, TIL_COLUMN, 1.0, config, rows, ids)
    for item, series in ((TSR_COLUMN, tsr), (TIL_COLUMN, til)):
        absent = [where(rows, ids, p) for p in np.flatnonzero(series.isna().to_numpy())]
        if absent:
            warnings.append(f"No {item} for {listing(absent)}: its label and the TIME score are left empty for these patients.")

    labels = pd.DataFrame({PATIENT_ID: ids, TSR_COLUMN: tsr, TIL_COLUMN: _nullable(til)})
    cutoffs: dict[str, dict[str, Any]] = {}
    if config.is_cutoff_source == "is_column":
        score = values[IS_COLUMN]
    else:
        markers = values[list(MARKERS)]
        train = None
        if config.is_cutoff_source == "train_median" and split is not None:
            train, split_warnings = training_rows(split, pathology, ids, config)
            warnings.extend(split_warnings)
        cutoffs = marker_cutoffs(markers, config, train)
        score = immune_score(markers, cutoffs)
        for marker in MARKERS:
            labels[marker] = markers[marker]
        incomplete = [
            f"{where(rows, ids, p)}: {', '.join(m for m in MARKERS if pd.isna(markers[m].iloc[p]))}"
            for p in np.flatnonzero(score.isna().to_numpy())
        ]
        if incomplete:
            warnings.append(
                f"Missing marker counts, so no immune score (IS) for {listing(incomplete)}; "
                "is_score, is_high and the TIME score are left empty for these patients."
            )
    labels[IS_COLUMN] = _nullable(score)
    flags = high_flags(tsr, til, score, config)
    labels[["tsr_high", "til_high", "is_high"]] = flags
    labels["time_score"], labels["time_high"] = time_score(flags, config)
    columns = [PATIENT_ID, TSR_COLUMN, TIL_COLUMN]
    columns += [] if config.is_cutoff_source == "is_column" else list(MARKERS)
    columns += list(LABEL_COLUMNS)
    labels = labels[columns]
    return LabelResult(labels=labels, cutoffs=cutoffs, warnings=warnings + one_class_warnings(labels, config))


def one_class_warnings(labels: pd.DataFrame, config: LabelConfig) -> list[str]:
    """A warning per binary label that puts every patient in one class (TSR > 0%: all high): such
    a label separates no one, and no model can learn or be evaluated on it."""
    rules = {"tsr_high": f"TSR > {config.tsr_cutoff_percent:g}%", "til_high": f"TIL grade ≥ {config.til_high_min_grade}",
             "is_high": f"IS > {config.is_high_above}", "time_high": f"TIME score ≥ {config.time_high_min_score}"}
    warnings = []
    for name in BINARY_LABELS:
        known = labels[name].dropna()
        if len(known) and known.nunique() == 1:
            level = "high" if int(known.iloc[0]) == 1 else "low"
            warnings.append(
                f"{LABEL_NAMES[name]}: every one of the {len(known)} patients is {level} by the rule {rules[name]}, so "
                "the label separates no one and no model can learn it. Choose another cut-off."
            )
    return warnings


# ---------------------------------------------------------------------------------------------
# The workspace


def _check_result(result: LabelResult, config: LabelConfig) -> None:
    if not isinstance(result, LabelResult):
        raise TypeError(f"result must be a LabelResult, not {type(result).__name__}")
    if not isinstance(config, LabelConfig):
        raise TypeError(f"config must be a LabelConfig, not {type(config).__name__}")
    labels = result.labels
    missing = [c for c in (PATIENT_ID, *LABEL_COLUMNS) if c not in labels.columns]
    if missing:
        raise CrcInputError(f"The labels lack column(s) {', '.join(missing)}; build them with build_labels.")
    if labels.empty:
        raise CrcInputError("There are no labels to save: the table has no patients.")
    patient_ids(labels, what="The labels table")


def labels_metadata(result: LabelResult, config: LabelConfig) -> dict[str, Any]:
    """What ``labels.json`` holds: the config, the cut-offs used, warnings and counts."""
    counts = {
        name: {"n": int(result.labels[name].notna().sum()), "n_high": int(result.labels[name].fillna(0).sum())}
        for name in BINARY_LABELS
    }
    return {
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "cutoffs": result.cutoffs,
        "warnings": list(result.warnings),
        "n_patients": int(len(result.labels)),
        "counts": counts,
        "paper_rules": {"tsr": paper.TSR_RULE, "til": paper.TIL_RULE, "is": paper.IS_RULE, "time": paper.TIME_RULE},
    }


def save_labels(workspace: Workspace, result: LabelResult, config: LabelConfig) -> tuple[Any, Any]:
    """Write ``labels.csv`` and ``labels.json`` (config + cut-offs) into the workspace, each
    atomically, after checking everything; a refused result leaves the old files as they were."""
    workspace = Workspace.of(workspace)
    _check_result(result, config)
    meta_text = json.dumps(labels_metadata(result, config), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ensure_writable_dir(workspace.root)
    csv_path = atomic_write_csv(workspace.labels_csv, result.labels)
    json_path = atomic_write_text(workspace.labels_json, meta_text)
    return csv_path, json_path


def read_label_config(workspace: Workspace) -> LabelConfig | None:
    """The config saved beside ``labels.csv``, or ``None`` when labels were never built."""
    path = Workspace.of(workspace).labels_json
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return LabelConfig.from_dict(meta["config"], source=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"{path} cannot be read ({exc}). Rebuild the labels on the Labels page.") from exc


@dataclass(frozen=True)
class CohortPathology:
    """The workspace's pathology rows of the cohort's patients (those in the clinical table too),
    cells as text, with their spreadsheet rows in ``pathology.csv``; ``notes`` say which rows
    were left out, as the import left them out of the cohort."""

    table: pd.DataFrame
    row_numbers: tuple[int, ...]
    notes: tuple[str, ...] = ()


def cohort_pathology(workspace: Workspace) -> CohortPathology:
    """The pathology table the labels are built from: a row whose patient is not in the clinical
    table was left out of the cohort at import, so it stays out of the labels (and out of the
    split, which would otherwise refuse it) and is named in ``notes``, with any clinical ID it
    differs from only by spaces or case."""
    from crc_core.cohort.join import near_miss_text

    workspace = Workspace.of(workspace)
    if not workspace.pathology_csv.exists():
        raise CrcInputError(f"{workspace.pathology_csv} is missing. Load the pathology table on the Cohort page first.")

    def read_ids(path):
        try:
            read = read_table(path)
            return read, list(patient_ids(read.table, what=str(path), row_numbers=read.row_numbers))
        except CrcInputError as exc:
            raise CrcInputError(f"{exc} {workspace.fix_hint()}") from exc

    read, ids = read_ids(workspace.pathology_csv)
    if not workspace.clinical_csv.exists():  # pathology alone (the CLI on a bare folder): no cohort to leave rows out of
        return CohortPathology(read.table, tuple(read.row_numbers))
    clinical_ids = set(read_ids(workspace.clinical_csv)[1])
    in_cohort = np.array([p in clinical_ids for p in ids], dtype=bool)
    rows = tuple(r for r, keep in zip(read.row_numbers, in_cohort) if keep)
    table = read.table.loc[in_cohort].reset_index(drop=True)
    if in_cohort.all():
        return CohortPathology(table, rows)
    stray = [p for p, keep in zip(ids, in_cohort) if not keep]
    shown = [f"{p} (row {r})" for p, r, keep in zip(ids, read.row_numbers, in_cohort) if not keep]
    note = (
        f"{len(stray)} row(s) of {workspace.pathology_csv.name} have no patient in {workspace.clinical_csv.name} "
        f"and are left out of the labels, as they were left out of the cohort at import: {listing(shown)}."
        + near_miss_text(stray, sorted(clinical_ids - set(ids)))
    )
    if table.empty:
        raise CrcInputError(note.replace("are left out of the labels", "so no patient is left to label"))
    return CohortPathology(table, rows, (note,))


def build_cohort_labels(
    cohort: CohortPathology, split: pd.Series | pd.DataFrame | None, config: LabelConfig | None = None
) -> LabelResult:
    """:func:`build_labels` on the cohort's pathology rows, their rows named as in the file, and
    the note on any row left out first among the warnings."""
    result = build_labels(cohort.table, split, config, row_numbers=cohort.row_numbers)
    return replace(result, warnings=[*cohort.notes, *result.warnings])


def workspace_split_table(workspace: Workspace) -> pd.DataFrame | None:
    saved = read_split(workspace)
    return None if saved is None else saved.table


def label_workspace(workspace: Workspace, config: LabelConfig | None = None) -> LabelResult:
    """Build labels from the workspace's pathology table and split, and save them (the CLI step)."""
    workspace = Workspace.of(workspace)
    config = config or LabelConfig()
    cohort = cohort_pathology(workspace)
    split = workspace_split_table(workspace) if config.is_cutoff_source == "train_median" else None
    result = build_cohort_labels(cohort, split, config)
    save_labels(workspace, result, config)
    return result


def labels_for_training_part(workspace: Workspace, train_ids: Sequence[str]) -> LabelResult | None:
    """The workspace's labels rebuilt by its saved rules with every data-driven cut-off (the IS
    marker medians) learned from ``train_ids`` alone: a cross-validation fold or a repeated split
    then never lets its held-out patients shape their own labels. None where the rules learn
    nothing from data (given cut-offs, an ``is_score`` column), so the saved labels hold."""
    workspace = Workspace.of(workspace)
    config = read_label_config(workspace) or LabelConfig()
    if config.is_cutoff_source != "train_median":
        return None
    cohort = cohort_pathology(workspace)
    chosen = set(map(str, train_ids))
    ids = list(patient_ids(cohort.table, what="The pathology table", row_numbers=cohort.row_numbers))
    split = pd.DataFrame({PATIENT_ID: ids, "split": ["train" if p in chosen else "held out" for p in ids]})
    part_config = replace(config, train_split="train", split_column="split")
    return build_cohort_labels(cohort, split, part_config)


def describe_labels(result: LabelResult, *, words: bool = False) -> str:
    """One line, e.g. ``315 patients: tsr_high 140/315, til_high ...`` (the CLI, which names the
    columns); with ``words``, ``315 patients: TSR high 140 of 315, ...`` for the page."""
    labels = result.labels
    if words:
        parts = [f"{LABEL_NAMES[name]} {int(labels[name].fillna(0).sum())} of {int(labels[name].notna().sum())}"
                 for name in BINARY_LABELS]
        return f"{len(labels)} patients: " + ", ".join(parts)
    parts = [f"{name} {int(labels[name].fillna(0).sum())}/{int(labels[name].notna().sum())}" for name in BINARY_LABELS]
    return f"{len(labels)} patients: " + ", ".join(parts) + " high"


# ---------------------------------------------------------------------------------------------
# Summaries for the page


def label_prevalence(labels: pd.DataFrame, split: pd.DataFrame | None = None) -> pd.DataFrame:
    """n and % high per binary label, per split and for all patients.

    Columns: ``label``, ``split``, ``n`` (patients with the label), ``n_high``, ``percent_high``
    (of ``n``), ``n_missing``. ``split``: a table (patient_id, split); ``None`` gives "all" only.
    """
    for column in (PATIENT_ID, *BINARY_LABELS):
        if column not in labels.columns:
            raise CrcInputError(f"The labels table has no {column!r} column; build the labels first.")
    ids = list(patient_ids(labels, what="The labels table"))
    groups: list[tuple[str, np.ndarray]] = []
    if split is not None:
        per_row, _ = align_split(split, ids, what="the labels table")
        names = sorted(set(per_row), key=lambda s: (SPLIT_VALUES.index(s) if s in SPLIT_VALUES else 99, s))
        groups = [(name, np.array([v == name for v in per_row])) for name in names]
    groups.append(("all", np.ones(len(labels), dtype=bool)))
    records = []
    for name in BINARY_LABELS:
        for group, mask in groups:
            values = labels[name][mask]
            n, n_high = int(values.notna().sum()), int(values.fillna(0).sum())
            records.append({
                "label": name, "split": group, "n": n, "n_high": n_high,
                "percent_high": round(100 * n_high / n, 1) if n else float("nan"),
                "n_missing": int(values.isna().sum()),
            })
    return pd.DataFrame(records)


#: The binary labels in words, for tables and captions.
LABEL_NAMES: dict[str, str] = {"tsr_high": "TSR high", "til_high": "TIL high", "is_high": "Immune Score high",
                               "time_high": "TIME high"}
SPLIT_NAMES: dict[str, str] = {"train": "training", "validation": "validation", "external": "external", "all": "all"}


def prevalence_for_people(prevalence: pd.DataFrame) -> pd.DataFrame:
    """:func:`label_prevalence` with its columns and values in words: Label, Cohort, Patients,
    High, % high (one decimal), Missing."""
    return pd.DataFrame({
        "Label": prevalence["label"].map(LABEL_NAMES), "Cohort": prevalence["split"].map(lambda s: SPLIT_NAMES.get(s, s)),
        "Patients": prevalence["n"], "High": prevalence["n_high"],
        "% high": [f"{v:.1f}" if pd.notna(v) else "—" for v in prevalence["percent_high"]],
        "Missing": prevalence["n_missing"]})


def crosstab_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`label_crosstab` with its rows and columns named: "TSR high: no" / "yes", "total"."""
    def named(index: pd.Index) -> list[str]:
        name = LABEL_NAMES.get(str(index.name), str(index.name))
        return [value if value == "total" else f"{name}: {'yes' if float(value) == 1 else 'no'}" for value in index]

    out = table.copy()
    out.index, out.columns = named(table.index), named(table.columns)
    return out


def label_crosstab(labels: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Counts of ``a`` (rows) by ``b`` (columns) with a ``total`` row and column; missing left out.
    Rows and columns are the levels 0 and 1 of a binary label, in that order."""
    for column in (a, b):
        if column not in labels.columns:
            raise CrcInputError(
                f"The labels table has no {column!r} column. Choose from: {', '.join(map(str, labels.columns))}."
            )
    if a == b:
        raise CrcInputError(f"Choose two different labels to cross-tabulate (both are {a!r}).")
    known = labels[[a, b]].dropna()
    row_levels = sorted(known[a].unique())
    column_levels = sorted(known[b].unique())
    counts = [[int(((known[a] == r) & (known[b] == c)).sum()) for c in column_levels] for r in row_levels]
    table = pd.DataFrame(counts, index=pd.Index(row_levels, name=a), columns=pd.Index(column_levels, name=b))
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table
