"""AppTest for every page, run on the page file itself, as a user opening it by URL would."""

from pathlib import Path

import json

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "cohort", "labels", "ct_roi", "train", "evaluate"]
TIMEOUT_S = 60


def run_page(name: str) -> AppTest:
    app = AppTest.from_file(str(REPO_ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT_S)
    return app.run()


def open_view(app: AppTest, view: str) -> AppTest:
    """Click a view on the Evaluate page's bar (only the chosen view is drawn)."""
    return app.segmented_control(key="tab").set_value(view).run()


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_the_sample(page, sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page(page)
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert app.title, "every page has a title"


@pytest.mark.parametrize("page", PAGES)
def test_page_explains_a_missing_workspace(page, tmp_path, use_workspace):
    use_workspace(tmp_path / "gone")
    app = run_page(page)
    assert not app.exception
    assert "does not exist" in app.error[0].value
    assert any("crc-time --workspace" in info.value for info in app.info)


def test_page_explains_a_damaged_table(writable_workspace, use_workspace):
    (writable_workspace / "pathology.csv").write_text("this is not,the table\nreally,not\n")
    use_workspace(writable_workspace)
    app = run_page("labels")
    assert not app.exception
    assert "pathology.csv has no 'patient_id' column" in app.error[0].value
    assert "Rebuild the sample" in app.error[0].value  # it is the sample workspace
    (writable_workspace / "sample.json").unlink()  # a user's own cohort: no talk of the sample
    app = run_page("labels")
    assert "import the tables again on the Cohort page" in app.error[0].value
    assert "sample" not in app.error[0].value and not app.info


def test_home_shows_the_cohort_size(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page("home")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Patients": "315", "Training cohort": "220", "Validation cohort": "95"}


def test_sidebar_shows_workspace_and_cohort_size(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S).run()
    assert not app.exception
    assert app.sidebar.text_input[0].value == str(sample_workspace)
    assert "315 patients" in app.sidebar.caption[0].value
    assert "220 train / 95 validation" in app.sidebar.caption[0].value


def test_the_workspace_comes_from_the_url(sample_workspace, tmp_path, use_workspace):
    # AppTest loses the sidebar on reruns under st.navigation, so the choice is put in the URL
    # here; the browser walk types it into the real sidebar and reloads.
    use_workspace(sample_workspace)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    app.query_params["workspace"] = str(tmp_path / "elsewhere")
    app.run()
    assert not app.exception
    assert "No usable cohort" in app.sidebar.warning[0].value
    assert "does not exist" in app.error[0].value
    fresh = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S).run()
    assert fresh.query_params["workspace"] == str(sample_workspace)  # written into the URL for a reload


def test_cohort_imports_the_sample_tables_without_an_upload(sample_workspace, tmp_path, use_workspace):
    # AppTest cannot drive st.file_uploader; the sample button runs the same import path.
    use_workspace(sample_workspace)
    target = tmp_path / "imported"
    app = run_page("cohort")
    [field for field in app.text_input if field.label.startswith("Workspace folder for")][0].set_value(str(target))
    app.button(key="import_sample").click().run()
    assert not app.exception, app.exception
    assert any("Imported 315 patients" in s.value and "split 220 train / 95 validation" in s.value for s in app.success)
    assert (target / "clinical.csv").exists() and (target / "split.csv").exists()
    assert app.query_params["workspace"] == str(target)


def test_importing_into_a_folder_with_a_cohort_needs_a_confirmation(sample_workspace, writable_workspace, use_workspace):
    # Found in use: "Import the sample tables instead" silently replaced a user's tables.
    use_workspace(sample_workspace)
    (writable_workspace / "sample.json").unlink()
    before = (writable_workspace / "clinical.csv").read_bytes()
    app = run_page("cohort")
    [field for field in app.text_input if field.label.startswith("Workspace folder for")][0].set_value(str(writable_workspace)).run()
    assert any("already holds a cohort (315 patients" in w.value for w in app.warning)
    assert app.button(key="import_sample").disabled  # a browser user cannot click it
    assert (writable_workspace / "clinical.csv").read_bytes() == before
    app.checkbox(key="replace_cohort").check().run()
    app.button(key="import_sample").click().run()
    assert not app.exception, app.exception
    assert any("Imported 315 patients" in s.value for s in app.success)
    assert (writable_workspace / "split.csv").exists() and not (writable_workspace / "labels.csv").exists()


def test_cohort_split_form_saves_the_seed_it_was_given(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = run_page("cohort")
    app.number_input(key="split_seed").set_value(11)
    app.checkbox(key="replace_table_split").check()  # the sample's split is its table's own
    [b for b in app.button if "split" in str(b.label).lower()][0].click().run()
    assert not app.exception, app.exception
    saved = json.loads((writable_workspace / "split.json").read_text())
    assert saved["config"]["seed"] == 11 and saved["counts"] == {"train": 220, "validation": 95}
    assert any("Saved split.csv: 315 patients: 220 train / 95 validation" in s.value for s in app.success)
    assert any("Split in use: 220 train / 95 validation (from split.csv)" in c.value for c in app.caption)


def test_labels_page_applies_a_cutoff_and_saves(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = run_page("labels")
    default_summary = app.info[0].value
    assert "TSR high" in default_summary and "tsr_high" not in default_summary and "not saved yet" in default_summary
    [n for n in app.number_input if n.label.startswith("TSR high")][0].set_value(30.0).run()
    assert not app.exception, app.exception
    assert app.info[0].value != default_summary  # a lower cut-off makes more patients TSR-high
    app.button(key="save_labels").click().run()
    assert not app.exception
    saved = pd.read_csv(writable_workspace / "labels.csv")
    assert ((saved["tsr_percent"] > 30) == saved["tsr_high"].astype(bool)).all()
    assert json.loads((writable_workspace / "labels.json").read_text())["config"]["tsr_cutoff_percent"] == 30.0
    assert "these rules are saved" in app.info[0].value


def test_labels_page_shows_and_applies_the_same_marker_cutoffs(sample_workspace, use_workspace):
    # Found in use: the boxes showed all-patient medians (446/677/...) while the training medians
    # (452/671/...) were applied.
    use_workspace(sample_workspace)
    app = run_page("labels")
    names = {"cd3_ca": "CD3+ centre", "cd3_im": "CD3+ margin", "cd8_ca": "CD8+ centre", "cd8_im": "CD8+ margin"}
    shown = {m.label.removesuffix(" above (cells/mm²)"): m.value for m in app.metric if m.label.endswith("(cells/mm²)")}
    pathology = pd.read_csv(sample_workspace / "pathology.csv").merge(pd.read_csv(sample_workspace / "clinical.csv")[["patient_id", "split"]])
    train = pathology[pathology["split"] == "train"]
    for marker, name in names.items():
        assert shown[name] == f"{train[marker].median():g}"  # its unit in the label, where a narrow column cannot cut it off
        assert f"{name} > {train[marker].median():g} cells/mm² (median of the 220 training patients" in \
            [c.value for c in app.caption if "cut-offs applied" in c.value][0]
    app.radio(key=[r.key for r in app.radio if r.label.startswith("Marker cut-offs")][0]).set_value("given").run()
    boxes = {n.label: n.value for n in app.number_input if "cells/mm²" in n.label}
    assert boxes["CD3+ centre above (cells/mm²)"] == pytest.approx(train["cd3_ca"].median())
    prevalence = [d.value for d in app.dataframe if "% high" in d.value.columns][0]
    assert list(prevalence.columns) == ["Label", "Cohort", "Patients", "High", "% high", "Missing"]
    assert prevalence["Label"].iloc[0] == "TSR high" and prevalence["Cohort"].iloc[0] == "training"


def test_labels_page_refuses_an_impossible_cutoff_and_resets_to_the_papers_rules(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = run_page("labels")
    tsr = [n for n in app.number_input if n.label.startswith("TSR high")][0]
    tsr.set_value(150.0).run()
    assert not app.exception
    assert "The TSR cut-off must be a percentage from 0 to 99" in app.error[0].value and "got 150" in app.error[0].value
    # Said right under the box, where the user is looking: nothing of the page below it is drawn.
    assert not [r for r in app.radio if r.label.startswith("Marker cut-offs")] and not app.info
    app.button(key="reset_rules").click().run()
    assert not app.error
    assert [n for n in app.number_input if n.label.startswith("TSR high")][0].value == 50.0


def test_labels_page_shows_reader_agreement_and_names_the_ci(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page("labels")
    assert any("Cohen's kappa" in c.value and "Fleiss-Cohen-Everitt" in c.value and "Wald" in c.value for c in app.caption)


def test_cohort_table_one_starts_from_the_saved_column_mapping(writable_workspace, use_workspace):
    (writable_workspace / "column_mapping.json").write_text(
        '{"group_column": "sex", "variable_types": {"age": "categorical"}}'
    )
    use_workspace(writable_workspace)
    app = run_page("cohort")
    assert not app.exception, app.exception
    assert [s for s in app.selectbox if s.label == "Compare by"][0].value == "sex"
    assert "age" in [m for m in app.multiselect if m.label == "Treat as categorical"][0].value


def test_cohort_split_form_holds_out_an_external_centre(writable_workspace, use_workspace):
    clinical = pd.read_csv(writable_workspace / "clinical.csv")
    clinical["centre"] = ["B" if i % 5 == 0 else "A" for i in range(len(clinical))]
    clinical.to_csv(writable_workspace / "clinical.csv", index=False)
    use_workspace(writable_workspace)
    app = run_page("cohort")
    app.radio[0].set_value("external")
    [s for s in app.selectbox if s.label.startswith("Centre column")][0].set_value("centre")
    [t for t in app.text_input if t.label.startswith("External centres")][0].set_value("B")
    app.checkbox(key="replace_table_split").check()  # the sample's split is its table's own
    [b for b in app.button if "split" in str(b.label).lower()][0].click().run()
    assert not app.exception, app.exception
    split = pd.read_csv(writable_workspace / "split.csv")
    assert (split["split"] == "external").sum() == (clinical["centre"] == "B").sum()


def wait_for_job(root, step: str, timeout_s: float = 120.0):
    import time

    from crc_core.jobs import latest_job

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = latest_job(root, step)
        if job is not None and job.finished:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"the {step} job did not finish in {timeout_s} s")


def test_ct_roi_page_runs_preprocessing_in_a_worker_and_shows_the_crops(imaging_workspace, use_workspace):
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    assert not app.exception, app.exception
    assert any("No crops in use yet" in i.value for i in app.info)
    [r for r in app.radio if r.label.startswith("Margin")][0].set_value(10)
    [b for b in app.button if b.label == "Run preprocessing"][0].click().run()
    job = wait_for_job(imaging_workspace, "preprocess")
    assert job.state == "done", job.message
    assert (imaging_workspace / "jobs" / job.job_id / "config.json").exists()
    app.run()
    assert not app.exception, app.exception
    assert any("315 of 315 patients cropped" in s.value and "margin 10 px" in s.value for s in app.success)
    images = [e for e in app.main if type(e).__name__ == "Image"]
    assert len(images) == 24 + 1  # a page of the gallery and the viewer
    assert [s for s in app.slider if s.label == "Slice"][0].value >= 0


def test_ct_roi_page_groups_failures_and_the_others_go_on(imaging_workspace, use_workspace):
    from crc_core.imaging.preprocess import preprocess_cohort

    manifest = pd.read_csv(imaging_workspace / "manifest.csv")
    manifest.loc[0, "mask"] = "masks/does_not_exist.nii.gz"
    manifest.to_csv(imaging_workspace / "manifest.csv", index=False)
    preprocess_cohort(imaging_workspace, patients=list(manifest["patient_id"][:6]), workers=1)
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    assert not app.exception, app.exception
    assert any("1 patients could not be cropped" in w.value for w in app.warning)
    groups = app.dataframe[0].value
    assert groups.to_dict("records") == [{"reason": "the mask does not exist. Check the path in manifest.csv.",
                                          "patients": 1, "examples": manifest["patient_id"][0]}]
    assert "does_not_exist" in app.dataframe[1].value["message"].iloc[0]


def test_ct_roi_page_says_plainly_when_nothing_was_cropped_and_keeps_the_last_good_set(imaging_workspace, use_workspace):
    # Found in use: with label value 2 every patient failed, yet the page showed a green box,
    # "the others are ready", and a 5,000-px wall of joined messages; Home counted it as done.
    from crc_core.workflow import workflow_status

    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    [n for n in app.number_input if n.label.startswith("Tumour label value")][0].set_value(2)
    [b for b in app.button if b.label == "Run preprocessing"][0].click().run()
    job = wait_for_job(imaging_workspace, "preprocess")
    assert job.state == "failed" and len(job.message) < 400
    assert job.message.startswith("Nothing was cropped: all 315 patients failed — 315 × the mask has no voxels with label 2")
    app.run()
    assert not app.exception, app.exception
    assert not app.success
    assert app.error[0].value.startswith("Preprocessing failed: Nothing was cropped")
    assert app.dataframe[0].value["patients"].tolist() == [315]
    assert any("No crops in use yet" in i.value for i in app.info)
    crops = {s.step: s for s in workflow_status(imaging_workspace)}["CT & ROI"]
    assert not crops.done


def test_a_second_start_is_refused_with_a_message(imaging_workspace, use_workspace):
    # Found in use: a double click on "Compute reader agreement" started two jobs in one folder.
    from crc_core.jobs import list_jobs

    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    [c for c in app.checkbox if c.label == "PyRadiomics features"][0].set_value(False)
    button = [b for b in app.button if b.label == "Compute reader agreement"][0]
    button.click().run()
    [b for b in app.button if b.label == "Compute reader agreement"][0].click().run()
    assert any("already running" in w.value for w in app.warning)
    assert len(list_jobs(imaging_workspace, "agreement")) == 1
    assert wait_for_job(imaging_workspace, "agreement").state == "done"


def test_ct_roi_page_computes_reader_agreement_in_a_worker_and_drops_stale_features(imaging_workspace, use_workspace):
    # An earlier run with PyRadiomics features left its feature table behind.
    folder = imaging_workspace / "agreement"
    folder.mkdir()
    pd.DataFrame({"feature": ["original_shape_Volume"], "icc": [0.9], "icc_low": [0.8], "icc_high": [0.95],
                  "wilcoxon_p": [0.5], "mean_r1": [1.0], "mean_r2": [1.0], "reliable": [True]}).to_csv(folder / "features.csv", index=False)
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    [c for c in app.checkbox if c.label == "PyRadiomics features"][0].set_value(False)
    [b for b in app.button if b.label == "Compute reader agreement"][0].click().run()
    job = wait_for_job(imaging_workspace, "agreement")
    assert job.state == "done", job.message
    app.run()
    assert not app.exception, app.exception
    assert any("315 of 315 patients with two readers: median Dice" in s.value for s in app.success)
    # Found in use: the previous feature-ICC table and its CSV were still offered.
    assert not (folder / "features.csv").exists()
    assert not any("icc" in d.value.columns for d in app.dataframe)
    assert [b.label for b in app.get("download_button")] == ["Per-patient agreement (CSV)"]


def test_ct_roi_page_shows_feature_iccs(imaging_workspace, use_workspace):
    pytest.importorskip("radiomics")
    from crc_core.imaging.reader_study import reader_agreement

    reader_agreement(imaging_workspace, patients=[f"CRC{i:03d}" for i in range(1, 7)], workers=1)
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    assert not app.exception, app.exception
    tables = [d.value for d in app.dataframe]
    icc_table = [t for t in tables if "icc" in t.columns][0]
    assert len(icc_table) > 50 and icc_table["icc"].is_monotonic_increasing
    charts = app.get("plotly_chart")
    assert len(charts) == 3  # Dice and HD95, Bland-Altman of the volumes, ICC by feature class


def test_ct_roi_page_takes_imaging_from_a_folder_and_names_incomplete_patients(writable_workspace, use_workspace, tmp_path):
    import SimpleITK as sitk
    import numpy as np

    folder = tmp_path / "from-pacs"
    for patient in ("A1", "A2"):
        array = np.zeros((4, 16, 16), np.int16)
        array[1:3, 4:9, 4:9] = 1
        for name in ("ct", "mask"):
            (folder / patient).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / patient / f"{name}.nii.gz"))
    use_workspace(writable_workspace)
    app = run_page("ct_roi")
    [t for t in app.text_input if t.label.startswith("…or a folder")][0].set_value(str(folder))
    app.radio(key="import_mode").set_value("replace")  # the workspace lists patients already
    app.run()  # the button is enabled once a folder is typed and merge or replace chosen
    [b for b in app.button if b.label == "Use these images"][0].click().run()
    assert not app.exception, app.exception
    assert any("manifest.csv lists 2 patients" in s.value for s in app.success)
    manifest = pd.read_csv(writable_workspace / "manifest.csv")
    assert list(manifest["patient_id"]) == ["A1", "A2"]
    assert manifest["image"][0] == str(folder / "A1" / "ct.nii.gz")  # outside the workspace: absolute, left in place

    (folder / "A2" / "mask.nii.gz").unlink()
    app.run()
    [b for b in app.button if b.label == "Use these images"][0].click().run()
    assert any("No image or no mask found for: A2" in e.value for e in app.error)


def test_table_one_and_its_exports_are_computed_once_per_input(writable_workspace, use_workspace, monkeypatch):
    import crc_core.cohort.table1
    import crc_core.cohort.table_export

    calls = {"table_one": 0, "all_exports": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    st.cache_data.clear()  # another test may have computed this very table already
    monkeypatch.setattr(crc_core.cohort.table1, "table_one", counting("table_one", crc_core.cohort.table1.table_one))
    monkeypatch.setattr(crc_core.cohort.table_export, "all_exports", counting("all_exports", crc_core.cohort.table_export.all_exports))
    use_workspace(writable_workspace)
    app = run_page("cohort")
    assert calls == {"table_one": 1, "all_exports": 1}
    app.run()  # reruns with the same input: nothing recomputed
    app.run()
    assert calls == {"table_one": 1, "all_exports": 1}
    [r for r in app.radio if r.label == "P values"][0].set_value("spss")
    [b for b in app.button if b.label == "Compute Table 1"][0].click().run()
    assert calls == {"table_one": 2, "all_exports": 2}


def test_the_patient_viewer_reads_the_volumes_once_not_per_slider_move(imaging_workspace, use_workspace, monkeypatch):
    import crc_core.imaging.viewer

    st.cache_resource.clear()  # another test may have opened this very patient already
    reads = []
    original = crc_core.imaging.viewer.load_case
    monkeypatch.setattr(crc_core.imaging.viewer, "load_case", lambda row, label=None: reads.append(row["patient_id"]) or original(row, label))
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    slider = [s for s in app.slider if s.label == "Slice"][0]
    for z in (1, 2, 3):
        slider.set_value(z).run()
        slider = [s for s in app.slider if s.label == "Slice"][0]
    assert not app.exception
    assert reads == ["CRC001"]


def test_train_page_says_what_is_missing_on_the_bare_sample(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page("train")
    assert not app.exception, app.exception
    warnings = [w.value for w in app.warning]
    assert "No labels yet: build and save them on the Labels page." in warnings
    assert any(w.startswith("No crops yet") for w in warnings)
    assert [b for b in app.button if b.label == "Start training"][0].disabled
    assert any("No runs yet" in i.value for i in app.info)


def test_train_page_trains_a_grid_in_a_worker_and_lists_its_runs(training_workspace, use_workspace):
    pytest.importorskip("torch")
    use_workspace(training_workspace)
    app = run_page("train")
    assert not app.exception, app.exception
    [m for m in app.multiselect if m.label == "Targets"][0].set_value(["tsr", "til"])
    [m for m in app.multiselect if m.label == "Backbones"][0].set_value(["resnet34"])
    [r for r in app.radio if r.label == "Start from"][0].set_value("random")
    [b for b in app.button if b.label == "Start training"][0].click().run()
    job = wait_for_job(training_workspace, "train", 240)
    assert job.state == "done", job.message
    from crc_core.training.grid import TrainConfig

    config = TrainConfig.load(training_workspace / "jobs" / job.job_id / "config.json")
    assert config.targets == ("tsr", "til") and config.weights == "random"
    app.run()
    assert not app.exception, app.exception
    overview = [d.value for d in app.dataframe if "Run" in d.value.columns][0]
    assert sorted(overview["Target"]) == ["TIL", "TSR"] and set(overview["Status"]) == {"done"}
    assert set(overview["Model"]) == {"ResNet-34"} and set(overview["Mode"]) == {"frozen features"}
    assert overview["AUC validation"].str.fullmatch(r"0\.\d{3}|1\.000").all()
    assert "run_id" not in overview.columns and "target" not in overview.columns  # words for people
    assert any("random init" in c.value for c in app.caption)
    assert len(app.get("plotly_chart")) == 2  # the penalty path of the fast mode, and AUC per run


def test_evaluate_page_without_runs_says_where_to_get_one(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page("evaluate")
    assert not app.exception, app.exception
    assert any("No finished runs yet: train a model on the Train page" in i.value for i in app.info)


def test_evaluate_page_opens_on_the_latest_run_and_remembers_the_choice_in_the_url(tmp_path, use_workspace):
    from crc_core.runs.store import RunStore
    from tests.test_model_evaluation import stored_run

    root = tmp_path / "ws"
    root.mkdir()
    for name in ("clinical.csv", "pathology.csv"):
        (root / name).write_text("patient_id,x\nP1,1\nP2,2\n")
    store = RunStore(root)
    older = stored_run(store, seed=1)
    latest = stored_run(store, seed=2, backbone="resnet50")
    use_workspace(root)
    app = run_page("evaluate")
    assert not app.exception, app.exception
    assert app.selectbox(key="evaluate_run").value == latest
    open_view(app, "table-2")
    table = [d.value for d in app.dataframe if "Cohort" in d.value.columns][0]
    assert table["Cohort"].tolist() == ["training (apparent: resubstituted)", "validation"] and table["Model"].iloc[0] == "ResNet-50 (frozen features)"
    assert table["AUC"].str.fullmatch(r"\d\.\d{3}").all() and table["95% CI"].str.fullmatch(r"\d\.\d{3}-\d\.\d{3}").all()
    assert [b.label for b in app.get("download_button")][:2] == ["metrics.csv", "Table 2 (Excel)"]
    charts = {view: len(open_view(app, view).get("plotly_chart")) for view in ("roc", "violin", "decision", "calibration")}
    assert charts == {"roc": 1, "violin": 1, "decision": 2, "calibration": 1}  # the decision curve and its impact view
    app.selectbox(key="evaluate_run").set_value(older).run()
    assert app.query_params["run"] == older
    reopened = AppTest.from_file(str(REPO_ROOT / "pages" / "evaluate.py"), default_timeout=TIMEOUT_S)
    reopened.query_params["run"] = older
    reopened.run()
    assert reopened.selectbox(key="evaluate_run").value == older


def test_grad_cam_is_computed_in_a_worker_and_shown_over_the_crops(training_workspace, use_workspace):
    pytest.importorskip("torch")
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    use_workspace(training_workspace)
    app = open_view(run_page("evaluate"), "grad-cam")
    assert any("No maps yet" in i.value for i in app.info)
    [b for b in app.button if b.label.startswith("Compute Grad-CAM for")][0].click().run()
    job = wait_for_job(training_workspace, "cam", 120)
    # The 32-px crops of this small workspace end in a 1 × 1 map at layer4: said, not drawn.
    assert job.state == "failed" and "sees a 1 × 1 map" in job.message
    app.run()
    layer = app.selectbox(key="cam_layer")
    assert layer.options == ["backbone.layer4", "backbone.layer3", "backbone.layer2"]  # deepest first, the default
    layer.set_value("backbone.layer2")
    app.button(key="cam_compute").click().run()
    job = wait_for_job(training_workspace, "cam", 240)
    assert job.state == "done", job.message
    from crc_core.runs.store import RunStore

    run = RunStore(training_workspace).run(run_id)
    assert run.folder(training_workspace).cam_maps("validation", "gradcam").exists()  # kept for the next visit
    app.run()
    assert not app.exception, app.exception
    labels = [m.label for m in app.metric]
    assert "Map inside the ROI (median)" in labels and "Randomisation check ρ (median)" in labels
    assert any(c.value.startswith("Layer backbone.layer2") for c in app.caption)
    [r for r in app.radio if r.label == "Patients"][0].set_value("wrong").run()
    assert not app.exception, app.exception


def test_the_combined_model_is_fitted_from_the_page_and_stored_as_a_run(writable_workspace, use_workspace):
    from crc_core.runs.store import RunStore
    from tests.test_combined_model import make_dl_run

    workspace, run_id, _ = make_dl_run(writable_workspace)
    use_workspace(workspace)
    app = open_view(run_page("evaluate"), "combined")
    assert app.button(key="fit_combined").disabled  # found in use: a click with nothing chosen stored a run
    app.multiselect(key="combined_variables").set_value(["age", "pT"]).run()
    app.button(key="fit_combined").click().run()
    assert not app.exception, app.exception
    odds = [d.value for d in app.dataframe if "OR (95% CI)" in d.value.columns][0]
    assert odds["Variable"].tolist()[:2] == ["DL score (per SD)", "age"] and any(t.startswith("pT = ") for t in odds["Variable"])
    assert any("Stored as run" in s.value for s in app.success)
    assert [r.mode for r in RunStore(workspace).runs()][:2] == ["combined", "features"]
    combined = RunStore(workspace).runs()[0].run_id
    app.run()  # the run list now holds the combined model
    app.selectbox(key="evaluate_run").set_value(combined).run()
    assert not app.exception, app.exception
    stored = [d.value for d in app.dataframe if "OR (95% CI)" in d.value.columns][0]
    pd.testing.assert_frame_equal(stored, odds)  # the fit as stored, shown again without refitting
    assert any(f"combined model of run {run_id}" in c.value for c in app.caption)
    # What the clinical variables add: the LR test and the AUC difference first, the NRI without p (Pepe et al. 2014).
    assert any(m.value.startswith("**Likelihood-ratio test of") for m in app.markdown)
    assert any("AUC difference (95% CI)" in d.value.columns for d in app.dataframe)
    nri = [d.value for d in app.dataframe if "Measure" in d.value.columns][0]
    assert "P" not in nri.columns and "NRI" in set(nri["Measure"])
    assert any("Pepe et al." in c.value for c in app.caption)
    # Its Grad-CAM tab points to the DL run rather than offering a computation that must fail.
    open_view(app, "grad-cam")
    assert any(f"DL score comes from run {run_id}" in i.value for i in app.info)
    assert not [b for b in app.button if b.key == "cam_compute"]


def test_the_report_is_built_in_a_worker_and_offered_for_download(writable_workspace, use_workspace):
    from tests.test_combined_model import make_dl_run

    workspace, run_id, _ = make_dl_run(writable_workspace)
    use_workspace(workspace)
    app = open_view(run_page("evaluate"), "report")
    assert app.checkbox(key="report_pseudonymise").value is True  # pseudonyms unless the user says otherwise
    assert not [b for b in app.get("download_button") if b.label.startswith("Download the report")]
    app.button(key="build_report").click().run()
    job = wait_for_job(workspace, "report", 120)
    assert job.state == "done", job.message
    app.run()
    assert not app.exception, app.exception
    offered = [b for b in app.get("download_button") if b.label.startswith("Download the report")]
    assert len(offered) == 1 and "MB, built" in offered[0].label
    report = workspace / "exports" / f"{run_id}-report-pseudonymised.html"
    body = report.read_text(encoding="utf-8").split("</head>", 1)[1]
    assert "patient IDs replaced by pseudonyms" in body and "CRC001" not in body
    assert [b.label for b in app.button if b.key == "build_report"] == ["Build the report again"]


@pytest.mark.parametrize("page", ["home", "train", "evaluate"])
def test_a_damaged_run_store_is_said_on_every_page_that_reads_it(page, writable_workspace, use_workspace):
    # Found in use: Train and Evaluate showed Streamlit's redacted "This app has encountered an
    # error", and Home counted the runs of a store it could not read.
    (writable_workspace / "runs").mkdir(exist_ok=True)
    (writable_workspace / "runs" / "runs.sqlite").write_bytes(b"not a database at all " * 200)
    use_workspace(writable_workspace)
    app = run_page(page)
    assert not app.exception, app.exception
    said = [e.value for e in app.error] + [str(t.value) for t in app.table]
    assert any("runs.sqlite is damaged" in text and "Move it aside" in text for text in said), said


def test_the_evaluate_page_answers_for_other_centres_sample_size_and_the_checklist(tmp_path, use_workspace):
    from crc_core.runs.store import RunStore
    from tests.test_model_evaluation import stored_run

    root = tmp_path / "ws"
    root.mkdir()
    for name in ("clinical.csv", "pathology.csv"):
        (root / name).write_text("patient_id,x\nP1,1\nP2,2\n")
    run_id = stored_run(RunStore(root), cohorts=("train", "validation", "external:Lanzhou"), n=90)
    use_workspace(root)
    app = open_view(run_page("evaluate"), "sample-size")
    assert not app.exception, app.exception
    assert any(m.label == "Patients needed (the largest criterion)" for m in app.metric)
    open_view(app, "centres")
    # One external centre: nothing to pool unless the internal validation is asked in (issue 26).
    assert any("One external centre (external: Lanzhou): there is nothing to pool" in c.value for c in app.caption)
    app.checkbox(key="centres_include_internal").check().run()
    assert not app.exception, app.exception
    assert any("Pooled over 2 cohorts (the internal validation with the external centres, as chosen): DerSimonian-Laird"
               in c.value and "Hartung-Knapp-Sidik-Jonkman" in c.value for c in app.caption)
    assert any("τ² cannot be estimated from two cohorts" in c.value for c in app.caption)
    # Each cohort's CI on the tab is Table 2's: the same numbers in the table, the forest plot and Table 2.
    from crc_core.evaluate.run_evaluation import evaluate_run

    metrics = evaluate_run(RunStore(root), run_id).metrics
    shown = [d.value for d in app.dataframe if "95% CI (DeLong)" in d.value.columns][0].set_index("Cohort")
    forest = json.loads(app.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    for i, (cohort, label) in enumerate((("validation", "validation"), ("external:Lanzhou", "external: Lanzhou"))):
        m = metrics[cohort]
        ci = f"{m['auc_low']:.3f}-{m['auc_high']:.3f}"
        assert shown.loc[label, "95% CI (DeLong)"] == ci and forest[i]["text"] == f"{m['auc']:.3f} ({ci})"
    assert any(r.label == "External cohort" for r in app.radio)  # recalibration offered for the external cohort
    assert any("This updates the model to the centre" in c.value for c in app.caption)
    open_view(app, "report")
    labels = [b.label for b in app.get("download_button")]
    assert "Checklist (Markdown)" in labels and "Checklist (Word)" in labels
    assert any("TRIPOD+AI checklist" in m.value for m in app.markdown)


def test_a_second_centre_is_built_from_the_page_and_offered_to_predict(writable_workspace, use_workspace, tmp_path):
    # Found in use: a new user on the sample met "another centre's workspace folder" with no way to
    # make one but a terminal.
    from crc_core.jobs import latest_job
    from tests.test_combined_model import make_dl_run

    workspace, _, _ = make_dl_run(writable_workspace)
    use_workspace(workspace)
    app = open_view(run_page("evaluate"), "centres")
    folder = [t for t in app.text_input if t.label == "Folder for it"][0]
    assert folder.value == str(workspace.parent / "workspace-lanzhou")
    folder.set_value(str(workspace))  # the workspace open now: refused, nothing started
    [b for b in app.button if b.label == "Build it"][0].click().run()
    assert any("is the workspace open now" in e.value for e in app.error)
    assert latest_job(workspace, "sample") is None
    centre = tmp_path / "centre"
    [t for t in app.text_input if t.label == "Folder for it"][0].set_value(str(centre))
    [b for b in app.button if b.label == "Build it"][0].click().run()
    job = wait_for_job(workspace, "sample", 180)
    assert job.state == "done", job.message
    app.run()
    assert not app.exception, app.exception
    assert any(str(centre) in s.value and "Predict its patients" in s.value for s in app.success)
    predict = {t.label: t.value for t in app.text_input}
    assert predict["Another centre's workspace folder"] == str(centre) and predict["Its name"] == "Lanzhou"
    assert pd.read_csv(centre / "clinical.csv")["patient_id"].str.startswith("LAN").all()
    assert (centre / "manifest.csv").exists() and json.loads((centre / "sample.json").read_text())["centre"] == "Lanzhou"


def test_comparing_a_fine_tuned_and_a_fast_run_shows_both_training_curves(writable_workspace, use_workspace):
    # Found in use: with a fine-tuned run among those compared, the fast runs' penalty path vanished.
    from crc_core.runs.store import RunStore

    store = RunStore(writable_workspace)
    tuned = store.create_run(target="tsr", backbone="densenet121", mode="finetune", config={"evaluation": "holdout"})
    store.add_metrics(tuned, [("step", step, 0, "train_loss", 0.7 - step / 100) for step in range(1, 8)])
    store.finish(tuned, "done")
    fast = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"evaluation": "holdout"})
    store.add_metrics(fast, [("penalty", i, 0, "cv_log_loss", 0.6 + (i - 4) ** 2 / 50) for i in range(9)])
    store.finish(fast, "done")
    use_workspace(writable_workspace)
    app = run_page("train")
    assert not app.exception, app.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in app.get("plotly_chart")]
    assert "Loss curves, normalised as the paper's Figure 4" in titles and "Fast mode: choosing the penalty" in titles


def test_rebuilding_this_workspaces_own_sample_is_not_announced_as_a_second_centre(writable_workspace, use_workspace):
    # Found in review: the tab said "Sample cohort written to <this workspace> … Predict its patients".
    import time

    from crc_core.jobs import JobStatus, _write, job_dir
    from crc_core.sample.cohort import SampleConfig
    from tests.test_combined_model import make_dl_run

    workspace, _, _ = make_dl_run(writable_workspace)
    job_id = "20261130-000000-sample-abcdef"
    folder = job_dir(workspace, job_id)
    folder.mkdir(parents=True)
    SampleConfig().save(folder / "config.json")
    _write(folder, JobStatus(job_id, "sample", "done", message=f"sample cohort written to {workspace}: 315 patients",
                             started_at=time.time(), finished_at=time.time(), heartbeat_at=time.time()))
    use_workspace(workspace)
    app = open_view(run_page("evaluate"), "centres")
    assert not app.exception, app.exception
    assert not any("Predict its patients" in s.value for s in app.success)
    assert {t.label: t.value for t in app.text_input}["Another centre's workspace folder"] == ""
