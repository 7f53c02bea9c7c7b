"""One model's AUC pooled across cohorts or centres: DerSimonian-Laird random effects on the logit
of each cohort's AUC, from the run store's per-patient predictions (``y_true``, ``prob`` and a
cohort column, as :meth:`crc_core.runs.store.RunStore.predictions` gives them), with the
Hartung-Knapp-Sidik-Jonkman CI when the cohorts are few — as R ``metafor::rma`` (tests/reference/
meta_analysis.R).

Two CIs of one cohort's AUC exist here and each has its place. The CI a reader sees beside a
cohort's AUC (Table 2, the forest plot's rows, the Other centres table) is DeLong's on the AUC
scale, ``pROC::ci.auc``: one report, one CI per AUC. The pooling itself works on logit(AUC), whose
variance is DeLong's carried over by the delta method; that logit-scale CI (``logit_low``/
``logit_high``, back-transformed) is what the weights come from and is only ever shown labelled as
such ("logit scale, for pooling").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import special, stats

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary
from crc_core.metrics.roc import auc_variance

POOLED = "pooled (random effects)"

#: With fewer cohorts than this the pooled CI is Hartung-Knapp-Sidik-Jonkman's (t with k − 1 df):
#: DerSimonian-Laird's z interval ignores that τ² is itself estimated, from very few cohorts, and
#: covers the true mean far less often than 95% (IntHout et al. 2014, BMC Med Res Methodol 14:25).
HKSJ_BELOW = 5

#: The CI tests of the pooled mean, as ``metafor::rma(test = ...)`` names them.
TESTS = ("auto", "z", "knha")


def cohort_aucs(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95) -> pd.DataFrame:
    """Each cohort's AUC on the scale it is pooled on, one row per value of ``by`` in order of
    appearance: ``cohort``, ``n``, ``n_positive``, ``auc``, ``variance`` (DeLong's, untruncated, as
    ``pROC::var``), ``logit_auc``, ``logit_variance`` (delta method: var / (AUC (1 − AUC))²), and
    ``low``/``high``, the ``level`` CI on the logit scale back-transformed (inside (0, 1), so it
    can differ slightly from :func:`crc_core.metrics.roc.auc_ci`'s symmetric interval).

    ``predictions`` has one row per patient: ``y_true`` (0/1), ``prob`` and the ``by`` column;
    patients without an outcome are left out, as :func:`crc_core.metrics.roc.grouped_auc` does.
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
    """Fixed-effect (inverse variance) and DerSimonian-Laird estimates of one effect per study,
    τ² floored at 0 as DerSimonian and Laird (1986) and metafor do; ``knha_se``: the
    Hartung-Knapp(-Sidik-Jonkman) standard error of the random-effects mean, as
    ``metafor::rma(test = "knha")`` (the weighted residual variance, not truncated at 1)."""
    weights = 1 / variances
    fixed = float((weights * effects).sum() / weights.sum())
    q = float((weights * (effects - fixed) ** 2).sum())
    df = effects.size - 1
    c = weights.sum() - (weights ** 2).sum() / weights.sum()
    tau2 = max(0.0, float((q - df) / c))
    weights_re = 1 / (variances + tau2)
    random = float((weights_re * effects).sum() / weights_re.sum())
    knha_se = math.sqrt(float((weights_re * (effects - random) ** 2).sum()) / (df * weights_re.sum())) if df else math.nan
    return {"fixed": fixed, "fixed_se": float(1 / math.sqrt(weights.sum())),
            "random": random, "random_se": float(1 / math.sqrt(weights_re.sum())), "knha_se": knha_se, "tau2": tau2,
            "q": q, "q_df": df, "q_p": float(stats.chi2.sf(q, df)),
            "i2_percent": 100 * max(0.0, (q - df) / q) if q > 0 else 0.0,
            "weights_percent": 100 * weights_re / weights_re.sum()}


def chosen_test(n_cohorts: int, test: str = "auto") -> str:
    """The CI test of the pooled mean: ``knha`` (Hartung-Knapp-Sidik-Jonkman) below
    :data:`HKSJ_BELOW` cohorts, ``z`` (DerSimonian-Laird's normal interval) from there, unless
    ``test`` names one."""
    if test not in TESTS:
        raise CrcInputError(f"The pooled CI's test must be one of {', '.join(TESTS)}; got {test!r}.")
    return ("knha" if n_cohorts < HKSJ_BELOW else "z") if test == "auto" else test


def pool_logit(effects, variances, *, level: float = 0.95, test: str = "auto") -> dict:
    """Random effects over one effect and its variance per cohort (here logit AUCs): exactly
    ``metafor::rma(yi = effects, vi = variances, method = "DL", test = test)`` with ``test`` "z"
    or "knha" ("auto": "knha" below :data:`HKSJ_BELOW` cohorts). τ² and I² are floored at 0 when
    Cochran's Q is below its df, as metafor does — statsmodels' ``combine_effects`` does not, so it
    equals this only when Q ≥ df.

    Returns the random-effects ``estimate`` with ``se``, ``low``/``high`` (z, or t with k − 1 df
    for "knha", whose ``se`` is the Knapp-Hartung one), ``p`` (estimate = 0), ``test`` and
    ``ci_df`` (None for z); ``fixed``/``fixed_se``/``fixed_low``/``fixed_high`` (inverse variance,
    z); ``tau2``, ``q``, ``q_df``, ``q_p``, ``i2_percent`` and ``weights_percent``."""
    if not 0 < level < 1:
        raise CrcInputError(f"The CI level must lie between 0 and 1, e.g. 0.95; got {level!r}.")
    effects, variances = np.asarray(effects, dtype=float), np.asarray(variances, dtype=float)
    if effects.size < 2 or effects.shape != variances.shape or not (variances > 0).all():
        raise CrcInputError("Pooling needs at least two cohorts, each with an effect and a positive variance.")
    pooled = _pool(effects, variances)
    test = chosen_test(effects.size, test)
    z = stats.norm.ppf(0.5 + level / 2)
    if test == "knha":
        df = effects.size - 1
        se, quantile = pooled["knha_se"], stats.t.ppf(0.5 + level / 2, df)
        p = float(2 * stats.t.sf(abs(pooled["random"] / se), df)) if se > 0 else math.nan
    else:
        df, se, quantile = None, pooled["random_se"], z
        p = float(2 * stats.norm.sf(abs(pooled["random"] / se)))
    return {"estimate": pooled["random"], "se": se, "low": pooled["random"] - quantile * se,
            "high": pooled["random"] + quantile * se, "p": p, "test": test, "ci_df": df,
            "fixed": pooled["fixed"], "fixed_se": pooled["fixed_se"], "fixed_low": pooled["fixed"] - z * pooled["fixed_se"],
            "fixed_high": pooled["fixed"] + z * pooled["fixed_se"],
            **{k: pooled[k] for k in ("tau2", "q", "q_df", "q_p", "i2_percent", "weights_percent")}}


def pooled_auc(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95, test: str = "auto") -> dict:
    """One model's AUC pooled over the cohorts (or centres, folds: any column ``by``) of
    ``predictions`` (see :func:`cohort_aucs`): random effects by DerSimonian and Laird (1986) on
    logit(AUC) with the DeLong variance carried over by the delta method, as
    ``metafor::rma(yi = logit_auc, vi = logit_variance, method = "DL", test = test)``
    (:func:`pool_logit`). ``test`` "auto" (the default) takes Hartung-Knapp-Sidik-Jonkman's CI
    (``test = "knha"``: the Knapp-Hartung standard error, t with k − 1 df) with fewer than
    :data:`HKSJ_BELOW` cohorts, DerSimonian-Laird's z interval from five on; "z" or "knha" force
    one. τ² and I² are floored at 0 when Cochran's Q is below its df, as metafor does.

    Returns ``n_cohorts``, ``n_patients``; the random-effects ``auc`` with its ``level`` CI
    ``auc_low``/``auc_high`` (back-transformed from the logit scale, where ``logit_auc`` and
    ``logit_se`` are; ``test`` and ``ci_df`` say which CI); the fixed-effect (inverse variance)
    ``fixed_auc``, ``fixed_low``, ``fixed_high``, ``fixed_logit_auc``, ``fixed_logit_se``; the
    between-cohort variance ``tau2`` (logit scale); Cochran's ``q`` with ``q_df`` (cohorts − 1)
    and ``q_p``; ``i2_percent`` (Higgins' I², 0-100); ``method`` in words, and ``warnings``: why
    HKSJ was used, and that τ² cannot be estimated from two cohorts. At least two cohorts are
    needed.
    """
    return _summary(cohort_aucs(predictions, by, level=level), by, level, test)


def method_words(pooled: dict) -> str:
    """How a :func:`pooled_auc` result was computed, in words for a caption."""
    ci = (f"Hartung-Knapp-Sidik-Jonkman CI (t, {pooled['ci_df']} df)" if pooled["test"] == "knha"
          else "DerSimonian-Laird z CI")
    return f"DerSimonian-Laird random effects on logit(AUC), DeLong variances, {ci}"


def pooling_warnings(n_cohorts: int, test: str) -> list[str]:
    """What a reader of a pooled AUC over ``n_cohorts`` must be told."""
    out = []
    if test == "knha" and n_cohorts < HKSJ_BELOW:
        out.append(f"{n_cohorts} cohorts, fewer than {HKSJ_BELOW}: the pooled CI is Hartung-Knapp-Sidik-Jonkman's (t with "
                   f"{n_cohorts - 1} df, as metafor::rma(test = \"knha\")), because DerSimonian-Laird's z interval "
                   "ignores the uncertainty of τ² and is too narrow with few cohorts.")
    elif test == "z" and n_cohorts < HKSJ_BELOW:
        out.append(f"{n_cohorts} cohorts, fewer than {HKSJ_BELOW}: DerSimonian-Laird's z interval is too narrow with few "
                   "cohorts; Hartung-Knapp-Sidik-Jonkman's (test \"knha\") is the one to report.")
    if n_cohorts == 2:
        out.append("τ² cannot be estimated from two cohorts: Cochran's Q has one degree of freedom, so τ² (and I²) "
                   "rest on a single difference and say next to nothing about between-centre heterogeneity.")
    return out


def _summary(table: pd.DataFrame, by: str, level: float, test: str = "auto") -> dict:
    if len(table) < 2:
        found = f"one ({table['cohort'].iloc[0]!r})" if len(table) else "none with labelled patients"
        raise CrcInputError(f"Pooling the AUC needs at least two {by} values with labelled patients; got {found}.")
    pooled = pool_logit(table["logit_auc"].to_numpy(), table["logit_variance"].to_numpy(), level=level, test=test)

    def back(*values: float) -> tuple[float, ...]:
        return tuple(float(special.expit(v)) for v in values)

    auc, low, high = back(pooled["estimate"], pooled["low"], pooled["high"])
    fixed, fixed_low, fixed_high = back(pooled["fixed"], pooled["fixed_low"], pooled["fixed_high"])
    summary = {"n_cohorts": len(table), "n_patients": int(table["n"].sum()), "auc": auc, "auc_low": low,
               "auc_high": high, "logit_auc": pooled["estimate"], "logit_se": pooled["se"], "test": pooled["test"],
               "ci_df": pooled["ci_df"], "fixed_auc": fixed, "fixed_low": fixed_low, "fixed_high": fixed_high,
               "fixed_logit_auc": pooled["fixed"], "fixed_logit_se": pooled["fixed_se"], "tau2": pooled["tau2"],
               "q": pooled["q"], "q_df": pooled["q_df"], "q_p": pooled["q_p"], "i2_percent": pooled["i2_percent"]}
    summary["method"] = method_words(summary)
    summary["warnings"] = pooling_warnings(len(table), pooled["test"])
    return summary


def forest_table(predictions: pd.DataFrame, by: str = "cohort", *, level: float = 0.95,
                 test: str = "auto") -> pd.DataFrame:
    """The rows of a forest plot of :func:`pooled_auc`: one per cohort, in order of appearance,
    then the pooled random-effects row (``pooled`` True, named :data:`POOLED`). Columns
    ``cohort``, ``n``, ``auc``, ``low``, ``high`` (each cohort's ``level`` CI as Table 2 shows it:
    DeLong's on the AUC scale, :func:`crc_core.metrics.roc.auc_ci`; on the pooled row the pooled CI),
    ``logit_low``/``logit_high`` (the logit-scale CI the pooling works with, back-transformed; the
    pooled CI again on the pooled row), ``weight_percent`` (the cohort's random-effects weight, as
    ``metafor::weights(rma(...))``; 100 on the pooled row) and ``pooled``."""
    from crc_core.metrics.roc import auc_ci

    table = cohort_aucs(predictions, by, level=level)
    summary = _summary(table, by, level, test)
    weights = _pool(table["logit_auc"].to_numpy(), table["logit_variance"].to_numpy())["weights_percent"]
    labelled = predictions[predictions["y_true"].notna()]
    delong = [auc_ci(group["y_true"].astype(int).to_numpy(), group["prob"].to_numpy(), level=level)[1:]
              for group in (labelled[labelled[by] == name] for name in table["cohort"])]
    rows = table[["cohort", "n", "auc"]].assign(low=[lo for lo, _ in delong], high=[hi for _, hi in delong],
                                                logit_low=table["low"], logit_high=table["high"],
                                                weight_percent=weights, pooled=False)
    rows.loc[len(rows)] = [POOLED, summary["n_patients"], summary["auc"], summary["auc_low"], summary["auc_high"],
                           summary["auc_low"], summary["auc_high"], 100.0, True]
    return rows.astype({"n": int, "pooled": bool})
