"""AppTest for every page, run on the page file itself, as a user opening it by URL would."""

from pathlib import Path

import pytest
import pandas as pd
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = ["home", "cohort", "labels", "ct_roi", "train", "evaluate"]
TIMEOUT_S = 60


def run_page(name: str) -> AppTest:
    app = AppTest.from_file(str(REPO_ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT_S)
    return app.run()


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
    (writable_workspace / "pathology.csv").write_text("this is not,the table\n")
    use_workspace(writable_workspace)
    app = run_page("labels")
    assert not app.exception
    assert "pathology.csv has no `patient_id` column" in app.error[0].value


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


def test_sidebar_choice_of_a_missing_workspace(sample_workspace, tmp_path, use_workspace):
    # AppTest loses the sidebar on reruns under st.navigation, so the typed choice is set in
    # session state here; the browser walk types it into the real sidebar.
    use_workspace(sample_workspace)
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    app.session_state["workspace_path"] = str(tmp_path / "elsewhere")
    app.run()
    assert not app.exception
    assert "No usable cohort" in app.sidebar.warning[0].value
    assert "does not exist" in app.error[0].value


def test_cohort_imports_the_sample_tables_without_an_upload(sample_workspace, tmp_path, use_workspace):
    # AppTest cannot drive st.file_uploader; the sample button runs the same import path.
    use_workspace(sample_workspace)
    target = tmp_path / "imported"
    app = run_page("cohort")
    [field for field in app.text_input if field.label.startswith("Workspace folder for")][0].set_value(str(target))
    app.button(key="import_sample").click().run()
    assert not app.exception, app.exception
    assert any("Imported 315 patients" in s.value for s in app.success)
    assert (target / "clinical.csv").exists() and (target / "pathology.csv").exists()
    assert app.session_state["workspace_path"] == str(target)


def test_cohort_split_form_saves_a_new_split(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = run_page("cohort")
    app.number_input[1].set_value(11)  # seed
    [b for b in app.button if "split" in str(b.label).lower()][0].click().run()
    assert not app.exception, app.exception
    assert (writable_workspace / "split.csv").exists()
    assert any("Saved split.csv" in s.value for s in app.success)


def test_labels_page_applies_a_cutoff_and_saves(writable_workspace, use_workspace):
    use_workspace(writable_workspace)
    app = run_page("labels")
    default_summary = app.success[0].value
    assert "tsr_high" in default_summary
    tsr = [n for n in app.number_input if n.label.startswith("TSR high")][0]
    tsr.set_value(30.0)
    [b for b in app.button if b.label == "Apply rules"][0].click().run()
    assert not app.exception, app.exception
    assert app.success[0].value != default_summary  # a lower cut-off makes more patients TSR-high
    app.button(key="save_labels").click().run()
    assert not app.exception
    saved = pd.read_csv(writable_workspace / "labels.csv")
    pathology = pd.read_csv(writable_workspace / "pathology.csv")
    merged = saved.merge(pathology[["patient_id", "tsr_percent_r2"]], on="patient_id")
    assert ((merged["tsr_percent"] > 30) == merged["tsr_high"].astype(bool)).all()


def test_labels_page_shows_reader_agreement(sample_workspace, use_workspace):
    use_workspace(sample_workspace)
    app = run_page("labels")
    assert any("Cohen's kappa" in c.value for c in app.caption)


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
    assert any("No crops yet" in i.value for i in app.info)
    [r for r in app.radio if r.label.startswith("Margin")][0].set_value(10)
    [b for b in app.button if b.label == "Run preprocessing"][0].click().run()
    job = wait_for_job(imaging_workspace, "preprocess")
    assert job.state == "done", job.message
    app.run()
    assert not app.exception, app.exception
    assert any("315 of 315 patients cropped" in s.value and "margin 10 px" in s.value for s in app.success)
    images = [e for e in app.main if type(e).__name__ == "Image"]
    assert len(images) == 24 + 1  # a page of the gallery and the viewer
    assert [s for s in app.slider if s.label == "Slice"][0].value >= 0


def test_ct_roi_page_lists_failures_and_the_others_go_on(imaging_workspace, use_workspace):
    from crc_core.preprocess import preprocess_cohort

    manifest = pd.read_csv(imaging_workspace / "manifest.csv")
    manifest.loc[0, "mask"] = "masks/does_not_exist.nii.gz"
    manifest.to_csv(imaging_workspace / "manifest.csv", index=False)
    preprocess_cohort(imaging_workspace, patients=list(manifest["patient_id"][:6]), workers=1)
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    assert not app.exception, app.exception
    assert any("could not be cropped" in w.value for w in app.warning)
    failures = app.dataframe[0].value
    assert list(failures["patient_id"]) == [manifest["patient_id"][0]]
    assert "does_not_exist" in failures["message"].iloc[0]


def test_ct_roi_page_computes_reader_agreement_in_a_worker(imaging_workspace, use_workspace):
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    features = [c for c in app.checkbox if c.label == "PyRadiomics features"][0]
    features.set_value(False)  # Dice and HD95 only: the whole sample in seconds
    [b for b in app.button if b.label == "Compute reader agreement"][0].click().run()
    job = wait_for_job(imaging_workspace, "agreement")
    assert job.state == "done", job.message
    app.run()
    assert not app.exception, app.exception
    assert any("315 of 315 patients with two readers: median Dice" in s.value for s in app.success)


def test_ct_roi_page_shows_feature_iccs(imaging_workspace, use_workspace):
    pytest.importorskip("radiomics")
    from crc_core.reader_study import reader_agreement

    reader_agreement(imaging_workspace, patients=[f"CRC{i:03d}" for i in range(1, 7)], workers=1)
    use_workspace(imaging_workspace)
    app = run_page("ct_roi")
    assert not app.exception, app.exception
    tables = [d.value for d in app.dataframe]
    icc_table = [t for t in tables if "icc" in t.columns][0]
    assert len(icc_table) > 50 and icc_table["icc"].is_monotonic_increasing


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
    app.run()  # the button is enabled once a folder is typed
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
