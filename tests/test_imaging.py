"""Reading volumes (NIfTI, NRRD, MHA, DICOM), geometry checks, the largest slice and the crop."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut
from pydicom.uid import generate_uid

from crc_core.imaging import volumes as imaging
from crc_core.errors import CrcInputError

CT_SMALL = get_testdata_file("CT_small.dcm")


def volume(array: np.ndarray, spacing=(0.7, 0.7, 5.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def ct_and_mask(shape=(9, 64, 64), box=(slice(3, 6), slice(20, 40), slice(25, 35))):
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 30, shape).astype(np.int16)
    roi = np.zeros(shape, np.uint8)
    roi[box] = 1
    return volume(hu), volume(roi)


# ---------------------------------------------------------------------------------------------
# Reading


def test_real_dicom_slice_reads_in_hu_as_pydicom_rescales_it():
    dataset = pydicom.dcmread(CT_SMALL)
    expected = apply_modality_lut(dataset.pixel_array, dataset)
    image = imaging.read_volume(CT_SMALL)
    assert image.GetSize() == (128, 128, 1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], expected)
    assert image.GetSpacing()[:2] == pytest.approx([float(v) for v in dataset.PixelSpacing][::-1])


def write_series(folder: Path, n: int, *, series_uid: str | None = None, skip: int | None = None) -> str:
    """A DICOM series from the real CT slice, 5 mm apart; ``skip`` leaves one slice out."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    template = pydicom.dcmread(CT_SMALL)
    x, y, z = (float(v) for v in template.ImagePositionPatient)
    for i in range(n):
        if i == skip:
            continue
        dataset = copy.deepcopy(template)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = i + 1
        dataset.ImagePositionPatient = [x, y, z + 5.0 * i]
        dataset.SliceLocation = z + 5.0 * i
        dataset.save_as(folder / f"{series_uid[-6:]}_slice{i:03d}.dcm")
    return series_uid


def test_dicom_series_folder_reads_as_one_volume(tmp_path):
    write_series(tmp_path / "series", 6)
    image = imaging.read_volume(tmp_path / "series")
    assert image.GetSize() == (128, 128, 6)
    assert image.GetSpacing()[2] == pytest.approx(5.0)
    expected = apply_modality_lut(pydicom.dcmread(CT_SMALL).pixel_array, pydicom.dcmread(CT_SMALL))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[3], expected)


def test_dicom_folder_with_several_series_takes_the_longest_or_the_chosen(tmp_path):
    write_series(tmp_path / "mixed", 4)
    short = write_series(tmp_path / "mixed", 3)
    assert imaging.read_volume(tmp_path / "mixed").GetSize()[2] == 4
    assert imaging.read_volume(tmp_path / "mixed", series_uid=short).GetSize()[2] == 3
    with pytest.raises(CrcInputError, match="no series 1.2.3"):
        imaging.read_volume(tmp_path / "mixed", series_uid="1.2.3")


def test_dicom_series_with_a_missing_slice_is_refused_with_where(tmp_path):
    write_series(tmp_path / "gap", 6, skip=3)
    with pytest.raises(CrcInputError, match=r"1 missing slice\(s\) between slice positions"):
        imaging.read_volume(tmp_path / "gap")


def test_empty_folder_is_not_a_dicom_series(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CrcInputError, match="no DICOM series"):
        imaging.read_volume(tmp_path / "empty")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha"])
def test_volume_formats_round_trip(tmp_path, suffix):
    image, _ = ct_and_mask()
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    read = imaging.read_volume(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))
    assert read.GetSpacing() == pytest.approx(image.GetSpacing())


def test_truncated_nifti_is_refused_naming_the_file(tmp_path):
    image, _ = ct_and_mask()
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CrcInputError, match=r"ct\.nii\.gz is incomplete"):
        imaging.read_volume(path)
    plain = tmp_path / "ct.nii"
    sitk.WriteImage(image, str(plain))
    plain.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(CrcInputError, match=r"ct\.nii is incomplete"):
        imaging.read_volume(plain)


def test_four_d_image_is_refused(tmp_path):
    path = tmp_path / "phases.nii.gz"
    phase = sitk.GetImageFromArray(np.zeros((3, 8, 8), np.int16))
    sitk.WriteImage(sitk.JoinSeries([phase, phase]), str(path))
    with pytest.raises(CrcInputError, match="4D"):
        imaging.read_volume(path)


def test_missing_file_names_the_manifest(tmp_path):
    with pytest.raises(CrcInputError, match="manifest.csv"):
        imaging.read_volume(tmp_path / "nothing.nii.gz")


def test_nifti_header_read_by_nibabel_without_the_voxels(tmp_path):
    image, _ = ct_and_mask()
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    header = imaging.read_header(path)
    assert header["size"] == (64, 64, 9)
    assert header["spacing"] == pytest.approx((0.7, 0.7, 5.0))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    assert imaging.read_header(tmp_path / "ct.nrrd")["size"] == (64, 64, 9)


# ---------------------------------------------------------------------------------------------
# Masks and geometry


def test_binary_mask_labels_empty_and_several():
    _, mask = ct_and_mask()
    labelled = sitk.GetArrayFromImage(mask) * 3
    labelled[0, 0, 0] = 5
    image = volume(labelled.astype(np.uint8))
    with pytest.raises(CrcInputError, match="several labels"):
        imaging.binary_mask(image, where="P1 mask")
    assert sitk.GetArrayFromImage(imaging.binary_mask(image, 3)).sum() == 3 * 20 * 10
    with pytest.raises(CrcInputError, match="no voxels with label 2"):
        imaging.binary_mask(image, 2)
    with pytest.raises(CrcInputError, match="P9 mask is empty"):
        imaging.binary_mask(volume(np.zeros((3, 4, 4), np.uint8)), where="P9 mask")


def test_check_geometry_names_what_differs_and_by_how_much():
    image, mask = ct_and_mask()
    imaging.check_geometry(image, mask)
    shifted = sitk.Image(mask)
    shifted.SetOrigin((0.0, 2.5, 0.0))
    with pytest.raises(imaging.GeometryError, match=r"origin: .*differs by up to 2\.5 mm"):
        imaging.check_geometry(image, shifted)
    other = volume(np.zeros((9, 32, 32), np.uint8), spacing=(1.4, 1.4, 5.0))
    with pytest.raises(imaging.GeometryError, match="size: image 64 × 64 × 9, mask 32 × 32 × 9") as error:
        imaging.check_geometry(image, other)
    assert "spacing" in str(error.value)


def test_resampling_the_mask_onto_the_image_by_nearest_neighbour():
    image, mask = ct_and_mask()
    coarse = sitk.Resample(mask, [32, 32, 9], sitk.Transform(), sitk.sitkNearestNeighbor, (0, 0, 0),
                           (1.4, 1.4, 5.0), mask.GetDirection(), 0, mask.GetPixelID())
    with pytest.raises(imaging.GeometryError):
        imaging.check_geometry(image, coarse)
    back = imaging.resample_mask_to_image(coarse, image)
    imaging.check_geometry(image, back)
    assert set(np.unique(sitk.GetArrayFromImage(back))) <= {0, 1}
    crop = imaging.preprocess_case(image, coarse, imaging.PreprocessConfig(resample_mask=True))
    assert crop.pixels.shape == (1, 224, 224)


# ---------------------------------------------------------------------------------------------
# The largest slice


def test_largest_slice_and_ties_to_the_more_central():
    roi = np.zeros((10, 8, 8), bool)
    roi[2, :2, :2] = True  # area 4
    roi[4, :3, :3] = True  # area 9
    roi[7, :3, :3] = True  # area 9; the ROI spans 2..7, middle 4.5 → both 0.5 / 2.5 away
    assert imaging.largest_roi_slice(roi) == 4
    roi[5, :3, :3] = True  # 4 and 5 equally central → the lower
    assert imaging.largest_roi_slice(roi) == 4
    assert imaging.largest_roi_slice(volume(roi.astype(np.uint8))) == 4
    with pytest.raises(CrcInputError, match="empty"):
        imaging.largest_roi_slice(np.zeros((3, 4, 4)))
    with pytest.raises(CrcInputError, match="3D"):
        imaging.largest_roi_slice(np.zeros((4, 4)))


# ---------------------------------------------------------------------------------------------
# The crop


def test_abdominal_window_maps_level_minus_half_width_to_zero_and_plus_to_one():
    hu = np.array([-1000, -160, 40, 240, 3000])
    np.testing.assert_allclose(imaging.window_to_unit(hu, 400, 40), [0, 0, 0.5, 1, 1])


@pytest.mark.parametrize("margin", [0, 10, 20])
def test_crop_box_is_the_roi_box_plus_margin_made_square(margin):
    image, mask = ct_and_mask()
    crop = imaging.preprocess_case(image, mask, imaging.PreprocessConfig(margin_px=margin, size=64))
    r0, r1, c0, c1 = crop.box
    assert r1 - r0 == c1 - c0 == 20 + 2 * margin  # ROI 20 rows × 10 columns
    assert (r0, r1) == (20 - margin, 40 + margin)
    assert crop.slice_index == 4  # slices 3-5 tie; 4 is central
    assert crop.pixels.shape == (1, 64, 64) and crop.pixels.dtype == np.float32
    assert crop.roi.shape == (64, 64)
    assert crop.roi_area_mm2 == pytest.approx(200 * 0.7 * 0.7)


def test_crop_at_the_edge_is_padded_and_values_follow_the_window():
    hu = np.full((3, 32, 32), 240, np.int16)  # top of the abdominal window → 1.0
    roi = np.zeros((3, 32, 32), np.uint8)
    roi[1, 0:4, 0:12] = 1
    crop = imaging.preprocess_case(volume(hu), volume(roi), imaging.PreprocessConfig(size=12))
    assert crop.box == (-4, 8, 0, 12)
    pixels = crop.pixels[0]
    assert pixels[:3].max() == pytest.approx(0.0, abs=1e-6)  # padding beyond the edge
    assert pixels[6:].min() == pytest.approx(1.0, abs=1e-6)


def test_two_and_a_half_d_stacks_neighbours_and_masking_clears_outside():
    hu = np.stack([np.full((32, 32), v, np.int16) for v in (-160, 40, 240)])
    roi = np.zeros((3, 32, 32), np.uint8)
    roi[1, 10:20, 10:20] = 1
    config = imaging.PreprocessConfig(context="2.5d", size=10, margin_px=10)
    crop = imaging.preprocess_case(volume(hu), volume(roi), config)
    assert crop.pixels.shape == (3, 10, 10)
    assert crop.pixels[:, 5, 5] == pytest.approx([0.0, 0.5, 1.0])
    assert crop.to_png_array().shape == (10, 10, 3)
    masked = imaging.preprocess_case(volume(hu), volume(roi), imaging.PreprocessConfig(mask_outside=True, size=30, margin_px=10))
    assert masked.pixels[0][~masked.roi].max() == 0.0
    assert masked.pixels[0][masked.roi].min() == pytest.approx(0.5)


def test_zscore_uses_the_roi_of_the_largest_slice():
    image, mask = ct_and_mask()
    crop = imaging.preprocess_case(image, mask, imaging.PreprocessConfig(intensity="zscore", size=20))
    hu = sitk.GetArrayFromImage(image)[4][sitk.GetArrayFromImage(mask)[4] == 1].astype(float)
    inside = crop.pixels[0][crop.roi]
    z = inside * 6 - 3
    assert abs(z.mean()) < 0.2  # the ROI is centred on its own mean
    assert hu.std() > 0


def test_in_plane_resampling_changes_the_pixel_size():
    image, mask = ct_and_mask()
    crop = imaging.preprocess_case(image, mask, imaging.PreprocessConfig(in_plane_mm=1.4, size=32))
    assert crop.pixel_mm == 1.4
    r0, r1, c0, c1 = crop.box
    assert r1 - r0 == pytest.approx(10, abs=1)  # 20 px at 0.7 mm → 10 px at 1.4 mm


def test_config_refuses_bad_values():
    for changes in ({"intensity": "lung"}, {"margin_px": -1}, {"context": "3d"}, {"size": 4}, {"in_plane_mm": 0}):
        with pytest.raises(CrcInputError):
            imaging.PreprocessConfig(**changes)
    assert "W400/L40" in imaging.PreprocessConfig().describe()
    assert "W300/L10" in imaging.PreprocessConfig(intensity="custom", window_width=300, window_level=10).describe()


def test_overlay_draws_the_outline_only():
    roi = np.zeros((10, 10), bool)
    roi[2:8, 2:8] = True
    rgb = imaging.overlay_rgb(np.full((10, 10), 0.5), [(roi, (255, 0, 0))])
    assert tuple(rgb[2, 4]) == (255, 0, 0) and tuple(rgb[5, 5]) == (128, 128, 128)


# ---------------------------------------------------------------------------------------------
# One orientation, whatever the storage


def stored_three_ways(array: np.ndarray, spacing=(0.7, 0.8, 5.0), origin=(10.0, -20.0, 30.0)) -> dict[str, sitk.Image]:
    """The same image in space stored as DICOM does (LPS), mirrored in x (as RAS-minded tools
    write it) and with its axes permuted (sagittal storage)."""
    reference = volume(array, spacing, origin)
    mirrored = sitk.GetImageFromArray(array[:, :, ::-1].copy())
    mirrored.SetSpacing(spacing)
    mirrored.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    mirrored.SetOrigin(reference.TransformIndexToPhysicalPoint((array.shape[2] - 1, 0, 0)))
    # Slowest axis x, then z, fastest y: index (i, j, k) runs along patient (y, z, x).
    sagittal = sitk.GetImageFromArray(array.transpose(2, 0, 1).copy())
    sagittal.SetSpacing((spacing[1], spacing[2], spacing[0]))
    sagittal.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))
    sagittal.SetOrigin(origin)
    return {"lps": reference, "mirrored": mirrored, "sagittal": sagittal}


def test_the_crop_depends_on_the_patient_not_on_how_the_file_stores_the_scan(tmp_path):
    # Found in use: a scan saved mirrored gave the mirror-image crop, and saved sagittally it gave a
    # sagittal slice instead of the axial one.
    rng = np.random.default_rng(7)
    hu = rng.normal(40, 40, (12, 48, 56)).astype(np.int16)
    hu[:, :, :20] += 200  # the patient's right is brighter: a mirror image would show it
    roi = np.zeros(hu.shape, np.uint8)
    roi[5:8, 10:30, 30:45] = 1
    roi[6, 12:34, 26:48] = 1  # slice 6 has the largest cross-section
    images, masks = stored_three_ways(hu), stored_three_ways(roi)
    point = images["lps"].TransformIndexToPhysicalPoint((40, 15, 6))
    for name in ("mirrored", "sagittal"):  # the test's own storage is right: the same voxel in space
        index = images[name].TransformPhysicalPointToIndex(point)
        assert images[name][index] == images["lps"][(40, 15, 6)]
    crops = {}
    for name in images:
        sitk.WriteImage(images[name], str(tmp_path / f"{name}_ct.nii.gz"))
        sitk.WriteImage(masks[name], str(tmp_path / f"{name}_mask.nrrd"))
        image = imaging.read_volume(tmp_path / f"{name}_ct.nii.gz")
        assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection()) == "LPS"
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
        crops[name] = imaging.preprocess_case(image, imaging.read_volume(tmp_path / f"{name}_mask.nrrd"))
    for name in ("mirrored", "sagittal"):
        assert crops[name].slice_index == crops["lps"].slice_index == 6
        np.testing.assert_array_equal(crops[name].pixels, crops["lps"].pixels)
    # Without the reorientation the stored arrays differ, so the check above can fail.
    assert not np.array_equal(sitk.GetArrayFromImage(images["mirrored"]), hu)
    assert sitk.GetArrayFromImage(images["sagittal"]).shape != hu.shape


def test_a_mask_stored_differently_from_its_ct_still_lies_on_its_grid(tmp_path):
    hu = np.random.default_rng(1).normal(0, 50, (6, 20, 24)).astype(np.int16)
    roi = np.zeros(hu.shape, np.uint8)
    roi[2:4, 5:12, 6:15] = 1
    sitk.WriteImage(stored_three_ways(hu)["lps"], str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(stored_three_ways(roi)["mirrored"], str(tmp_path / "mask.nii.gz"))
    crop = imaging.preprocess_case(imaging.read_volume(tmp_path / "ct.nii.gz"), imaging.read_volume(tmp_path / "mask.nii.gz"))
    assert crop.slice_index in (2, 3) and crop.roi.any()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_nan_and_infinite_voxels_are_read_as_stored_never_as_zero(tmp_path, suffix):
    # ITK reads them from a NIfTI as 0: missing data would become water inside the ROI.
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 5
    array[1, 2, 3], array[0, 1, 2], array[1, 0, 0] = np.nan, np.inf, -np.inf
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(volume(array), str(path))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(imaging.read_volume(path)), array)


def test_a_crop_with_nan_in_the_roi_is_refused_with_the_count():
    image, mask = ct_and_mask()
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    hu[4, 25, 30] = hu[4, 26, 30] = np.nan
    nan_image = volume(hu)
    with pytest.raises(CrcInputError, match=r"^2 non-finite voxels in the ROI \(NaN or ±Inf in the CT inside this case\)"):
        imaging.preprocess_case(nan_image, mask)
    hu[4, 25, 30] = hu[4, 26, 30] = 40.0
    hu[4, 19, 30] = np.nan  # beside the ROI, inside its crop
    with pytest.raises(CrcInputError, match=r"^\d+ non-finite pixels in the crop"):
        imaging.preprocess_case(volume(hu), mask, imaging.PreprocessConfig(margin_px=10))
