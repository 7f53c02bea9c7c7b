"""Another centre and what a manuscript needs, wired: a run's AUC per cohort and centre pooled with
its heterogeneity (equal to statsmodels' meta-analysis), recalibration to an external cohort, the
sample size an external validation needs (CLI, equal to pmvalsampsize), prediction of another
centre from a config, and the TRIPOD+AI checklist filled from the workspace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crc_core.metrics as ev
from crc_core.evaluate import external as ex
from crc_core.evaluate import run_evaluation as me
from crc_core.cli import main
from crc_core.errors import CrcInputError
from crc_core.runs.store import RunStore
from tests.test_model_evaluation import stored_run

COHORTS = ("train", "validation", "external:Lanzhou", "external:Xian")


def _logit_effects(result, cohorts):
    effects, variances = [], []
    for cohort in cohorts:
        rows = me.labelled(result.predictions, cohort)
        auc, variance = ev.auc_variance(rows["y_true"].astype(int), rows["prob"])
        effects.append(np.log(auc / (1 - auc)))
        variances.append(variance / (auc * (1 - auc)) ** 2)
    return np.array(effects), np.array(variances)


def test_the_auc_of_every_held_out_cohort_and_centre_is_pooled_as_statsmodels_does(tmp_path):
    from statsmodels.stats.meta_analysis import combine_effects

    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=COHORTS, n=90)
    result = me.evaluate_run(store, run_id)
    assert ex.held_out_cohorts(result) == ["validation", "external:Lanzhou", "external:Xian"]
    comparison = ex.compare_centres(result, include_internal=True)
    assert comparison.cohorts["label"].tolist() == ["validation", "external: Lanzhou", "external: Xian"]
    effects, variances = _logit_effects(result, ex.held_out_cohorts(result))
    reference = combine_effects(effects, variances, method_re="dl")
    # With Q below its df, tau² is 0 (as metafor keeps it) and the random-effects mean is the fixed one.
    expected = reference.mean_effect_re if comparison.pooled["tau2"] > 0 else reference.mean_effect_fe
    assert comparison.pooled["logit_auc"] == pytest.approx(expected, rel=1e-9)
    assert comparison.pooled["q"] == pytest.approx(reference.q, rel=1e-9)
    assert comparison.cohorts["weight"].sum() == pytest.approx(100)
    assert "I²" in comparison.notes[0] and "Cochran's Q" in comparison.notes[0]
    single = me.evaluate_run(store, stored_run(store, seed=3))
    assert ex.compare_centres(single).pooled is None and "No external centre yet" in ex.compare_centres(single).notes[0]


def test_internal_validation_is_kept_out_of_the_pooled_auc_of_the_centres_unless_asked(tmp_path):
    """Issue 26: the pooled AUC rested on two cohorts, one an internal random split, with
    DerSimonian-Laird's z CI. By default it pools the external centres only, with
    Hartung-Knapp-Sidik-Jonkman's CI below five (metafor test = "knha", checked against R in
    test_meta_analysis), warns that two cannot estimate τ², and with one centre pools nothing."""
    from crc_core.metrics.meta_analysis import pool_logit

    store = RunStore(tmp_path)
    result = me.evaluate_run(store, stored_run(store, cohorts=COHORTS, n=90))
    comparison = ex.compare_centres(result)
    pooled, table = comparison.pooled, comparison.cohorts.set_index("cohort")
    assert pooled["n_cohorts"] == 2 and pooled["n_patients"] == 180 and pooled["test"] == "knha"
    assert table["pooled"].to_dict() == {"validation": False, "external:Lanzhou": True, "external:Xian": True}
    assert np.isnan(table.loc["validation", "weight"]) and table["weight"].sum() == pytest.approx(100)
    theirs = pool_logit(*_logit_effects(result, ["external:Lanzhou", "external:Xian"]), test="knha")
    assert (pooled["logit_auc"], pooled["logit_se"]) == pytest.approx((theirs["estimate"], theirs["se"]), rel=1e-12)
    assert (pooled["auc_low"], pooled["auc_high"]) == pytest.approx(
        (1 / (1 + np.exp(-theirs["low"])), 1 / (1 + np.exp(-theirs["high"]))), rel=1e-12)
    words = " ".join(comparison.notes)
    assert "Pooled over 2 external centres" in words and "Hartung-Knapp-Sidik-Jonkman" in words
    assert "τ² cannot be estimated from two cohorts" in words
    assert "internal validation cohort is shown but kept out of the pooled AUC" in words
    figure = ex.centre_figure(comparison, "t")
    assert list(figure.layout.yaxis.ticktext) == ["validation (internal, not pooled)", "external: Lanzhou",
                                                  "external: Xian", "pooled (random effects, HKSJ)"]
    assert ex.compare_centres(result, include_internal=True).pooled["n_cohorts"] == 3

    one = me.evaluate_run(store, stored_run(store, seed=5, cohorts=("train", "validation", "external:Lanzhou"), n=90))
    alone = ex.compare_centres(one)
    assert alone.pooled is None and "One external centre (external: Lanzhou): there is nothing to pool" in alone.notes[0]
    assert "include the internal validation cohort" in alone.notes[0]
    assert ex.compare_centres(one, include_internal=True).pooled["n_cohorts"] == 2


def test_recalibration_to_an_external_cohort_is_named_as_updating_the_model(tmp_path):
    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=COHORTS, n=120)
    # The external centre's scanner shifts every logit up by 1: calibration-in-the-large is off.
    rows = store.predictions(run_id, "external:Lanzhou")
    shifted = 1 / (1 + np.exp(-(ev.logit(rows["prob"].to_numpy()) + 1.0)))
    store.set_predictions(run_id, "external:Lanzhou", rows.assign(prob=shifted))
    result = me.evaluate_run(store, run_id)
    updated = ex.recalibrate_cohort(result, "external:Lanzhou", "intercept")
    # Calibration-in-the-large: the fitted offset undoes the scanner's shift (about −1), and afterwards
    # the expected events equal the observed ones.
    assert -1.8 < updated.fit["intercept"] < -0.4 and updated.fit["slope"] == 1
    assert updated.y_prob.sum() == pytest.approx(updated.y_true.sum(), rel=1e-6)
    logistic = ex.recalibrate_cohort(result, "external:Lanzhou", "logistic")
    assert logistic.after["slope"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(CrcInputError, match="has no labels: recalibration needs outcomes"):
        store.set_predictions(run_id, "external:Wuhan", pd.DataFrame({"patient_id": ["W1", "W2"], "prob": [0.2, 0.7]}))
        ex.recalibrate_cohort(me.evaluate_run(store, run_id), "external:Wuhan")


def test_validation_size_writes_one_row_per_criterion_equal_to_pmvalsampsize(tmp_path, capsys):
    from pmvalsampsize.pmvalsampsize import pmvalsampsize

    store = RunStore(tmp_path / "ws")
    run_id = stored_run(store, n=150)
    out = tmp_path / "size.csv"
    assert main(["--workspace", str(tmp_path / "ws"), "validation-size", "--run", run_id, "--threshold", "0.3",
                 "--out", str(out)]) == 0
    assert "an external validation needs" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert {"criterion", "n", "cstatistic", "prevalence", "lp_mean", "lp_sd", "threshold"} <= set(table.columns)
    assert table["criterion"].iloc[-1] == "largest" and table["n"].iloc[-1] == table["n"].iloc[:-1].max()
    first = table.iloc[0]
    theirs = pmvalsampsize(type="b", noprint=True, cstatistic=first["cstatistic"], prevalence=first["prevalence"],
                           lpnormal=(first["lp_mean"], first["lp_sd"]), oeciwidth=0.2, csciwidth=0.2, cstatciwidth=0.1,
                           threshold=0.3)
    assert int(table["n"].iloc[-1]) == int(theirs["sample_size"])
    assert main(["--workspace", str(tmp_path / "ws"), "validation-size", "--run", run_id, "--out", str(tmp_path / "x.txt")]) == 2
    worse_than_chance = stored_run(store, signal=-1.0)
    with pytest.raises(CrcInputError, match=r"validation C-statistic of 0\.\d+, no better than chance"):
        ex.validation_size(me.evaluate_run(store, worse_than_chance))


def test_another_centre_is_predicted_from_a_config_as_the_page_writes_it(tmp_path, capsys):
    from crc_core.evaluate.predict import PredictConfig

    with pytest.raises(CrcInputError, match="without ':' or slashes"):
        PredictConfig(run_id="r", source="/x", cohort="a/b")
    config = PredictConfig(run_id="r", source=str(tmp_path / "nowhere"))
    assert config.cohort == "nowhere"
    config.save(tmp_path / "predict.json")
    store = RunStore(tmp_path / "ws")
    run_id = stored_run(store)
    PredictConfig(run_id=run_id, source=str(tmp_path / "nowhere"), cohort="Lanzhou").save(tmp_path / "predict.json")
    assert main(["--workspace", str(tmp_path / "ws"), "predict", "--config", str(tmp_path / "predict.json")]) == 2
    assert "is not a folder on this machine" in capsys.readouterr().err


def test_the_tripod_ai_checklist_is_filled_from_the_workspace_and_exports(sample_workspace, tmp_path):
    import shutil

    from crc_core.reporting import tripod

    root = tmp_path / "ws"
    shutil.copytree(sample_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "crops", "runs"))
    from crc_core.labels.rules import label_workspace

    label_workspace(root)
    store = RunStore(root)
    clinical = pd.read_csv(root / "clinical.csv")
    rng = np.random.default_rng(0)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"},
                              info={"weights": {"pretrained": False}, "crop_set": "W400/L40, margin 0 px, 2D, 224 px"})
    for cohort in ("train", "validation"):
        ids = clinical.loc[clinical["split"] == cohort, "patient_id"]
        y = rng.integers(0, 2, len(ids))
        store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": ids, "y_true": y, "prob": rng.uniform(size=len(ids))}))
    store.finish(run_id, "done")
    table = tripod.checklist(root, me.evaluate_run(store, run_id))
    assert len(table) == len(tripod.ITEMS) and table["Item"].iloc[0] == "1" and table["Item"].iloc[-1] == "27c"
    items = table.set_index("Item")
    assert "synthetic sample cohort" in items.loc["5a", "In this work"]
    assert "TSR high: TSR > 50% stroma" in items.loc["8a", "In this work"]
    assert "random weights" in items.loc["26", "In this work"] and "no external validation" in items.loc["26", "In this work"]
    assert items.loc["18a", "Status"] == tripod.TO_WRITE and items.loc["23a", "Status"] == tripod.DOCUMENTED
    markdown = tripod.to_markdown(table)
    assert markdown.startswith("**TRIPOD+AI checklist") and "| 23a |" in markdown
    from docx import Document
    import io

    document = Document(io.BytesIO(tripod.to_docx(table)))
    assert len(document.tables[0].rows) == len(tripod.ITEMS) + 1


def test_the_sample_size_for_a_sample_run_equals_pmvalsampsize(training_workspace):
    """Riley et al. 2021 for a DenseNet-121 features run of the sample (validation AUC about 0.79),
    against the package itself given the same C-statistic, prevalence and linear predictor."""
    from pmvalsampsize.pmvalsampsize import pmvalsampsize

    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("densenet121",), device="cpu",
                                                       precision="fp32"))
    table = ex.validation_size(me.evaluate_run(RunStore(training_workspace), run_id), threshold=0.3)
    first = table.iloc[0]
    assert first["source_cohort"] == "validation" and first["cstatistic"] > 0.6
    theirs = pmvalsampsize(type="b", noprint=True, cstatistic=first["cstatistic"], prevalence=first["prevalence"],
                           lpnormal=(first["lp_mean"], first["lp_sd"]), threshold=0.3)
    assert int(table["n"].iloc[-1]) == int(theirs["sample_size"])
    words = ex.validation_size_in_words(table)
    assert words["Patients"].tolist() == table["n"].tolist() and words["High class"].dtype.kind == "i"
    assert words["CI width aimed at"].iloc[-1] == "" and words["Criterion"].iloc[-1] == "largest"


def test_predict_refuses_the_workspace_itself_or_its_own_patients_volumes(tmp_path, capsys, monkeypatch):
    """An external cohort is other patients: the workspace itself, a copy of it, a copy whose IDs
    were renamed and one linking its images are refused before anything is cropped or stored."""
    import shutil
    from pathlib import Path

    from crc_core.evaluate.predict import check_other_patients
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace
    from crc_core.workspace import Workspace

    home = build_sample_workspace(tmp_path / "home", SampleConfig(n_patients=12, workers=1)).root
    run_id = stored_run(RunStore(home))
    copy = tmp_path / "copy"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("runs"))
    renamed = tmp_path / "renamed"
    shutil.copytree(home, renamed, ignore=shutil.ignore_patterns("runs"))
    manifest = pd.read_csv(renamed / "manifest.csv")
    manifest["patient_id"] = "X" + manifest["patient_id"]
    manifest.to_csv(renamed / "manifest.csv", index=False)
    linked = tmp_path / "linked"
    linked.mkdir()
    shutil.copy(home / "manifest.csv", linked / "manifest.csv")
    for folder in ("images", "masks"):
        (linked / folder).symlink_to(home / folder, target_is_directory=True)
    (tmp_path / "alias").symlink_to(home, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    first = pd.read_csv(home / "manifest.csv")["patient_id"][0]
    cases = [
        (home, "is this workspace itself"), (Path("home/"), "is this workspace itself"),
        (tmp_path / "alias", "is this workspace itself"),
        (copy, f"holds CT volumes of this workspace's own patients ({first}, "),
        (renamed, f"(X{first} (this workspace's {first}), "),
        (linked, "holds CT volumes of this workspace's own patients"),
    ]
    before = RunStore(home).predictions(run_id)
    for source, words in cases:
        assert main(["--workspace", str(home), "predict", "--run", run_id, "--from", str(source), "--cohort", "C"]) == 2
        err = capsys.readouterr().err
        assert words in err, err
        assert err.count("\n") == 1
        assert not (Path(source) / "crops").exists()
    pd.testing.assert_frame_equal(RunStore(home).predictions(run_id), before)
    # Another centre, and the development sample drawn with another seed, are other patients.
    other = build_sample_workspace(tmp_path / "lanzhou", SampleConfig(n_patients=12, centre="Lanzhou", workers=1))
    check_other_patients(Workspace(home), other)
    check_other_patients(Workspace(home), build_sample_workspace(tmp_path / "seed", SampleConfig(n_patients=12, seed=4, workers=1)))


def test_validation_size_starts_from_an_external_cohort_when_asked_and_rounds_events_up(tmp_path, capsys):
    import math

    from pmvalsampsize.pmvalsampsize import pmvalsampsize
    from sklearn.metrics import roc_auc_score

    store = RunStore(tmp_path / "ws")
    run_id = stored_run(store, n=150, cohorts=("train", "validation", "external:Lanzhou"))
    result = me.evaluate_run(store, run_id)
    lanzhou = store.predictions(run_id, "external:Lanzhou")
    table = ex.validation_size(result, cohort="external:Lanzhou")
    first = table.iloc[0]
    assert first["source_cohort"] == "external:Lanzhou"
    assert first["cstatistic"] == pytest.approx(roc_auc_score(lanzhou["y_true"].astype(int), lanzhou["prob"]), abs=1e-12)
    assert first["prevalence"] == pytest.approx(lanzhou["y_true"].mean(), abs=1e-12)
    assert table.iloc[0]["cstatistic"] != ex.validation_size(result).iloc[0]["cstatistic"]
    with pytest.raises(CrcInputError, match=r"no held-out cohort 'train'.*validation, external:Lanzhou"):
        ex.validation_size(result, cohort="train")
    # Events as pmvalsampsize prints them: "with 82 events" for 4544 × 0.018 = 81.8, never 81.
    theirs = pmvalsampsize(type="b", noprint=True, cstatistic=first["cstatistic"], prevalence=first["prevalence"],
                           lpnormal=(first["lp_mean"], first["lp_sd"]))
    words = ex.validation_size_in_words(table)
    assert words["High class"].iloc[-1] == math.ceil(theirs["events"]) == ex.events_needed(theirs["events"])
    out = tmp_path / "size.csv"
    assert main(["--workspace", str(tmp_path / "ws"), "validation-size", "--run", run_id, "--cohort", "external:Lanzhou",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"({math.ceil(theirs['events'])} of the high class), from its external:Lanzhou cohort" in said
    assert pd.read_csv(out)["source_cohort"].iloc[0] == "external:Lanzhou"


@pytest.mark.parametrize("ci_method, words", [("delong", "DeLong"), ("bootstrap", "bootstrap")])
def test_a_cohorts_auc_has_one_ci_table_2_the_centres_table_the_forest_plot_and_the_report_agree(tmp_path, ci_method,
                                                                                                  words):
    """Issue 26: the same validation AUC read 0.776-0.932 in Table 2 (DeLong, AUC scale) and
    0.758-0.916 in the forest plot (logit scale). Each cohort's CI is now Table 2's wherever it is
    printed, named with its method; the logit-scale CI appears only on the pooled row, named."""
    import html as html_module
    import re

    from crc_core.reporting import report
    from crc_core.metrics.meta_analysis import cohort_aucs

    store = RunStore(tmp_path)
    run_id = stored_run(store, cohorts=COHORTS, n=90)
    result = me.evaluate_run(store, run_id, ci_method=ci_method, n_boot=300)
    table2 = me.table2_for_people(result).set_index("Cohort")["95% CI"]
    comparison = ex.compare_centres(result)
    shown = ex.centre_table(comparison)
    column = f"95% CI ({words})"
    assert column in shown.columns and "Pooled CI (logit scale, for pooling)" in shown.columns
    figure = ex.centre_figure(comparison, "t")
    annotations = [a.text for a in figure.layout.annotations]
    assert f"95% CI ({words}, as Table 2)" in figure.layout.xaxis.title.text
    assert "pooled: 95% CI (logit scale, HKSJ)" in figure.layout.xaxis.title.text
    ctx = report._ReportContext(None, result.run, result, {}, report.ReportConfig(run_id=run_id),
                                report.run_figures(tmp_path, result))
    section = html_module.unescape(report._centres_section(ctx))
    table_two = html_module.unescape(report._table_two_section(ctx))
    logit = cohort_aucs(result.predictions[result.predictions["cohort"].isin(["external:Lanzhou", "external:Xian"])])
    for i, cohort in enumerate(ex.held_out_cohorts(result)):
        label, m = comparison.cohorts["label"][i], result.metrics[cohort]
        ci = table2[label]
        assert ci == f"{m['auc_low']:.3f}-{m['auc_high']:.3f}"
        assert shown.loc[shown["Cohort"] == label, column].item() == ci  # the page's and the report's table
        assert annotations[i] == f"{m['auc']:.3f} ({ci})"  # the forest plot, on the page and in the report
        assert re.search(rf"<td>{re.escape(ci)}</td>", table_two) and re.search(rf"<td>{re.escape(ci)}</td>", section)
        assert f"{m['auc']:.3f} ({ci})" in section
    for row in logit.itertuples():  # the logit-scale CIs of the cohorts are not printed as if they were Table 2's
        assert f"{row.low:.3f}-{row.high:.3f}" not in section and f"({row.low:.3f}-{row.high:.3f})" not in section
    pooled = comparison.pooled
    assert annotations[-1] == f"{pooled['auc']:.3f} ({pooled['auc_low']:.3f}-{pooled['auc_high']:.3f})"
    assert shown["Pooled CI (logit scale, for pooling)"].iloc[-1] == f"{pooled['auc_low']:.3f}-{pooled['auc_high']:.3f}"
    assert f"Each cohort's 95% CI is Table 2's ({words}, on the AUC scale)" in section
