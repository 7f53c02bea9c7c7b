"""DICOM-SEG → mask on the referenced CT's grid (crc_core.imaging.dicom_seg)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from crc_core.imaging.dicom_refs import ct_reference, roi_kind
from crc_core.imaging.dicom_seg import read_seg_mask
from crc_core.errors import CrcInputError
from tests.dicom_fixtures import write_ct_series, write_seg

pytest.importorskip("highdicom")

SHAPE = (6, 20, 24)


def _ct(tmp_path, **kwargs):
    rng = np.random.default_rng(0)
    return write_ct_series(tmp_path / "ct", rng.integers(-1000, 1000, SHAPE).astype(np.int16), **kwargs)


def _sorted(ct):
    return sorted(ct, key=lambda d: float(d.ImagePositionPatient[2]))


def _blob(slices, rows, cols):
    a = np.zeros(SHAPE, dtype=bool)
    a[slices, rows, cols] = True
    return a


def test_one_segment_needs_no_name_and_lands_on_the_ct_grid(tmp_path):
    ct = _ct(tmp_path)
    tumour = _blob(slice(1, 4), slice(5, 12), slice(3, 9))
    tumour[3, 5, 3] = False  # asymmetric: a flip or slice reversal shows
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": tumour})
    mask, info = read_seg_mask(seg, tmp_path / "ct")
    ct_image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    assert np.array_equal(sitk.GetArrayFromImage(mask), tumour.astype(np.uint8))
    assert mask.GetOrigin() == pytest.approx(ct_image.GetOrigin())
    assert mask.GetSpacing() == pytest.approx(ct_image.GetSpacing())
    assert mask.GetDirection() == pytest.approx(ct_image.GetDirection())
    assert (info.kind, info.roi_name, info.voxels, info.slices) == ("SEG", "Tumour", int(tumour.sum()), (1, 2, 3))
    assert info.fractional_threshold is None
    assert roi_kind(seg) == "SEG" and roi_kind(next((tmp_path / "ct").iterdir())) is None


def test_frames_are_placed_by_plane_position_not_by_frame_order(tmp_path):
    ct = _ct(tmp_path)
    tumour = _blob(slice(0, 1), slice(2, 4), slice(2, 4)) | _blob(slice(4, 5), slice(10, 15), slice(10, 20))
    path = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": tumour})
    # Reverse the frames and their functional groups together: a reader by frame order misplaces them.
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, *SHAPE[1:])[::-1].copy()
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(list(ds.PerFrameFunctionalGroupsSequence)[::-1])
    ds.PixelData = pydicom.pixels.pack_bits(frames.ravel())
    ds.save_as(tmp_path / "reversed.dcm")
    mask, _ = read_seg_mask(tmp_path / "reversed.dcm", tmp_path / "ct")
    assert np.array_equal(sitk.GetArrayFromImage(mask), tumour.astype(np.uint8))


def test_overlapping_segments_each_give_their_own_mask(tmp_path):
    ct = _ct(tmp_path)
    tumour = _blob(slice(1, 5), slice(4, 14), slice(4, 14))
    core = _blob(slice(2, 4), slice(6, 10), slice(6, 10))  # inside the tumour: overlaps it
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": tumour, "Necrosis": core})
    tumour_mask, _ = read_seg_mask(seg, tmp_path / "ct", "Tumour")
    core_mask, info = read_seg_mask(seg, tmp_path / "ct", "Necrosis")
    assert np.array_equal(sitk.GetArrayFromImage(tumour_mask), tumour.astype(np.uint8))
    assert np.array_equal(sitk.GetArrayFromImage(core_mask), core.astype(np.uint8))
    assert info.roi_number == 2


def test_several_segments_and_no_name_is_refused_naming_them_all(tmp_path):
    ct = _ct(tmp_path)
    a, b = _blob(1, slice(2, 5), slice(2, 5)), _blob(2, slice(8, 12), slice(8, 12))
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": a, "Lymph node": b})
    with pytest.raises(CrcInputError, match=r"P007: SEG .*2 segments: 'Tumour', 'Lymph node'.*mask_roi"):
        read_seg_mask(seg, tmp_path / "ct", patient="P007")
    with pytest.raises(CrcInputError, match=r"no segment named 'tumor'.*'Tumour', 'Lymph node'.*Did you mean 'Tumour'"):
        read_seg_mask(seg, tmp_path / "ct", "tumor")


def test_fractional_segment_is_thresholded_at_one_half(tmp_path):
    ct = _ct(tmp_path)
    prob = np.zeros(SHAPE, dtype=np.float32)
    prob[2, 5:10, 5:10] = 0.49
    prob[2, 5:10, 10:15] = 0.5
    prob[3, 5:10, 5:15] = 0.9
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": prob}, fractional=True)
    mask, info = read_seg_mask(seg, tmp_path / "ct")
    stored = pydicom.dcmread(seg)
    expected = (np.round(prob * 255) / float(stored.MaximumFractionalValue) >= 0.5).astype(np.uint8)
    assert np.array_equal(sitk.GetArrayFromImage(mask), expected)
    assert sitk.GetArrayFromImage(mask)[2, 5:10, 5:10].sum() == 0
    assert info.fractional_threshold == 0.5 and "thresholded at 0.5" in info.notes[0]


def test_a_seg_of_another_series_is_refused_naming_both(tmp_path):
    ct = _ct(tmp_path)
    other = write_ct_series(tmp_path / "other", np.zeros(SHAPE, np.int16), frame_uid=ct[0].FrameOfReferenceUID)
    seg = write_seg(tmp_path / "seg.dcm", _sorted(other), {"Tumour": _blob(1, slice(2, 5), slice(2, 5))})
    with pytest.raises(CrcInputError) as err:
        read_seg_mask(seg, ct_reference(tmp_path / "ct"), patient="P003")
    message = str(err.value)
    assert other[0].SeriesInstanceUID in message and ct[0].SeriesInstanceUID in message and "P003" in message


def test_a_seg_in_another_frame_of_reference_is_refused(tmp_path):
    ct = _ct(tmp_path)
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": _blob(1, slice(2, 5), slice(2, 5))})
    ds = pydicom.dcmread(seg)
    ds.FrameOfReferenceUID = generate_uid()
    ds.save_as(tmp_path / "moved.dcm")
    with pytest.raises(CrcInputError, match="frame of reference"):
        read_seg_mask(tmp_path / "moved.dcm", tmp_path / "ct")


def test_a_folder_with_two_series_uses_the_one_the_seg_references(tmp_path):
    ct = _ct(tmp_path)
    write_ct_series(tmp_path / "ct" / "venous", np.zeros(SHAPE, np.int16))
    tumour = _blob(slice(1, 3), slice(2, 5), slice(2, 5))
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": tumour})
    mask, info = read_seg_mask(seg, tmp_path / "ct")
    assert info.series_uid == ct[0].SeriesInstanceUID
    assert np.array_equal(sitk.GetArrayFromImage(mask), tumour.astype(np.uint8))


def test_the_referenced_series_missing_from_the_folder_is_refused(tmp_path):
    _ct(tmp_path)
    other = write_ct_series(tmp_path / "elsewhere", np.zeros(SHAPE, np.int16))
    seg = write_seg(tmp_path / "seg.dcm", _sorted(other), {"Tumour": _blob(1, slice(2, 5), slice(2, 5))})
    with pytest.raises(CrcInputError, match=rf"P9: SEG .*{other[0].SeriesInstanceUID}.*{tmp_path / 'ct'}"):
        read_seg_mask(seg, tmp_path / "ct", patient="P9")


def test_an_empty_segment_is_refused_and_one_slice_is_allowed(tmp_path):
    ct = _ct(tmp_path)
    one = _blob(3, slice(2, 5), slice(2, 5))
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": one, "Nothing": np.zeros(SHAPE, bool)})
    mask, info = read_seg_mask(seg, tmp_path / "ct", "Tumour")
    assert info.slices == (3,) and any("one slice" in n for n in info.notes)
    with pytest.raises(CrcInputError, match="segment 'Nothing' is empty"):
        read_seg_mask(seg, tmp_path / "ct", "Nothing")


def test_truncated_and_non_seg_files_are_one_line(tmp_path):
    ct = _ct(tmp_path)
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": _blob(slice(1, 5), slice(2, 15), slice(2, 15))})
    data = seg.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(CrcInputError, match=r"P1: .*cut.dcm.*truncated") as err:
        read_seg_mask(tmp_path / "cut.dcm", tmp_path / "ct", patient="P1")
    assert "\n" not in str(err.value)
    with pytest.raises(CrcInputError, match=r"is a CT Image Storage, not a DICOM-SEG"):
        read_seg_mask(sorted((tmp_path / "ct").iterdir())[0], tmp_path / "ct")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CrcInputError, match="not a DICOM-SEG"):
        read_seg_mask(tmp_path / "notes.txt", tmp_path / "ct")


def test_pydicoms_real_liver_seg_on_its_ct_grid(tmp_path):
    """liver_1frame.dcm (dcmqi, 3D Slicer) — a real binary SEG nobody here wrote. Its CT is not in
    pydicom's files, so the grid is rebuilt from the SEG's own references: the three CT SOP UIDs it
    names, its positions, spacing and frame of reference; two extra slices above and below."""
    path = get_testdata_file("liver_1frame.dcm")
    seg = pydicom.dcmread(path)
    first = seg.PerFrameFunctionalGroupsSequence[0]
    z0 = float(first.PlanePositionSequence[0].ImagePositionPatient[2])
    x0, y0 = (float(v) for v in first.PlanePositionSequence[0].ImagePositionPatient[:2])
    refs = [str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    slices = []
    for k, z in enumerate(z0 + np.arange(-2, 3) * 1.0):
        ds = pydicom.Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = refs[0] if k == 2 else generate_uid()
        ds.SeriesInstanceUID = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
        ds.FrameOfReferenceUID = seg.FrameOfReferenceUID
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [x0, y0, float(z)]
        ds.PixelSpacing, ds.Rows, ds.Columns = [0.810547, 0.810547], 512, 512
        slices.append(ds)
    mask, info = read_seg_mask(path, slices[::-1])
    array = sitk.GetArrayFromImage(mask)
    expected = (pydicom.dcmread(path).pixel_array > 0).astype(np.uint8)
    assert info.roi_name == "Liver" and info.slices == (2,)
    assert np.array_equal(array[2], expected) and array.sum() == expected.sum() > 30000


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_real_ct_and_tumour_from_seg_equal_the_nrrd_pair(tmp_path, case):
    """PyRadiomics' real lung CT written as a DICOM series and its tumour label as a SEG by highdicom:
    the mask read back lies on the CT grid and equals the NRRD label voxel for voxel."""
    from tests.dicom_fixtures import nrrd_as_ct_series, pyradiomics_data

    image_path, label_path = pyradiomics_data(case)
    datasets, image = nrrd_as_ct_series(tmp_path / "ct", image_path)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))) > 0
    seg = write_seg(tmp_path / "seg.dcm", datasets, {"GTV": label})
    mask, info = read_seg_mask(seg, tmp_path / "ct", patient=case)
    assert np.array_equal(sitk.GetArrayFromImage(mask), label.astype(np.uint8))
    assert mask.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-3)
    assert mask.GetSpacing() == pytest.approx(image.GetSpacing(), abs=1e-5)
    ct_image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    assert np.array_equal(sitk.GetArrayFromImage(ct_image), sitk.GetArrayFromImage(image))
    assert info.voxels == int(label.sum())


def test_a_ct_with_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    ct = _ct(tmp_path)
    seg = write_seg(tmp_path / "seg.dcm", _sorted(ct), {"Tumour": _blob(1, slice(2, 5), slice(2, 5))})
    middle = _sorted(ct)[3]
    next(p for p in (tmp_path / "ct").iterdir() if pydicom.dcmread(p).SOPInstanceUID == middle.SOPInstanceUID).unlink()
    with pytest.raises(CrcInputError, match=r"P4: CT series .*uneven slice spacing: 5.00 mm between"):
        read_seg_mask(seg, tmp_path / "ct", patient="P4")
