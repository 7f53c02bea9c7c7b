"""A tumour mask from a DICOM-SEG (3D Slicer, OHIF, AI tools) on the grid of its referenced CT.

The file is parsed and its frames decoded by ``highdicom`` (bit-packed binary frames, fractional
frames, compressed transfer syntaxes). Each frame is then placed on the CT's grid by its own Plane
Position (Image Position Patient) in the Per-Frame Functional Groups — never by frame order or
Dimension Index Values, which writers fill differently — and must lie on a CT plane, in the CT's
orientation and pixel spacing.

* The segment is chosen by its Segment Label (manifest column ``mask_roi``/``mask_r2_roi``); a
  file with one segment needs no name; several and none named, or an unknown name, is refused
  listing the labels.
* Only the chosen segment's frames are read, so overlapping segments (allowed in SEG) each give
  their own full mask; a multi-segment SEG is never collapsed into one label volume.
* FRACTIONAL segmentations (probability or occupancy) are thresholded at 0.5: a voxel belongs to
  the ROI when stored value / Maximum Fractional Value ≥ 0.5; ``info.fractional_threshold`` says so.
* The SEG must reference the CT given (Referenced Series Sequence, Frame of Reference UID,
  referenced SOP instances); another series is refused naming both series UIDs.
* An ROI on a single slice is allowed (a small lesion on 5 mm slices) and noted in ``info.notes``;
  an empty segment is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from pydicom.dataset import Dataset

from crc_core.imaging.dicom_refs import (
    PLANE_TOLERANCE_FRACTION, SEG_SOP_CLASS, CtReference, RoiMaskInfo, check_same_series, choose_name,
    prefix, read_dataset, resolve_reference, sop_class_name,
)
from crc_core.errors import CrcInputError

FRACTIONAL_THRESHOLD = 0.5
# In-plane, a SEG frame must start on the CT's first pixel (within this fraction of a pixel).
IN_PLANE_TOLERANCE_PIXELS = 0.05


def _functional(ds: Dataset, index: int, sequence: str):
    """The item of a functional group for frame ``index``: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    candidates = ([per_frame[index]] if index < len(per_frame) else []) + ([shared[0]] if shared else [])
    for item in candidates:
        if sequence in item and len(item.get(sequence)):
            return item.get(sequence)[0]
    return None


def _referenced(ds: Dataset) -> tuple[list[str], list[str]]:
    series, sops = [], []
    for item in ds.get("ReferencedSeriesSequence", []):
        series.append(str(item.get("SeriesInstanceUID", "")))
        sops += [str(i.get("ReferencedSOPInstanceUID", "")) for i in item.get("ReferencedInstanceSequence", [])]
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        for derivation in frame.get("DerivationImageSequence", []):
            sops += [str(s.get("ReferencedSOPInstanceUID", "")) for s in derivation.get("SourceImageSequence", [])]
    return series, sops


def segment_labels(seg_path: str | Path, *, patient: str | None = None) -> dict[int, str]:
    """Segment Number → Segment Label of a SEG file (for a page's ROI choice)."""
    ds = _read_seg(seg_path, patient)
    return {int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {int(s.SegmentNumber)}"))
            for s in ds.get("SegmentSequence", [])}


def _read_seg(seg_path: str | Path, patient: str | None) -> Dataset:
    ds = read_dataset(seg_path, patient=patient, kind="SEG")
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise CrcInputError(
            f"{prefix(patient)}'{seg_path}' is a {sop_class_name(ds)}, not a DICOM-SEG; "
            "give the segmentation file as the mask."
        )
    return ds


def read_seg_mask(seg_path: str | Path, ct_reference: CtReference | str | Path | Iterable,
                  roi_name: str | None = None, *, patient: str | None = None):
    """The mask of one segment of ``seg_path`` on the CT's voxel grid, and what was read.

    ``ct_reference`` is a :class:`~crc_core.imaging.dicom_refs.CtReference`, a folder of the CT's DICOM
    slices (the series the SEG references is picked from it) or the slices' datasets/paths.
    ``roi_name`` is the Segment Label (``mask_roi``). ``patient`` (the cohort ID) prefixes messages.
    Returns ``(mask, info)``: a uint8 SimpleITK image (0/1) with the CT's origin, spacing and
    direction, and a :class:`~crc_core.imaging.dicom_refs.RoiMaskInfo`. Raises CrcInputError."""
    import highdicom as hd

    ds = _read_seg(seg_path, patient)
    where = f"{prefix(patient)}SEG '{seg_path}'"
    series, sops = _referenced(ds)
    ct = resolve_reference(ct_reference, series, patient)
    check_same_series(ct, mask_label=f"SEG '{seg_path}'", referenced_series=series,
                      frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")), referenced_sops=sops,
                      patient=patient)
    segments = {int(s.SegmentNumber): str(s.get("SegmentLabel", f"segment {int(s.SegmentNumber)}"))
                for s in ds.get("SegmentSequence", [])}
    labels = list(segments.values())
    if len(set(labels)) != len(labels):
        raise CrcInputError(f"{where} names two segments alike ({', '.join(labels)}); rename them in the SEG's tool.")
    label = choose_name(labels, roi_name, what="segment", where=where)
    number = next(n for n, name in segments.items() if name == label)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except Exception as exc:
        raise CrcInputError(f"{where} is not a valid DICOM-SEG ({exc}); export it again.") from None
    fractional = str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL"
    maximum = float(ds.get("MaximumFractionalValue", 255) or 255) if fractional else 1.0
    if int(ds.get("Rows", 0)) != ct.rows or int(ds.get("Columns", 0)) != ct.columns:
        raise CrcInputError(f"{where} has frames of {ds.get('Rows')} × {ds.get('Columns')} pixels, the CT "
                            f"{ct.rows} × {ct.columns}; export the SEG on the CT's full grid.")
    mask = ct.empty_mask()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    for i in range(frames):
        ident = _functional(ds, i, "SegmentIdentificationSequence")
        if ident is None or int(ident.ReferencedSegmentNumber) != number:
            continue
        k = _slice_of_frame(ds, i, ct, where, label)
        try:
            stored = np.asarray(seg.get_stored_frame(i + 1), dtype=float)
        except Exception as exc:
            raise CrcInputError(f"{where}: frame {i + 1} cannot be decoded ({type(exc).__name__}: {exc}); "
                                "the file may be truncated — export it again.") from None
        plane = stored / maximum >= FRACTIONAL_THRESHOLD if fractional else stored > 0
        mask[k] |= plane.astype(np.uint8)
    voxels = int(mask.sum())
    if voxels == 0:
        raise CrcInputError(f"{where}: segment '{label}' is empty (no voxel set); draw the tumour or choose another segment.")
    slices = tuple(int(k) for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)))
    notes = []
    if fractional:
        notes.append(f"fractional segment '{label}' thresholded at {FRACTIONAL_THRESHOLD} (value / maximum ≥ 0.5)")
    if len(slices) == 1:
        notes.append(f"segment '{label}' lies on one slice only (slice {slices[0] + 1} of {ct.shape[0]})")
    info = RoiMaskInfo(kind="SEG", roi_name=label, roi_number=number, voxels=voxels, slices=slices,
                       series_uid=ct.series_uid, fractional_threshold=FRACTIONAL_THRESHOLD if fractional else None,
                       notes=tuple(notes))
    return ct.to_image(mask), info


def _slice_of_frame(ds: Dataset, i: int, ct: CtReference, where: str, label: str) -> int:
    """The CT slice a frame lies on, from its Plane Position; refused when it lies on none."""
    position = _functional(ds, i, "PlanePositionSequence")
    if position is None or "ImagePositionPatient" not in position:
        raise CrcInputError(f"{where}: frame {i + 1} of segment '{label}' has no plane position; "
                            "export the SEG with its per-frame positions.")
    orientation = _functional(ds, i, "PlaneOrientationSequence")
    if orientation is not None and "ImageOrientationPatient" in orientation:
        o = np.asarray([float(v) for v in orientation.ImageOrientationPatient])
        if not np.allclose(o, np.concatenate([ct.row_direction, ct.column_direction]), atol=1e-3):
            raise CrcInputError(f"{where}: segment '{label}' is oriented {list(np.round(o, 3))}, the CT "
                                f"{list(np.round(np.concatenate([ct.row_direction, ct.column_direction]), 3))}; "
                                "export the SEG on the CT's own slices.")
    measures = _functional(ds, i, "PixelMeasuresSequence")
    if measures is not None and "PixelSpacing" in measures:
        spacing = [float(v) for v in measures.PixelSpacing]
        if not np.allclose(spacing, [ct.row_spacing, ct.column_spacing], rtol=1e-3, atol=1e-4):
            raise CrcInputError(f"{where}: segment '{label}' has pixel spacing {spacing} mm, the CT "
                                f"{[ct.row_spacing, ct.column_spacing]} mm; export the SEG on the CT's grid.")
    point = np.asarray([float(v) for v in position.ImagePositionPatient])
    column, row, k = ct.continuous_index(point)[0]
    z = float(point @ ct.normal)
    if abs(column) > IN_PLANE_TOLERANCE_PIXELS or abs(row) > IN_PLANE_TOLERANCE_PIXELS:
        raise CrcInputError(f"{where}: frame {i + 1} of segment '{label}' starts {column:.2f}, {row:.2f} pixels "
                            "from the CT's first pixel; export the SEG on the CT's grid.")
    nearest = int(round(k))
    if abs(k - nearest) > PLANE_TOLERANCE_FRACTION or not 0 <= nearest < ct.shape[0]:
        raise CrcInputError(f"{where}: frame {i + 1} of segment '{label}' lies at {z:.2f} mm along the slice normal, "
                            f"on no slice of the CT ({ct.label}, series {ct.series_uid}); give the CT it was drawn on.")
    return nearest
