"""Pictures for people: a patient's slice with both readers' outlines, and a crop with its ROI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from crc_core.imaging import volumes as imaging
from crc_core.errors import CrcInputError

READER1_COLOUR = (230, 60, 60)  # red
READER2_COLOUR = (40, 200, 230)  # cyan: apart from red for colour-blind readers too


@dataclass(frozen=True)
class CaseVolumes:
    patient_id: str
    hu: np.ndarray  # z, y, x
    reader1: np.ndarray  # bool, z, y, x
    reader2: np.ndarray | None
    spacing_xyz: tuple[float, float, float]

    @property
    def largest_slice(self) -> int:
        return imaging.largest_roi_slice(self.reader1)


def _reader_mask(path: str, image: sitk.Image, label: int | None, who: str, ct: str = "", roi: str = "") -> np.ndarray:
    mask = imaging.read_mask(path, ct, roi, patient=who)
    imaging.check_geometry(image, mask)
    return sitk.GetArrayFromImage(imaging.binary_mask(mask, label, where=who)).astype(bool)


def load_case(row: dict, label: int | None = None) -> CaseVolumes:
    """A manifest row's CT and both readers' masks (reader 2 when listed)."""
    patient = str(row["patient_id"])
    try:
        image, _ = imaging.read_case(row["image"], row["mask"], row.get("mask_roi", ""), patient=patient)
        reader1 = _reader_mask(row["mask"], image, label, f"{patient}: reader 1's mask", row["image"], row.get("mask_roi", ""))
        reader2 = None
        if row.get("mask_r2"):
            reader2 = _reader_mask(row["mask_r2"], image, label, f"{patient}: reader 2's mask", row["image"],
                                   row.get("mask_r2_roi", ""))
    except CrcInputError as exc:
        raise CrcInputError(f"{patient}: {exc}") from exc
    return CaseVolumes(patient, sitk.GetArrayFromImage(image), reader1, reader2, tuple(image.GetSpacing()))


def slice_picture(case: CaseVolumes, z: int, width: float = 400.0, level: float = 40.0) -> np.ndarray:
    """Slice ``z`` in the HU window as RGB with reader 1 (red) and reader 2 (cyan) outlined."""
    if not 0 <= z < case.hu.shape[0]:
        raise CrcInputError(f"Slice {z} is outside 0-{case.hu.shape[0] - 1}.")
    outlines = [(case.reader1[z], READER1_COLOUR)]
    if case.reader2 is not None:
        outlines.append((case.reader2[z], READER2_COLOUR))
    return imaging.overlay_rgb(imaging.window_to_unit(case.hu[z], width, level), outlines)


def crop_picture(crop: imaging.CaseCrop) -> np.ndarray:
    """The model's input (central channel) with the ROI outlined in red."""
    central = crop.pixels[crop.pixels.shape[0] // 2]
    return imaging.overlay_rgb(central, [(crop.roi, READER1_COLOUR)])
