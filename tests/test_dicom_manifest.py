"""DICOM-SEG and RTSTRUCT masks through the manifest (`mask_roi`) to the crops: a real CT as a DICOM
folder, with a localizer beside it, gives the crops its NRRD pair gives (issue 23: exactly for a SEG;
the same slice and an ROI Dice >= 0.9 for contours, which are polygons, not voxels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from crc_core.errors import CrcInputError
from crc_core.imaging import PreprocessConfig, preprocess_cohort
from crc_core.imaging.preprocess import NothingCropped, load_crop
from tests.dicom_fixtures import nrrd_as_ct_series, pyradiomics_data, write_ct_series, write_seg

CONFIG = PreprocessConfig(margin_px=10)


def _crops(workspace: Path, rows: list[dict]) -> dict:
    workspace.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(workspace / "manifest.csv", index=False)
    result = preprocess_cohort(workspace, CONFIG, workers=1)
    assert result.failures.empty, result.failures.to_dict("records")
    return {row["patient_id"]: (crop := load_crop(result.folder, row), crop.slice_index)
            for row in result.index.to_dict("records")}


def _with_a_localizer(folder: Path) -> None:
    # A scout beside the series: one slice of another series, which must never enter the volume.
    write_ct_series(folder, np.zeros((1, 32, 32)), spacing=(2.0, 2.0, 10.0), origin=(-30.0, -30.0, 0.0))


def test_a_seg_in_the_manifest_gives_the_crop_of_the_nrrd_pair_exactly(tmp_path):
    image_path, label_path = pyradiomics_data("lung1")
    datasets, _ = nrrd_as_ct_series(tmp_path / "dicom" / "ct", image_path)
    _with_a_localizer(tmp_path / "dicom" / "ct")
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))) > 0
    seg = write_seg(tmp_path / "dicom" / "seg.dcm", datasets, {"GTV": label, "Lung": np.roll(label, 30, axis=2)})
    from_nrrd = _crops(tmp_path / "nrrd", [{"patient_id": "L1", "image": str(image_path), "mask": str(label_path)}])
    from_dicom = _crops(tmp_path / "ws", [{"patient_id": "L1", "image": str(tmp_path / "dicom" / "ct"), "mask": str(seg),
                                           "mask_roi": "GTV"}])
    (nrrd_crop, nrrd_slice), (dicom_crop, dicom_slice) = from_nrrd["L1"], from_dicom["L1"]
    assert nrrd_slice == dicom_slice
    assert np.array_equal(nrrd_crop.pixels, dicom_crop.pixels) and np.array_equal(nrrd_crop.roi, dicom_crop.roi)


def test_an_rtstruct_in_the_manifest_crops_the_same_slice_with_dice_above_0_9(tmp_path):
    rt_utils = pytest.importorskip("rt_utils")
    image_path, label_path = pyradiomics_data("lung2")
    nrrd_as_ct_series(tmp_path / "ct", image_path)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))) > 0
    rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "ct"))
    rtstruct.add_roi(mask=np.transpose(label, (1, 2, 0)), name="GTV", approximate_contours=False)
    rtstruct.save(str(tmp_path / "rs.dcm"))
    from_nrrd = _crops(tmp_path / "nrrd", [{"patient_id": "L2", "image": str(image_path), "mask": str(label_path)}])
    from_dicom = _crops(tmp_path / "ws", [{"patient_id": "L2", "image": str(tmp_path / "ct"), "mask": str(tmp_path / "rs.dcm"),
                                           "mask_roi": "GTV"}])
    (nrrd_crop, nrrd_slice), (dicom_crop, dicom_slice) = from_nrrd["L2"], from_dicom["L2"]
    assert nrrd_slice == dicom_slice
    both = np.logical_and(nrrd_crop.roi, dicom_crop.roi).sum()
    dice = 2 * both / (nrrd_crop.roi.sum() + dicom_crop.roi.sum())
    assert dice >= 0.9, dice


def test_a_seg_with_several_segments_and_no_mask_roi_fails_that_patient_naming_them(tmp_path):
    ct = write_ct_series(tmp_path / "ct", np.full((6, 24, 24), 40))
    blob = np.zeros((6, 24, 24), bool)
    blob[2:4, 8:16, 8:16] = True
    seg = write_seg(tmp_path / "seg.dcm", sorted(ct, key=lambda d: d.ImagePositionPatient[2]),
                    {"Tumour": blob, "Node": np.roll(blob, 4, axis=2)})
    workspace = tmp_path / "ws"
    workspace.mkdir()
    pd.DataFrame([{"patient_id": "P1", "image": str(tmp_path / "ct"), "mask": str(seg)}]).to_csv(workspace / "manifest.csv", index=False)
    with pytest.raises(NothingCropped) as refused:
        preprocess_cohort(workspace, CONFIG, workers=1)
    message = str(refused.value)
    assert "The patient: SEG 'the mask' holds 2 segments: 'Tumour', 'Node'" in message and "mask_roi" in message
    pd.DataFrame([{"patient_id": "P1", "image": str(tmp_path / "ct"), "mask": str(seg), "mask_roi": "Tumour"}]).to_csv(
        workspace / "manifest.csv", index=False)
    assert preprocess_cohort(workspace, CONFIG, workers=1).failures.empty  # the name chosen: cropped


def test_an_roi_named_for_an_image_mask_is_refused_by_name(tmp_path):
    from crc_core.imaging import read_mask

    image = sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8))
    sitk.WriteImage(image, str(tmp_path / "m.nrrd"))
    with pytest.raises(CrcInputError, match=r"P2: manifest.csv names the ROI 'GTV' for m.nrrd, which is an image mask"):
        read_mask(tmp_path / "m.nrrd", tmp_path, "GTV", patient="P2")
