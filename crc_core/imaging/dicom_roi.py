"""One entry for a mask column that holds a DICOM ROI object: a SEG or an RTSTRUCT.

The imaging reader asks :func:`crc_core.imaging.dicom_refs.roi_kind` first; for 'SEG' or 'RTSTRUCT' it
calls :func:`read_roi_mask` with the patient's CT series and the ROI name from ``mask_roi`` (or
``mask_r2_roi`` for reader 2) instead of reading the mask with SimpleITK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from crc_core.imaging.dicom_refs import CtReference, RoiMaskInfo, prefix, roi_kind
from crc_core.imaging.dicom_seg import read_seg_mask
from crc_core.errors import CrcInputError
from crc_core.imaging.rtstruct import read_rtstruct_mask


def read_roi_mask(path: str | Path, ct_reference: CtReference | str | Path | Iterable, roi_name: str | None = None,
                  *, patient: str | None = None) -> tuple[object, RoiMaskInfo]:
    """The mask (uint8 SimpleITK image on the CT's grid) and info of a SEG or RTSTRUCT file."""
    kind = roi_kind(path)
    if kind == "SEG":
        return read_seg_mask(path, ct_reference, roi_name, patient=patient)
    if kind == "RTSTRUCT":
        return read_rtstruct_mask(path, ct_reference, roi_name, patient=patient)
    raise CrcInputError(f"{prefix(patient)}'{path}' is neither a DICOM-SEG nor an RTSTRUCT; "
                        "give the segmentation or structure set file, or an image mask (NRRD, NIfTI).")
