"""The CT & ROI page as a user meets it: a second import asks merge or replace, a folder holding one
patient, and alerts that belong to the action that raised them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from streamlit.testing.v1 import AppTest
from tests.test_pages import wait_for_job  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_page() -> AppTest:
    return AppTest.from_file(str(REPO_ROOT / "pages" / "ct_roi.py"), default_timeout=60).run()


def write_patient(folder: Path, *, value: int = 300, origin=(0.0, 0.0, 0.0)) -> None:
    """A CT and its mask; a mask ``origin`` other than the CT's is off its grid."""
    array = np.zeros((4, 16, 16), np.int16)
    array[1:3, 4:9, 4:9] = 1
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array * value), str(folder / "ct.nii.gz"))
    mask = sitk.GetImageFromArray(array.astype(np.uint8))
    mask.SetOrigin(origin)
    sitk.WriteImage(mask, str(folder / "mask.nii.gz"))


def import_folder(app: AppTest, folder: Path, mode: str | None) -> AppTest:
    [t for t in app.text_input if t.label.startswith("…or a folder")][0].set_value(str(folder))
    if mode is not None:
        app.radio(key="import_mode").set_value(mode)
    app.run()
    [b for b in app.button if b.label == "Use these images"][0].click().run()
    assert not app.exception, app.exception
    return app


def test_a_second_import_warns_and_offers_merge_or_replace(writable_workspace, use_workspace, tmp_path):
    for patient in ("A1", "A2"):
        write_patient(tmp_path / "more" / patient)
    use_workspace(writable_workspace)
    app = run_page()
    assert any("lists 315 patients in `manifest.csv` already" in w.value for w in app.warning)
    [t for t in app.text_input if t.label.startswith("…or a folder")][0].set_value(str(tmp_path / "more"))
    app.run()
    assert [b for b in app.button if b.label == "Use these images"][0].disabled  # merge or replace first
    assert app.radio(key="import_mode").value is None
    import_folder(app, tmp_path / "more", "merge")
    assert any("manifest.csv lists 317 patients: 2 from" in s.value and "merged with 315" in s.value for s in app.success)
    manifest = pd.read_csv(writable_workspace / "manifest.csv")
    assert len(manifest) == 317 and list(manifest["patient_id"][-2:]) == ["A1", "A2"]


def test_a_folder_holding_one_patient_is_imported_as_that_patient(writable_workspace, use_workspace, tmp_path):
    write_patient(tmp_path / "CRC009")
    use_workspace(writable_workspace)
    app = import_folder(run_page(), tmp_path / "CRC009", "replace")
    assert not app.error, [e.value for e in app.error]
    assert any("manifest.csv lists 1 patient from" in s.value for s in app.success)
    assert pd.read_csv(writable_workspace / "manifest.csv")["patient_id"].tolist() == ["CRC009"]


def test_an_alert_belongs_to_the_import_or_run_that_raised_it(writable_workspace, use_workspace, tmp_path):
    # Found in use: the geometry error of an earlier import's preprocessing stayed on the page
    # through later imports of other folders.
    write_patient(tmp_path / "first" / "B1", origin=(3.0, 0.0, 0.0))  # its mask is off the CT's grid
    for patient in ("G1", "G2"):
        write_patient(tmp_path / "second" / patient)
    write_patient(tmp_path / "third" / "C1")
    (tmp_path / "third" / "C1" / "mask.nii.gz").unlink()
    use_workspace(writable_workspace)
    app = import_folder(run_page(), tmp_path / "first", "replace")
    [b for b in app.button if b.label == "Run preprocessing"][0].click().run()
    assert wait_for_job(writable_workspace, "preprocess").state == "failed"
    app.run()
    assert any(e.value.startswith("Preprocessing failed: Nothing was cropped") and "origin" in e.value for e in app.error)

    import_folder(app, tmp_path / "second", "replace")
    assert any("manifest.csv lists 2 patients" in s.value for s in app.success)
    assert not app.error, [e.value for e in app.error]  # the first folder's failure is not about these images
    assert not [m for m in app.markdown if "Why no patient could be cropped" in m.value]

    import_folder(app, tmp_path / "third", "merge")
    assert [e.value for e in app.error if "No image or no mask found for: C1" in e.value]
    [t for t in app.text_input if t.label.startswith("…or a folder")][0].set_value(str(tmp_path / "second"))
    app.run()  # the input changed: the refused import's error is gone
    assert not app.error, [e.value for e in app.error]
