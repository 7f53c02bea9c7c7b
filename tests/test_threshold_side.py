"""A threshold that no patient crosses (issue 26, point 4): a constructed external cohort whose
every patient lies above the training threshold, as all 120 Lanzhou patients did at 0.420. Table 2
shows sensitivity 1 and specificity 0 and the reader check "0 class changes" for every ROI; both
must say it is miscalibration, not robustness, and point to the recalibrated view."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

from crc_core.evaluate import run_evaluation as me
from crc_core.evaluate import robustness as rb
from crc_core.runs.store import RunStore
from crc_core.evaluate.threshold_side import ABOVE, BELOW, one_sided
from crc_core.workspace import Workspace

N_SHIFTED = 120


def _run_with_a_shifted_centre(store: RunStore) -> str:
    """Training and validation patients whose probabilities straddle the threshold, and an
    external centre whose every probability is pushed above it (the model ranks them still)."""
    rng = np.random.default_rng(7)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"},
                              info={"weights": {"pretrained": True}})
    for cohort, prefix, n, shift in (("train", "T", 100, 0.0), ("validation", "V", 60, 0.0),
                                     ("external:Lanzhou", "L", N_SHIFTED, 6.0)):
        y = rng.integers(0, 2, n)
        logit = 1.5 * (2 * y - 1) + rng.normal(0, 1, n) + shift
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": [f"{prefix}{i:03d}" for i in range(n)],
                                                            "y_true": y, "prob": 1 / (1 + np.exp(-logit))}))
    store.finish(run_id, "done")
    return run_id


@pytest.fixture()
def shifted(tmp_path):
    store = RunStore(Workspace(tmp_path))
    run_id = _run_with_a_shifted_centre(store)
    return store, run_id, me.evaluate_run(store, run_id)


def test_one_sided_is_found_on_either_side_and_not_when_the_threshold_splits():
    assert one_sided("validation", [0.5, 0.6, 0.9], 0.5).side == ABOVE  # ≥ threshold is high, as Table 2 calls it
    assert one_sided("validation", [0.1, 0.2, 0.49], 0.5).side == BELOW
    assert one_sided("validation", [0.1, 0.5, 0.9], 0.5) is None


def test_table_two_says_a_cohort_above_the_threshold_is_miscalibrated(shifted):
    _, _, result = shifted
    lanzhou = result.metrics["external:Lanzhou"]
    assert (lanzhou["sensitivity"], lanzhou["specificity"]) == (1.0, 0.0)  # the constructed case
    notes = [n for n in result.notes if "Table 2's threshold" in n]
    assert len(notes) == 1, result.notes  # validation straddles the threshold: no note for it
    note = notes[0]
    assert f"All {N_SHIFTED} patients of the external: Lanzhou cohort lie at or above" in note
    assert f"threshold {lanzhou['threshold']:.3f}" in note
    assert "sensitivity 1 and specificity 0" in note and "miscalibration" in note
    assert "Other centres" in note and "recalibrated" in note
    lowest = result.predictions.loc[result.predictions["cohort"] == "external:Lanzhou", "prob"].min()
    assert f"lowest {lowest:.3f}" in note


def test_the_reports_table_two_carries_the_note(shifted):
    from crc_core.reporting import report

    store, run_id, result = shifted
    ctx = report._ReportContext(store.workspace, store.run(run_id), result, {}, report.ReportConfig(run_id=run_id), {})
    section = report._table_two_section(ctx)
    note = next(n for n in result.notes if "Table 2's threshold" in n)
    assert html.escape(note) in section and "miscalibration" in section


def _check(run_id: str, cohort: str, reference: np.ndarray, threshold: float) -> rb.RobustnessResult:
    """A reader check as :func:`rb.robustness` keeps it: reader 1's and a dilated ROI's scores."""
    ids = [f"L{i:03d}" for i in range(len(reference))]
    y = np.arange(len(reference)) % 2
    scores = pd.concat([pd.DataFrame({"patient_id": ids, "variant": v, "prob": p, "y_true": y, "fold": -1})
                        for v, p in (("reader1", reference), ("dilate1", np.clip(reference + 0.01, 0, 1)))],
                       ignore_index=True)
    summary = pd.DataFrame([{"variant": "reader1", "n": len(ids), "flips": 0},
                            {"variant": "dilate1", "n": len(ids),
                             "flips": int(((reference >= threshold) != (reference + 0.01 >= threshold)).sum())}])
    return rb.RobustnessResult(run_id, cohort, threshold, scores, summary.reindex(columns=rb.SUMMARY_COLUMNS))


def test_the_reader_check_says_no_class_change_is_miscalibration_not_robustness(shifted):
    from crc_core.reporting import report

    store, run_id, result = shifted
    above = np.linspace(0.55, 0.99, N_SHIFTED)
    kept = _check(run_id, "external:Lanzhou", above, 0.42)
    note = rb.threshold_note(kept)
    assert note and f"All {N_SHIFTED} patients of the external: Lanzhou cohort lie at or above" in note
    assert "not evidence of robustness" in note and "Other centres" in note
    people = rb.summary_for_people(kept)
    assert "Change class at 0.420 (every patient on one side of it: see the note)" in people.columns
    assert rb.threshold_note(_check(run_id, "validation", np.linspace(0.1, 0.9, 40), 0.42)) is None
    rb.keep_robustness(store.workspace, kept)
    ctx = report._ReportContext(store.workspace, store.run(run_id), result, {}, report.ReportConfig(run_id=run_id), {})
    section = report._robustness_section(ctx)
    assert "<p class='warning'>All 120 patients" in section and "not evidence of robustness" in section
