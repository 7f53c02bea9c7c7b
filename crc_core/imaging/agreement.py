"""Two radiologists' ROIs: overlap, surface distance, and the agreement of PyRadiomics features.

Conventions:

* Dice = 2|A∩B| / (|A| + |B|); two empty masks agree (1.0).
* HD95: the 95th percentile of the pooled surface distances in both directions, in mm (as MedPy's
  ``hd95``); a surface voxel is a mask voxel with a background neighbour (6-connectivity); nan
  when either mask is empty.
* ICC(2,1) of Shrout & Fleiss (1979): two-way random effects, absolute agreement, single rater
  (McGraw & Wong's ICC(A,1)), with the F-based 95% CI of McGraw & Wong (1996) — as R's
  ``psych::ICC`` (ICC2) and ``irr::icc(model = "twoway", type = "agreement", unit = "single")``.
  Ratings that are all identical have no ICC (nan, nan, nan) and such a feature is not counted
  reliable; ratings that vary only between readers give ICC 0, and negative values are kept
  (as R prints them) rather than clipped.
* Paired Wilcoxon signed-rank test (two-sided; scipy's default, exact for small n without ties),
  p = 1 when every difference is zero.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from crc_core.errors import CrcInputError

RADIOMICS_CLASSES = ("firstorder", "shape", "glcm", "glrlm", "glszm")
RELIABLE_ICC = 0.75  # Koo & Li (2016): ≥ 0.75 good reliability


@dataclass(frozen=True)
class FeatureAgreement:
    """One feature's agreement between the two readers: ICC(2,1) with its CI, the paired
    Wilcoxon p, both readers' means, and whether ICC ≥ the threshold (never for a nan ICC)."""

    feature: str
    icc: float
    icc_low: float
    icc_high: float
    wilcoxon_p: float
    mean_r1: float
    mean_r2: float
    reliable: bool


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks of the same shape (nonzero = inside); 1.0 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise CrcInputError(f"The two masks differ in shape ({a.shape} vs {b.shape}); resample one onto the other.")
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95(a: np.ndarray, b: np.ndarray, spacing: Iterable[float]) -> float:
    """95th-percentile symmetric surface distance in mm; ``spacing`` in array order (z, y, x)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise CrcInputError(f"The two masks differ in shape ({a.shape} vs {b.shape}); resample one onto the other.")
    if not a.any() or not b.any():
        return math.nan
    spacing = tuple(float(s) for s in spacing)
    # Both surfaces lie inside the union's bounding box, so the distance transforms there are
    # exact, and far cheaper than over the whole volume.
    union = np.argwhere(a | b)
    box = tuple(slice(max(lo - 1, 0), hi + 2) for lo, hi in zip(union.min(0), union.max(0)))
    a, b = a[box], b[box]
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return float(np.percentile(np.concatenate([to_b[surface_a], to_a[surface_b]]), 95))


def mask_agreement(mask_r1: np.ndarray, mask_r2: np.ndarray, spacing: Iterable[float]) -> dict[str, float]:
    """Dice, HD95 (mm) and both volumes (ml) for one patient; ``spacing`` in z, y, x order (mm)."""
    spacing = tuple(float(s) for s in spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {
        "dice": dice(mask_r1, mask_r2),
        "hd95_mm": hausdorff95(mask_r1, mask_r2, spacing),
        "volume_r1_ml": float(np.asarray(mask_r1, bool).sum()) * voxel_ml,
        "volume_r2_ml": float(np.asarray(mask_r2, bool).sum()) * voxel_ml,
    }


def icc(ratings: np.ndarray | pd.DataFrame, *, alpha: float = 0.05) -> tuple[float, float, float]:
    """ICC(2,1) with its (1 − alpha) CI from an n subjects × k raters table (rows with a missing
    rating are dropped). Returns (icc, low, high).

    Equals R's ``psych::ICC(ratings, lmer = FALSE)`` row ``ICC2`` ("Single_random_raters"):
    the value from the two-way ANOVA mean squares and the F-based bounds ``lower bound`` and
    ``upper bound`` (McGraw & Wong 1996), which ``irr::icc(model = "twoway", type =
    "agreement", unit = "single")`` prints too. A constant feature (every rating the same value)
    has no between-subject or rater variance: it gives (nan, nan, nan) here, where psych prints
    NaN with a warning, and it is never counted reliable. Ratings that differ only between the
    readers give 0, as psych does; perfect agreement gives (1, 1, 1).
    """
    if not 0 < alpha < 1:
        raise CrcInputError(f"alpha must lie between 0 and 1, e.g. 0.05 for a 95% CI; got {alpha!r}.")
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2:
        raise CrcInputError(f"ICC needs a subjects × raters table; got {x.ndim} dimension(s).")
    x = x[~np.isnan(x).any(axis=1)]
    n, k = x.shape
    if k < 2 or n < 2:
        raise CrcInputError(f"ICC needs at least 2 subjects and 2 raters with complete ratings (got {n} × {k}).")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    # The denominator is ≥ 0 for n, k ≥ 2 and vanishes only when all ratings are equal; a table
    # that varies between readers alone is ICC 0 (as psych::ICC), not undefined.
    if denominator <= 0:
        return (math.nan, math.nan, math.nan)
    value = (msr - mse) / denominator
    if mse == 0:  # perfect agreement: the F-based interval degenerates to the point
        return (float(value), float(value), float(value))
    # McGraw & Wong (1996), case 2A: F = MSR / MSE with Satterthwaite's df for the denominator.
    a = k * value / (n * (1 - value))
    b = 1 + k * value * (n - 1) / (n * (1 - value))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    f_upper = stats.f.ppf(1 - alpha / 2, n - 1, v)
    f_lower = stats.f.ppf(1 - alpha / 2, v, n - 1)
    low = n * (msr - f_upper * mse) / (f_upper * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_lower * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_lower * msr)
    return (float(value), float(low), float(high))


def paired_wilcoxon(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p of the Wilcoxon signed-rank test on paired values (pairs with a missing value
    left out); 1.0 when every difference is zero, where scipy has no test to run."""
    a, b = np.asarray(list(a), float), np.asarray(list(b), float)
    if a.shape != b.shape:
        raise CrcInputError("The paired Wilcoxon test needs one value per reader for each patient.")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size == 0 or np.all(a == b):
        return 1.0
    return float(stats.wilcoxon(a, b).pvalue)


_RADIOMICS_QUIET: list[bool] = []


def _quiet_radiomics() -> None:
    # PyRadiomics logs a line per feature class and case at INFO/WARNING; once is enough to mute it.
    if not _RADIOMICS_QUIET:
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        _RADIOMICS_QUIET.append(True)


def radiomics_features(image, mask, *, bin_width: float = 25.0, classes: Iterable[str] = RADIOMICS_CLASSES) -> dict[str, float]:
    """PyRadiomics features of the ROI (SimpleITK image and 0/1 mask), original image only:
    the ``classes`` given (first order, 3D shape, GLCM, GLRLM, GLSZM by default), fixed bin width
    in HU. Diagnostics are left out."""
    try:
        from radiomics import featureextractor
    except ImportError as exc:
        raise CrcInputError(
            "PyRadiomics is not installed; `make run` installs it (pyradiomics-bhklab, which needs a C compiler). "
            "Without it, Dice and HD95 still work."
        ) from exc
    _quiet_radiomics()
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, label=1)
    extractor.disableAllFeatures()
    for name in classes:
        extractor.enableFeatureClassByName(name)
    result = extractor.execute(image, mask)
    return {key: float(value) for key, value in result.items() if not key.startswith("diagnostics_")}


def feature_agreement(features_r1: pd.DataFrame, features_r2: pd.DataFrame, threshold: float = RELIABLE_ICC) -> pd.DataFrame:
    """Per feature: ICC(2,1) with 95% CI, paired Wilcoxon p, both readers' means, and whether
    ICC ≥ ``threshold``. Both tables: one row per patient (index patient_id), one column per feature;
    only patients and features in both are compared. A feature constant across all patients and
    both readers gets ICC nan and is not reliable."""
    patients = features_r1.index.intersection(features_r2.index)
    names = [c for c in features_r1.columns if c in features_r2.columns]
    if len(patients) < 2:
        raise CrcInputError("Feature agreement needs features from both readers for at least 2 patients.")
    rows = []
    for name in names:
        r1 = features_r1.loc[patients, name].to_numpy(float)
        r2 = features_r2.loc[patients, name].to_numpy(float)
        value, low, high = icc(np.column_stack([r1, r2]))
        rows.append(FeatureAgreement(
            feature=name, icc=value, icc_low=low, icc_high=high, wilcoxon_p=paired_wilcoxon(r1, r2),
            mean_r1=float(np.nanmean(r1)), mean_r2=float(np.nanmean(r2)),
            reliable=bool(value >= threshold) if not math.isnan(value) else False,
        ))
    columns = list(FeatureAgreement.__dataclass_fields__)
    return pd.DataFrame([asdict(row) for row in rows], columns=columns)


def share_reliable(table: pd.DataFrame) -> float:
    """The share of features with ICC ≥ the threshold, among those with an ICC."""
    scored = table[table["icc"].notna()]
    return float(scored["reliable"].mean()) if len(scored) else math.nan
