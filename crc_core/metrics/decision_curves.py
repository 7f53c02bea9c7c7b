"""Decision curves: the net benefit of treating by the model at each threshold probability,
against treating all and none, as R's ``dcurves::dca``, with a bootstrap band.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.metrics.inputs import check_binary


# ---------------------------------------------------------------------------------------------
# Decision curves


def decision_curve(y_true: Sequence, y_prob: Sequence, thresholds: Sequence[float] | None = None) -> pd.DataFrame:
    """Net benefit of treating the patients whose probability ≥ pt, at each threshold pt:
    TP/n − FP/n · pt/(1 − pt), against treating all and treating none — as ``dcurves::dca``.
    Columns ``threshold``, ``net_benefit``, ``treat_all``, ``treat_none``, and the clinical-impact
    counts per 1000 patients ``high_risk_per_1000`` and ``true_positive_per_1000``."""
    y, prob = check_binary(y_true, y_prob)
    pts = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, dtype=float)
    if (pts <= 0).any() or (pts >= 1).any():
        raise CrcInputError("Decision-curve thresholds must lie strictly between 0 and 1.")
    n, prevalence = y.size, y.mean()
    rows = []
    for pt in pts:
        called = prob >= pt
        tp, fp = (called & (y == 1)).sum(), (called & (y == 0)).sum()
        odds = pt / (1 - pt)
        rows.append({"threshold": pt, "net_benefit": tp / n - fp / n * odds,
                     "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": 0.0,
                     "high_risk_per_1000": 1000 * called.mean(), "true_positive_per_1000": 1000 * tp / n})
    return pd.DataFrame(rows)


def decision_curve_band(y_true: Sequence, y_prob: Sequence, thresholds: Sequence[float] | None = None, *,
                        n_boot: int = 200, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """A bootstrap band for the net benefit: ``threshold``, ``low``, ``high`` (percentiles of
    ``n_boot`` patient resamples)."""
    y, prob = check_binary(y_true, y_prob)
    base = decision_curve(y, prob, thresholds)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_boot):
        pick = rng.integers(0, y.size, y.size)
        if len(set(y[pick].tolist())) < 2:
            continue
        curves.append(decision_curve(y[pick], prob[pick], base["threshold"])["net_benefit"].to_numpy())
    low, high = np.percentile(np.array(curves), [50 * (1 - level), 50 * (1 + level)], axis=0)
    return pd.DataFrame({"threshold": base["threshold"], "low": low, "high": high})
