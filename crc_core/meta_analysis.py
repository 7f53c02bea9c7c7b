"""One model's AUC pooled across cohorts or centres: DerSimonian-Laird random effects on the logit
of each cohort's AUC, from the run store's per-patient predictions (``y_true``, ``prob`` and a
cohort column, as :meth:`crc_core.runs.RunStore.predictions` gives them).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special, stats

from crc_core.errors import CrcInputError
from crc_core.evaluation import auc_variance, check_binary

POOLED = "pooled (random effects)"


def cohort_aucs(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95) -> pd.DataFrame:
    """Each cohort's AUC on the scale it is pooled on, one row per value of ``by`` in order of
    appearance: ``cohort``, ``n``, ``n_positive``, ``auc``, ``variance`` (DeLong's, untruncated, as
    ``pROC::var``), ``logit_auc``, ``logit_variance`` (delta method: var / (AUC (1 − AUC))²), and
    ``low``/``high``, the ``level`` CI on the logit scale back-transformed (inside (0, 1), so it
    can differ slightly from :func:`crc_core.evaluation.auc_ci`'s symmetric interval).

    ``predictions`` has one row per patient: ``y_true`` (0/1), ``prob`` and the ``by`` column;
    patients without an outcome are left out, as :func:`crc_core.evaluation.grouped_auc` does.
    A cohort needs two patients of each class, and an AUC strictly between 0 and 1 (a perfect
    AUC has an infinite logit and no variance)."""
    if not 0 < level < 1:
        raise CrcInputError(f"The CI level must lie between 0 and 1, e.g. 0.95; got {level!r}.")
    missing = [c for c in (by, "y_true", "prob") if c not in predictions.columns]
    if missing:
        raise CrcInputError(f"The predictions lack the column(s) {', '.join(missing)}: give one row per patient with "
                            f"'{by}', 'y_true' (0/1) and 'prob'.")
    if "run_id" in predictions.columns and predictions["run_id"].nunique() > 1:
        runs = ", ".join(map(str, pd.unique(predictions["run_id"])[:4]))
        raise CrcInputError(f"The predictions hold {predictions['run_id'].nunique()} runs ({runs}): pool one model's "
                            f"AUC at a time, so keep the rows of one run.")
    labelled = predictions[predictions["y_true"].notna()]
    z = stats.norm.ppf(0.5 + level / 2)
    rows = []
    for name in pd.unique(labelled[by]):
        group = labelled[labelled[by] == name]
        what = f"{by} {name!r}"
        y, prob = check_binary(group["y_true"].to_numpy(), group["prob"].to_numpy(), what=what)
        cases = int(y.sum())
        if min(cases, y.size - cases) < 2:
            raise CrcInputError(f"{what} has {min(cases, y.size - cases)} patient(s) in one class: its DeLong variance "
                                f"needs at least two of each. Leave it out of the pooling or merge it with another.")
        auc, variance = auc_variance(y, prob)
        if not 0 < auc < 1 or variance <= 0:
            raise CrcInputError(f"{what} has AUC {auc:.3f}: the model separates its classes perfectly, so the AUC's "
                                f"logit is infinite and it cannot be pooled. Report it on its own.")
        logit_auc, logit_variance = math.log(auc / (1 - auc)), variance / (auc * (1 - auc)) ** 2
        half = z * math.sqrt(logit_variance)
        rows.append({"cohort": name, "n": int(y.size), "n_positive": cases, "auc": auc, "variance": variance,
                     "logit_auc": logit_auc, "logit_variance": logit_variance,
                     "low": float(special.expit(logit_auc - half)), "high": float(special.expit(logit_auc + half))})
    return pd.DataFrame(rows, columns=["cohort", "n", "n_positive", "auc", "variance", "logit_auc",
                                       "logit_variance", "low", "high"])


def _pool(effects: np.ndarray, variances: np.ndarray) -> dict[str, float]:
    """Fixed-effect (inverse variance) and DerSimonian-Laird estimates of one effect per study."""
    weights = 1 / variances
    fixed = float((weights * effects).sum() / weights.sum())
    q = float((weights * (effects - fixed) ** 2).sum())
    df = effects.size - 1
    c = weights.sum() - (weights ** 2).sum() / weights.sum()
    tau2 = max(0.0, float((q - df) / c))
    weights_re = 1 / (variances + tau2)
    return {"fixed": fixed, "fixed_se": float(1 / math.sqrt(weights.sum())),
            "random": float((weights_re * effects).sum() / weights_re.sum()),
            "random_se": float(1 / math.sqrt(weights_re.sum())), "tau2": tau2, "q": q, "q_df": df,
            "q_p": float(stats.chi2.sf(q, df)), "i2_percent": 100 * max(0.0, (q - df) / q) if q > 0 else 0.0,
            "weights_percent": 100 * weights_re / weights_re.sum()}


def pooled_auc(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95) -> dict:
    """One model's AUC pooled over the cohorts (or centres, folds: any column ``by``) of
    ``predictions`` (see :func:`cohort_aucs`): random effects by DerSimonian and Laird (1986) on
    logit(AUC) with the DeLong variance carried over by the delta method, as
    ``metafor::rma(yi = logit_auc, vi = logit_variance, method = "DL")`` and statsmodels'
    ``combine_effects(effects, variances, method_re="dl")`` — except that τ² and I² are truncated
    at 0 when Cochran's Q is below its df, as metafor and DerSimonian-Laird do (statsmodels lets
    them go negative).

    Returns ``n_cohorts``, ``n_patients``; the random-effects ``auc`` with its ``level`` CI
    ``auc_low``/``auc_high`` (back-transformed from the logit scale, where ``logit_auc`` and
    ``logit_se`` are); the fixed-effect (inverse variance) ``fixed_auc``, ``fixed_low``,
    ``fixed_high``, ``fixed_logit_auc``, ``fixed_logit_se``; the between-cohort variance ``tau2``
    (logit scale); Cochran's ``q`` with ``q_df`` (cohorts − 1) and ``q_p``; ``i2_percent``
    (Higgins' I², 0-100); and ``method`` in words. At least two cohorts are needed.
    """
    return _summary(cohort_aucs(predictions, by, level=level), by, level)


def _summary(table: pd.DataFrame, by: str, level: float) -> dict:
    if len(table) < 2:
        found = f"one ({table['cohort'].iloc[0]!r})" if len(table) else "none with labelled patients"
        raise CrcInputError(f"Pooling the AUC needs at least two {by} values with labelled patients; got {found}.")
    pooled = _pool(table["logit_auc"].to_numpy(), table["logit_variance"].to_numpy())
    z = stats.norm.ppf(0.5 + level / 2)

    def back(centre: float, se: float) -> tuple[float, float, float]:
        return tuple(float(special.expit(v)) for v in (centre, centre - z * se, centre + z * se))

    auc, low, high = back(pooled["random"], pooled["random_se"])
    fixed, fixed_low, fixed_high = back(pooled["fixed"], pooled["fixed_se"])
    return {"n_cohorts": len(table), "n_patients": int(table["n"].sum()), "auc": auc, "auc_low": low,
            "auc_high": high, "logit_auc": pooled["random"], "logit_se": pooled["random_se"],
            "fixed_auc": fixed, "fixed_low": fixed_low, "fixed_high": fixed_high,
            "fixed_logit_auc": pooled["fixed"], "fixed_logit_se": pooled["fixed_se"], "tau2": pooled["tau2"],
            "q": pooled["q"], "q_df": pooled["q_df"], "q_p": pooled["q_p"], "i2_percent": pooled["i2_percent"],
            "method": "DerSimonian-Laird random effects on logit(AUC), DeLong variances"}


def forest_table(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95) -> pd.DataFrame:
    """The rows of a forest plot of :func:`pooled_auc`: one per cohort, in order of appearance,
    then the pooled random-effects row (``pooled`` True, named :data:`POOLED`). Columns
    ``cohort``, ``n``, ``auc``, ``low``, ``high`` (``level`` CI, logit scale back-transformed),
    ``weight_percent`` (the cohort's random-effects weight, as ``metafor::weights(rma(...))``;
    100 on the pooled row) and ``pooled``."""
    table = cohort_aucs(predictions, by, level=level)
    summary = _summary(table, by, level)
    weights = _pool(table["logit_auc"].to_numpy(), table["logit_variance"].to_numpy())["weights_percent"]
    rows = table[["cohort", "n", "auc", "low", "high"]].assign(weight_percent=weights, pooled=False)
    rows.loc[len(rows)] = [POOLED, summary["n_patients"], summary["auc"], summary["auc_low"], summary["auc_high"],
                           100.0, True]
    return rows.astype({"n": int, "pooled": bool})
