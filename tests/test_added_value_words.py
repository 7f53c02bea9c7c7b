"""What the clinical variables add (issue 26, point 7): an NRI of 0.50 with p 0.017 was shown beside
a likelihood-ratio test finding no added value (p 0.44). The combined model now leads with the
likelihood-ratio test and the AUC difference from the DL model alone, and shows the category-free
NRI and IDI without p values, with Pepe et al.'s (2014) caveat — on the page and in the report."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crc_core.evaluate import combined_model as cm
from crc_core.runs.store import OUT_OF_FOLD, RunStore
from crc_core.workspace import Workspace


@pytest.fixture()
def combined(tmp_path):
    """A DL run whose score alone carries the outcome, and its combined model with an age that
    carries nothing (the clinical variable adds no value by construction)."""
    from crc_core.cohort.join import split_workspace
    from crc_core.cohort.splits import SplitConfig

    rng = np.random.default_rng(21)
    n = 200
    ids = [f"P{i:03d}" for i in range(n)]
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir(parents=True)
    pd.DataFrame({"patient_id": ids, "age": rng.normal(62, 9, n).round(1),
                  "sex": rng.choice(["M", "F"], n)}).to_csv(workspace.clinical_csv, index=False)
    pd.DataFrame({"patient_id": ids, "tsr": rng.integers(20, 80, n)}).to_csv(workspace.pathology_csv, index=False)
    split = split_workspace(workspace, SplitConfig())
    y = rng.integers(0, 2, n)
    prob = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1, n))))
    store = RunStore(workspace)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"})
    train = (split.set_index("patient_id").loc[ids, "split"] == "train").to_numpy()
    for cohort, rows in (("train", train), ("validation", ~train), (OUT_OF_FOLD, train)):
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": np.array(ids)[rows], "y_true": y[rows],
                                                            "prob": prob[rows]}))
    store.finish(run_id, "done")
    fitted = cm.fit_combined(workspace, cm.CombinedConfig(run_id=run_id, variables=("age",)))
    return workspace, store, run_id, store.run(fitted.run_id)


def test_the_lr_test_says_what_it_shows(combined):
    _, _, _, run = combined
    test = run.info["added_value"]["lr_test"]
    words = cm.lr_test_words(run)
    assert f"χ² {test['lr_statistic']:.2f}, df 1" in words
    assert words.endswith("no evidence that they add to the DL score." if test["p"] >= 0.05 else
                          "evidence that they add to the DL score.")


def test_the_auc_difference_is_the_combined_minus_the_dl_alone_on_the_same_patients(combined):
    _, store, run_id, run = combined
    table = cm.auc_difference(store.workspace, run).set_index("cohort")
    new = store.predictions(run.run_id, "validation").set_index("patient_id")
    old = store.predictions(run_id, "validation").set_index("patient_id").loc[new.index]
    y = new["y_true"].astype(int)
    expected = roc_auc_score(y, new["prob"]) - roc_auc_score(y, old["prob"])
    row = table.loc["validation"]
    assert row["difference"] == pytest.approx(expected, abs=1e-12) and row["n"] == len(new)
    assert row["low"] < row["difference"] < row["high"]
    people = cm.auc_difference_for_people(table.reset_index())
    assert people["AUC difference (95% CI)"].iloc[0] == f"{row['difference']:+.3f} ({row['low']:+.3f} to {row['high']:+.3f})"
    assert people["What it shows"].iloc[0].startswith("no evidence of a difference" if row["p"] >= 0.05 else "evidence")


def test_the_nri_is_shown_without_a_p_value_and_with_pepes_caveat(combined):
    _, _, _, run = combined
    table = cm.added_value_table(run)
    assert list(table.columns) == ["Cohort", "Measure", "Estimate (95% CI)", "CI"]
    assert "NRI" in set(table["Measure"])
    assert "Pepe et al." in cm.NRI_CAVEAT and "without p values" in cm.NRI_CAVEAT


def test_the_report_leads_with_the_lr_test_and_the_auc_difference(combined):
    from crc_core.reporting import report

    workspace, store, _, run = combined
    ctx = report._ReportContext(workspace, run, None, {}, report.ReportConfig(run_id=run.run_id), {})
    section = report._figures_section(ctx)
    lr = section.index(html.escape(cm.lr_test_words(run)))
    auc = section.index("AUC of the combined model against the DL model alone")
    nri = section.index("Reclassification against the DL model alone")
    assert lr < auc < nri < section.index(html.escape(cm.NRI_CAVEAT))
    reclassification = section[nri:]
    assert "<th>P</th>" not in reclassification and "<th>p</th>" not in reclassification
