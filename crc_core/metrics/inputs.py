"""The checks every metric runs on its arrays first (0/1 outcomes, probabilities in [0, 1], both
classes present), the few-cases rule for unreliable CIs, and the logit they share.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError


#: Fewer cases than this in a cohort (or in a class): the CIs are flagged as unreliable.
FEW_CASES = 10


# ---------------------------------------------------------------------------------------------
# Checking inputs


def check_binary(y_true: Sequence, y_score: Sequence, *, what: str = "the cohort", probabilities: bool = True,
                 need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``y_true`` as 0/1 and ``y_score`` as floats, after checks a user can act on: equal lengths,
    a binary outcome, finite scores (in [0, 1] for probabilities) — offending rows named — and,
    with ``need_both``, both classes present."""
    y = np.asarray(y_true)
    score = np.asarray(y_score, dtype=float)
    if y.shape != score.shape or y.ndim != 1:
        raise CrcInputError(f"{what}: {y.size} outcomes but {score.size} predictions; give one prediction per patient.")
    values = pd.unique(pd.Series(y).dropna())
    try:
        numeric = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        numeric = None
    if numeric is None or not set(values.tolist()) <= {0, 1, True, False} or np.isnan(numeric).any():
        shown = ", ".join(map(repr, values[:6].tolist()))
        raise CrcInputError(f"{what}: the outcome must be 0 or 1 for every patient (found {shown}).")
    bad = ~np.isfinite(score) | ((score < 0) | (score > 1) if probabilities else np.zeros(score.size, bool))
    if bad.any():
        rows = ", ".join(f"row {i + 1} ({float(score[i])!r})" for i in np.flatnonzero(bad)[:5])
        raise CrcInputError(
            f"{what}: predictions must be probabilities between 0 and 1; not so in {rows}"
            f"{' and more' if bad.sum() > 5 else ''}. Check the run's predictions."
        )
    y = numeric.astype(int)
    if need_both and len(set(y.tolist())) < 2:
        only = "high" if y.size and y[0] == 1 else "low"
        raise CrcInputError(f"{what} has one class only ({y.size} patients, all {only}): the AUC is undefined there.")
    return y, score


def few_cases(y: np.ndarray) -> bool:
    """True when the CIs of ``y``'s cohort are unreliable (fewer than :data:`FEW_CASES` in a class)."""
    return int(min((y == 0).sum(), (y == 1).sum())) < FEW_CASES


# ---------------------------------------------------------------------------------------------
# Calibration


def logit(p, eps: float = 1e-12) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [eps, 1 - eps] so that a probability of exactly 0 or 1
    stays finite."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))
