"""How many patients an external validation of a binary-outcome model needs: the criteria of Riley
et al. (2021) as the ``pmvalsampsize`` package computes them, from anticipated values or from a
run's own validation predictions (:func:`linear_predictor_summary`).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary, logit
from crc_core.metrics.roc import auc_ci

#: The 95% multiplier Riley et al. and pmvalsampsize use (1.96, not norm.ppf(0.975)).
Z = 1.96
#: pmvalsampsize's ``oeseincrement`` and ``nbseincrement``: the SEs of O/E and of the standardised
#: net benefit are searched on this grid, so the n it reports follows the grid, not the exact root.
SE_STEP = 1e-4
#: pmvalsampsize's defaults for the simulated linear predictor (``simobs``, ``seed``).
SIMULATED_PATIENTS = 1_000_000
SEED = 123456

OE = "precise O/E (observed / expected events)"
SLOPE = "precise calibration slope"
CSTATISTIC = "precise C-statistic"
NET_BENEFIT = "precise standardised net benefit"
#: The last row: the largest n of the criteria, the number of patients to recruit.
LARGEST = "largest"


def _number(name: str, value, *, low: float | None = None, high: float | None = None, example: str = "") -> float:
    """``value`` as a float, refused by name when it is not a finite number strictly inside (low, high)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise CrcInputError(f"The {name} must be a number{example}; got {value!r}.")
    value = float(value)
    if (low is not None and value <= low) or (high is not None and value >= high):
        bounds = (f"between {low:g} and {high:g}" if low is not None and high is not None
                  else f"above {low:g}" if low is not None else f"below {high:g}")
        raise CrcInputError(f"The {name} must lie {bounds}{example}; got {value!r}.")
    return value


def _se_on_grid(width_of_se, target_width: float, exact_se: float) -> float:
    """The smallest multiple of :data:`SE_STEP` whose CI width reaches ``target_width``, as
    pmvalsampsize's search (it steps the SE up from 0 until the width is no longer below the target)."""
    k = max(1, math.floor(exact_se / SE_STEP))
    while width_of_se(k * SE_STEP) < target_width:
        k += 1
    while k > 1 and width_of_se((k - 1) * SE_STEP) >= target_width:
        k -= 1
    return k * SE_STEP


def _oe_criterion(prevalence: float, oe: float, ci_width: float) -> tuple[int, float]:
    """Riley et al. criterion 1: SE(ln O/E) giving an O/E interval exp(ln O/E ± 1.96 SE) of
    ``ci_width``, then n = (1 − φ) / (φ SE²)."""
    def width(se: float) -> float:
        return math.exp(math.log(oe) + Z * se) - math.exp(math.log(oe) - Z * se)
    se = _se_on_grid(width, ci_width, math.asinh(ci_width / (2 * oe)) / Z)
    return math.ceil((1 - prevalence) / (prevalence * se * se)), se


def _slope_criterion(lp: np.ndarray, ci_width: float) -> tuple[int, float]:
    """Riley et al. criterion 2: the calibration model logit(p) = 0 + 1·LP, its Fisher information
    per patient (I00, I01, I11, averaged over the simulated LP), and n = I00 / (SE² |I|) for
    SE = width / (2 × 1.96). pmvalsampsize fixes the anticipated slope at 1 here whatever its
    ``cslope``, so this function takes none."""
    risk = special.expit(lp)
    weight = risk * (1 - risk)
    i00, i01, i11 = weight.mean(), (lp * weight).mean(), (lp * lp * weight).mean()
    se = ci_width / (2 * Z)
    return math.ceil(i00 / (se * se * (i00 * i11 - i01 * i01))), se


def _cstatistic_criterion(cstatistic: float, prevalence: float, ci_width: float) -> tuple[int, float]:
    """Riley et al. criterion 3: the smallest n whose C-statistic SE (Newcombe's approximation,
    their equation 8) gives a CI no wider than ``ci_width``; pmvalsampsize searches n = 1, 2, …"""
    c, phi = cstatistic, prevalence
    k = (1 - c) / (2 - c) + c / (1 + c)

    def se(n: int) -> float:
        return math.sqrt(c * (1 - c) * (1 + (n / 2 - 1) * k) / (n * n * phi * (1 - phi)))

    # 2·1.96·SE(n) ≤ width is a quadratic in n: a n² − b n − d ≥ 0; start at its root, then settle.
    a, b, d = (ci_width / (2 * Z)) ** 2 * phi * (1 - phi), c * (1 - c) * k / 2, c * (1 - c) * (1 - k)
    n = max(1, math.ceil((b + math.sqrt(b * b + 4 * a * d)) / (2 * a)))
    while 2 * Z * se(n) > ci_width:
        n += 1
    while n > 1 and 2 * Z * se(n - 1) <= ci_width:
        n -= 1
    return n, se(n)


def _net_benefit_criterion(sensitivity: float, specificity: float, prevalence: float, threshold: float,
                           ci_width: float) -> tuple[int, float]:
    """Riley et al. criterion 4: SE of the standardised net benefit for a CI of ``ci_width`` (on
    pmvalsampsize's grid, then rounded to three decimals as it does), and n from their equation 13
    with w = (1 − φ)/φ · t/(1 − t)."""
    se = round(_se_on_grid(lambda s: 2 * Z * s, ci_width, ci_width / (2 * Z)), 3)
    phi, w = prevalence, (1 - prevalence) / prevalence * threshold / (1 - threshold)
    variance_one = (sensitivity * (1 - sensitivity) / phi + w * w * specificity * (1 - specificity) / (1 - phi)
                    + w * w * (1 - specificity) ** 2 / (phi * (1 - phi)))
    return math.ceil(variance_one / (se * se)), se


def _simulated_lp(rng: np.random.RandomState, size: int, cstatistic: float, prevalence: float,
                  lp_mean: float | None, lp_sd: float | None, lp_beta: tuple[float, float] | None,
                  nonevent_mean: float | None) -> tuple[np.ndarray, str]:
    """``size`` linear predictors drawn from the chosen distribution, and that distribution in words."""
    if lp_mean is not None:
        # standard normals scaled and shifted: the draws scipy's norm.rvs makes from the same stream.
        return rng.standard_normal(size) * lp_sd + lp_mean, f"normal linear predictor, mean {lp_mean:.3g}, SD {lp_sd:.3g}"
    if lp_beta is not None:
        risk = rng.beta(lp_beta[0], lp_beta[1], size)
        return np.log(risk / (1 - risk)), f"predicted risks beta({lp_beta[0]:g}, {lp_beta[1]:g})"
    # Binormal with a common variance: C = Φ(σ/√2) gives σ² = 2 Φ⁻¹(C)²; events' mean sits σ² above
    # the non-events', which makes the LP the true log-odds (slope 1); then the non-events' mean
    # logit(φ) − σ²/2 makes the mean risk equal the prevalence.
    variance = 2 * stats.norm.ppf(cstatistic) ** 2
    if nonevent_mean is None:
        nonevent_mean = float(special.logit(prevalence) - variance / 2)
    event = rng.binomial(1, prevalence, size).astype(bool)
    nonevents = rng.standard_normal(size) * math.sqrt(variance) + nonevent_mean
    events = rng.standard_normal(size) * math.sqrt(variance) + nonevent_mean + variance
    return (np.where(event, events, nonevents),
            f"binormal from the C-statistic, common SD {math.sqrt(variance):.4g}, non-event mean {nonevent_mean:.4g}")


def _simulated_accuracy(rng: np.random.RandomState, lp: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity at ``threshold`` in the simulated cohort: outcomes drawn from
    the LP's risks, a patient positive when the risk is above the threshold; both rounded to three
    decimals (specificity as 1 − the rounded false-positive rate), as pmvalsampsize does."""
    risk = special.expit(lp)
    outcome = rng.binomial(1, risk).astype(bool)
    positive = risk > threshold
    return float(np.round(positive[outcome].mean(), 3)), float(1 - np.round(positive[~outcome].mean(), 3))


def validation_sample_size(cstatistic: float, prevalence: float, lp_mean: float | None = None,
                           lp_sd: float | None = None, *, threshold: float | None = None, oe_ci_width: float = 0.2,
                           slope_ci_width: float = 0.2, cstat_ci_width: float = 0.1,
                           sensitivity: float | None = None, specificity: float | None = None,
                           nb_ci_width: float = 0.2, oe: float = 1.0, lp_beta: tuple[float, float] | None = None,
                           lp_nonevent_mean: float | None = None, simulated_patients: int = SIMULATED_PATIENTS,
                           seed: int = SEED) -> pd.DataFrame:
    """The minimum number of patients for externally validating a binary-outcome prediction model
    (Riley et al. 2021, Stat Med 40:4230), as ``pmvalsampsize.pmvalsampsize(type="b", ...)`` 0.2.1
    (and the R package of the same name) computes it, criterion by criterion:

    1. precise O/E: the 95% CI of observed/expected events no wider than ``oe_ci_width`` around the
       anticipated ``oe`` (``oeciwidth``, ``oe``);
    2. precise calibration slope: its CI no wider than ``slope_ci_width`` (``csciwidth``);
    3. precise C-statistic: its CI no wider than ``cstat_ci_width`` (``cstatciwidth``);
    4. with a ``threshold``, precise standardised net benefit: its CI no wider than
       ``nb_ci_width`` (``nbciwidth``), from the anticipated ``sensitivity`` and ``specificity`` at
       that threshold, or, without them, from those of the simulated cohort.

    Criterion 2 (and 4 without sensitivity and specificity) averages over ``simulated_patients``
    linear predictors (LP, the log-odds of the predicted risk) drawn from one distribution:

    * ``lp_mean`` and ``lp_sd``: normal (pmvalsampsize's ``lpnormal=(mean, sd)``);
    * ``lp_beta=(alpha, beta)``: the predicted risks beta-distributed (``lpbeta``);
    * neither: binormal from the C-statistic, events and non-events normal with a common variance
      (``lpcstat``). The non-events' mean is ``lp_nonevent_mean`` as given, or by default
      logit(prevalence) − Φ⁻¹(C)², the value at which the mean risk equals the prevalence.
      pmvalsampsize instead takes ``lpcstat`` as a start and steps it by 0.1 until a simulated
      prevalence is within 0.0005 of the target, so its n differs from ours by a few percent.

    The draws come from ``numpy.random.RandomState(seed)``, the legacy Mersenne Twister stream that
    pmvalsampsize seeds with ``numpy.random.seed``; with the same seed and ``simulated_patients``
    (its ``seed``, ``simobs``) the normal and beta options give its n exactly. As it does, the 95%
    multiplier is 1.96, the SEs of O/E and of the net benefit are searched on a 0.0001 grid (the
    latter rounded to three decimals), simulated patients are positive when their risk is above
    the threshold, and their sensitivity and specificity are rounded to three decimals.

    Not supported: pmvalsampsize's continuous and survival outcomes, its ``cslope`` (it does not
    change n), its step and tolerance options, and its additional accuracy, precision, NPV and F1
    sample sizes (``verbose``).

    Returns one row per criterion — ``criterion``, ``n`` (patients, rounded up), ``events``
    (n × prevalence, as pmvalsampsize's ``events``), ``se`` (the standard error the criterion
    targets: of ln O/E, the slope, the C-statistic or the standardised net benefit),
    ``target_ci_width`` — then a row ``criterion == "largest"`` (:data:`LARGEST`) with the largest
    n, the sample size to recruit. Every row also carries the inputs, so anyone can recompute it:
    ``cstatistic``, ``prevalence``, ``oe``, ``lp_mean``, ``lp_sd`` (NaN unless given),
    ``lp_distribution`` (in words, with the simulated patients and seed), ``threshold``,
    ``sensitivity`` and ``specificity`` (those used, NaN without a threshold).

    >>> table = validation_sample_size(0.8, 0.018, -5, 2.5, oe_ci_width=1)
    >>> table.set_index("criterion")["n"].to_dict()
    {'precise O/E (observed / expected events)': 905, 'precise calibration slope': 4544, 'precise C-statistic': 4252, 'largest': 4544}
    """
    cstatistic = _number("anticipated C-statistic", cstatistic, low=0.5, high=1,
                         example=" (above 0.5, better than chance, and below 1), e.g. 0.75")
    prevalence = _number("anticipated prevalence (the share of patients with the outcome)", prevalence, low=0, high=1,
                         example=", e.g. 0.3 for 30%")
    oe = _number("anticipated O/E (observed / expected events)", oe, low=0, example=", e.g. 1")
    widths = {name: _number(f"target CI width of the {label}", value, low=0, example=", e.g. 0.2")
              for name, label, value in (("oe", "O/E", oe_ci_width), ("slope", "calibration slope", slope_ci_width),
                                         ("cstat", "C-statistic", cstat_ci_width),
                                         ("nb", "standardised net benefit", nb_ci_width))}
    if (lp_mean is None) != (lp_sd is None):
        given = "mean" if lp_sd is None else "SD"
        raise CrcInputError(f"Give both the mean and the SD of the linear predictor, or neither; got only the {given}.")
    if lp_mean is not None:
        lp_mean = _number("mean of the linear predictor (log-odds)", lp_mean, example=", e.g. -1.2")
        lp_sd = _number("SD of the linear predictor (log-odds)", lp_sd, low=0, example=", e.g. 1.5")
    chosen = [name for name, value in (("lp_mean and lp_sd", lp_mean), ("lp_beta", lp_beta),
                                       ("lp_nonevent_mean", lp_nonevent_mean)) if value is not None]
    if len(chosen) > 1:
        raise CrcInputError(f"Give one distribution of the linear predictor; got {' and '.join(chosen)}.")
    if lp_beta is not None:
        if isinstance(lp_beta, (str, bytes)) or not isinstance(lp_beta, Sequence) or len(lp_beta) != 2:
            raise CrcInputError(f"lp_beta must be the two parameters (alpha, beta) of the predicted risks' beta "
                                f"distribution, e.g. (1.33, 1.75); got {lp_beta!r}.")
        lp_beta = (_number("beta distribution's alpha", lp_beta[0], low=0, example=", e.g. 1.33"),
                   _number("beta distribution's beta", lp_beta[1], low=0, example=", e.g. 1.75"))
    if lp_nonevent_mean is not None:
        lp_nonevent_mean = _number("mean linear predictor of the non-events", lp_nonevent_mean, example=", e.g. -4.7")
    if threshold is not None:
        threshold = _number("risk threshold for the net benefit", threshold, low=0, high=1, example=", e.g. 0.2")
    if (sensitivity is None) != (specificity is None):
        raise CrcInputError("Give both the anticipated sensitivity and specificity at the threshold, or neither "
                            "(then they come from the simulated cohort).")
    if sensitivity is not None:
        if threshold is None:
            raise CrcInputError("Sensitivity and specificity are used for the net benefit only: give its risk "
                                "threshold too, e.g. threshold=0.2.")
        sensitivity = _number("anticipated sensitivity", sensitivity, low=0, high=1, example=", e.g. 0.8")
        specificity = _number("anticipated specificity", specificity, low=0, high=1, example=", e.g. 0.7")
    if isinstance(simulated_patients, bool) or not isinstance(simulated_patients, (int, np.integer)) \
            or simulated_patients < 1000:
        raise CrcInputError(f"The number of simulated patients must be a whole number of at least 1000 "
                            f"(default {SIMULATED_PATIENTS:,}); got {simulated_patients!r}.")

    rng = np.random.RandomState(seed)
    lp, distribution = _simulated_lp(rng, int(simulated_patients), cstatistic, prevalence, lp_mean, lp_sd, lp_beta,
                                     lp_nonevent_mean)
    rows = [(OE, *_oe_criterion(prevalence, oe, widths["oe"]), widths["oe"]),
            (SLOPE, *_slope_criterion(lp, widths["slope"]), widths["slope"]),
            (CSTATISTIC, *_cstatistic_criterion(cstatistic, prevalence, widths["cstat"]), widths["cstat"])]
    if threshold is not None:
        if sensitivity is None:
            sensitivity, specificity = _simulated_accuracy(rng, lp, threshold)
        rows.append((NET_BENEFIT, *_net_benefit_criterion(sensitivity, specificity, prevalence, threshold,
                                                           widths["nb"]), widths["nb"]))
    table = pd.DataFrame(rows, columns=["criterion", "n", "se", "target_ci_width"])
    table.loc[len(table)] = [LARGEST, int(table["n"].max()), math.nan, math.nan]
    table["n"] = table["n"].astype(int)
    table.insert(2, "events", table["n"] * prevalence)
    nan = math.nan
    inputs = {"cstatistic": cstatistic, "prevalence": prevalence, "oe": oe,
              "lp_mean": nan if lp_mean is None else lp_mean, "lp_sd": nan if lp_sd is None else lp_sd,
              "lp_distribution": f"{distribution}; {simulated_patients:,} simulated patients, seed {seed}",
              "threshold": nan if threshold is None else threshold,
              "sensitivity": nan if sensitivity is None else sensitivity,
              "specificity": nan if specificity is None else specificity}
    return table.assign(**inputs)


def linear_predictor_summary(y_true: Sequence, y_prob: Sequence) -> dict[str, float]:
    """What :func:`validation_sample_size` needs, from a model's predictions in a validation cohort:
    ``cstatistic`` (the AUC, as ``pROC::auc``), ``prevalence`` (share of patients with the outcome),
    and ``lp_mean`` and ``lp_sd`` (mean and SD, n − 1 as R's ``sd``, of the linear predictor
    logit(p)). The keys are exactly those arguments, so ``validation_sample_size(**summary)``
    works. A probability of exactly 0 or 1 has an infinite logit; :func:`crc_core.metrics.inputs.logit`
    clips it to 1e-12 from the edge (±27.6), which widens the SD: check such predictions first.

    >>> linear_predictor_summary([0, 0, 1, 1], [0.2, 0.4, 0.3, 0.8])["cstatistic"]
    0.75
    """
    y, prob = check_binary(y_true, y_prob, what="the validation cohort", need_both=False)
    events = int(y.sum())
    if events == 0 or events == y.size:
        kind = "no patients with the outcome" if events == 0 else "no patients without the outcome"
        raise CrcInputError(f"The validation cohort has {kind} ({events} of {y.size}): its C-statistic and "
                            f"prevalence are undefined. Use a cohort with both outcomes.")
    lp = logit(prob)
    return {"cstatistic": auc_ci(y, prob)[0], "prevalence": events / y.size,
            "lp_mean": float(lp.mean()), "lp_sd": float(lp.std(ddof=1))}
