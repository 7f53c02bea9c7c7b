"""Calibration as a reader of the page, the report, calibration.csv and the figures zip sees it
(issue 26, points 1 and 8): calibration-in-the-large under that name, val.prob's joint intercept
only beside the slope, bins with Wilson CIs, the smoothed curve with its band, and
Hosmer-Lemeshow with its weaknesses — the same numbers and words everywhere, checked against
statsmodels' GLMs and proportion_confint."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.proportion import proportion_confint

import crc_core.metrics as ev
from crc_core.evaluate import run_evaluation as me
from crc_core.runs.store import RunStore
from tests.test_model_evaluation import stored_run
from tests.test_pages_evaluate import EXTERNAL, two_runs  # noqa: F401 - the fixture
from tests.test_pages import open_view, run_page


def _glm_intercepts(y: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    """statsmodels: glm(y ~ offset(logit(p))) and the intercept of glm(y ~ logit(p))."""
    lp = np.log(prob / (1 - prob))
    citl = sm.GLM(y, np.ones(len(y)), family=sm.families.Binomial(), offset=lp).fit().params[0]
    joint = sm.GLM(y, sm.add_constant(lp), family=sm.families.Binomial()).fit().params[0]
    return float(citl), float(joint)


@pytest.fixture
def evaluated(tmp_path):
    store = RunStore(tmp_path)
    run_id = stored_run(store, seed=3, cohorts=("train", "validation", EXTERNAL), n=90)
    return store, me.evaluate_run(store, run_id)


def test_calibration_csv_has_citl_and_the_joint_intercept_named_beside_the_slope(evaluated, tmp_path):
    store, result = evaluated
    me.export_evaluation(result, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "calibration.csv")
    assert list(table.columns[:6]) == ["cohort", "citl", "citl_low", "citl_high", "slope", "intercept_with_slope"]
    assert "intercept" not in table.columns  # the ambiguous name is gone from the file
    predictions = store.predictions(result.run.run_id)
    for _, row in table.iterrows():
        rows = predictions[predictions["cohort"] == row["cohort"]]
        citl, joint = _glm_intercepts(rows["y_true"].astype(int).to_numpy(), rows["prob"].to_numpy())
        assert row["citl"] == pytest.approx(citl, rel=1e-6)
        assert row["intercept_with_slope"] == pytest.approx(joint, rel=1e-6)
        assert row["citl_low"] < row["citl"] < row["citl_high"]


def test_the_calibration_figure_draws_bin_cis_and_the_smoothed_curve_with_its_band(evaluated):
    store, result = evaluated
    figure = me.evaluation_figures(result)["calibration-validation"]  # what the report and the figures zip draw
    traces = {trace.name: trace for trace in figure.data}
    rows = me.labelled(result.predictions, "validation")
    y, prob = rows["y_true"].astype(int).to_numpy(), rows["prob"].to_numpy()
    # Bins: ten quantile bins of 9 patients, each with its Wilson 95% CI (statsmodels).
    bins = traces["10 quantile bins (Wilson 95% CI)"]
    order = np.argsort(prob, kind="stable")
    events = np.array([y[b].sum() for b in np.array_split(order, 10)])
    low, high = proportion_confint(events, 9, alpha=0.05, method="wilson")
    np.testing.assert_allclose(np.asarray(bins.y) + np.asarray(bins.error_y.array), high, atol=1e-12)
    np.testing.assert_allclose(np.asarray(bins.y) - np.asarray(bins.error_y.arrayminus), low, atol=1e-12)
    # The smoothed curve and around it its bootstrap band, clipped to [0, 1] as the curve is.
    band = ev.calibration_band(y, prob).dropna()
    drawn = traces["95% band of the smoothed curve (bootstrap)"]
    np.testing.assert_allclose(drawn.y, np.concatenate([band["high"].clip(0, 1), band["low"].clip(0, 1)[::-1]]))
    assert "smoothed (lowess)" in traces
    title = figure.layout.title.text
    stats = result.calibration["validation"]
    assert f"calibration-in-the-large {stats['citl']:.2f}" in title
    assert f"(intercept with slope {stats['intercept_with_slope']:.2f})" in title
    assert "Hosmer-Lemeshow" in title and "little power in small cohorts" in title


def test_the_page_and_the_report_say_calibration_in_the_large_and_hl_s_weaknesses_alike(two_runs, use_workspace):  # noqa: F811
    from crc_core.reporting import report

    root, _, latest = two_runs
    use_workspace(root)
    app = open_view(run_page("evaluate"), "calibration")
    app.radio(key="calibration_cohort").set_value(EXTERNAL).run()
    assert not app.exception, app.exception
    result = me.evaluate_run(RunStore(root), latest)
    stats = result.calibration[EXTERNAL]
    citl, joint = _glm_intercepts(*(lambda r: (r["y_true"].astype(int).to_numpy(), r["prob"].to_numpy()))(
        me.labelled(result.predictions, EXTERNAL)))
    words = me.calibration_words(stats)
    assert words.startswith(f"Calibration-in-the-large {citl:.3f} (95% CI {stats['citl_low']:.3f} to ")
    assert f"intercept (with slope) {joint:.3f}" in words and ev.HL_CAVEAT in words
    assert "little power in small cohorts" in ev.HL_CAVEAT and "number of risk groups" in ev.HL_CAVEAT
    assert words in [c.value for c in app.caption]
    document = report.build_report(root, latest)
    for cohort, cohort_stats in result.calibration.items():
        assert html.escape(me.calibration_words(cohort_stats)) in document, cohort
    assert "calibration intercept" not in document.lower()


def test_a_recalibration_says_calibration_in_the_large_before_and_zero_after(evaluated):
    from crc_core.evaluate import external as ex
    from crc_core.reporting import report

    _, result = evaluated
    updated = ex.recalibrate_cohort(result, EXTERNAL, "intercept")
    # The update is calibration-in-the-large itself: the intercept it fits is the cohort's CITL
    # before, and the updated probabilities have a CITL of 0 (not the joint intercept, which is not).
    assert updated.before["citl"] == pytest.approx(updated.fit["intercept"], rel=1e-9)
    assert abs(updated.after["citl"]) < 1e-8 and abs(updated.after["intercept_with_slope"]) > 1e-3
    words = report.recalibration_words(updated)
    assert f"calibration-in-the-large {updated.fit['intercept']:.3f} before, 0.000 after (0 by construction)" in words
