"""The referenced CT series of a DICOM-SEG or RTSTRUCT: its voxel grid and its UIDs.

A mask file is matched to its CT by UIDs (Series Instance UID, Frame of Reference UID, referenced
SOP Instance UIDs), never by file name, and its frames or contours are placed on the CT's grid by
their positions in patient space. :class:`CtReference` holds what that needs, read from the CT
headers only (``stop_before_pixels``): slices sorted by their position along the slice normal
(never by file name or Instance Number), the in-plane geometry, and the UIDs.

The grid is the one SimpleITK gives when it reads the same series (origin at the first slice along
the normal, direction columns = row direction, column direction, normal), so a mask built here can
be compared voxel by voxel with the CT image read by ``sitk.ImageSeriesReader``.

UIDs appear in error messages (the user needs them to find the right series) but are pseudonymous
technical identifiers; no patient-identifying header (name, ID, dates) is kept here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from crc_core.errors import CrcInputError

# Slice positions are DS strings, often rounded to 0.01 mm or to a few significant digits.
POSITION_TOLERANCE_MM = 0.01
# A frame or contour counts as lying on a CT plane when it is within this fraction of the slice
# spacing from it; further away it lies between planes and is refused.
PLANE_TOLERANCE_FRACTION = 0.1
# How many names an error message lists before it says "and N more".
NAMES_SHOWN = 10

_NOT_CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set Storage
}


def prefix(patient: str | None) -> str:
    """The start of a message: the cohort's patient ID when the caller gave one."""
    return f"Patient {patient}: " if patient else ""


def shortened_list(names: Sequence[str], shown: int = NAMES_SHOWN) -> str:
    """'a', 'b', 'c' … listing at most ``shown`` names, then how many more there are."""
    quoted = [f"'{n}'" for n in names]
    if len(quoted) <= shown:
        return ", ".join(quoted)
    return ", ".join(quoted[:shown]) + f" … and {len(quoted) - shown} more"


def choose_name(available: Sequence[str], wanted: str | None, *, what: str, where: str,
                column_hint: str = "mask_roi") -> str:
    """The one name to read: ``wanted`` if given (exactly as in the file), else the only one.

    Several names and none chosen, or an unknown name, are refused listing the names (shortened)."""
    if wanted is not None and str(wanted).strip() != "":
        wanted = str(wanted).strip()
        if wanted in available:
            return wanted
        close = difflib.get_close_matches(wanted, list(available), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise CrcInputError(
            f"{where} has no {what} named '{wanted}'; it has {len(available)}: "
            f"{shortened_list(available)}.{hint} Put one of these names in {column_hint}."
        )
    if len(available) == 1:
        return available[0]
    if not available:
        raise CrcInputError(f"{where} holds no {what} that is a region; give a file with the tumour delineated.")
    raise CrcInputError(
        f"{where} holds {len(available)} {what}s: {shortened_list(available)}; "
        f"say which is the tumour in the manifest column {column_hint}."
    )


@dataclass(frozen=True)
class CtReference:
    """The voxel grid and UIDs of one CT series, slices sorted along the normal."""

    series_uid: str
    frame_of_reference_uid: str
    sop_uids: tuple[str, ...]          # one per slice, in grid order (k = 0 … n-1)
    origin: np.ndarray                 # ImagePositionPatient of slice 0 (mm)
    row_direction: np.ndarray          # direction of increasing column index
    column_direction: np.ndarray       # direction of increasing row index
    normal: np.ndarray                 # row × column: increasing slice index
    row_spacing: float                 # mm between rows (PixelSpacing[0])
    column_spacing: float              # mm between columns (PixelSpacing[1])
    slice_spacing: float               # mm between slice planes
    rows: int
    columns: int
    label: str = "the CT"              # how messages name this series (a folder or file)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns): the numpy order of SimpleITK's arrays."""
        return (len(self.sop_uids), self.rows, self.columns)

    def continuous_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Patient coordinates (N × 3, mm) → (column, row, slice) continuous indices (N × 3)."""
        d = np.asarray(points_mm, dtype=float).reshape(-1, 3) - self.origin
        return np.stack([d @ self.row_direction / self.column_spacing,
                         d @ self.column_direction / self.row_spacing,
                         d @ self.normal / self.slice_spacing], axis=1)

    def empty_mask(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=np.uint8)

    def to_image(self, array: np.ndarray):
        """A SimpleITK image of ``array`` (slices, rows, columns) with this CT's geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetOrigin(tuple(float(v) for v in self.origin))
        image.SetSpacing((self.column_spacing, self.row_spacing, self.slice_spacing))
        direction = np.stack([self.row_direction, self.column_direction, self.normal], axis=1)
        image.SetDirection(tuple(float(v) for v in direction.ravel()))
        return image


def _is_ct_slice(ds: Dataset) -> bool:
    return (str(ds.get("SOPClassUID", "")) not in _NOT_CT_SOP_CLASSES
            and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
            and "PixelSpacing" in ds and int(ds.get("NumberOfFrames", 1) or 1) == 1)


def _read_headers(folder: Path) -> list[Dataset]:
    headers = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM, or unreadable: not a slice of any series
            continue
        if _is_ct_slice(ds):
            headers.append(ds)
    return headers


def series_in(source: str | Path | Iterable[Dataset | str | Path]) -> dict[str, list[Dataset]]:
    """The CT-like series (single-frame images with a position) in a folder or list, by series UID."""
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise CrcInputError(f"The CT '{folder}' is not a folder of DICOM slices; give the folder that holds the series.")
        headers = _read_headers(folder)
    else:
        headers = []
        for item in source:
            ds = item if isinstance(item, Dataset) else pydicom.dcmread(item, stop_before_pixels=True)
            if _is_ct_slice(ds):
                headers.append(ds)
    by_series: dict[str, list[Dataset]] = {}
    for ds in headers:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return by_series


def ct_reference(source: str | Path | Iterable[Dataset | str | Path], *, series_uid: str | None = None,
                 patient: str | None = None) -> CtReference:
    """The grid and UIDs of the CT series in ``source`` (a folder of slices, or their datasets/paths).

    ``series_uid`` chooses among several series (the one a mask references); with one series it
    must match when given. Slices are sorted by position along the normal; uneven spacing, mixed
    orientations or duplicate positions are refused, naming the series."""
    label = str(source) if isinstance(source, (str, Path)) else "the CT slices given"
    by_series = series_in(source)
    if not by_series:
        raise CrcInputError(f"{prefix(patient)}{label} holds no CT slices (no DICOM image with a position); give the CT series folder.")
    if series_uid is not None:
        if series_uid not in by_series:
            raise CrcInputError(
                f"{prefix(patient)}the mask references CT series {series_uid}, which is not in {label} "
                f"(it holds series {', '.join(sorted(by_series))}); give the CT series the mask was drawn on."
            )
        slices = by_series[series_uid]
    elif len(by_series) > 1:
        raise CrcInputError(
            f"{prefix(patient)}{label} holds {len(by_series)} series ({', '.join(sorted(by_series))}); "
            "give the folder of the one series the mask was drawn on."
        )
    else:
        series_uid, slices = next(iter(by_series.items()))
    return _grid(series_uid, slices, label, patient)


def _grid(series_uid: str, slices: list[Dataset], label: str, patient: str | None) -> CtReference:
    first = slices[0]
    orientation = np.asarray([float(v) for v in first.ImageOrientationPatient])
    for ds in slices[1:]:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-4):
            raise CrcInputError(f"{prefix(patient)}CT series {series_uid} in {label} mixes slice orientations; "
                                "export the axial series alone.")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    sop_uids = tuple(str(slices[i].SOPInstanceUID) for i in order)
    if len(slices) > 1:
        steps = np.diff(along)
        if np.any(steps < POSITION_TOLERANCE_MM):
            raise CrcInputError(f"{prefix(patient)}CT series {series_uid} in {label} has two slices at the same position "
                                f"({along[int(np.argmin(steps))]:.2f} mm); export each slice once.")
        spacing = float(np.median(steps))
        uneven = np.abs(steps - spacing) > max(POSITION_TOLERANCE_MM, 0.01 * spacing)
        if np.any(uneven):
            i = int(np.argmax(uneven))
            raise CrcInputError(
                f"{prefix(patient)}CT series {series_uid} in {label} has uneven slice spacing: {steps[i]:.2f} mm between "
                f"the slices at {along[i]:.2f} and {along[i + 1]:.2f} mm where the others are {spacing:.2f} mm apart "
                "(a missing slice?); export the complete series."
            )
    else:
        spacing = float(first.get("SpacingBetweenSlices", first.get("SliceThickness", 1.0)) or 1.0)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    return CtReference(series_uid=series_uid, frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
                       sop_uids=sop_uids, origin=positions[0], row_direction=row_dir, column_direction=col_dir,
                       normal=normal, row_spacing=row_spacing, column_spacing=column_spacing,
                       slice_spacing=spacing, rows=int(first.Rows), columns=int(first.Columns), label=label)


def resolve_reference(ct: CtReference | str | Path | Iterable, referenced_series: Sequence[str],
                      patient: str | None) -> CtReference:
    """``ct`` as a :class:`CtReference`, picking the series the mask references from a folder."""
    if isinstance(ct, CtReference):
        return ct
    source = ct if isinstance(ct, (str, Path)) else list(ct)
    by_series = series_in(source)
    wanted = [uid for uid in referenced_series if uid in by_series]
    return ct_reference(source, series_uid=wanted[0] if wanted else None, patient=patient)


def check_same_series(ct: CtReference, *, mask_label: str, referenced_series: Sequence[str],
                      frame_of_reference_uid: str, referenced_sops: Sequence[str], patient: str | None) -> None:
    """Refuse a mask that was drawn on another series or frame of reference than ``ct``, naming both.

    The Referenced Series UIDs decide when the mask has them; a mask without them must at least
    share the CT's Frame of Reference, and referenced SOP instances (when listed) must be the CT's."""
    series = [s for s in referenced_series if s]
    if series and ct.series_uid not in series:
        raise CrcInputError(
            f"{prefix(patient)}{mask_label} was drawn on CT series {', '.join(series)}, but the CT given "
            f"({ct.label}) is series {ct.series_uid}; give the CT series the mask references."
        )
    if frame_of_reference_uid and ct.frame_of_reference_uid and frame_of_reference_uid != ct.frame_of_reference_uid:
        raise CrcInputError(
            f"{prefix(patient)}{mask_label} lies in frame of reference {frame_of_reference_uid} "
            f"(series {', '.join(series) or 'not named'}), but the CT given ({ct.label}, series {ct.series_uid}) "
            f"lies in {ct.frame_of_reference_uid}; give the CT series the mask was drawn on."
        )
    sops = [s for s in referenced_sops if s]
    if sops and not set(sops) & set(ct.sop_uids):
        raise CrcInputError(
            f"{prefix(patient)}{mask_label} references {len(sops)} CT images, none of which is in the CT given "
            f"({ct.label}, series {ct.series_uid}); give the CT series the mask was drawn on."
        )


def read_dataset(path: str | Path, *, patient: str | None, kind: str) -> Dataset:
    """The whole dataset of a mask file, or one line saying it is unreadable (truncated, not DICOM)."""
    path = Path(path)
    if not path.is_file():
        raise CrcInputError(f"{prefix(patient)}the {kind} file '{path}' does not exist; check the mask column of the manifest.")
    try:
        return pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types for broken files
        raise CrcInputError(
            f"{prefix(patient)}'{path}' cannot be read as a DICOM {kind} ({type(exc).__name__}: {exc}); "
            "the file may be truncated — export it again."
        ) from None


SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def roi_kind(path: str | Path) -> str | None:
    """'SEG' or 'RTSTRUCT' when ``path`` is such a DICOM file (headers only), else None.

    The imaging reader asks this before trying SimpleITK, so that a mask column may hold either an
    image (NRRD, NIfTI) or a DICOM ROI object."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["SOPClassUID", "Modality"])
    except Exception:
        return None
    sop = str(ds.get("SOPClassUID", ""))
    if sop == SEG_SOP_CLASS:
        return "SEG"
    if sop == RTSTRUCT_SOP_CLASS:
        return "RTSTRUCT"
    return None


def sop_class_name(ds: Dataset) -> str:
    """A readable name of the file's kind for 'X is a …, not a …' messages."""
    sop = ds.get("SOPClassUID")
    if sop is None:
        return "file without a SOP Class (not a DICOM object)"
    name = getattr(sop, "name", "") or str(sop)
    return name


@dataclass(frozen=True)
class RoiMaskInfo:
    """What was read, for the page and the log (no patient-identifying header values)."""

    kind: str                          # "SEG" or "RTSTRUCT"
    roi_name: str
    roi_number: int                    # Segment Number or ROI Number
    voxels: int
    slices: tuple[int, ...]            # CT slice indices (grid order) the mask lies on
    series_uid: str                    # the CT series it was matched to
    fractional_threshold: float | None = None   # 0.5 for a fractional SEG, else None
    notes: tuple[str, ...] = ()        # what was skipped, clipped or unusual, in words
