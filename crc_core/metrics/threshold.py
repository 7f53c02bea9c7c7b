"""The paper's Table 2 at a threshold: Youden's cut-off, sensitivity, specificity, PPV and NPV
with Wilson CIs (as ``pROC::coords`` and ``binom::binom.wilson``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats

from crc_core.metrics.inputs import check_binary, few_cases
from crc_core.metrics.roc import auc_ci, roc_curve


# ---------------------------------------------------------------------------------------------
# Table 2: metrics at a threshold


def youden_threshold(y_true: Sequence, y_score: Sequence) -> float:
    """The threshold maximising sensitivity + specificity − 1 (Youden's J), as ``pROC::coords(roc,
    "best", best.method = "youden")``; of tied thresholds (pROC lists them all), the lowest."""
    curve = roc_curve(y_true, y_score)
    finite = curve[np.isfinite(curve["threshold"])]
    j = finite["sensitivity"] + finite["specificity"] - 1
    return float(finite.loc[j == j.max(), "threshold"].min())


def wilson_ci(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion (as R ``binom::binom.wilson`` and statsmodels'
    ``proportion_confint(method="wilson")``); (nan, nan) when ``total`` is 0."""
    if total == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def threshold_metrics(y_true: Sequence, y_score: Sequence, threshold: float | None = None, *,
                      level: float = 0.95) -> dict[str, Any]:
    """The paper's Table 2 for one cohort: ACC, AUC with its DeLong CI, sensitivity, specificity,
    PPV, NPV, precision, recall and F1 at ``threshold`` (default: this cohort's Youden-optimal
    threshold), every proportion with its Wilson CI (``<name>_low``, ``<name>_high``); a patient
    is positive when its probability ≥ threshold. ``unreliable`` is True with fewer than
    :data:`FEW_CASES` patients in a class."""
    y, prob = check_binary(y_true, y_score)
    if threshold is None:
        threshold = youden_threshold(y, prob)
    predicted = prob >= threshold
    tp, fp = int((predicted & (y == 1)).sum()), int((predicted & (y == 0)).sum())
    fn, tn = int((~predicted & (y == 1)).sum()), int((~predicted & (y == 0)).sum())
    auc, auc_low, auc_high = auc_ci(y, prob, level=level)
    out: dict[str, Any] = {"n": int(y.size), "n_positive": int(y.sum()), "threshold": float(threshold),
                           "auc": auc, "auc_low": auc_low, "auc_high": auc_high, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    for name, k, total in (("acc", tp + tn, y.size), ("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                           ("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        out[name] = k / total if total else math.nan
        out[f"{name}_low"], out[f"{name}_high"] = wilson_ci(k, total, level)
    out["precision"], out["precision_low"], out["precision_high"] = out["ppv"], out["ppv_low"], out["ppv_high"]
    out["recall"], out["recall_low"], out["recall_high"] = out["sensitivity"], out["sensitivity_low"], out["sensitivity_high"]
    p, r = out["ppv"], out["sensitivity"]
    out["f1"] = 2 * p * r / (p + r) if p == p and r == r and p + r > 0 else math.nan
    out["unreliable"] = few_cases(y)
    return out
