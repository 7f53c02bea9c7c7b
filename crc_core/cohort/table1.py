"""Table 1: baseline characteristics of two groups with the tests the paper used, as SPSS prints them.

Conventions (SPSS 30 `EXAMINE`, `T-TEST`, `NPAR TESTS /M-W`, `CROSSTABS`; R gives the same numbers
with the arguments named below):

* Normality: Kolmogorov-Smirnov with the Lilliefors correction, per group. The statistic uses the
  sample SD (n − 1); the p value is R's ``nortest::lillie.test``: Dallal & Wilkinson (1986) up to
  0.1, Stephens (1974) above (SPSS gives the same below 0.2 and prints .200*, a lower bound, above
  it; the decision at 0.05 is the same either way). Shapiro-Wilk (Royston, as SPSS and
  R's ``shapiro.test``) is selectable. A variable is "normal" when p ≥ alpha in *both* groups.
* The paper's rule (its Methods: "an independent samples t-test was used for data with a normal
  distribution and equal variance, while a Mann-Whitney U test was utilized for those with skewed
  distributions or unequal variance"): normal in both groups and Levene's test (centred on the
  mean, as SPSS; R ``car::leveneTest(center = mean)``) p ≥ alpha → mean ± SD (n − 1) with
  Student's t (R ``t.test(var.equal = TRUE)``); otherwise median (Q1, Q3) with the Mann-Whitney U
  test. Welch's t for normal data with unequal variances (R ``t.test(var.equal = FALSE)``) is an
  option, named as such.
* Median (Q1, Q3) with SPSS's default HAVERAGE percentiles (R ``quantile(type = 6)``); the
  Mann-Whitney U test reported as Z: the normal approximation with the tie correction and no
  continuity correction, computed from the smaller U, so Z ≤ 0 (as SPSS; R
  ``wilcox.test(exact = FALSE, correct = FALSE)`` gives the same p).
* Categorical and ordinal: n (%) per level (column percentages); Pearson's χ² without continuity
  correction (R ``chisq.test(correct = FALSE)``), kept for sparse tables larger than 2×2 (as SPSS
  and the paper's pT row) with an "interpret with care" note; Fisher's exact test (two-sided, R
  ``fisher.test``) for a 2×2 table with an expected count below 5.
* P values as the paper prints them (0.166, < 0.001) or as SPSS does (.166, .000).
* Missing values are left out per variable and counted; missing-value codes in a column of numbers
  (n.d., NA, - ...: :data:`crc_core.variables.MISSING_CODES`) are missing values too, counted and
  named in a footnote, and any other word in it is refused by value. Standardised mean differences
  (SMD) use the pooled SD of the two groups (continuous), and for categorical variables the
  multinomial form of Yang & Dalton (2012), as R ``tableone``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.cohort.splits import SPLIT_ALIASES, SPLIT_VALUES
from crc_core.variables import CONTINUOUS, DATE, detect_variable_type, read_numbers

CATEGORICAL = "categorical"

T_STUDENT = "Student's t-test"
T_WELCH = "Welch's t-test"
MANN_WHITNEY = "Mann-Whitney U"
CHI_SQUARE = "Pearson χ²"
FISHER = "Fisher's exact"
NO_TEST = "none"

#: Footnote marks, as the paper's Table 1: 1 t-test, 2 Mann-Whitney U, 3 χ²; 4 Fisher and
#: 5 Welch (ours); "a" marks a χ² on a sparse table.
FOOTNOTE_MARKS = {T_STUDENT: "1", MANN_WHITNEY: "2", CHI_SQUARE: "3", FISHER: "4", T_WELCH: "5"}
SPARSE_MARK = "a"
FOOTNOTES = {
    "1": "Statistical analysis performed using t-test (Student's, equal variances: Levene's test p ≥ 0.05).",
    "2": "Statistical analysis performed using Mann-Whitney U test (Z, normal approximation with tie correction).",
    "3": "Statistical analysis performed using χ² test (Pearson, no continuity correction).",
    "4": "Statistical analysis performed using Fisher's exact test (2×2 table with an expected count < 5).",
    "5": "Statistical analysis performed using Welch's t-test (unequal variances: Levene's test p < 0.05).",
}

SUPERSCRIPTS = {"1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", SPARSE_MARK: "ᵃ"}

#: Names a user may give to force a variable's test.
FORCEABLE_TESTS = {
    "t": None,  # a t-test, Student or Welch by Levene
    "student": T_STUDENT,
    "welch": T_WELCH,
    "mann-whitney": MANN_WHITNEY,
    "chi2": CHI_SQUARE,
    "fisher": FISHER,
}

KS_P_CAP = 0.2  # SPSS prints .200 ("lower bound of the true significance") above this; we give R's p
UNEQUAL_VARIANCE_TESTS = ("mann-whitney", "welch")
P_STYLES = ("paper", "spss")


@dataclass(frozen=True)
class NormalityResult:
    method: str  # "Kolmogorov-Smirnov (Lilliefors)" or "Shapiro-Wilk"
    statistic: float
    p_value: float
    p_is_lower_bound: bool = False  # kept for callers; the Lilliefors p is now R's, never a bound


@dataclass(frozen=True)
class TestResult:
    test: str
    statistic: float
    p_value: float


@dataclass
class _Row:
    """One printed row of Table 1 while it is being built."""

    variable: str
    level: str
    cells: list[str]
    statistic: float = math.nan
    test: str = ""
    p_value: float = math.nan
    mark: str = ""
    missing: int | None = None
    smd: float = math.nan
    reason: str = ""
    sparse_cells: int = 0


# ---------------------------------------------------------------------------------------------
# Single tests


def _dallal_wilkinson_p(d: float, n: int) -> float:
    """Dallal & Wilkinson's (1986) approximation to the Lilliefors p value (valid for p < 0.1)."""
    if n > 100:
        d = d * (n / 100.0) ** 0.49
        n = 100
    return float(
        math.exp(
            -7.01256 * d * d * (n + 2.78019)
            + 2.99587 * d * math.sqrt(n + 2.78019)
            - 0.122119
            + 0.974598 / math.sqrt(n)
            + 1.67997 / n
        )
    )


#: Stephens' (1974) modified statistic D* = (√n − 0.01 + 0.85/√n)·D for the normal case with
#: estimated mean and SD, and the p value as a quartic in D* on each interval (upper cut point,
#: coefficients of D*⁰ … D*⁴); below the first cut p is 1, above the last 0. These are the
#: intervals and coefficients R's ``nortest::lillie.test`` uses where Dallal-Wilkinson gives p > 0.1.
_STEPHENS_CUTS: tuple[tuple[float, tuple[float, ...]], ...] = (
    (0.5, (2.76773, -19.828315, 80.709644, -138.55152, 81.218052)),
    (0.9, (-4.901232, 40.662806, -97.490286, 94.029866, -32.355711)),
    (1.31, (6.198765, -19.558097, 23.186922, -12.234627, 2.423045)),
)
_STEPHENS_P_ONE_BELOW = 0.302


def _stephens_p(d: float, n: int) -> float:
    """The Lilliefors p value from Stephens' modified statistic (see :data:`_STEPHENS_CUTS`)."""
    modified = (math.sqrt(n) - 0.01 + 0.85 / math.sqrt(n)) * d
    if modified <= _STEPHENS_P_ONE_BELOW:
        return 1.0
    for cut, coefficients in _STEPHENS_CUTS:
        if modified <= cut:
            return float(sum(c * modified**k for k, c in enumerate(coefficients)))
    return 0.0


def lilliefors_p(d: float, n: int) -> float:
    """The p value of a Lilliefors statistic ``d`` from ``n`` values, as R's
    ``nortest::lillie.test``: Dallal & Wilkinson (1986) where that gives p ≤ 0.1 (the range it
    was fitted for), else Stephens' (1974) modified-statistic formula."""
    p = _dallal_wilkinson_p(d, n)
    return p if p <= 0.1 else _stephens_p(d, n)


def ks_lilliefors(values: Sequence[float]) -> NormalityResult:
    """Kolmogorov-Smirnov normality test with the Lilliefors correction, as SPSS's EXAMINE and R's
    ``nortest::lillie.test``.

    D is the largest distance between the empirical CDF and the normal CDF with the sample's mean
    and SD (n − 1). p is R's over the whole range (:func:`lilliefors_p`): Dallal-Wilkinson below
    0.1, Stephens' formula above; the same as SPSS's below 0.2, where SPSS prints ``.200*`` (a
    lower bound) for anything larger. Needs at least 4 values (R asks for 5).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n < 4:
        raise CrcInputError(f"The Kolmogorov-Smirnov test needs at least 4 values (got {n}).")
    sd = x.std(ddof=1)
    if sd == 0:
        raise CrcInputError("The Kolmogorov-Smirnov test needs values that are not all equal.")
    cdf = stats.norm.cdf((x - x.mean()) / sd)
    steps = np.arange(1, n + 1) / n
    d = float(max(np.max(steps - cdf), np.max(cdf - (steps - 1.0 / n))))
    return NormalityResult("Kolmogorov-Smirnov (Lilliefors)", d, lilliefors_p(d, n))


def shapiro_wilk(values: Sequence[float]) -> NormalityResult:
    """Shapiro-Wilk W (Royston's algorithm, as SPSS and R's ``shapiro.test``). Needs 3 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 3:
        raise CrcInputError(f"The Shapiro-Wilk test needs at least 3 values (got {x.size}).")
    w, p = stats.shapiro(x)
    return NormalityResult("Shapiro-Wilk", float(w), float(p))


def levene_mean(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Levene's test for equal variances centred on the mean, as SPSS's T-TEST prints it (R
    ``car::leveneTest(center = mean)``): the one-way ANOVA F of the absolute deviations from each
    group's mean. Written out rather than through ``scipy.stats.levene``, whose input checks cost
    more than the test on a 27-variable Table 1; tests hold it to scipy and R."""
    groups = [np.abs(g - g.mean()) for g in (np.asarray(a, float), np.asarray(b, float))]
    n = np.array([g.size for g in groups], dtype=float)
    means = np.array([g.mean() for g in groups])
    grand = float(np.concatenate(groups).mean())
    between = float(np.sum(n * (means - grand) ** 2))
    within = float(sum(np.sum((g - m) ** 2) for g, m in zip(groups, means)))
    df_between, df_within = len(groups) - 1, n.sum() - len(groups)
    if within == 0:
        return TestResult("Levene (mean)", math.inf if between > 0 else math.nan, 0.0 if between > 0 else math.nan)
    f = (between / df_between) / (within / df_within)
    return TestResult("Levene (mean)", float(f), float(special.fdtrc(df_between, df_within, f)))


def t_test(a: Sequence[float], b: Sequence[float], equal_var: bool) -> TestResult:
    """Independent-samples t-test, group ``a`` minus group ``b``: Student's or Welch's."""
    t, p = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=equal_var)
    return TestResult(T_STUDENT if equal_var else T_WELCH, float(t), float(p))


def mann_whitney_z(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Mann-Whitney U as SPSS reports it: Z from the smaller U, tie-corrected, no continuity
    correction; two-sided asymptotic p. Z is 0 when every value is tied."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = a.size, b.size
    n = n1 + n2
    ranks = stats.rankdata(np.concatenate([a, b]))
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    u = min(u1, n1 * n2 - u1)
    _, tie_counts = np.unique(np.concatenate([a, b]), return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(float) ** 3 - tie_counts))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:
        return TestResult(MANN_WHITNEY, 0.0, 1.0)
    z = (u - n1 * n2 / 2.0) / math.sqrt(variance)
    return TestResult(MANN_WHITNEY, float(z), float(min(1.0, 2.0 * stats.norm.cdf(z))))


def chi_square_or_fisher(table: np.ndarray, force: str | None = None) -> tuple[TestResult, str]:
    """Pearson χ² without continuity correction; Fisher's exact test for a 2×2 table with an
    expected count below 5 (or when forced). Returns the result and why that test was used."""
    table = np.asarray(table, dtype=float)
    expected = stats.contingency.expected_freq(table)
    small = int((expected < 5).sum())
    is_2x2 = table.shape == (2, 2)
    if force == FISHER or (force is None and is_2x2 and small):
        if not is_2x2:
            raise CrcInputError("Fisher's exact test is available for 2×2 tables only.")
        _, p = stats.fisher_exact(table)
        why = "forced by the user" if force else f"{small} of 4 expected counts < 5"
        return TestResult(FISHER, math.nan, float(p)), why
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    why = f"df = {dof}; minimum expected count {expected.min():.1f}"
    if small:
        why += f"; {small} of {table.size} cells with expected count < 5 (interpret with care)"
    return TestResult(CHI_SQUARE, float(chi2), float(p)), why


def expected_below_five(table: np.ndarray) -> int:
    """Cells of a contingency table whose expected count is below 5 (SPSS's footnote)."""
    return int((stats.contingency.expected_freq(np.asarray(table, dtype=float)) < 5).sum())


def spss_quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, Q1 and Q3 by SPSS's default weighted average at (n + 1)p (R ``type = 6``)."""
    x = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(x, [25, 50, 75], method="weibull")
    return float(median), float(q1), float(q3)


def smd_continuous(a: Sequence[float], b: Sequence[float]) -> float:
    """The standardised mean difference of a continuous variable, as R ``tableone::ExtractSmd``:
    |mean(a) − mean(b)| / sqrt((s_a² + s_b²) / 2), each SD with n − 1 (Yang & Dalton 2012, eq. 1;
    Austin 2009). 0 when both groups are constant."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    return float(abs(a.mean() - b.mean()) / pooled) if pooled > 0 else 0.0


def smd_categorical(counts_a: Sequence[float], counts_b: Sequence[float]) -> float:
    """The SMD of a binary or categorical variable from its counts per level in the two groups:
    Yang & Dalton's (2012, SAS Global Forum paper 335) multi-category form, as R ``tableone``:
    sqrt((p_a − p_b)ᵀ S⁻¹ (p_a − p_b)), with p the proportions of every level but the first and S
    the mean of the two groups' multinomial covariance matrices (diag(p) − p pᵀ); for two levels
    this is the usual |p_a − p_b| / sqrt((p_a(1 − p_a) + p_b(1 − p_b)) / 2). A generalised inverse
    keeps a level absent from both groups from making S singular."""
    pa = np.asarray(counts_a, float) / np.sum(counts_a)
    pb = np.asarray(counts_b, float) / np.sum(counts_b)
    if pa.size < 2:
        return 0.0
    diff = (pa - pb)[1:]
    sa = np.diag(pa[1:]) - np.outer(pa[1:], pa[1:])
    sb = np.diag(pb[1:]) - np.outer(pb[1:], pb[1:])
    pooled = (sa + sb) / 2.0
    value = float(diff @ np.linalg.pinv(pooled) @ diff)
    return math.sqrt(max(value, 0.0))


# ---------------------------------------------------------------------------------------------
# Table 1


@dataclass(frozen=True)
class TableOneOptions(JsonConfig):
    """How :func:`table_one` decides and prints; the paper's choices are the defaults.

    ``unequal_variance``: the test for normal data whose variances differ (Levene p < alpha):
    ``mann-whitney`` (the paper's Methods) or ``welch``. ``p_style``: ``paper`` (0.166, < 0.001)
    or ``spss`` (.166, .000).
    """

    normality: str = "ks"  # "ks" (Kolmogorov-Smirnov, Lilliefors) or "shapiro"
    alpha: float = 0.05
    decimals: int = 2
    smd: bool = False
    force_test: Mapping[str, str] = field(default_factory=dict)
    unequal_variance: str = "mann-whitney"
    p_style: str = "paper"

    def __post_init__(self) -> None:
        if self.normality not in ("ks", "shapiro"):
            raise CrcInputError(f"Normality test must be 'ks' or 'shapiro' (got {self.normality!r}).")
        if not 0 < self.alpha < 1:
            raise CrcInputError(f"alpha must lie between 0 and 1 (got {self.alpha}).")
        if self.unequal_variance not in UNEQUAL_VARIANCE_TESTS:
            raise CrcInputError(
                f"For unequal variances choose {' or '.join(UNEQUAL_VARIANCE_TESTS)} (got {self.unequal_variance!r})."
            )
        if self.p_style not in P_STYLES:
            raise CrcInputError(f"P values are printed in the {' or '.join(P_STYLES)} style (got {self.p_style!r}).")
        for variable, test in self.force_test.items():
            if test not in FORCEABLE_TESTS:
                raise CrcInputError(
                    f"Unknown test {test!r} for {variable}; choose one of {', '.join(FORCEABLE_TESTS)}."
                )

    def to_dict(self) -> dict:
        values = super().to_dict()
        values["force_test"] = dict(self.force_test)
        return values


def detect_kind(series: pd.Series) -> str:
    """Continuous or categorical for Table 1, by the project's one rule
    (:func:`crc_core.variables.detect_variable_type`; ordinal variables are compared as categorical)."""
    return CONTINUOUS if detect_variable_type(series) == CONTINUOUS else CATEGORICAL


def group_order(series: pd.Series) -> list:
    """The two (or more) groups of a column in their default order: training before validation
    and external, whatever the spelling ("train"/"test", "Training"/"Validation"); else sorted."""
    present = list(pd.unique(series.dropna()))
    roles = [SPLIT_ALIASES.get(str(g).strip().lower()) for g in present]
    if all(roles) and len(set(roles)) == len(roles):
        return [g for _, g in sorted(zip(roles, present), key=lambda pair: SPLIT_VALUES.index(pair[0]))]
    try:
        return sorted(present)
    except TypeError:
        return sorted(present, key=str)


def _chosen_groups(series: pd.Series, group: str, groups: Sequence | None) -> list:
    present = list(pd.unique(series.dropna()))
    if groups is None:
        if len(present) != 2:
            found = ", ".join(f"{g} ({int((series == g).sum())})" for g in group_order(series)) or "none"
            raise CrcInputError(
                f"Table 1 compares two groups, but the column {group!r} has {len(present)}: {found}. "
                "Pick a column with two values, or name the two groups to compare."
            )
        return group_order(series)
    by_text = {str(g): g for g in present}
    chosen = [by_text[str(g)] for g in groups if str(g) in by_text]
    if len(chosen) != 2 or len(list(groups)) != 2:
        raise CrcInputError(
            f"Name two groups of the column {group!r} to compare, in the order to show them; it holds "
            f"{', '.join(map(str, present))} (asked for {', '.join(map(str, groups))})."
        )
    return chosen


def _format_number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def format_p(p: float, style: str = "paper") -> str:
    """A P value as printed: ``paper`` 0.166 and < 0.001; ``spss`` .166 and .000."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    if style == "spss":
        return f"{p:.3f}".lstrip("0") if p < 1 else "1.000"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_words(p: float) -> str:
    """A P value inside a sentence or a figure: "p 0.043", "p < 0.001", never "p 0.000" or
    "p 1.2e-05"; "p —" when it could not be computed."""
    if p is None or p != p:
        return "p —"
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def holm_adjusted(p_values: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjustment of one family of p values, as R ``p.adjust(p, "holm")``
    and statsmodels ``multipletests(p, method="holm")``: the i-th smallest of the m p values is
    multiplied by m − i + 1, kept at least as large as the one before it, and capped at 1. A NaN (a
    test that could not be run) is no member of the family and stays NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size:
        order = tested[np.argsort(p[tested], kind="stable")]
        scaled = (tested.size - np.arange(tested.size)) * p[order]
        adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


#: The words of a comparison that finds nothing: never "robust" or "the same", since a large p
#: with a wide CI rules out little (the CI says what it does rule out).
NO_EVIDENCE = "no evidence of a difference"
EVIDENCE = "evidence of a difference"


def difference_text(difference: float, low: float, high: float) -> str:
    """A difference with its 95% CI, signed, three decimals: "−0.012 (−0.051 to +0.027)"."""
    if difference != difference:
        return "—"
    return f"{difference:+.3f} ({low:+.3f} to {high:+.3f})"


def difference_verdict(p_adjusted: float, low: float, high: float, alpha: float = 0.05) -> str:
    """What a comparison shows, in words that claim no more than its numbers: "evidence of a
    difference" when the (Holm-)adjusted p is below ``alpha``; otherwise "no evidence of a
    difference", with the range of differences its CI still allows."""
    if p_adjusted != p_adjusted:
        return "—"
    if p_adjusted < alpha:
        return EVIDENCE
    return f"{NO_EVIDENCE} (its 95% CI allows {low:+.3f} to {high:+.3f})"


def _normality_note(label: str, result: NormalityResult | None, error: str | None) -> str:
    if error:
        return f"{label}: {error}"
    short = "KS" if result.method.startswith("Kolmogorov") else "SW"
    if result.p_is_lower_bound:
        return f"{label}: {short} p ≥ {result.p_value:.3f}"
    return f"{label}: {short} {p_words(result.p_value)}"


def _continuous_row(
    name: str, a: np.ndarray, b: np.ndarray, labels: list[str], missing: int, options: TableOneOptions
) -> _Row:
    decimals = options.decimals
    forced = options.force_test.get(name)
    row = _Row(name, "", ["", ""], missing=missing)
    if min(a.size, b.size) < 2:
        small = labels[0] if a.size < 2 else labels[1]
        row.cells = [_describe_skewed(v, decimals) if v.size else "–" for v in (a, b)]
        row.test, row.reason = NO_TEST, f"no test: {small} has fewer than 2 values"
        return row
    if np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]:
        row.cells = [_describe_skewed(v, decimals) for v in (a, b)]
        row.test, row.reason = NO_TEST, "no test: the variable is constant in both groups"
        return row
    if forced in ("chi2", "fisher"):
        raise CrcInputError(f"{name} is continuous; χ² and Fisher's test apply to categorical variables.")
    notes: list[str] = []
    failed: list[str] = []
    test_fn = ks_lilliefors if options.normality == "ks" else shapiro_wilk
    for label, values in zip(labels, (a, b)):
        try:
            result, error = test_fn(values), None
        except CrcInputError as exc:
            result, error = None, f"normality not testable ({exc})"
        notes.append(_normality_note(label, result, error))
        if result is None or result.p_value < options.alpha:
            failed.append(notes[-1])
    normal = not failed
    levene = levene_mean(a, b)
    equal_var = levene.p_value >= options.alpha
    notes.append(f"Levene {p_words(levene.p_value)}")
    if forced:
        wanted = FORCEABLE_TESTS.get(forced)
        test = wanted or (T_STUDENT if equal_var else T_WELCH)
        verdict = f"test forced to {forced}"
    elif not normal:
        test = MANN_WHITNEY
        verdict = "not normal in " + " and ".join(
            f"the {note.split(':')[0]} group ({note.split(': ', 1)[1]})" for note in failed
        )
    elif equal_var:
        test, verdict = T_STUDENT, "normal in both groups with equal variances"
    else:
        test = T_WELCH if options.unequal_variance == "welch" else MANN_WHITNEY
        verdict = f"normal in both groups but unequal variances (Levene {p_words(levene.p_value)})"
    if test in (T_STUDENT, T_WELCH):
        outcome = t_test(a, b, equal_var=test == T_STUDENT)
        row.cells = [f"{_format_number(v.mean(), decimals)} ± {_format_number(v.std(ddof=1), decimals)}" for v in (a, b)]
        row.level = "mean ± SD"
    else:
        outcome = mann_whitney_z(a, b)
        row.cells = [_describe_skewed(v, decimals) for v in (a, b)]
        row.level = "median (Q1, Q3)"
    row.reason = "; ".join(notes) + f" → {verdict} → {outcome.test}"
    row.test, row.statistic, row.p_value = outcome.test, outcome.statistic, outcome.p_value
    row.mark = FOOTNOTE_MARKS[outcome.test]
    if options.smd:
        row.smd = smd_continuous(a, b)
    return row


def _describe_skewed(values: np.ndarray, decimals: int) -> str:
    median, q1, q3 = spss_quartiles(values)
    return f"{_format_number(median, decimals)} ({_format_number(q1, decimals)}, {_format_number(q3, decimals)})"


def _categorical_rows(
    name: str, a: pd.Series, b: pd.Series, labels: list[str], missing: int, options: TableOneOptions
) -> list[_Row]:
    combined = pd.concat([a, b])
    if isinstance(a.dtype, pd.CategoricalDtype):  # a declared order wins
        levels = [c for c in a.cat.categories if (combined == c).any()]
    else:
        levels = sorted(pd.unique(combined), key=_level_key)
    counts = np.array([[int((a == level).sum()) for level in levels], [int((b == level).sum()) for level in levels]])
    header = _Row(name, "", ["", ""], missing=missing)
    forced = options.force_test.get(name)
    if forced in ("t", "student", "welch", "mann-whitney"):
        raise CrcInputError(f"{name} is categorical; t- and Mann-Whitney tests apply to continuous variables.")
    if min(a.size, b.size) < 2:
        small = labels[0] if a.size < 2 else labels[1]
        header.test, header.reason = NO_TEST, f"no test: {small} has fewer than 2 values"
    elif len(levels) < 2:
        header.test, header.reason = NO_TEST, "no test: the variable is constant in both groups"
    else:
        result, why = chi_square_or_fisher(counts.T, FORCEABLE_TESTS.get(forced) if forced else None)
        header.test, header.statistic, header.p_value = result.test, result.statistic, result.p_value
        header.mark, header.reason = FOOTNOTE_MARKS[result.test], why
        if result.test == CHI_SQUARE:
            header.sparse_cells = expected_below_five(counts.T)
        if options.smd:
            header.smd = smd_categorical(counts[0], counts[1])
    rows = [header]
    totals = counts.sum(axis=1)
    for j, level in enumerate(levels):
        cells = [
            f"{counts[g, j]} ({100.0 * counts[g, j] / totals[g]:.1f}%)" if totals[g] else "0"
            for g in range(2)
        ]
        rows.append(_Row(name, str(level), cells))
    return rows


def _level_key(level) -> tuple:
    """Numbers in order; text by the first number in it, so ``≤ 50 years`` < ``51-65 years`` <
    ``> 65 years`` and ``T1`` < ``T2``; text without numbers alphabetically, after."""
    if isinstance(level, (bool, np.bool_)):
        return (0, float(level), "")
    if isinstance(level, (int, float, np.integer, np.floating)):
        return (0, float(level), "")
    text = str(level)
    number = re.search(r"\d+(?:\.\d+)?", text)
    return (1, float(number.group()), text) if number else (2, 0.0, text)


def table_one(
    df: pd.DataFrame,
    group: str,
    variables: Iterable[str] | None = None,
    categorical: Iterable[str] | None = None,
    *,
    continuous: Iterable[str] | None = None,
    groups: Sequence | None = None,
    options: TableOneOptions | None = None,
) -> pd.DataFrame:
    """Table 1 comparing the two groups of ``df[group]`` (e.g. ``split``, or a binary label).

    ``variables`` default to every column but ``patient_id`` and ``group``; each is typed by
    :func:`detect_kind` unless listed in ``categorical`` or ``continuous``. ``groups`` orders
    the two groups (default: training first for split names, else sorted). Returns one row per
    continuous variable and, for a categorical one, a header row followed by one row per level,
    with columns ``variable``, ``level``, one column per group headed ``"<group> (n = N)"``,
    ``statistic`` (t, Z or χ²), ``test``, ``p_value``, then ``mark`` (footnote: see
    :data:`FOOTNOTES`), ``missing`` (values missing in the two groups), ``sparse_cells`` (χ²
    cells with an expected count below 5), ``reason`` (why this test: normality p per group,
    Levene p, expected counts) and, with ``options.smd``, ``smd``.
    """
    options = options or TableOneOptions()
    if group not in df.columns:
        raise CrcInputError(f"The group column {group!r} is not in the table (columns: {', '.join(map(str, df.columns))}).")
    order = _chosen_groups(df[group], group, groups)
    categorical_set, continuous_set = set(categorical or ()), set(continuous or ())
    both = categorical_set & continuous_set
    if both:
        raise CrcInputError(f"{', '.join(sorted(both))} cannot be both categorical and continuous.")
    if variables is None:
        variables = [c for c in df.columns if c not in (group, "patient_id")]
    variables = list(variables)
    absent = [v for v in variables if v not in df.columns]
    if absent:
        raise CrcInputError(f"Not in the table: {', '.join(absent)}.")
    in_group = [(df[group] == g).to_numpy() for g in order]
    # Split names speak for themselves; a label's 0/1 needs its name ("tsr_high = 1").
    named = [str(g) if isinstance(g, str) else f"{group} = {g}" for g in order]
    labels = [f"{name} (n = {int(part.sum())})" for name, part in zip(named, in_group)]
    rows: list[_Row] = []
    coded_missing: dict[str, dict] = {}
    dates: dict[str, str] = {}
    for name in variables:
        if name == group:
            continue
        if name not in categorical_set | continuous_set and detect_variable_type(df[name], name) == DATE:
            # An operation date is no baseline characteristic: 300 dates are not 300 categories.
            dates[name] = str(df[name].dropna().iloc[0]).strip()
            continue
        kind = (
            CATEGORICAL if name in categorical_set
            else CONTINUOUS if name in continuous_set
            else detect_kind(df[name])
        )
        column = df[name]
        reading = read_numbers(column)
        if reading.coded_missing.any() and (kind == CONTINUOUS or reading.numeric):
            # "n.d." in a lab column is a missing value, as the import reads it; said in a footnote.
            codes = column[reading.coded_missing.to_numpy()].astype(str).str.strip()
            coded_missing[name] = {"count": len(codes), "codes": list(dict.fromkeys(codes))}
            column = column.mask(reading.coded_missing)
        columns = [column[part] for part in in_group]
        missing = int(sum(c.isna().sum() for c in columns))
        if kind == CONTINUOUS:
            numeric = [pd.to_numeric(c, errors="coerce") for c in columns]
            words = [v for n, c in zip(numeric, columns) for v in c[n.isna() & c.notna()]]
            if words:
                shown = ", ".join(map(repr, list(dict.fromkeys(words))[:5]))
                raise CrcInputError(
                    f"Column {name!r} holds text where numbers are expected: {shown} ({len(words)} "
                    f"value{'s' if len(words) != 1 else ''}); correct the table, or mark it categorical."
                )
            values = [n.dropna().to_numpy(dtype=float) for n in numeric]
            rows.append(_continuous_row(name, values[0], values[1], [str(g) for g in order], missing, options))
        else:
            values = [c.dropna() for c in columns]
            rows.extend(_categorical_rows(name, values[0], values[1], [str(g) for g in order], missing, options))
    table = pd.DataFrame(
        {
            "variable": [r.variable for r in rows],
            "level": [r.level for r in rows],
            labels[0]: [r.cells[0] for r in rows],
            labels[1]: [r.cells[1] for r in rows],
            "statistic": [r.statistic for r in rows],
            "test": [r.test for r in rows],
            "p_value": [r.p_value for r in rows],
            "mark": [r.mark for r in rows],
            "missing": pd.array([r.missing for r in rows], dtype="Int64"),
            "sparse_cells": pd.array([r.sparse_cells if r.test == CHI_SQUARE else None for r in rows], dtype="Int64"),
            "reason": [r.reason for r in rows],
        }
    )
    if options.smd:
        table["smd"] = [r.smd for r in rows]
    table.attrs["groups"] = [str(g) for g in order]
    table.attrs["group_column"] = group
    table.attrs["missing_codes"] = coded_missing
    table.attrs["dates_left_out"] = dates
    # Plain values only: attrs travel with the frame into Arrow (st.dataframe) and pickles.
    table.attrs["options"] = options.to_dict()
    return table


LEVEL_ROWS = ("mean ± SD", "median (Q1, Q3)")


def journal_view(table: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """Table 1 as a manuscript prints it: variable (with its footnote mark) or indented level, the
    group columns, the statistic with its footnote mark(s) and the P value as text (in the style of
    the table's options), and — when any value is missing — the missing count per variable."""
    group_columns = [c for c in table.columns if "(n = " in str(c)]
    p_style = table.attrs.get("options", {}).get("p_style", "paper")
    out = pd.DataFrame()
    names = []
    for _, row in table.iterrows():
        if row["level"] and row["level"] not in LEVEL_ROWS:
            names.append(f"    {row['level']}")
        else:
            suffix = f", {row['level']}" if row["level"] else ""
            names.append(f"{row['variable']}{suffix}")
    out["Variable"] = names
    for column in group_columns:
        out[column] = table[column].to_numpy()
    sparse = table["sparse_cells"] if "sparse_cells" in table.columns else pd.Series([pd.NA] * len(table))
    # As the paper: the statistic to three decimals with the test's footnote mark after it.
    out["t/Z/χ² value"] = [
        ("" if pd.isna(v) else f"{v:.{decimals}f}") + SUPERSCRIPTS.get(mark, "")
        + (SUPERSCRIPTS[SPARSE_MARK] if not pd.isna(cells) and cells > 0 else "")
        for v, mark, cells in zip(table["statistic"], table["mark"], sparse)
    ]
    out["P value"] = [format_p(p, p_style) for p in table["p_value"]]
    if "smd" in table.columns:  # beside p: how large a difference is, where p says only whether chance explains it
        out["SMD"] = ["" if pd.isna(v) else f"{v:.3f}" for v in table["smd"]]
    if "missing" in table.columns and table["missing"].fillna(0).sum() > 0:
        out["Missing, n"] = ["" if pd.isna(m) else str(int(m)) for m in table["missing"]]
    return out


#: |SMD| below this is usually read as a negligible imbalance (Austin 2009).
SMD_NEGLIGIBLE = 0.1


def split_was_random(split, workspace=None) -> bool:
    """Whether the cohorts were drawn at random, so that Table 1's tests between them test nothing
    but chance: a saved split (:class:`crc_core.cohort.splits.SavedSplit`) of the seeded random
    method, or, with none saved, the sample's own split column (``crc-time sample`` draws it at
    random, as the paper's allocation); a column of the user's own tables says nothing of how it
    was drawn, so it is not taken for random."""
    config = getattr(split, "config", None)
    if config is not None:
        return getattr(config, "method", None) == "random"
    if workspace is None or not workspace.is_sample:
        return False
    import json

    try:
        built = json.loads(workspace.sample_json.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(built, dict) and not built.get("centre")  # a second centre is all external


def chance_note(table: pd.DataFrame, randomised: bool) -> str | None:
    """Table 1's sentence on multiplicity when its two groups were split at random: about 1 test in
    20 has p < 0.05 by chance alone, so the count expected is said beside the count found, and the
    SMD (shown beside p) is what says how large an imbalance is. None for groups not split at
    random (a label, a column of the user's), or without any test."""
    if not randomised:
        return None
    tested = table[(table["test"] != "") & (table["test"] != NO_TEST) & table["p_value"].notna()]
    if tested.empty:
        return None
    m, found = len(tested), int((tested["p_value"] < 0.05).sum())
    return (f"The two cohorts were split at random, so each of these {m} tests compares groups that differ by chance "
            f"alone: about 1 in 20 is \"significant\" (p < 0.05) by chance — about {m / 20:.1f} of {m} expected here, "
            f"{found} found. A small p here is no sign that the split went wrong; the standardised mean difference (SMD) "
            f"beside it says how large each imbalance is (below {SMD_NEGLIGIBLE} is usually read as negligible).")


def used_footnotes(table: pd.DataFrame) -> list[str]:
    """The footnotes of the marks that occur in ``table``, in mark order, then how many
    missing-value codes each variable had, then the date columns left out, then the sparse-table
    note naming each χ² with expected counts below 5."""
    marks = sorted({m for m in table["mark"] if m})
    notes = [f"{m} {FOOTNOTES[m]}" for m in marks]
    for name, coded in table.attrs.get("missing_codes", {}).items():
        count = coded["count"]
        notes.append(
            f"{name}: {count} cell{'s' if count != 1 else ''} with a missing-value code "
            f"({', '.join(map(repr, coded['codes']))}) counted as missing."
        )
    for name, example in table.attrs.get("dates_left_out", {}).items():
        notes.append(f"{name} holds dates (e.g. {example}) and is left out; mark it categorical or continuous to compare it.")
    if "sparse_cells" in table.columns:
        sparse = table[table["sparse_cells"].fillna(0) > 0]
        if len(sparse):
            levels = table.groupby("variable", sort=False)["level"].apply(lambda s: int((s != "").sum()))
            described = "; ".join(
                f"{row.variable}: {int(row.sparse_cells)} of {2 * int(levels[row.variable])} cells"
                for row in sparse.itertuples()
            )
            notes.append(
                f"{SPARSE_MARK} χ² on a table with expected counts below 5 ({described}); interpret with care."
            )
    return notes
