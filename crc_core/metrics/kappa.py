"""Agreement between two pathologists: Cohen's kappa (unweighted, linear or quadratic weights) with
its large-sample standard error and confidence interval. Inputs are the paired readings of the
pathology table (``tsr_percent``/``tsr_percent_r2``, ``til_grade``/``til_grade_r2``).

Convention: the standard error is the large-sample (non-null) variance of Fleiss, Cohen & Everitt
(1969), exactly as SAS ``PROC FREQ ... / AGREE`` prints it ("ASE") and as statsmodels'
``cohens_kappa`` (``std_kappa``) computes it; the 95% interval is the Wald interval
``kappa ± z(0.975) × ASE``, not truncated to [-1, 1] (as SAS). SPSS CROSSTABS ("Asymptotic Std.
Error") and R's ``psych::cohen.kappa`` document the same Fleiss-Cohen-Everitt variance; R's
``irr::kappa2`` prints only the test under H0 (our ``z``/``p_value``, which use the null variance
of the same paper, SAS's "ASE under H0"). Tests check the numbers against SAS's printed example and
statsmodels, and the point estimates against scikit-learn's ``cohen_kappa_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from crc_core.errors import CrcInputError
from crc_core.cohort.pathology import SECOND_READER_SUFFIX, TIL_COLUMN, TSR_COLUMN, check_ranges, readings
from crc_core.tables import patient_ids, spreadsheet_rows

Weighting = Literal["none", "linear", "quadratic"]
WEIGHTINGS: tuple[str, ...] = ("none", "linear", "quadratic")


@dataclass(frozen=True)
class KappaResult:
    """One kappa with its uncertainty. ``se`` is the Fleiss-Cohen-Everitt (1969) ASE (SAS "ASE"),
    ``ci_low``/``ci_high`` the Wald interval at ``confidence``; ``se_null``, ``z`` and ``p_value``
    test kappa = 0 (SAS "ASE under H0", two-sided). ``percent_agreement`` is exact agreement in %.
    NaN where kappa is undefined (both readers used one and the same category throughout)."""

    kappa: float
    se: float
    ci_low: float
    ci_high: float
    se_null: float
    z: float
    p_value: float
    n: int
    weights: str
    percent_agreement: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement_weights(scores: Sequence[float], weights: Weighting) -> np.ndarray:
    """Agreement weights w_ij (1 on the diagonal) for categories with the given numeric scores.

    ``linear``: 1 - |s_i - s_j| / (s_max - s_min) (Cicchetti-Allison, SAS's default ``WT=CA``);
    ``quadratic``: 1 - (s_i - s_j)² / (s_max - s_min)² (Fleiss-Cohen, SAS ``WT=FC``). With
    equally spaced scores these are scikit-learn's ``weights='linear'``/``'quadratic'``.
    """
    if weights not in WEIGHTINGS:
        raise CrcInputError(f"Kappa weights must be one of {', '.join(WEIGHTINGS)}; got {weights!r}.")
    values = np.asarray(scores, dtype=float)
    k = len(values)
    if weights == "none" or k < 2:
        return np.eye(k)
    span = values.max() - values.min()
    distance = np.abs(values[:, None] - values[None, :]) / span
    return 1.0 - (distance if weights == "linear" else distance**2)


def kappa_from_table(
    table: np.ndarray | Sequence[Sequence[float]],
    *,
    weights: Weighting = "none",
    scores: Sequence[float] | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa of a square contingency table (rows: reader 1, columns: reader 2).

    ``scores`` are the categories' numeric values for the weights (default 0, 1, 2, ...).

    Variance (Fleiss, Cohen & Everitt 1969, Psychol Bull 72:323-327), with agreement weights w,
    cell proportions p_ij, margins p_i. and p_.j, w̄_i = Σ_j p_.j w_ij, w̄_j = Σ_i p_i. w_ij:

        var = [Σ p_ij (w_ij - (w̄_i + w̄_j)(1 - κ))² - (κ - p_e(1 - κ))²] / (n (1 - p_e)²)
        var0 = [Σ p_i. p_.j (w_ij - (w̄_i + w̄_j))² - p_e²] / (n (1 - p_e)²)

    which is what SAS PROC FREQ (AGREE) prints as ASE and ASE under H0.

    >>> round(kappa_from_table([[10, 4, 1, 0], [5, 10, 12, 2], [2, 4, 12, 5], [0, 2, 6, 13]]).kappa, 4)
    0.3449
    """
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise CrcInputError(f"A kappa table must be square (reader 1 × reader 2); got shape {counts.shape}.")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise CrcInputError("A kappa table must hold counts of 0 or more.")
    if not 0 < confidence < 1:
        raise CrcInputError(f"The confidence level must be between 0 and 1, e.g. 0.95; got {confidence!r}.")
    k = counts.shape[0]
    scores = np.arange(k, dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if len(scores) != k:
        raise CrcInputError(f"{len(scores)} scores given for a {k} × {k} table.")
    n = counts.sum()
    if n < 2:
        raise CrcInputError(
            f"Kappa needs at least 2 patients read by both pathologists; there are {int(n)}."
        )
    w = agreement_weights(scores, weights)
    p = counts / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    expected = np.outer(row, col)
    p_o = float((w * p).sum())
    p_e = float((w * expected).sum())
    percent = float(np.trace(p) * 100)
    nan = float("nan")
    if np.isclose(p_e, 1.0):
        # Both readers used a single category: chance agreement is total and kappa is 0/0.
        return KappaResult(nan, nan, nan, nan, nan, nan, nan, int(n), weights, percent, confidence)
    kappa = (p_o - p_e) / (1 - p_e)
    w_row = w @ col  # w̄_i.
    w_col = row @ w  # w̄_.j
    w_sum = w_row[:, None] + w_col[None, :]
    var = ((p * (w - w_sum * (1 - kappa)) ** 2).sum() - (kappa - p_e * (1 - kappa)) ** 2) / (
        n * (1 - p_e) ** 2
    )
    var_null = ((expected * (w - w_sum) ** 2).sum() - p_e**2) / (n * (1 - p_e) ** 2)
    se = float(np.sqrt(max(var, 0.0)))
    se_null = float(np.sqrt(max(var_null, 0.0)))
    z_crit = float(stats.norm.ppf(0.5 + confidence / 2))
    z = kappa / se_null if se_null > 0 else nan
    p_value = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else nan
    return KappaResult(
        kappa=float(kappa),
        se=se,
        ci_low=float(kappa - z_crit * se),
        ci_high=float(kappa + z_crit * se),
        se_null=se_null,
        z=float(z),
        p_value=p_value,
        n=int(n),
        weights=weights,
        percent_agreement=percent,
        confidence=confidence,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def cohen_kappa(
    reader_1: Sequence[Any] | pd.Series,
    reader_2: Sequence[Any] | pd.Series,
    *,
    weights: Weighting = "none",
    categories: Sequence[Any] | None = None,
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa between two readers' ratings of the same patients, in the same order.

    Pairs with a missing rating on either side are left out (listwise, as SAS and ``irr::kappa2``).
    Categories are the sorted union of both readers' values, or ``categories`` in the given order.
    Weights use the categories' numeric values as scores (SAS's default ``SCORES=TABLE``), so a
    TSR of 30% vs 50% is two steps apart even if nobody scored 40%; non-numeric categories are
    scored by position. scikit-learn's ``cohen_kappa_score(..., labels=full_scale)`` gives the
    same point estimate for equally spaced scales.

    >>> round(cohen_kappa([0, 1, 2, 3, 2], [0, 1, 2, 2, 2], weights="linear").kappa, 4)
    0.8
    """
    first = pd.Series(list(reader_1), dtype=object)
    second = pd.Series(list(reader_2), dtype=object)
    if len(first) != len(second):
        raise CrcInputError(
            f"The two readers have different numbers of ratings ({len(first)} and {len(second)}); "
            "give one rating per patient for each reader."
        )
    both = first.notna() & second.notna()
    first, second = first[both], second[both]
    if categories is None:
        levels = list(pd.unique(pd.concat([first, second], ignore_index=True)))
        numeric = all(_is_number(v) for v in levels)
        levels = sorted(levels) if numeric else sorted(levels, key=str)
    else:
        levels = list(categories)
        numeric = all(_is_number(v) for v in levels)
        unknown = sorted((set(first) | set(second)) - set(levels), key=str)
        if unknown:
            raise CrcInputError(
                f"Rating(s) {', '.join(map(repr, unknown[:5]))} are not among the categories "
                f"{', '.join(map(repr, levels))}. Correct the ratings or add the categories."
            )
    index = {value: position for position, value in enumerate(levels)}
    table = np.zeros((len(levels), len(levels)))
    for a, b in zip(first, second):
        table[index[a], index[b]] += 1
    scores = [float(v) for v in levels] if numeric else list(range(len(levels)))
    return kappa_from_table(table, weights=weights, scores=scores, confidence=confidence)


#: How the page names the interval, so a statistician knows which one it is.
KAPPA_CI_METHOD = (
    "95% CI: Wald interval, kappa ± 1.96 × the Fleiss-Cohen-Everitt (1969) asymptotic standard error "
    "(SAS PROC FREQ AGREE \"ASE\"; statsmodels cohens_kappa), not truncated to [-1, 1]"
)


def pathologist_agreement(pathology: pd.DataFrame, tsr_step_percent: float = 10.0) -> pd.DataFrame:
    """Inter-pathologist agreement for every item read twice (``tsr_percent``/``tsr_percent_r2``,
    ``til_grade``/``til_grade_r2``): one row per item and weighting (none, linear, quadratic)
    with ``n`` patients read by both, exact ``percent_agreement``, ``kappa``, its
    Fleiss-Cohen-Everitt ``se`` and the 95% ``ci_low``/``ci_high`` (see :data:`KAPPA_CI_METHOD`).
    Empty (with those columns) when no item has a second reader.
    """
    columns = ["item", "weights", "n", "percent_agreement", "kappa", "se", "ci_low", "ci_high"]
    if pathology.empty:
        raise CrcInputError("The pathology table is empty: it has no patient rows.")
    rows = spreadsheet_rows(pathology)
    ids = list(patient_ids(pathology, what="The pathology table"))
    records = []
    for item in (TSR_COLUMN, TIL_COLUMN):
        second = f"{item}{SECOND_READER_SUFFIX}"
        if item not in pathology.columns or second not in pathology.columns:
            continue
        values = readings(pathology, [item, second], rows, ids)
        check_ranges(values, rows, ids, tsr_step_percent)  # off-step warnings are build_labels' to give
        if int((values[item].notna() & values[second].notna()).sum()) < 2:
            continue
        for weights in WEIGHTINGS:
            result = cohen_kappa(values[item], values[second], weights=weights)
            records.append({
                "item": item, "weights": weights, "n": result.n,
                "percent_agreement": result.percent_agreement, "kappa": result.kappa,
                "se": result.se, "ci_low": result.ci_low, "ci_high": result.ci_high,
            })
    return pd.DataFrame(records, columns=columns)


#: The readings and weightings of :func:`pathologist_agreement` in words, for the page.
READING_NAMES: dict[str, str] = {TSR_COLUMN: "TSR (% stroma)", TIL_COLUMN: "TIL grade (0-3)"}
WEIGHTING_NAMES: dict[str, str] = {"none": "unweighted", "linear": "linear weights", "quadratic": "quadratic weights"}


def agreement_for_people(agreement: pd.DataFrame) -> pd.DataFrame:
    """:func:`pathologist_agreement` with its columns and values in words and its numbers with
    one number of decimals each (agreement in % to one, kappa, SE and CI to three): Reading,
    Kappa, Patients, Agreement (%), κ, SE, 95% CI."""
    def three(value: float) -> str:
        return "—" if pd.isna(value) else f"{value:.3f}"

    return pd.DataFrame({
        "Reading": agreement["item"].map(lambda i: READING_NAMES.get(i, i)),
        "Kappa": agreement["weights"].map(lambda w: WEIGHTING_NAMES.get(w, w)),
        "Patients": agreement["n"].astype(int),
        "Agreement (%)": [("—" if pd.isna(v) else f"{v:.1f}") for v in agreement["percent_agreement"]],
        "κ": [three(v) for v in agreement["kappa"]],
        "SE": [three(v) for v in agreement["se"]],
        "95% CI": [("—" if pd.isna(lo) else f"{three(lo)} to {three(hi)}") for lo, hi in zip(agreement["ci_low"], agreement["ci_high"])],
    })
