"""ComBat harmonisation of feature tables (a frozen backbone's deep features, PyRadiomics features)
across centres or scanners: learned on the training patients, applied to new patients of the same
centres, and saved as plain JSON numbers; or, named as such, fitted transductively on everyone.

The estimates are neuroCombat's own (``neuroCombat==0.2.12``, Fortin et al. 2017/2018: Johnson et
al. 2007's location and scale model with parametric empirical-Bayes priors pooled over the features
of each centre), equal to R ``sva::ComBat`` (a test holds them to 1e-12). Chosen over
``combatlearn`` 2.3.0, the better-kept package with a fit/transform API, because combatlearn pools
those priors over the centres of each feature instead, so that its output differs from
``sva::ComBat``'s (by up to 0.44 of a feature's SD on the test data), and it would bring umap-learn,
seaborn and nbformat into the app. neuroCombat's ``neuroCombatFromTraining`` fails on the
project's numpy (``int()`` of an array) and puts the training patients' average covariate effect
in place of a new patient's own, so :meth:`ComBatModel.apply` does its arithmetic here, with the
patient's own covariates (equal to it without covariates).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError

BATCH_COLUMN = "__centre__"


# ---------------------------------------------------------------------------------------------
# Checking inputs


def _feature_table(features, what: str) -> tuple[pd.DataFrame, bool]:
    """The features as a float table (patients × features) with string column names, and whether
    they came as a DataFrame; non-numeric and missing values refused by feature and patient."""
    named = isinstance(features, pd.DataFrame)
    if named:
        table = features.copy()
    else:
        values = np.asarray(features)
        if values.ndim != 2:
            raise CrcInputError(f"{what}: give the features as a table, one row per patient and one column per feature.")
        table = pd.DataFrame(values)
    table.columns = [str(c) for c in table.columns]
    if table.columns.has_duplicates:
        raise CrcInputError(f"{what}: the feature {table.columns[table.columns.duplicated()][0]!r} appears twice.")
    try:
        values = table.to_numpy(dtype=float)
    except (TypeError, ValueError):  # text somewhere: find it column by column
        values = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float) for c in table.columns]) \
            if len(table.columns) else np.zeros((len(table), 0))
    bad = ~np.isfinite(values)
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = bad[:, column]
        patients = ", ".join(map(str, table.index[rows][:5].tolist()))
        raise CrcInputError(f"{what}: the feature {table.columns[column]!r} is missing or not a number for patient(s) "
                            f"{patients}{' and more' if rows.sum() > 5 else ''}. ComBat cannot harmonise a missing value: "
                            "impute it, or leave the feature (or the patients) out.")
    return pd.DataFrame(values, index=table.index, columns=table.columns), named


def _same_patients(given, index: pd.Index, what: str, name: str) -> None:
    """Refuse a Series or DataFrame whose index (patient ids) is not the features' own, in order;
    with plain arrays on either side, rows are matched by position."""
    if isinstance(given, (pd.Series, pd.DataFrame)) and not isinstance(index, pd.RangeIndex) \
            and not given.index.equals(index):
        stray = given.index.difference(index)[:3].tolist() or index.difference(given.index)[:3].tolist()
        raise CrcInputError(f"{what}: the {name} are not given for the features' patients in the features' order"
                            f"{f' (e.g. {stray})' if stray else ''}; align them by patient first.")


def _centres(batch, n: int, index: pd.Index, what: str) -> np.ndarray:
    _same_patients(batch, index, what, "centres")
    values = pd.Series(batch.to_numpy() if isinstance(batch, pd.Series) else np.asarray(batch, dtype=object))
    if values.size != n:
        raise CrcInputError(f"{what}: {n} patients but {values.size} centres; give each patient's centre (or scanner).")
    missing = values.isna().to_numpy()
    if missing.any():
        patients = ", ".join(map(str, index[missing][:5].tolist()))
        raise CrcInputError(f"{what}: the centre is missing for patient(s) {patients}; every patient needs one.")
    return values.astype(str).to_numpy()


def _fittable_centres(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training patients' centres, sorted, and their counts; refuses one centre, or a centre
    of one patient."""
    batches, counts = np.unique(centres, return_counts=True)
    if batches.size < 2:
        raise CrcInputError(f"ComBat needs at least two centres; all {len(centres)} training patients are from centre "
                            f"{batches[0]!r}, so there is no centre effect to remove.")
    small = [f"{b!r} ({c})" for b, c in zip(batches, counts) if c < 2]
    if small:
        raise CrcInputError(f"Centre(s) {', '.join(small)} have fewer than two training patients: ComBat estimates each "
                            "centre's shift and spread from its own patients and needs at least two. Merge the centre "
                            "with a similar scanner or leave its patients out.")
    return batches, counts


def _refuse_unseen(centres: Sequence[str], batches: Sequence[str]) -> None:
    unseen = sorted({str(c) for c in centres} - {str(b) for b in batches})
    if unseen:
        raise CrcInputError(f"Centre(s) {', '.join(map(repr, unseen))} had no training patients (training centres: "
                            f"{', '.join(batches)}). ComBat learns each centre's shift and spread from that "
                            "centre's own training patients; fit it with some patients of every centre, or use the "
                            "transductive fit and say so.")


def patient_centres(clinical: pd.DataFrame, column: str, patient_ids: Sequence[str]) -> np.ndarray:
    """Each patient's centre (as text) from the clinical table's ``column`` (indexed by
    ``patient_id`` or holding it); refuses a table without the column, or a patient without a centre."""
    table = clinical.set_index("patient_id") if "patient_id" in clinical.columns else clinical
    if column not in table.columns:
        raise CrcInputError(f"ComBat needs each patient's centre: the clinical table has no {column!r} column. Add one "
                            "(the hospital or scanner of each patient), or train without harmonisation.")
    centres = table[column].reindex(list(patient_ids))
    if centres.isna().any():
        missing = [str(p) for p, c in zip(patient_ids, centres) if pd.isna(c)]
        raise CrcInputError(f"{len(missing)} patient(s) have no {column!r}: {', '.join(missing[:5])}. Fill it in, or train "
                            "without harmonisation.")
    return centres.astype(str).to_numpy()


def check_centres(centres: np.ndarray, partitions: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]], *,
                  transductive: bool = False) -> None:
    """What :func:`fit_combat` and :meth:`ComBatModel.apply` would refuse about the centres alone,
    checked before a run (or its features) is written: for each partition (its training patients'
    mask, the masks of the patients it predicts), at least two centres of two patients or more
    among the patients ComBat is fitted on, and (fitted on training) no predicted patient of a
    centre without training patients."""
    centres = np.array([str(c) for c in centres], dtype=object)
    for train, predicted in partitions:
        used = np.asarray(train, dtype=bool).copy()
        for mask in predicted:
            used |= np.asarray(mask, dtype=bool)
        batches, _ = _fittable_centres(centres[used if transductive else train])
        if not transductive:
            _refuse_unseen(centres[used], batches.tolist())


def _covariate_table(covariates, n: int, index: pd.Index, what: str) -> pd.DataFrame | None:
    if covariates is None:
        return None
    table = covariates.copy() if isinstance(covariates, pd.DataFrame) else pd.DataFrame(covariates)
    if len(table) == n:
        _same_patients(table if isinstance(covariates, pd.DataFrame) else None, index, what, "covariates")
    if len(table) != n:
        raise CrcInputError(f"{what}: {n} patients but {len(table)} rows of covariates; give one row per patient.")
    table = table.reset_index(drop=True)
    table.columns = [str(c) for c in table.columns]
    for column in table.columns:
        missing = table[column].isna().to_numpy()
        if missing.any():
            patients = ", ".join(map(str, index[missing][:5].tolist()))
            raise CrcInputError(f"{what}: the covariate {column!r} is missing for patient(s) {patients}; ComBat needs it "
                                "for every patient. Fill it in or leave the covariate out.")
    return table


# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class ComBatModel:
    """A fitted ComBat: for a patient of centre b with covariate row c, feature j becomes
    ((x − m − c·β)/σ − γ*_b)/√δ*_b · σ + m + c·β, where m = ``grand_mean``, σ² = ``var_pooled``,
    γ* = ``gamma_star``, δ* = ``delta_star`` (rows in ``batches`` order), β = ``covariate_beta``
    (rows ``covariate_terms``). A feature with no variance within at least one training centre
    (``flat``) is left as it is, as R ``sva::ComBat`` leaves it ("uniform expression within a
    single batch ... will not be adjusted"): its pooled SD would be estimated from the other centres
    only and its scale factor for that centre would be 0/0. :attr:`unadjusted` names them."""

    features: tuple[str, ...]
    batches: tuple[str, ...]
    n_per_batch: tuple[int, ...]
    grand_mean: np.ndarray
    var_pooled: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    flat: np.ndarray
    covariate_terms: tuple[str, ...] = ()
    covariate_beta: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    #: Each categorical covariate's levels in training; the first is the reference (no indicator).
    categorical_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    continuous: tuple[str, ...] = ()
    #: True when the patients it is applied to took part in fitting it (:func:`combat_transductive`).
    transductive: bool = False

    @property
    def unadjusted(self) -> tuple[str, ...]:
        """The features left as they are (no variance within some training centre), to be said."""
        return tuple(name for name, flat in zip(self.features, self.flat) if flat)

    def apply(self, features, batch: Sequence, covariates: pd.DataFrame | None = None):
        """The harmonised features of new patients of centres seen in training (same columns, same
        row order; a DataFrame in, a DataFrame out, else an array). Refuses an unseen centre, a
        missing feature or covariate, and an unseen covariate level."""
        table, named = _feature_table(features, "The features to harmonise")
        missing = [f for f in self.features if f not in table.columns]
        extra = [f for f in table.columns if f not in self.features]
        if missing or extra:
            said = []
            if missing:
                said.append(f"{len(missing)} feature(s) of the training table are missing ({', '.join(missing[:5])})")
            if extra:
                said.append(f"{len(extra)} were not in it ({', '.join(extra[:5])})")
            raise CrcInputError("The features must be those ComBat was fitted on: " + "; ".join(said) + ".")
        centres = _centres(batch, len(table), table.index, "The features to harmonise")
        _refuse_unseen(centres, self.batches)
        x = table[list(self.features)].to_numpy(dtype=float)
        covariate_effect = self._covariate_design(covariates, len(table), table.index) @ self.covariate_beta \
            if self.covariate_terms else np.zeros_like(x)
        rows = np.array([self.batches.index(c) for c in centres], dtype=int)
        sd = np.sqrt(np.where(self.flat, 1.0, self.var_pooled))
        standardised = (x - self.grand_mean - covariate_effect) / sd
        adjusted = (standardised - self.gamma_star[rows]) / np.sqrt(self.delta_star[rows])
        out = np.where(self.flat, x, adjusted * sd + self.grand_mean + covariate_effect)
        return pd.DataFrame(out, index=table.index, columns=list(self.features)) if named else out

    def _covariate_design(self, covariates, n: int, index: pd.Index) -> np.ndarray:
        if covariates is None:
            raise CrcInputError(f"This ComBat was fitted with the covariates {', '.join([*self.categorical_levels, *self.continuous])}: "
                                "give them for these patients too.")
        table = _covariate_table(covariates, n, index, "The features to harmonise")
        absent = [c for c in [*self.categorical_levels, *self.continuous] if c not in table.columns]
        if absent:
            raise CrcInputError(f"The covariate(s) {', '.join(absent)} are missing; ComBat was fitted with them.")
        return _covariate_columns(table, self.categorical_levels, self.continuous)

    def to_dict(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, dict):
                value = {k: list(v) for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return {"kind": "combat", "version": 1, **out}

    @classmethod
    def from_dict(cls, values: dict) -> "ComBatModel":
        p = len(values["features"])
        return cls(tuple(values["features"]), tuple(values["batches"]), tuple(int(n) for n in values["n_per_batch"]),
                   np.asarray(values["grand_mean"], dtype=float), np.asarray(values["var_pooled"], dtype=float),
                   np.asarray(values["gamma_star"], dtype=float).reshape(-1, p),
                   np.asarray(values["delta_star"], dtype=float).reshape(-1, p), np.asarray(values["flat"], dtype=bool),
                   tuple(values.get("covariate_terms", ())),
                   np.asarray(values.get("covariate_beta", []), dtype=float).reshape(-1, p),
                   {k: tuple(v) for k, v in values.get("categorical_levels", {}).items()},
                   tuple(values.get("continuous", ())), bool(values.get("transductive", False)))

    def save(self, path: Path) -> Path:
        from crc_core.workspace import atomic_write_text

        return atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: Path) -> "ComBatModel":
        try:
            values = json.loads(Path(path).read_text())
            if values.get("kind") != "combat":
                raise ValueError("not a ComBat model")
            return cls.from_dict(values)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CrcInputError(f"The ComBat file {path} is damaged or not a ComBat model ({exc}); fit it again.") from exc


def _covariate_columns(table: pd.DataFrame, categorical_levels: dict[str, tuple[str, ...]],
                       continuous: tuple[str, ...]) -> np.ndarray:
    """The covariate columns of neuroCombat's design: per categorical covariate an indicator for
    each level but the first (sorted), then each continuous covariate as float32 (as neuroCombat's
    ``make_design_matrix`` casts it)."""
    columns = []
    for name, levels in categorical_levels.items():
        values = table[name].astype(str).to_numpy()
        unseen = sorted(set(values) - set(levels))
        if unseen:
            raise CrcInputError(f"The covariate {name!r} has level(s) {', '.join(map(repr, unseen))} that no training "
                                f"patient had (training levels: {', '.join(levels)}).")
        columns += [(values == level).astype(float) for level in levels[1:]]
    for name in continuous:
        numbers = pd.to_numeric(table[name], errors="coerce")
        if numbers.isna().any():
            raise CrcInputError(f"The covariate {name!r} was a number in training; here it is not for every patient.")
        columns.append(numbers.to_numpy().astype(np.float32).astype(float))
    return np.column_stack(columns) if columns else np.zeros((len(table), 0))


# ---------------------------------------------------------------------------------------------
# Fitting


def fit_combat(features, batch: Sequence, covariates: pd.DataFrame | None = None, *,
               categorical: Sequence[str] = ()) -> ComBatModel:
    """ComBat learned from the training patients only: ``features`` (patients × features, a
    DataFrame or an array), each patient's centre or scanner ``batch``, and optional
    ``covariates`` whose effect on the features ComBat keeps (age, sex, stage; never the label a
    model will be trained on, nor anything of the validation patients). A covariate is categorical
    when it is not numeric or is named in ``categorical``. Estimates as
    ``neuroCombat.neuroCombat(dat, covars, batch_col, categorical_cols, continuous_cols)`` with its
    defaults (parametric empirical Bayes, no reference centre).

    Features with no variance within some centre are kept out of the fit and left unadjusted, as
    ``sva::ComBat`` does (:attr:`ComBatModel.unadjusted` names them). Refuses: one centre ("ComBat needs at least
    two centres"), a centre with fewer than two patients, missing values (by feature and patient),
    a covariate confounded with the centre, and fewer than two features that vary within every centre
    (the empirical-Bayes priors pool the features)."""
    from neuroCombat import neuroCombat

    table, _ = _feature_table(features, "The training features")
    n = len(table)
    centres = _centres(batch, n, table.index, "The training features")
    batches, counts = _fittable_centres(centres)
    covariate_table = _covariate_table(covariates, n, table.index, "The training features")
    categorical_levels: dict[str, tuple[str, ...]] = {}
    continuous: list[str] = []
    if covariate_table is not None:
        unknown = [c for c in categorical if c not in covariate_table.columns]
        if unknown:
            raise CrcInputError(f"There is no covariate {unknown[0]!r} to treat as categorical.")
        for name in covariate_table.columns:
            if name in categorical or not pd.api.types.is_numeric_dtype(covariate_table[name]) \
                    or pd.api.types.is_bool_dtype(covariate_table[name]):
                categorical_levels[name] = tuple(np.unique(covariate_table[name].astype(str).to_numpy()).tolist())
            else:
                continuous.append(name)
        _refuse_confounded(centres, batches, covariate_table, categorical_levels, continuous)

    x = table.to_numpy()
    # As sva::ComBat: a feature with no variance within any one centre stays out of the fit and
    # unadjusted (neuroCombat fits it and moves it by up to a feature's SD where R does not).
    flat = np.array([any(np.ptp(x[centres == b, j]) == 0 for b in batches) for j in range(x.shape[1])])
    if (~flat).sum() < 2:
        raise CrcInputError(f"Only {int((~flat).sum())} feature(s) vary within every centre; ComBat's empirical-Bayes step "
                            "pools the features and needs at least two.")
    covars = pd.DataFrame({BATCH_COLUMN: centres})
    if covariate_table is not None:
        for name in categorical_levels:
            covars[name] = covariate_table[name].astype(str).to_numpy()
        for name in continuous:
            covars[name] = pd.to_numeric(covariate_table[name]).to_numpy(dtype=float)
    # neuroCombat prints its progress and divides by features' zero means in its convergence check.
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        fitted = neuroCombat(dat=x[:, ~flat].T.copy(), covars=covars, batch_col=BATCH_COLUMN,
                             categorical_cols=list(categorical_levels), continuous_cols=continuous)
    estimates, design = fitted["estimates"], fitted["info"]["design"]
    if [str(b) for b in estimates["batches"]] != batches.tolist():
        raise RuntimeError("neuroCombat ordered the centres differently from numpy's unique")
    var_pooled = np.asarray(estimates["var.pooled"], dtype=float)[:, 0]
    if (var_pooled <= 0).any():
        culprit = table.columns[~flat][np.flatnonzero(var_pooled <= 0)[0]]
        raise CrcInputError(f"The feature {culprit!r} is fully explained by the centre and the covariates (no variation "
                            "is left): leave it out.")
    # The covariates' coefficients, neuroCombat's least squares (B = (DᵀD)⁻¹Dᵀx) on its own design,
    # kept so that a new patient's own covariates can be used.
    beta = np.linalg.solve(design.T @ design, design.T @ x[:, ~flat])[batches.size:]

    def widen(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(values.shape[:-1] + (x.shape[1],), fill, dtype=float)
        out[..., ~flat] = values
        return out

    training_mean = x.mean(axis=0)
    grand_mean = widen(np.asarray(estimates["stand.mean"], dtype=float)[:, 0], 0.0)
    grand_mean[flat] = training_mean[flat]
    terms = [f"{name} = {level}" for name, levels in categorical_levels.items() for level in levels[1:]] + continuous
    return ComBatModel(
        features=tuple(table.columns), batches=tuple(batches.tolist()), n_per_batch=tuple(int(c) for c in counts),
        grand_mean=grand_mean, var_pooled=widen(var_pooled, 0.0),
        gamma_star=widen(np.asarray(estimates["gamma.star"], dtype=float), 0.0),
        delta_star=widen(np.asarray(estimates["delta.star"], dtype=float), 1.0), flat=flat,
        covariate_terms=tuple(terms), covariate_beta=widen(beta, 0.0) if terms else np.zeros((0, x.shape[1])),
        categorical_levels=categorical_levels, continuous=tuple(continuous))


def _refuse_confounded(centres: np.ndarray, batches: np.ndarray, covariates: pd.DataFrame,
                       categorical_levels: dict[str, tuple[str, ...]], continuous: list[str]) -> None:
    """Refuse a covariate that the centres (with the covariates before it) already determine: ComBat
    could not tell its effect from the centre's."""
    design = (centres[:, None] == batches[None, :]).astype(float)
    for name in [*categorical_levels, *continuous]:
        part = _covariate_columns(covariates, {name: categorical_levels[name]} if name in categorical_levels else {},
                                  () if name in categorical_levels else (name,))
        candidate = np.column_stack([design, part])
        if np.linalg.matrix_rank(candidate) < candidate.shape[1]:
            raise CrcInputError(f"The covariate {name!r} is confounded with the centre (or constant): ComBat cannot tell "
                                "its effect from the centre's. Leave it out.")
        design = candidate


def combat_transductive(features, batch: Sequence, covariates: pd.DataFrame | None = None, *,
                        categorical: Sequence[str] = ()) -> tuple[pd.DataFrame | np.ndarray, ComBatModel]:
    """Transductive ComBat, as many published radiomics studies harmonise: fitted on every patient
    of every centre (validation and external ones included) and applied to the same patients; the
    result is neuroCombat's ``neuroCombat(...)["data"]``. The labels take no part, but the
    validation patients' features shape the correction, so a validation AUC after it is not
    strictly held out; the returned model says ``transductive=True``. Same checks as
    :func:`fit_combat`."""
    model = replace(fit_combat(features, batch, covariates, categorical=categorical), transductive=True)
    return model.apply(features, batch, covariates), model


def centre_mean_gap(features, batch: Sequence) -> pd.Series:
    """Per feature, the largest difference between two centres' means, in units of the pooled
    within-centre SD (0 when the centres agree; NaN for a feature constant within every centre):
    how large the centre effect is before and after harmonisation."""
    table, _ = _feature_table(features, "The features")
    centres = _centres(batch, len(table), table.index, "The features")
    groups = table.groupby(centres)
    means = groups.mean()
    within = ((table - groups.transform("mean")) ** 2).sum() / max(len(table) - len(means), 1)
    gap = (means.max() - means.min()) / np.sqrt(within)
    return gap.where(within > 0, math.nan)
