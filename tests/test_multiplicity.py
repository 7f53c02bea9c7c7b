"""Multiplicity and non-significance (issue 26, point 5): the reader check's and Compare runs'
DeLong tests show the AUC difference with its 95% CI first, then p Holm-adjusted across the family
(against statsmodels' ``multipletests(method="holm")``), in the words "no evidence of a difference",
never "robust"; Table 1 between cohorts split at random shows the SMD beside p (against Yang &
Dalton's definition, worked by hand) and says that about 1 test in 20 is "significant" by chance."""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

import crc_core.metrics as ev
from crc_core.evaluate import run_evaluation as me
from crc_core.evaluate import robustness as rb
from crc_core.cohort import table1 as stats
from crc_core.runs.store import RunStore
from crc_core.workspace import Workspace


def test_holm_adjusted_equals_statsmodels_with_ties_and_untested_members():
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 10, 27):
        p = rng.uniform(0, 0.2, m) ** 2
        p[: m // 3] = p[0]  # ties
        assert stats.holm_adjusted(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-15)
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    tested = ~np.isnan(p)
    adjusted = stats.holm_adjusted(p)
    assert np.isnan(adjusted[~tested]).all()
    assert adjusted[tested] == pytest.approx(multipletests(p[tested], method="holm")[1])


# --- The reader check -----------------------------------------------------------------------------

VARIANTS = {"reader2": 0.4, "erode1": 0.05, "erode2": 0.1, "dilate1": 0.05, "dilate2": 1.5}


def _scores(n: int = 80) -> pd.DataFrame:
    """Reader 1's scores and five ROIs' (noise of a given size added; dilate2's large enough to
    lower the AUC), as :func:`rb.robustness` keeps them."""
    rng = np.random.default_rng(11)
    y = np.arange(n) % 2
    logit = 1.2 * (2 * y - 1) + rng.normal(0, 1, n)
    ids = [f"V{i:03d}" for i in range(n)]
    frames = [pd.DataFrame({"patient_id": ids, "variant": "reader1", "prob": 1 / (1 + np.exp(-logit)), "y_true": y})]
    for variant, noise in VARIANTS.items():
        frames.append(pd.DataFrame({"patient_id": ids, "variant": variant, "y_true": y,
                                    "prob": 1 / (1 + np.exp(-(logit + rng.normal(0, noise, n))))}))
    return pd.concat(frames, ignore_index=True).assign(fold=-1)


def test_the_reader_check_gives_the_difference_first_and_holm_across_the_variants():
    scores = _scores()
    summary = pd.DataFrame({"variant": ["reader1", *VARIANTS], "n": 80, "flips": 0})
    summary = rb.with_reader1_comparisons(scores, summary).set_index("variant")
    wide = scores.pivot(index="patient_id", columns="variant", values="prob")
    y = scores[scores["variant"] == "reader1"].set_index("patient_id")["y_true"].astype(int)
    raw = []
    for variant in VARIANTS:
        _, p, difference, (low, high) = ev.delong_difference(y, wide.loc[y.index, variant], wide.loc[y.index, "reader1"])
        assert summary.loc[variant, ["auc_difference", "difference_low", "difference_high", "p_vs_reader1"]].tolist() == \
            pytest.approx([difference, low, high, p])
        # AUC(variant) − AUC(reader 1), as the column says
        assert difference == pytest.approx(ev.auc_ci(y, wide.loc[y.index, variant])[0] - ev.auc_ci(y, wide.loc[y.index, "reader1"])[0])
        raw.append(p)
    assert summary.loc[list(VARIANTS), "p_holm"].to_numpy() == pytest.approx(multipletests(raw, method="holm")[1])
    assert np.isnan(summary.loc["reader1", "p_holm"])

    result = rb.RobustnessResult("run", "validation", 0.5, scores, summary.reset_index())
    people = rb.summary_for_people(result)
    columns = list(people.columns)
    assert columns.index("AUC difference from reader 1 (95% CI)") < columns.index("Holm-adjusted p") \
        < columns.index("DeLong p, unadjusted")
    row = people.set_index("ROI").loc["reader 1 eroded 1 px"]
    erode = summary.loc["erode1"]
    assert row["AUC difference from reader 1 (95% CI)"] == \
        f"{erode['auc_difference']:+.3f} ({erode['difference_low']:+.3f} to {erode['difference_high']:+.3f})"
    assert row["Holm-adjusted p"] == stats.p_words(erode["p_holm"])
    for verdict, p in zip(people["What it shows"].iloc[1:], summary.loc[list(VARIANTS), "p_holm"]):
        assert verdict.startswith("no evidence of a difference" if p >= 0.05 else "evidence of a difference")
    assert not any("robust" in str(v).lower() for v in people.to_numpy().ravel())
    sentence = rb.comparison_sentence(result)
    tested = summary.loc[list(VARIANTS)]
    assert f"correction for {len(VARIANTS)} tests" in sentence
    assert f"from {tested['difference_low'].min():+.3f} to {tested['difference_high'].max():+.3f}" in sentence


def test_a_check_kept_before_the_differences_gets_them_when_read(tmp_path):
    """A check kept by the earlier version (p only) reads with the difference and Holm's p."""
    store = RunStore(Workspace(tmp_path))
    run_id = store.create_run(target="tsr", backbone="resnet34", mode="features", config={})
    scores = _scores()
    old = rb.with_reader1_comparisons(scores, pd.DataFrame({"variant": ["reader1", *VARIANTS], "n": 80, "flips": 0}))
    rb.keep_robustness(store.workspace, rb.RobustnessResult(run_id, "validation", 0.5, scores, old))
    folder = store.folder(run_id)
    kept_csv = folder.robustness("validation", "summary")
    pd.read_csv(kept_csv).drop(columns=rb.COMPARISON_COLUMNS).to_csv(kept_csv, index=False)
    kept = rb.kept_robustness(store.workspace, store.run(run_id), "validation")
    assert kept.summary["p_holm"].to_numpy() == pytest.approx(old["p_holm"].to_numpy(), nan_ok=True)


# --- Runs compared --------------------------------------------------------------------------------

def _stored_run(store: RunStore, seed: int, signal: float) -> str:
    rng = np.random.default_rng(seed)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"seed": seed})
    for cohort, prefix in (("train", "T"), ("validation", "V")):
        y = np.random.default_rng(50).integers(0, 2, 70)
        prob = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, 70))))
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": [f"{prefix}{i:03d}" for i in range(70)],
                                                            "y_true": y, "prob": prob}))
    store.finish(run_id, "done")
    return run_id


def test_runs_compared_lead_with_the_difference_and_holm_across_the_pairs(tmp_path):
    store = RunStore(Workspace(tmp_path))
    runs = [_stored_run(store, 1, 2.0), _stored_run(store, 2, 1.8), _stored_run(store, 3, 0.3)]
    _, pairs = me.compare_runs(store, runs)
    assert len(pairs) == 3
    rows = me.delong_pairs_for_people(pairs, {r: r[-4:] for r in runs})
    columns = list(rows.columns)
    assert columns.index("AUC difference (95% CI)") < columns.index("Holm-adjusted p") < columns.index("p, unadjusted")
    adjusted = multipletests(pairs["p"], method="holm")[1]
    assert rows["Holm-adjusted p"].tolist() == [stats.p_words(p) for p in adjusted]
    for verdict, p, low, high in zip(rows["What it shows"], adjusted, pairs["low"], pairs["high"]):
        assert verdict == ("evidence of a difference" if p < 0.05 else
                           f"no evidence of a difference (its 95% CI allows {low:+.3f} to {high:+.3f})")
    assert "no evidence of a difference" in " ".join(rows["What it shows"])  # the two strong runs


# --- Table 1 between cohorts split at random ------------------------------------------------------

def yang_dalton(p_a, p_b) -> float:
    """Yang & Dalton (2012) eq. 3 written out as the paper defines S, entry by entry."""
    t, c = np.asarray(p_a[1:], float), np.asarray(p_b[1:], float)
    k = len(t)
    s = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            s[i, j] = ((t[i] * (1 - t[i]) + c[i] * (1 - c[i])) / 2 if i == j else -(t[i] * t[j] + c[i] * c[j]) / 2)
    d = t - c
    return math.sqrt(d @ np.linalg.solve(s, d))


def _random_split_workspace(root) -> Workspace:
    from crc_core.cohort.join import split_workspace
    from crc_core.cohort.splits import SplitConfig

    rng = np.random.default_rng(5)
    n = 120
    workspace = Workspace(root)
    workspace.root.mkdir(parents=True)
    pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "age": rng.normal(62, 9, n).round(1),
                  "cea": rng.lognormal(1, 0.8, n).round(2), "sex": rng.choice(["M", "F"], n),
                  "grade": rng.choice(["G1", "G2", "G3"], n, p=[0.3, 0.5, 0.2])}).to_csv(workspace.clinical_csv, index=False)
    pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "tsr": rng.integers(20, 80, n)}).to_csv(
        workspace.pathology_csv, index=False)
    split_workspace(workspace, SplitConfig())
    return workspace


def test_table_one_shows_the_smd_beside_p_and_says_one_in_twenty_by_chance(tmp_path):
    from crc_core.reporting import report
    from crc_core.cohort.join import load_workspace_cohort

    # p_a = (0.5, 0.3, 0.2), p_b = (0.4, 0.4, 0.2), the first level dropped: d = (−0.1, 0),
    # S = [[(0.21 + 0.24)/2, −(0.06 + 0.08)/2], [−0.07, (0.16 + 0.16)/2]] = [[0.225, −0.07], [−0.07, 0.16]],
    # det S = 0.036 − 0.0049 = 0.0311, so dᵀS⁻¹d = 0.01 · 0.16 / 0.0311 and SMD = 0.22682.
    assert stats.smd_categorical([50, 30, 20], [40, 40, 20]) == pytest.approx(math.sqrt(0.0016 / 0.0311), rel=1e-12)
    # The same whichever level is the reference (the Mahalanobis distance does not depend on it).
    assert stats.smd_categorical([20, 50, 30], [20, 40, 40]) == pytest.approx(math.sqrt(0.0016 / 0.0311), rel=1e-12)
    assert stats.smd_categorical([12, 30, 18, 40], [25, 25, 10, 40]) == \
        pytest.approx(yang_dalton([.12, .30, .18, .40], [.25, .25, .10, .40]), rel=1e-12)

    workspace = _random_split_workspace(tmp_path / "ws")
    store = RunStore(workspace)
    run_id = _stored_run(store, 1, 1.0)
    ctx = report._ReportContext(workspace, store.run(run_id), None, {}, report.ReportConfig(run_id=run_id), {})
    section = report._table_one_section(ctx)
    cohort = load_workspace_cohort(workspace)
    table = stats.table_one(cohort, "split", ["age", "cea", "sex", "grade"], options=stats.TableOneOptions(smd=True))
    view = stats.journal_view(table)
    assert list(view.columns)[list(view.columns).index("P value") + 1] == "SMD"  # beside p
    train, validation = (cohort[cohort["split"] == g] for g in ("train", "validation"))
    pooled = math.sqrt((train["age"].var() + validation["age"].var()) / 2)
    age = abs(train["age"].mean() - validation["age"].mean()) / pooled
    shares = [[(part["grade"] == g).mean() for g in ("G1", "G2", "G3")] for part in (train, validation)]
    for value in (age, yang_dalton(*shares)):
        assert f"<td>{value:.3f}</td>" in section
    tests = int((table["p_value"].notna()).sum())
    found = int((table["p_value"] < 0.05).sum())
    note = stats.chance_note(table, True)
    assert "about 1 in 20" in note and f"about {tests / 20:.1f} of {tests} expected here, {found} found" in note
    assert html.escape(note) in section
    assert stats.chance_note(table, False) is None  # a label, or a column of the user's: no random split


def test_the_samples_own_split_is_random_and_a_column_of_the_users_is_not(tmp_path, sample_workspace):
    # Found in a new-user walk: the sample's Table 1 (its split column drawn at random, like the
    # paper's allocation) said nothing of chance, because no split had been saved from the page.
    import json
    import shutil

    from crc_core.cohort.splits import read_split

    workspace = Workspace(sample_workspace)
    assert read_split(workspace).config is None  # the split column of the tables, no split saved from the page
    assert stats.split_was_random(read_split(workspace), workspace)
    users = tmp_path / "users"
    users.mkdir()
    shutil.copy(workspace.clinical_csv, users / "clinical.csv")  # the same column, from a hospital's table
    assert not stats.split_was_random(read_split(Workspace(users)), Workspace(users))
    centre = tmp_path / "centre"
    centre.mkdir()
    (centre / "sample.json").write_text(json.dumps({"generator": "crc_core.sample", "centre": "Lanzhou"}))
    assert not stats.split_was_random(None, Workspace(centre))  # a second centre: every patient external
