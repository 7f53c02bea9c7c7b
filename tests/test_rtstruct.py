"""RTSTRUCT → mask on the referenced CT's grid (crc_core.imaging.rtstruct)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from crc_core.errors import CrcInputError
from crc_core.imaging.rtstruct import polygon_mask, read_rtstruct_mask
from tests.dicom_fixtures import pixel_polygon_to_mm, write_ct_series, write_rtstruct

SHAPE = (5, 30, 40)
SPACING = (0.8, 0.8, 2.5)  # x, y, z


def _ct(tmp_path):
    return write_ct_series(tmp_path / "ct", np.zeros(SHAPE, np.int16), spacing=SPACING)


def _square(ct, k, c0, r0, c1, r1):
    return pixel_polygon_to_mm(ct, k, [c0, c1, c1, c0], [r0, r0, r1, r1])


def _array(mask):
    return sitk.GetArrayFromImage(mask)


def test_rasteriser_matches_matplotlib_path_on_random_polygons():
    rng = np.random.default_rng(1)
    rows, cols = np.mgrid[0:50, 0:60]
    centres = np.stack([cols.ravel(), rows.ravel()], axis=1)
    for _ in range(30):
        n = rng.integers(3, 12)
        # Self-intersecting polygons too: matplotlib's even-odd rule decides them the same way.
        x, y = rng.uniform(-5, 65, n), rng.uniform(-5, 55, n)
        ours = polygon_mask(x, y, (50, 60))
        assert np.array_equal(ours, _even_odd_reference(x, y, centres).reshape(50, 60))
        if _is_simple(x, y):  # matplotlib uses non-zero winding, equal to even-odd for simple polygons
            expected = MplPath(np.stack([x, y], axis=1)).contains_points(centres).reshape(50, 60)
            assert np.array_equal(ours, expected)


def _even_odd_reference(x, y, centres):
    """Crossing-number parity in plain Python, point by point: inside when a ray to +x crosses an
    odd number of edges."""
    inside = np.zeros(len(centres), bool)
    xs, ys = list(x), list(y)
    for i, (px, py) in enumerate(centres):
        crossings = 0
        for j in range(len(xs)):
            xa, ya, xb, yb = xs[j], ys[j], xs[(j + 1) % len(xs)], ys[(j + 1) % len(xs)]
            if (ya > py) != (yb > py) and px < xa + (py - ya) * (xb - xa) / (yb - ya):
                crossings += 1
        inside[i] = crossings % 2 == 1
    return inside


def _is_simple(x, y):
    """No two non-adjacent edges cross (matplotlib uses non-zero winding for self-crossing ones)."""
    pts = list(zip(x, y))
    n = len(pts)

    def cross(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    for i in range(n):
        for j in range(i + 1, n):
            if abs(i - j) in (1, n - 1):
                continue
            a, b, c, d = pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]
            if cross(a, b, c) * cross(a, b, d) < 0 and cross(c, d, a) * cross(c, d, b) < 0:
                return False
    return True


def test_rasteriser_counts_centres_on_the_boundary_like_skimage():
    # skimage.draw.polygon([0, 0, 2, 2], [0, 2, 2, 0]) gives the 3 × 3 block: edges and vertices count.
    mask = polygon_mask(np.array([0, 2, 2, 0]), np.array([0, 0, 2, 2]), (5, 5))
    expected = np.zeros((5, 5), bool)
    expected[0:3, 0:3] = True
    assert np.array_equal(mask, expected)


def test_contour_inside_another_is_a_hole_and_contours_are_placed_by_z(tmp_path):
    ct = _ct(tmp_path)
    outer, inner = _square(ct, 2, 5.2, 5.2, 20.8, 20.8), _square(ct, 2, 10.2, 10.2, 15.8, 15.8)
    lower = _square(ct, 1, 25.2, 3.2, 30.8, 8.8)
    # ContourImageSequence points at the wrong slice for the lower contour: z must win.
    wrong = {("GTV", 2): sorted(ct, key=lambda d: float(d.ImagePositionPatient[2]))[4].SOPInstanceUID}
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": [("CLOSED_PLANAR", outer), ("CLOSED_PLANAR", inner),
                                                           ("CLOSED_PLANAR", lower)]}, contour_image_uids=wrong)
    mask, info = read_rtstruct_mask(path, tmp_path / "ct")
    array = _array(mask)
    expected = np.zeros(SHAPE, np.uint8)
    expected[2, 6:21, 6:21] = 1
    expected[2, 11:16, 11:16] = 0
    expected[1, 4:9, 26:31] = 1
    assert np.array_equal(array, expected)
    assert info.roi_name == "GTV" and info.slices == (1, 2)


def test_contour_between_planes_is_refused_naming_roi_and_z(tmp_path):
    ct = _ct(tmp_path)
    square = _square(ct, 2, 5, 5, 10, 10)
    square[:, 2] += SPACING[2] / 2
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": [("CLOSED_PLANAR", square)]})
    z = square[0, 2]
    with pytest.raises(CrcInputError, match=rf"P2: RTSTRUCT .*ROI 'GTV' lies at z = {z:.2f} mm, between"):
        read_rtstruct_mask(path, tmp_path / "ct", patient="P2")


def test_short_open_point_and_outside_contours_are_skipped_and_said(tmp_path):
    ct = _ct(tmp_path)
    two_points = _square(ct, 3, 1, 1, 4, 4)[:2]
    beyond = _square(ct, 1, 30.2, 20.2, 45.8, 35.8)  # reaches past column 39 and row 29
    off = _square(ct, 0, 2, 2, 6, 6)
    off[:, 2] -= 10 * SPACING[2]
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {
        "GTV": [("CLOSED_PLANAR", _square(ct, 3, 2.2, 2.2, 8.8, 8.8)), ("CLOSED_PLANAR", two_points),
                ("CLOSED_PLANAR", beyond), ("CLOSED_PLANAR", off), ("OPEN_PLANAR", _square(ct, 2, 1, 1, 3, 3))],
        "Iso": [("POINT", _square(ct, 2, 1, 1, 1, 1)[:1])]})
    mask, info = read_rtstruct_mask(path, tmp_path / "ct")  # "Iso" is a POINT ROI: GTV is the only region
    notes = " | ".join(info.notes)
    assert "POINT ROIs skipped" in notes and "'Iso'" in notes
    assert "1 contour(s) of fewer than 3 points ignored" in notes
    assert "outside the CT's slices skipped" in notes and "clipped" in notes and "OPEN_PLANAR" in notes
    array = _array(mask)
    assert array[3, 3:9, 3:9].all() and array[3].sum() == 36
    assert array[1, 21:30, 31:40].all() and array[1].sum() == 81
    with pytest.raises(CrcInputError, match="'Iso' is a POINT marker"):
        read_rtstruct_mask(path, tmp_path / "ct", "Iso")


def test_forty_rois_and_no_name_lists_them_shortened(tmp_path):
    ct = _ct(tmp_path)
    rois = {f"Organ {i:02d}": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))] for i in range(40)}
    path = write_rtstruct(tmp_path / "rs.dcm", ct, rois)
    with pytest.raises(CrcInputError) as err:
        read_rtstruct_mask(path, tmp_path / "ct", patient="P40")
    message = str(err.value)
    assert message.startswith("Patient P40: RTSTRUCT") and "holds 40 ROIs" in message
    assert "'Organ 00'" in message and "'Organ 09'" in message and "'Organ 10'" not in message
    assert "and 30 more" in message and "mask_roi" in message and "\n" not in message
    with pytest.raises(CrcInputError, match=r"no ROI named 'Liver'; it has 40: 'Organ 00'.*and 30 more"):
        read_rtstruct_mask(path, tmp_path / "ct", "Liver")


def test_rtstruct_of_another_series_or_frame_is_refused_naming_both(tmp_path):
    ct = _ct(tmp_path)
    other_series = generate_uid()
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))]},
                          series_uid=other_series)
    with pytest.raises(CrcInputError) as err:
        read_rtstruct_mask(path, tmp_path / "ct", patient="P5")
    assert other_series in str(err.value) and ct[0].SeriesInstanceUID in str(err.value)
    moved = write_rtstruct(tmp_path / "rs2.dcm", ct, {"GTV": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))]},
                           frame_uid=generate_uid())
    with pytest.raises(CrcInputError, match="frame of reference"):
        read_rtstruct_mask(moved, tmp_path / "ct")


def test_empty_roi_refused_and_one_slice_roi_allowed(tmp_path):
    ct = _ct(tmp_path)
    tiny = _square(ct, 2, 3.1, 3.1, 3.4, 3.4)  # encloses no pixel centre
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))],
                                                   "Empty": [], "Tiny": [("CLOSED_PLANAR", tiny)]})
    _, info = read_rtstruct_mask(path, tmp_path / "ct", "GTV")
    assert info.slices == (2,) and any("one slice" in n for n in info.notes)
    with pytest.raises(CrcInputError, match="ROI 'Empty' covers no voxel"):
        read_rtstruct_mask(path, tmp_path / "ct", "Empty")
    with pytest.raises(CrcInputError, match="ROI 'Tiny' covers no voxel"):
        read_rtstruct_mask(path, tmp_path / "ct", "Tiny")


def test_truncated_and_non_rtstruct_files_are_one_line(tmp_path):
    ct = _ct(tmp_path)
    rois = {f"Organ {i}": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))] for i in range(20)}
    data = write_rtstruct(tmp_path / "rs.dcm", ct, rois).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:400])
    with pytest.raises(CrcInputError, match=r"P1: .*cut.dcm") as err:
        read_rtstruct_mask(tmp_path / "cut.dcm", tmp_path / "ct", patient="P1")
    assert "\n" not in str(err.value)
    with pytest.raises(CrcInputError, match="is a CT Image Storage, not an RTSTRUCT"):
        read_rtstruct_mask(next((tmp_path / "ct").iterdir()), tmp_path / "ct")


def test_pydicoms_real_rtstruct_points_skipped_and_contours_placed_by_z(tmp_path):
    """rtstruct.dcm: a real structure set with two POINT ROIs (isocentres), no ContourImageSequence
    and no file preamble. Its CT is not in pydicom's files, so a blank CT is written on the series
    and frame of reference it references, with slices every 10 mm from z = -200 to -180 mm."""
    path = get_testdata_file("rtstruct.dcm")
    ds = pydicom.dcmread(path, force=True)
    ref = ds.ReferencedFrameOfReferenceSequence[0]
    series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0].SeriesInstanceUID
    write_ct_series(tmp_path / "ct", np.zeros((3, 80, 100), np.int16), spacing=(5.0, 5.0, 10.0),
                    origin=(-250.0, -200.0, -200.0), series_uid=series, frame_uid=ref.FrameOfReferenceUID)
    mask, info = read_rtstruct_mask(path, tmp_path / "ct")
    assert info.roi_name == "patient" and info.slices == (0, 1, 2)
    assert "POINT ROIs skipped (markers, not regions): 'Isocenter 1', 'Isocenter 2'" in info.notes
    array = _array(mask)
    for k, contour in enumerate(ds.ROIContourSequence[0].ContourSequence):
        pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
        columns, rows = (pts[:, 0] + 250.0) / 5.0, (pts[:, 1] + 200.0) / 5.0
        assert np.array_equal(array[k].astype(bool), polygon_mask(columns, rows, (80, 100)))
        r, c = np.mgrid[0:80, 0:100]
        inside = MplPath(np.stack([columns, rows], 1)).contains_points(np.stack([c.ravel(), r.ravel()], 1))
        assert (array[k].ravel().astype(bool) | ~inside).all()  # every strictly inside centre is in the mask


def _dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_real_ct_and_tumour_from_rt_utils_rtstruct_match_the_nrrd_label(tmp_path, case):
    """PyRadiomics' real lung CT as a DICOM series, its tumour written as an RTSTRUCT by rt-utils
    (an independent writer): the ROI rasterised back on the CT grid has Dice ≥ 0.9 with the label."""
    rt_utils = pytest.importorskip("rt_utils")
    from tests.dicom_fixtures import nrrd_as_ct_series, pyradiomics_data

    image_path, label_path = pyradiomics_data(case)
    nrrd_as_ct_series(tmp_path / "ct", image_path)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))) > 0
    rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(tmp_path / "ct"))
    # rt-utils wants (rows, columns, slices) in its own slice order (ascending position, as ours).
    rtstruct.add_roi(mask=np.transpose(label, (1, 2, 0)), name="GTV", approximate_contours=False)
    rtstruct.add_roi(mask=np.transpose(np.roll(label, 40, axis=2), (1, 2, 0)), name="Other")
    rtstruct.save(str(tmp_path / "rs.dcm"))
    mask, info = read_rtstruct_mask(tmp_path / "rs.dcm", tmp_path / "ct", "GTV", patient=case)
    dice = _dice(sitk.GetArrayFromImage(mask), label)
    print(f"{case}: Dice {dice:.4f}")
    assert dice >= 0.9, f"Dice {dice:.3f}"
    assert set(info.slices) == set(np.flatnonzero(label.any(axis=(1, 2))))


def test_read_roi_mask_dispatches_rtstruct_and_refuses_other_files(tmp_path):
    from crc_core.imaging.dicom_roi import read_roi_mask

    ct = _ct(tmp_path)
    path = write_rtstruct(tmp_path / "rs.dcm", ct, {"GTV": [("CLOSED_PLANAR", _square(ct, 2, 2, 2, 6, 6))]})
    mask, info = read_roi_mask(path, tmp_path / "ct")
    assert info.kind == "RTSTRUCT" and _array(mask)[2].sum() == 25
    (tmp_path / "x.nrrd").write_bytes(b"NRRD0004\n")
    with pytest.raises(CrcInputError, match=r"P3: .*x.nrrd' is neither a DICOM-SEG nor an RTSTRUCT"):
        read_roi_mask(tmp_path / "x.nrrd", tmp_path / "ct", patient="P3")
