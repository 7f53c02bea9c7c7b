"""Pathology labels: TSR, TILs, immune score (IS) and the TIME score, built from the workspace's
pathology table (``pathology.csv``: ``patient_id``, ``tsr_percent``, ``til_grade``, ``cd3_ca``,
``cd3_im``, ``cd8_ca``, ``cd8_im``, optional second reader ``*_r2``) with the paper's rules.

Row numbers in every message are spreadsheet rows, 1-based as a user sees them in Excel: the header
is row 1 and the first patient is row 2 (``crc_core.cohort`` follows the same convention).
Missing readings are never counted as "low": a patient without a TSR, a TIL grade or any of the
four marker counts gets empty (NA) labels for everything that depends on it, and a warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.kappa import WEIGHTINGS, cohen_kappa
from crc_core.workspace import (
    Workspace,
    atomic_write_csv,
    atomic_write_text,
    ensure_writable_dir,
)

PATIENT_ID = "patient_id"
TSR_COLUMN = "tsr_percent"
TIL_COLUMN = "til_grade"
IS_COLUMN = "is_score"
MARKERS: tuple[str, ...] = ("cd3_ca", "cd3_im", "cd8_ca", "cd8_im")
SECOND_READER_SUFFIX = "_r2"
#: The binary labels, each 0/1 (NA when a reading is missing).
BINARY_LABELS: tuple[str, ...] = ("tsr_high", "til_high", "is_high", "time_high")
LABEL_COLUMNS: tuple[str, ...] = ("tsr_high", "til_high", "is_score", "is_high", "time_score", "time_high")
LABELS_JSON = "labels.json"
SPLIT_CSV = "split.csv"

# The paper's rules, quoted from its Pathology section so that the Labels page can show them.
PAPER_TSR_RULE = (
    "The high TSR group (Figure 3A) was defined as having a TSR greater than 50%, while the low "
    "TSR group (Figure 3B) had a TSR less than or equal to 50%."
)
PAPER_TSR_STEP_RULE = "The TSR was calculated as (stromal area/total area) × 100%, ranging from 10% to 90% in 10% increments."
PAPER_TSR_MAX_RULE = (
    "Additionally, the TSR was computed for three selected areas within the field of view, and the "
    "maximum value was finally selected."
)
PAPER_TIL_RULE = (
    "Utilizing infiltration status as the basis, the cases were then divided into two groups: Low "
    "TILs group (including cases graded as 0-1, as shown in Figure 3C) and high TILs group "
    "(consisting of cases graded as 2-3, as shown in Figure 3D)."
)
PAPER_IS_RULE = (
    "The IS of each patient was aggregated by summing four binary scores (ranging from 0 to 4). "
    "A high IS was defined as an IS of > 2, while a low IS was defined as an IS of ≤ 2."
)
PAPER_TIME_RULE = (
    "More precisely, elevated levels of TSR, TILs, and IS were assigned a score of 3, while lower "
    "levels were given a score of 0. Consequently, a low TIME was indicated by scores of 0 or 1, "
    "while scores of 2 or 3 indicated a high TIME."
)
#: The sentence that fixes which level of each component earns its TIME point.
TIME_DIRECTION_SOURCE = "elevated levels of TSR, TILs, and IS were assigned a score"
#: Our reading of it: one point for each component at its high level, so the score runs 0-3.
DEFAULT_TIME_POINTS: Mapping[str, str] = {"tsr": "high", "til": "high", "is": "high"}
TIME_READING = (
    "One point for each of TSR, TILs and IS at its high level (0-3 in all), as the paper's "
    "'elevated levels of TSR, TILs, and IS were assigned a score'. High stroma is usually an "
    "unfavourable sign, so some groups count low TSR instead: set the TSR point to 'low'."
)
#: Where the IS marker cut-offs come from when the user gives none. The paper cites refs 32-33
#: for the IS without stating cut-offs; the median of the training cohort is the usual choice
#: and keeps the validation cohort out of the labelling.
IS_CUTOFF_SOURCES: tuple[str, ...] = ("train_median", "given", "is_column")
RESOLUTIONS: tuple[str, ...] = ("max", "mean", "first", "consensus")
TIME_POINT_LEVELS: tuple[str, ...] = ("high", "low")
IsCutoffSource = Literal["train_median", "given", "is_column"]
Resolution = Literal["max", "mean", "first", "consensus"]
TimePoint = Literal["high", "low"]


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class LabelConfig:
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
    - ``train_split``: the split value of the training cohort in ``split_column``.
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
        values = asdict(self)
        values["marker_cutoffs"] = self.marker_cutoff_map
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "LabelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CrcInputError(
                f"Unknown label setting(s): {', '.join(unknown)}. Known settings: {', '.join(sorted(known))}."
            )
        return cls(**dict(values))


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
    for pair in pairs:
        marker, value = pair
        if marker not in MARKERS:
            raise CrcInputError(f"{marker!r} is not an IS marker; the markers are {', '.join(MARKERS)}.")
        number = _config_number(value, f"The {marker} cut-off")
        if number < 0:
            raise CrcInputError(f"The {marker} cut-off must be 0 or more (a cell count); got {number:g}.")
        cutoffs[marker] = number
    return tuple((m, cutoffs[m]) for m in MARKERS if m in cutoffs)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LabelResult:
    """Labels per patient (``patient_id``, resolved readings, ``tsr_high`` ... ``time_high`` as
    nullable 0/1 integers), the marker cut-offs used (marker → value, source, n) and warnings."""

    labels: pd.DataFrame
    cutoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading and checking the table


def _where(rows: Sequence[int], ids: Sequence[str], position: int) -> str:
    patient = ids[position] if ids is not None and ids[position] else "no ID"
    return f"row {rows[position]} (patient {patient})"


def _listing(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _row_numbers(table: pd.DataFrame, row_numbers: Sequence[int] | None) -> list[int]:
    if row_numbers is None:
        return list(range(2, len(table) + 2))
    if len(row_numbers) != len(table):
        raise ValueError(f"row_numbers has {len(row_numbers)} entries for {len(table)} rows")
    return [int(r) for r in row_numbers]


def _id_text(value: Any) -> str:
    return "" if pd.isna(value) else str(value).strip()


def _patient_ids(table: pd.DataFrame, rows: list[int], what: str = "The pathology table") -> list[str]:
    if PATIENT_ID not in table.columns:
        raise CrcInputError(
            f"{what} has no `patient_id` column. Its columns are: {', '.join(map(str, table.columns))}. "
            "Rename the ID column to patient_id (or map it on the Cohort page)."
        )
    ids = [_id_text(v) for v in table[PATIENT_ID]]
    blank = [str(rows[i]) for i, v in enumerate(ids) if not v]
    if blank:
        raise CrcInputError(
            f"{what} has rows without a patient ID: row(s) {_listing(blank)}. Fill in the ID or delete the rows."
        )
    positions: dict[str, list[int]] = {}
    for position, patient in enumerate(ids):
        positions.setdefault(patient, []).append(position)
    duplicates = [
        f"{patient} (rows {' and '.join(str(rows[p]) for p in where)})"
        for patient, where in positions.items()
        if len(where) > 1
    ]
    if duplicates:
        raise CrcInputError(
            f"{what} has duplicate patient IDs: {_listing(duplicates)}. Each patient must appear once; "
            "delete or merge the extra rows."
        )
    return ids


def _numbers(table: pd.DataFrame, columns: Sequence[str], rows: list[int], ids: list[str]) -> pd.DataFrame:
    """The columns as floats; text that is not a number is refused with its row and column."""
    converted: dict[str, pd.Series] = {}
    problems: list[str] = []
    for column in columns:
        values = table[column].reset_index(drop=True)
        blank = values.map(lambda v: isinstance(v, str) and not v.strip())
        values = values.mask(blank)
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        bad = values.notna() & numbers.isna()
        for position in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{_where(rows, ids, position)}, column {column}: {values.iloc[position]!r} is not a number")
        converted[column] = numbers
    if problems:
        raise CrcInputError(
            f"Text in a numeric column: {_listing(problems, 8)}. "
            "Correct these cells to numbers, or leave them empty if the value is missing."
        )
    return pd.DataFrame(converted)


def _check_ranges(values: pd.DataFrame, rows: list[int], ids: list[str], config: LabelConfig) -> list[str]:
    """Refuse impossible readings (naming each cell); return warnings for off-step TSR values."""
    problems: list[str] = []
    warnings: list[str] = []
    for column in values.columns:
        series = values[column]
        for position in np.flatnonzero(series.notna().to_numpy()):
            value = series.iloc[position]
            where = f"{_where(rows, ids, position)}, column {column}"
            if column.startswith(TSR_COLUMN):
                if not 0 <= value <= 100:
                    problems.append(f"{where}: {value:g} is outside 0-100 (TSR is the percentage of stroma)")
                elif not _on_step(value, config.tsr_step_percent):
                    warnings.append(
                        f"{where}: TSR {value:g}% is not a multiple of {config.tsr_step_percent:g}% "
                        "(the paper scores TSR in 10% steps); used as given."
                    )
            elif column.startswith(TIL_COLUMN):
                if value not in (0, 1, 2, 3):
                    problems.append(f"{where}: {value:g} is not a TIL grade (a whole number 0, 1, 2 or 3)")
            elif column == IS_COLUMN:
                if value not in (0, 1, 2, 3, 4):
                    problems.append(f"{where}: {value:g} is not an immune score (a whole number 0-4)")
            elif value < 0:
                problems.append(f"{where}: {value:g} is negative (a cell count cannot be)")
    if problems:
        raise CrcInputError(f"Impossible pathology values: {_listing(problems, 8)}. Correct these cells.")
    return warnings


def _on_step(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9


# ---------------------------------------------------------------------------------------------
# Two readers


def _round_half_up(values: pd.Series, step: float) -> pd.Series:
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
    ``mean`` rounds half up to ``step`` where the two differ; equal readings are kept as read.
    ``consensus`` takes the consensus value where one is filled in, and refuses patients on whom
    the readers differ without one.
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
        return either.where(~differ, _round_half_up(mean, step))
    if consensus is None:
        raise CrcInputError(
            f"The 'consensus' rule needs a column {column}_consensus (or the suffix you chose) "
            "holding the agreed reading where the pathologists differ. Add it or choose max, mean or first."
        )
    consensus = consensus.reset_index(drop=True)
    unresolved = differ & consensus.isna()
    if unresolved.any():
        where = [_where(rows, ids, p) for p in np.flatnonzero(unresolved.to_numpy())]
        raise CrcInputError(
            f"Column {column}: the pathologists differ and there is no consensus value for {_listing(where)}. "
            "Fill in the consensus column for these patients or choose another rule."
        )
    return consensus.fillna(either)


# ---------------------------------------------------------------------------------------------
# Split


def _normalise_split(value: Any) -> str:
    return "" if pd.isna(value) else str(value).strip().lower()


def _split_per_row(
    split: pd.Series | pd.DataFrame,
    pathology: pd.DataFrame,
    ids: list[str],
    config: LabelConfig,
) -> tuple[list[str], list[str]]:
    """Each pathology row's split (normalised), and warnings (split patients without pathology)."""
    warnings: list[str] = []
    if isinstance(split, pd.Series):
        if split.index.equals(pathology.index):
            values = list(split)
        else:
            lookup = {_id_text(k): v for k, v in split.items()}
            absent = [patient for patient in ids if patient not in lookup]
            if absent:
                raise CrcInputError(
                    f"{len(absent)} patient(s) of the pathology table have no split: {_listing(absent)}. "
                    "Assign them to train or validation on the Cohort page, or remove them from the pathology table."
                )
            values = [lookup[patient] for patient in ids]
    elif isinstance(split, pd.DataFrame):
        split_rows = list(range(2, len(split) + 2))
        split_ids = _patient_ids(split, split_rows, what="The split table")
        if config.split_column not in split.columns:
            raise CrcInputError(
                f"The split table has no {config.split_column!r} column. Its columns are: "
                f"{', '.join(map(str, split.columns))}. Make the split on the Cohort page first."
            )
        lookup = dict(zip(split_ids, split[config.split_column]))
        absent = [patient for patient in ids if patient not in lookup]
        if absent:
            raise CrcInputError(
                f"{len(absent)} patient(s) of the pathology table are not in the split: {_listing(absent)}. "
                "Assign them to train or validation on the Cohort page, or remove them from the pathology table."
            )
        extra = sorted(set(split_ids) - set(ids))
        if extra:
            warnings.append(
                f"{len(extra)} patient(s) in the split have no pathology row and get no labels: {_listing(extra)}."
            )
        values = [lookup[patient] for patient in ids]
    else:
        raise TypeError(f"split must be a Series or DataFrame, not {type(split).__name__}")
    normalised = [_normalise_split(v) for v in values]
    blank = [ids[i] for i, v in enumerate(normalised) if not v]
    if blank:
        raise CrcInputError(
            f"{len(blank)} patient(s) have an empty split: {_listing(blank)}. Assign each to train or validation."
        )
    return normalised, warnings


# ---------------------------------------------------------------------------------------------
# Labels


def _nullable(values: pd.Series) -> pd.Series:
    return values.astype("Float64").round().astype("Int64")


def _flag(condition: pd.Series, known: pd.Series) -> pd.Series:
    flag = condition.astype(float).where(known)
    return _nullable(flag)


def build_labels(
    pathology: pd.DataFrame,
    split: pd.Series | pd.DataFrame | None = None,
    config: LabelConfig | None = None,
    *,
    row_numbers: Sequence[int] | None = None,
) -> LabelResult:
    """Labels for every patient of ``pathology``, by the rules of ``config`` (the paper's by default).

    ``split`` (a table with ``patient_id`` and ``split``, or a Series aligned with ``pathology``
    or indexed by patient ID) is needed only for the training-median IS cut-offs, which are
    computed from training patients alone so that the validation cohort never shapes its own
    labels. Medians are the ordinary median (mean of the two middle values for an even count,
    as R's ``median`` and SPSS), over training patients with that marker filled in; a marker is
    high when strictly above its cut-off, so a count equal to the median is low.

    ``row_numbers`` (spreadsheet rows of the table's rows) default to 2, 3, ... .

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
    rows = _row_numbers(pathology, row_numbers)
    ids = _patient_ids(pathology, rows)

    use_is_column = config.is_cutoff_source == "is_column"
    required = [TSR_COLUMN, TIL_COLUMN] + ([IS_COLUMN] if use_is_column else list(MARKERS))
    missing = [c for c in required if c not in pathology.columns]
    if missing:
        raise CrcInputError(
            f"The pathology table lacks column(s) {', '.join(missing)}. Its columns are: "
            f"{', '.join(map(str, pathology.columns))}. Add them or rename the matching columns."
        )
    reading_columns = [
        f"{item}{suffix}"
        for item in (TSR_COLUMN, TIL_COLUMN)
        for suffix in ("", SECOND_READER_SUFFIX, config.consensus_suffix)
        if f"{item}{suffix}" in pathology.columns
    ]
    numeric_columns = reading_columns + required[2:]
    values = _numbers(pathology, numeric_columns, rows, ids)
    warnings = _check_ranges(values, rows, ids, config)

    def resolved(item: str, step: float) -> pd.Series:
        second = f"{item}{SECOND_READER_SUFFIX}"
        consensus = f"{item}{config.consensus_suffix}"
        return resolve_readings(
            values[item],
            values[second] if second in values else None,
            values[consensus] if consensus in values else None,
            config.resolution,
            step,
            column=item,
            rows=rows,
            ids=ids,
        )

    tsr = resolved(TSR_COLUMN, config.tsr_step_percent)
    til = resolved(TIL_COLUMN, 1.0)
    labels = pd.DataFrame({PATIENT_ID: ids, TSR_COLUMN: tsr, TIL_COLUMN: _nullable(til)})

    for item, series in ((TSR_COLUMN, tsr), (TIL_COLUMN, til)):
        absent = [_where(rows, ids, p) for p in np.flatnonzero(series.isna().to_numpy())]
        if absent:
            warnings.append(
                f"No {item} for {_listing(absent)}: its label and the TIME score are left empty for these patients."
            )

    cutoffs: dict[str, dict[str, Any]] = {}
    if use_is_column:
        is_score = values[IS_COLUMN]
        labels[IS_COLUMN] = _nullable(is_score)
    else:
        markers = values[list(MARKERS)]
        if config.is_cutoff_source == "given":
            for marker, value in config.marker_cutoffs:
                cutoffs[marker] = {"value": value, "source": "given", "n": None}
        else:
            if split is None:
                raise CrcInputError(
                    "The IS cut-offs are the training cohort's medians, so the split is needed: make the "
                    "train/validation split on the Cohort page first, or give the four marker cut-offs yourself."
                )
            per_row, split_warnings = _split_per_row(split, pathology, ids, config)
            warnings.extend(split_warnings)
            train = np.array([v == config.train_split.lower() for v in per_row])
            if not train.any():
                found = sorted(set(per_row))
                raise CrcInputError(
                    f"No patient is in the training split {config.train_split!r} (the split holds "
                    f"{', '.join(map(repr, found))}), so the IS cut-offs cannot be computed. "
                    "Name the training split or give the marker cut-offs yourself."
                )
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
        points = pd.DataFrame({m: (markers[m] > cutoffs[m]["value"]).astype(float) for m in MARKERS})
        complete = markers.notna().all(axis=1)
        is_score = points.sum(axis=1).where(complete)
        for marker in MARKERS:
            labels[marker] = markers[marker]
        labels[IS_COLUMN] = _nullable(is_score)
        absent = [
            f"{_where(rows, ids, p)}: {', '.join(m for m in MARKERS if pd.isna(markers[m].iloc[p]))}"
            for p in np.flatnonzero((~complete).to_numpy())
        ]
        if absent:
            warnings.append(
                f"Missing marker counts, so no immune score (IS) for {_listing(absent)}; "
                "is_score, is_high and the TIME score are left empty for these patients."
            )

    labels["tsr_high"] = _flag(tsr > config.tsr_cutoff_percent, tsr.notna())
    labels["til_high"] = _flag(til >= config.til_high_min_grade, til.notna())
    labels["is_high"] = _flag(is_score > config.is_high_above, is_score.notna())
    time_points = []
    for item, name in (("tsr", "tsr_high"), ("til", "til_high"), ("is", "is_high")):
        high = labels[name].astype("Float64")
        time_points.append(high if config.time_points[item] == "high" else 1 - high)
    time_score = sum(time_points)
    labels["time_score"] = _nullable(time_score)
    labels["time_high"] = _flag(
        (time_score >= config.time_high_min_score).fillna(False).astype(bool), time_score.notna()
    )
    columns = [PATIENT_ID, TSR_COLUMN, TIL_COLUMN]
    columns += [] if use_is_column else list(MARKERS)
    columns += ["tsr_high", "til_high", IS_COLUMN, "is_high", "time_score", "time_high"]
    return LabelResult(labels=labels[columns], cutoffs=cutoffs, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# Saving


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
    _patient_ids(labels, list(range(2, len(labels) + 2)), what="The labels table")


def labels_metadata(result: LabelResult, config: LabelConfig) -> dict[str, Any]:
    """What ``labels.json`` holds: the config, the cut-offs used, warnings and counts."""
    counts = {
        name: {
            "n": int(result.labels[name].notna().sum()),
            "n_high": int(result.labels[name].fillna(0).sum()),
        }
        for name in BINARY_LABELS
    }
    return {
        "config": config.to_dict(),
        "cutoffs": result.cutoffs,
        "warnings": list(result.warnings),
        "n_patients": int(len(result.labels)),
        "counts": counts,
        "paper_rules": {
            "tsr": PAPER_TSR_RULE,
            "til": PAPER_TIL_RULE,
            "is": PAPER_IS_RULE,
            "time": PAPER_TIME_RULE,
        },
    }


def save_labels(workspace: Workspace | Path | str, result: LabelResult, config: LabelConfig) -> tuple[Path, Path]:
    """Write ``labels.csv`` and ``labels.json`` (config + cut-offs) into the workspace, each
    atomically, after checking everything; a refused result leaves the old files as they were."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    _check_result(result, config)
    meta_text = json.dumps(labels_metadata(result, config), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    ensure_writable_dir(workspace.root)
    csv_path = atomic_write_csv(workspace.labels_csv, result.labels)
    json_path = atomic_write_text(workspace.root / LABELS_JSON, meta_text)
    return csv_path, json_path


def read_label_config(workspace: Workspace | Path | str) -> LabelConfig | None:
    """The config saved beside ``labels.csv``, or ``None`` when labels were never built."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    path = workspace.root / LABELS_JSON
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return LabelConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"{path} cannot be read ({exc}). Rebuild the labels on the Labels page.") from exc


def _read_workspace_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """A workspace table with IDs kept as text, and each row's spreadsheet row number."""
    try:
        table = pd.read_csv(path, dtype={PATIENT_ID: str}, skip_blank_lines=False)
    except Exception as exc:
        raise CrcInputError(f"{path} cannot be read as a CSV table ({exc}). Check the file.") from exc
    filled = ~table.isna().all(axis=1)
    rows = [i + 2 for i in np.flatnonzero(filled.to_numpy())]
    return table[filled].reset_index(drop=True), rows


def workspace_split(workspace: Workspace) -> pd.DataFrame | None:
    """The saved split (``split.csv``), else the clinical table's ``split`` column, else None."""
    split_path = workspace.root / SPLIT_CSV
    if split_path.exists():
        return _read_workspace_csv(split_path)[0]
    if workspace.clinical_csv.exists():
        clinical = _read_workspace_csv(workspace.clinical_csv)[0]
        if "split" in clinical.columns and PATIENT_ID in clinical.columns:
            return clinical[[PATIENT_ID, "split"]]
    return None


def label_workspace(workspace: Workspace | Path | str, config: LabelConfig | None = None) -> LabelResult:
    """Build labels from the workspace's ``pathology.csv`` and split, and save them (the CLI step)."""
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    config = config or LabelConfig()
    if not workspace.pathology_csv.exists():
        raise CrcInputError(f"{workspace.pathology_csv} is missing. Load the pathology table on the Cohort page first.")
    pathology, rows = _read_workspace_csv(workspace.pathology_csv)
    split = workspace_split(workspace) if config.is_cutoff_source == "train_median" else None
    result = build_labels(pathology, split, config, row_numbers=rows)
    save_labels(workspace, result, config)
    return result


def describe_labels(result: LabelResult) -> str:
    """One line for the CLI, e.g. ``315 patients: tsr_high 140/315, til_high ...``."""
    labels = result.labels
    parts = [
        f"{name} {int(labels[name].fillna(0).sum())}/{int(labels[name].notna().sum())}" for name in BINARY_LABELS
    ]
    return f"{len(labels)} patients: " + ", ".join(parts) + " high"


# ---------------------------------------------------------------------------------------------
# Summaries for the page


SPLIT_ORDER = ("train", "validation", "external")


def label_prevalence(labels: pd.DataFrame, split: pd.Series | pd.DataFrame | None = None) -> pd.DataFrame:
    """n and % high per binary label, per split and for all patients.

    Columns: ``label``, ``split``, ``n`` (patients with the label), ``n_high``, ``percent_high``
    (of ``n``), ``n_missing``. ``split`` as for :func:`build_labels`; ``None`` gives "all" only.
    """
    for column in (PATIENT_ID, *BINARY_LABELS):
        if column not in labels.columns:
            raise CrcInputError(f"The labels table has no {column!r} column; build the labels first.")
    ids = [_id_text(v) for v in labels[PATIENT_ID]]
    groups: list[tuple[str, np.ndarray]] = []
    if split is not None:
        per_row, _ = _split_per_row(split, labels, ids, LabelConfig())
        names = sorted(set(per_row), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
        groups = [(name, np.array([v == name for v in per_row])) for name in names]
    groups.append(("all", np.ones(len(labels), dtype=bool)))
    records = []
    for name in BINARY_LABELS:
        for group, mask in groups:
            values = labels[name][mask]
            n = int(values.notna().sum())
            n_high = int(values.fillna(0).sum())
            records.append(
                {
                    "label": name,
                    "split": group,
                    "n": n,
                    "n_high": n_high,
                    "percent_high": round(100 * n_high / n, 1) if n else float("nan"),
                    "n_missing": int(values.isna().sum()),
                }
            )
    return pd.DataFrame(records)


def label_crosstab(labels: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Counts of ``a`` (rows) by ``b`` (columns) with a ``total`` row and column; missing left out."""
    for column in (a, b):
        if column not in labels.columns:
            raise CrcInputError(
                f"The labels table has no {column!r} column. Choose from: {', '.join(map(str, labels.columns))}."
            )
    if a == b:
        raise CrcInputError(f"Choose two different labels to cross-tabulate (both are {a!r}).")
    return pd.crosstab(labels[a], labels[b], margins=True, margins_name="total", dropna=True)


def agreement_summary(pathology: pd.DataFrame, config: LabelConfig | None = None) -> pd.DataFrame:
    """Inter-pathologist agreement for every item read twice (``tsr_percent``/``tsr_percent_r2``,
    ``til_grade``/``til_grade_r2``): one row per item and weighting (none, linear, quadratic)
    with ``n`` patients read by both, exact ``percent_agreement``, ``kappa``, its Fleiss-Cohen-
    Everitt ``se`` and the 95% ``ci_low``/``ci_high`` (as SAS PROC FREQ AGREE; see crc_core.kappa).
    Empty (with those columns) when no item has a second reader.
    """
    config = config or LabelConfig()
    columns = ["item", "weights", "n", "percent_agreement", "kappa", "se", "ci_low", "ci_high"]
    if pathology.empty:
        raise CrcInputError("The pathology table is empty: it has no patient rows.")
    rows = list(range(2, len(pathology) + 2))
    ids = _patient_ids(pathology, rows)
    records = []
    for item in (TSR_COLUMN, TIL_COLUMN):
        second = f"{item}{SECOND_READER_SUFFIX}"
        if item not in pathology.columns or second not in pathology.columns:
            continue
        values = _numbers(pathology, [item, second], rows, ids)
        warnings = _check_ranges(values, rows, ids, config)
        del warnings  # off-step TSR values are reported by build_labels
        if int((values[item].notna() & values[second].notna()).sum()) < 2:
            continue
        for weights in WEIGHTINGS:
            result = cohen_kappa(values[item], values[second], weights=weights)
            records.append(
                {
                    "item": item,
                    "weights": weights,
                    "n": result.n,
                    "percent_agreement": result.percent_agreement,
                    "kappa": result.kappa,
                    "se": result.se,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                }
            )
    return pd.DataFrame(records, columns=columns)
