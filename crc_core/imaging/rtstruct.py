"""A tumour mask from a DICOM RTSTRUCT, rasterised on the grid of its referenced CT.

Why our own rasteriser and not rt-utils or dcmrtstruct2nii: rt-utils 1.2.7 places each contour on
the slice named by its ContourImageSequence (absent in many files, and wrong when the structure set
was copied between series), rounds the points to whole pixels and fills with OpenCV; the pitfalls
the issue lists (holes filled in, two-point contours that crash) come from those tools. Here:

* Each contour is placed on the CT slice whose plane it lies on, from its own z (its points
  projected on the CT's slice normal), never from ContourImageSequence. A contour that lies between
  two planes (more than 10 % of the slice spacing from both) is refused naming the ROI and the z.
* Points stay in continuous pixel coordinates; a pixel belongs to a contour when its centre lies
  inside the polygon or on its boundary — the semantics of ``skimage.draw.polygon`` — and the
  contours of one slice combine by the even-odd rule, so a contour inside another is a hole
  (tested against ``matplotlib.path`` in tests/test_rtstruct.py).
* The ROI is chosen by ROI Name (``mask_roi``/``mask_r2_roi``); one ROI with contours needs no name.
  POINT ROIs (isocentres, markers) are skipped and said; contours of fewer than three points are
  ignored and said; contours outside the CT's field of view are clipped (or, off its slices,
  skipped) and said — all in ``info.notes``.
* The RTSTRUCT must reference the CT given (RT Referenced Series, Frame of Reference UID, contour
  image SOP instances when present); another series is refused naming both.
* An ROI on a single slice is allowed and noted; an ROI without any voxel is refused.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
from pydicom.dataset import Dataset

from crc_core.imaging.dicom_refs import (
    PLANE_TOLERANCE_FRACTION, RTSTRUCT_SOP_CLASS, CtReference, RoiMaskInfo, check_same_series, choose_name,
    prefix, read_dataset, resolve_reference, shortened_list, sop_class_name,
)
from crc_core.errors import CrcInputError

_ON_EDGE = 1e-6  # pixels: a centre this close to an edge counts as on it


def polygon_mask(columns: np.ndarray, rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (rows × columns) whose centres lie inside or on the closed polygon, like skimage.draw.polygon.

    ``columns``/``rows`` are the vertices in continuous pixel coordinates (0 = centre of the first
    pixel); parts outside ``shape`` are clipped. Inside is decided by the even-odd (crossing) rule."""
    x = np.asarray(columns, dtype=float)
    y = np.asarray(rows, dtype=float)
    out = np.zeros(shape, dtype=bool)
    c0, c1 = max(int(np.ceil(x.min() - _ON_EDGE)), 0), min(int(np.floor(x.max() + _ON_EDGE)), shape[1] - 1)
    r0, r1 = max(int(np.ceil(y.min() - _ON_EDGE)), 0), min(int(np.floor(y.max() + _ON_EDGE)), shape[0] - 1)
    if c0 > c1 or r0 > r1:
        return out
    py, px = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(float)
    inside = np.zeros(px.shape, dtype=bool)
    on_edge = np.zeros(px.shape, dtype=bool)
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    for xa, ya, xb, yb in zip(x, y, x2, y2):
        crosses = (ya > py) != (yb > py)
        if ya != yb:
            x_at = xa + (py - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (px < x_at)
        dx, dy = xb - xa, yb - ya
        length2 = dx * dx + dy * dy
        t = np.clip(((px - xa) * dx + (py - ya) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        on_edge |= (px - (xa + t * dx)) ** 2 + (py - (ya + t * dy)) ** 2 <= _ON_EDGE ** 2
    out[r0:r1 + 1, c0:c1 + 1] = inside | on_edge
    return out


def _read_rtstruct(path: str | Path, patient: str | None) -> Dataset:
    ds = read_dataset(path, patient=patient, kind="RTSTRUCT")
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise CrcInputError(f"{prefix(patient)}'{path}' is a {sop_class_name(ds)}, not an RTSTRUCT; "
                            "give the structure set file as the mask.")
    if "StructureSetROISequence" not in ds:
        raise CrcInputError(f"{prefix(patient)}RTSTRUCT '{path}' lists no ROIs (no Structure Set ROI Sequence); "
                            "the file may be truncated — export it again.")
    return ds


def _referenced(ds: Dataset) -> tuple[list[str], str, list[str]]:
    series, sops, frame = [], [], ""
    for ref_frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        frame = frame or str(ref_frame.get("FrameOfReferenceUID", ""))
        for study in ref_frame.get("RTReferencedStudySequence", []):
            for item in study.get("RTReferencedSeriesSequence", []):
                series.append(str(item.get("SeriesInstanceUID", "")))
                sops += [str(i.get("ReferencedSOPInstanceUID", "")) for i in item.get("ContourImageSequence", [])]
    return series, frame, sops


def roi_names(rtstruct_path: str | Path, *, patient: str | None = None) -> dict[int, str]:
    """ROI Number → ROI Name of an RTSTRUCT (all ROIs, POINT markers included)."""
    ds = _read_rtstruct(rtstruct_path, patient)
    return {int(r.ROINumber): str(r.get("ROIName", f"ROI {int(r.ROINumber)}")) for r in ds.StructureSetROISequence}


def read_rtstruct_mask(rtstruct_path: str | Path, ct_reference: CtReference | str | Path | Iterable,
                       roi_name: str | None = None, *, patient: str | None = None):
    """The mask of one ROI of ``rtstruct_path`` on the CT's voxel grid, and what was read.

    ``ct_reference`` is a :class:`~crc_core.imaging.dicom_refs.CtReference`, a folder of the CT's DICOM
    slices (the series the RTSTRUCT references is picked from it) or the slices' datasets/paths.
    Returns ``(mask, info)``: a uint8 SimpleITK image (0/1) with the CT's geometry and a
    :class:`~crc_core.imaging.dicom_refs.RoiMaskInfo`. Raises CrcInputError."""
    ds = _read_rtstruct(rtstruct_path, patient)
    where = f"{prefix(patient)}RTSTRUCT '{rtstruct_path}'"
    series, frame, sops = _referenced(ds)
    rois = {int(r.ROINumber): r for r in ds.StructureSetROISequence}
    names = {n: str(r.get("ROIName", f"ROI {n}")) for n, r in rois.items()}
    contours = {int(c.ReferencedROINumber): list(c.get("ContourSequence", []))
                for c in ds.get("ROIContourSequence", [])}
    kinds = {n: {str(c.get("ContourGeometricType", "")).upper() for c in contours.get(n, [])} for n in names}
    regions = [names[n] for n in names if "CLOSED_PLANAR" in kinds[n]]
    points = [names[n] for n in names if kinds[n] and kinds[n] <= {"POINT"}]
    empty = [names[n] for n in names if not kinds[n]]
    notes = []
    if points:
        notes.append(f"POINT ROIs skipped (markers, not regions): {shortened_list(points)}")
    if roi_name is not None and str(roi_name).strip():
        label = choose_name(list(names.values()), roi_name, what="ROI", where=where)
    else:
        if not regions:
            raise CrcInputError(f"{where} holds no ROI with closed contours (POINT markers: {shortened_list(points) or 'none'}; "
                                f"empty: {shortened_list(empty) or 'none'}); give the structure set with the tumour drawn.")
        label = choose_name(regions, None, what="ROI", where=where)
    number = next(n for n, name in names.items() if name == label)
    if label in points:
        raise CrcInputError(f"{where}: ROI '{label}' is a POINT marker, not a region; choose a delineated ROI "
                            f"({shortened_list(regions) or 'there is none'}).")
    roi_frame = str(rois[number].get("ReferencedFrameOfReferenceUID", "")) or frame
    ct = resolve_reference(ct_reference, series, patient)
    check_same_series(ct, mask_label=f"RTSTRUCT '{rtstruct_path}'", referenced_series=series,
                      frame_of_reference_uid=roi_frame, referenced_sops=sops, patient=patient)
    mask, slice_notes = _rasterise(contours.get(number, []), ct, where, label)
    notes += slice_notes
    voxels = int(mask.sum())
    if voxels == 0:
        raise CrcInputError(f"{where}: ROI '{label}' covers no voxel of the CT ({ct.label}); "
                            "check that it is the tumour and that the CT is the series it was drawn on.")
    slices = tuple(int(k) for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)))
    if len(slices) == 1:
        notes.append(f"ROI '{label}' lies on one slice only (slice {slices[0] + 1} of {ct.shape[0]})")
    info = RoiMaskInfo(kind="RTSTRUCT", roi_name=label, roi_number=number, voxels=voxels, slices=slices,
                       series_uid=ct.series_uid, notes=tuple(notes))
    return ct.to_image(mask), info


def _rasterise(contours: list[Dataset], ct: CtReference, where: str, label: str) -> tuple[np.ndarray, list[str]]:
    """Fill each closed contour on its own slice; XOR per slice (even-odd across contours)."""
    mask = ct.empty_mask().astype(bool)
    too_short, off_slices, clipped, open_kinds = [], [], 0, set()
    per_slice: dict[int, list[np.ndarray]] = defaultdict(list)
    for contour in contours:
        kind = str(contour.get("ContourGeometricType", "")).upper()
        if kind != "CLOSED_PLANAR":
            open_kinds.add(kind or "untyped")
            continue
        data = np.asarray([float(v) for v in contour.get("ContourData", [])])
        if data.size < 9 or data.size % 3:
            too_short.append(f"{float(data[2]):.2f}" if data.size >= 3 else "?")
            continue
        points = data.reshape(-1, 3)
        index = ct.continuous_index(points)
        z_values = points @ ct.normal
        k = float(index[:, 2].mean())
        if np.ptp(index[:, 2]) > PLANE_TOLERANCE_FRACTION:
            raise CrcInputError(f"{where}: a contour of ROI '{label}' is not parallel to the CT's slices "
                                f"(z from {z_values.min():.2f} to {z_values.max():.2f} mm); draw it on the axial slices.")
        nearest = int(round(k))
        if not 0 <= nearest < ct.shape[0]:
            off_slices.append(f"{z_values.mean():.2f}")
            continue
        if abs(k - nearest) > PLANE_TOLERANCE_FRACTION:
            below = ct.origin @ ct.normal + np.floor(k) * ct.slice_spacing
            raise CrcInputError(
                f"{where}: a contour of ROI '{label}' lies at z = {z_values.mean():.2f} mm, between the CT's slices at "
                f"{below:.2f} and {below + ct.slice_spacing:.2f} mm; give the CT series it was drawn on "
                "(or re-export the structure set on this CT's slices).")
        if (index[:, 0].min() < -0.5 or index[:, 1].min() < -0.5 or index[:, 0].max() > ct.columns - 0.5
                or index[:, 1].max() > ct.rows - 0.5):
            clipped += 1
        per_slice[nearest].append(index[:, :2])
    for k, polygons in per_slice.items():
        plane = np.zeros(ct.shape[1:], dtype=bool)
        for polygon in polygons:
            plane ^= polygon_mask(polygon[:, 0], polygon[:, 1], ct.shape[1:])
        mask[k] = plane
    notes = []
    if too_short:
        notes.append(f"ROI '{label}': {len(too_short)} contour(s) of fewer than 3 points ignored (z = {', '.join(too_short)} mm)")
    if off_slices:
        notes.append(f"ROI '{label}': {len(off_slices)} contour(s) outside the CT's slices skipped (z = {', '.join(off_slices)} mm)")
    if clipped:
        notes.append(f"ROI '{label}': {clipped} contour(s) reach outside the CT's field of view and were clipped to it")
    if open_kinds:
        notes.append(f"ROI '{label}': {', '.join(sorted(open_kinds))} contours skipped (not closed regions)")
    return mask.astype(np.uint8), notes
