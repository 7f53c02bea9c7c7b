"""A threshold that no patient crosses. When every patient of a cohort lies on one side of Table
2's threshold (taken from the training patients), that cohort's sensitivity is 1 and specificity 0
(or the reverse) by construction, and no ROI of the reader check can change anyone's class: the
model's probabilities are shifted in that cohort (miscalibration), which says nothing of how well
it ranks patients, nor of how robust it is. Found in use: all 120 Lanzhou patients lay above the
0.420 training threshold, and the reader check read "0 class changes" for every ROI.

The words here go wherever those numbers appear (Table 2's notes on the page and in the report, the
reader check's table), and point to the recalibrated view (:mod:`crc_core.metrics.recalibration`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from crc_core.runs.views import labelled


ABOVE, BELOW = "above", "below"


@dataclass(frozen=True)
class OneSided:
    """Every one of a cohort's ``n`` patients lies ``side`` (:data:`ABOVE`: probability ≥
    ``threshold``, so all called high; :data:`BELOW`: all called low) of ``threshold``;
    ``lowest``/``highest`` are the cohort's extreme probabilities."""

    cohort: str
    threshold: float
    n: int
    side: str
    lowest: float
    highest: float


def one_sided(cohort: str, probabilities: Sequence[float], threshold: float) -> OneSided | None:
    """The cohort's patients all on one side of ``threshold`` (a patient is high when its
    probability ≥ threshold, as Table 2 calls it), or None when the threshold splits them."""
    prob = np.asarray(probabilities, dtype=float)
    prob = prob[np.isfinite(prob)]
    if prob.size == 0 or threshold is None or not np.isfinite(threshold):
        return None
    high = prob >= threshold
    if high.all() or not high.any():
        return OneSided(cohort, float(threshold), int(prob.size), ABOVE if high.all() else BELOW,
                        float(prob.min()), float(prob.max()))
    return None


def where_recalibrated(cohort: str) -> str:
    """Where the user finds the cohort recalibrated."""
    if cohort.startswith("external:"):
        return ("Evaluate → Other centres shows this cohort recalibrated (calibration-in-the-large, R glm(y ~ "
                "offset(logit(p)), binomial)); the numbers after it describe an updated model.")
    return ("Recalibrating on this cohort's outcomes (calibration-in-the-large, crc_core.metrics.recalibration) shows how far "
            "its probabilities are shifted; the numbers after it describe an updated model.")


def one_sided_words(found: OneSided, cohort_words: str) -> str:
    """Table 2's note for a cohort that lies on one side of the threshold."""
    if found.side == ABOVE:
        where, called, numbers = f"at or above (lowest {found.lowest:.3f})", "high", "sensitivity 1 and specificity 0"
    else:
        where, called, numbers = f"below (highest {found.highest:.3f})", "low", "sensitivity 0 and specificity 1"
    return (f"All {found.n} patients of the {cohort_words} cohort lie {where} Table 2's threshold {found.threshold:.3f}: "
            f"every patient is called {called}, so its {numbers} hold by construction. This is miscalibration (the "
            "model's probabilities are shifted in this cohort), not a property of the patients; its AUC, which does "
            f"not depend on the threshold, still says how well the model ranks them. {where_recalibrated(found.cohort)}")


def class_change_words(found: OneSided, cohort_words: str) -> str:
    """The reader check's note for a cohort whose reader-1 probabilities lie on one side of the
    threshold: its class changes cannot show robustness."""
    side = "at or above" if found.side == ABOVE else "below"
    return (f"All {found.n} patients of the {cohort_words} cohort lie {side} Table 2's threshold {found.threshold:.3f} "
            "with reader 1's ROI: few or no class changes here are what a miscalibrated model gives (the threshold "
            "does not fit this cohort), not evidence of robustness; compare the AUCs and ICCs instead. "
            f"{where_recalibrated(found.cohort)}")


def table_two_notes(result) -> list[str]:
    """A note for each row of a run's Table 2 (a :class:`crc_core.evaluate.run_evaluation.RunEvaluation`)
    whose patients all lie on one side of its threshold."""
    notes = []
    for cohort, metrics in result.metrics.items():
        rows = labelled(result.predictions, cohort)
        found = one_sided(cohort, rows["prob"].to_numpy(), metrics.get("threshold"))
        if found is not None:
            notes.append(one_sided_words(found, result.cohort_words(cohort)))
    return notes
