"""CT volumes and ROI masks: reading, geometry checks, the largest ROI cross-section, and the crop
a model sees.

The study drew ROIs in ITK-SNAP on 5 mm plain CT, took the axial slice with the largest ROI, cropped
it and saved a PNG. :func:`preprocess_case` does that, with the choices its peers made adjustable
(HU window or z-score, in-plane resampling, a 0/10/20 px margin, 2.5D input, masking).

Every volume and mask is reoriented to LPS on reading (as DICOM stores CT: x to the patient's left,
y to posterior, z to superior), so "the axial slice with the largest ROI" and the crop depend on
the patient, not on how dcm2niix, ITK-SNAP or Slicer ordered the voxels. Arrays follow SimpleITK's
``GetArrayFromImage`` order: z, y, x (slice, row, column); an LPS slice shown as an image is in
radiological convention (the patient's right on the viewer's left, anterior at the top). Every
error is a :class:`~crc_core.errors.CrcInputError` whose message names the file and says what to
do; callers add the patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image

from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError

#: HU windows as (width, level).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {"abdomen": (400.0, 40.0), "soft_tissue": (350.0, 50.0)}
INTENSITY_MODES = ("abdomen", "soft_tissue", "custom", "zscore")
MARGINS_PX = (0, 10, 20)
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd", ".dcm")
ZSCORE_RANGE = 3.0  # z-scores are shown and fed as [-3, 3] SD mapped to [0, 1]
#: One orientation for every volume: DICOM's patient axes.
ORIENTATION = "LPS"
#: Raised whenever the code that turns a volume into pixels, or names the files it writes, changes,
#: so that crops cached by older code are never served as if they were new ones (3: crop files are
#: named by a hash of the patient ID, no longer by the ID itself; 4: NaN and ±Inf in a NIfTI are
#: read as stored, no longer as 0, and refused in the ROI).
PREPROCESS_VERSION = 4


class GeometryError(CrcInputError):
    """Image and mask do not share a voxel grid."""


# ---------------------------------------------------------------------------------------------
# Reading


def is_volume_path(path: Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(VOLUME_SUFFIXES)


def _dicom_series(folder: Path) -> dict[str, list[str]]:
    reader = sitk.ImageSeriesReader()
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def _slice_positions(files: Sequence[str]) -> np.ndarray:
    """Each slice's position along the slice normal, from the DICOM headers (pixels not read)."""
    import pydicom

    positions = []
    for name in files:
        header = pydicom.dcmread(name, stop_before_pixels=True)
        orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        positions.append(float(np.dot(normal, np.asarray(header.ImagePositionPatient, dtype=float))))
    return np.sort(np.asarray(positions))


def _check_even_spacing(positions: np.ndarray, where: str, tolerance: float = 0.1) -> None:
    """Refuse a series with a missing slice or uneven slice spacing, saying where the gap is."""
    if positions.size < 3:
        return
    gaps = np.diff(positions)
    typical = float(np.median(gaps))
    if typical <= 0:
        raise CrcInputError(f"{where}: several slices share one position; the series holds duplicates.")
    uneven = np.flatnonzero(np.abs(gaps - typical) > tolerance * typical)
    if uneven.size:
        i = int(uneven[0])
        missing = round(gaps[i] / typical) - 1
        what = f"{missing} missing slice(s)" if missing >= 1 else "uneven slice spacing"
        raise CrcInputError(
            f"{where}: {what} between slice positions {positions[i]:.1f} and {positions[i + 1]:.1f} mm "
            f"(gap {gaps[i]:.1f} mm, usual {typical:.1f} mm). Export the complete series again."
        )


def read_dicom_series(folder: Path, series_uid: str | None = None) -> sitk.Image:
    """A DICOM series folder as one volume in HU (RescaleSlope/Intercept applied by GDCM).

    With several series in the folder, ``series_uid`` picks one; by default the one with most
    slices. A missing slice or uneven spacing is refused.
    """
    folder = Path(folder)
    series = _dicom_series(folder)
    if not series:
        raise CrcInputError(f"{folder}: no DICOM series found. Point to the folder that holds the .dcm files.")
    if series_uid is not None:
        if series_uid not in series:
            raise CrcInputError(
                f"{folder}: no series {series_uid}; the folder holds {', '.join(sorted(series))}."
            )
        files = series[series_uid]
    else:
        files = max(series.values(), key=len)
    _check_even_spacing(_slice_positions(files), str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise CrcInputError(f"{folder}: the DICOM series cannot be read ({_first_line(exc)}).") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    # SimpleITK's messages start with a C++ source location; the last line says what went wrong.
    return text[-1].strip() if text else type(exc).__name__


def read_volume(path: Path | str, *, series_uid: str | None = None) -> sitk.Image:
    """Read a CT volume or mask: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .seg.nrrd), MHA/MHD, a single
    DICOM file, or a DICOM series folder (see :func:`read_dicom_series`). HU come from
    RescaleSlope/Intercept for DICOM. 4D images and multi-component pixels are refused."""
    path = Path(path)
    if not path.exists():
        raise CrcInputError(f"{path} does not exist. Check the path in manifest.csv.")
    if path.is_dir():
        image = read_dicom_series(path, series_uid)
    else:
        nifti = path.name.lower().endswith((".nii", ".nii.gz"))
        if nifti:
            _check_nifti_complete(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise CrcInputError(
                f"{path} cannot be read as an image ({_first_line(exc)}); it may be truncated or of "
                "another format. Export it again from the viewer."
            ) from exc
        if nifti:
            image = _with_non_finite_kept(path, image)
    if image.GetDimension() == 4 or (image.GetDimension() == 3 and image.GetSize()[2] == 0):
        raise CrcInputError(f"{path} is a 4D image (e.g. several phases); save the one phase that was segmented.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CrcInputError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} values per voxel (colour or vector image); "
            "a CT or mask has one."
        )
    if image.GetDimension() == 2:  # a single DICOM slice: a volume one slice thick
        image = sitk.JoinSeries(image)
    return reorient(image)


def _with_non_finite_kept(path: Path, image: sitk.Image) -> sitk.Image:
    """ITK reads NaN and ±Inf in a float NIfTI as 0 without a word, which would make missing data
    water inside an ROI: put them back from the file (nibabel reads the voxels as stored, in the
    same order), so the crop can refuse them (:func:`preprocess_case`)."""
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64) or image.GetDimension() != 3:
        return image
    import nibabel

    stored = np.asanyarray(nibabel.load(str(path)).dataobj)
    if stored.ndim != 3 or stored.dtype.kind != "f":
        return image
    missing = ~np.isfinite(stored.T)  # nibabel: x, y, z; SimpleITK's arrays: z, y, x
    if not missing.any() or missing.shape != tuple(reversed(image.GetSize())):
        return image
    voxels = sitk.GetArrayFromImage(image)
    voxels[missing] = stored.T[missing]
    restored = sitk.GetImageFromArray(voxels)
    restored.CopyInformation(image)
    return restored


#: Files that are images whatever their header says: never asked whether they are a DICOM ROI object.
IMAGE_ONLY_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd")


def dicom_roi_kind(path: Path | str) -> str | None:
    """'SEG' or 'RTSTRUCT' when the mask file is a DICOM ROI object (headers only), else None."""
    path = Path(path)
    if not path.is_file() or path.name.lower().endswith(IMAGE_ONLY_SUFFIXES):
        return None
    from crc_core.imaging.dicom_refs import roi_kind

    return roi_kind(path)


def read_mask(path: Path | str, ct: Path | str, roi: str = "", *, patient: str | None = None) -> sitk.Image:
    """A mask as ``manifest.csv`` lists it: an image (NRRD, NIfTI, …: :func:`read_volume`), or a
    DICOM-SEG / RTSTRUCT rasterised on the grid of the CT series it references in the folder ``ct``
    (:func:`crc_core.imaging.dicom_roi.read_roi_mask`), its segment or ROI chosen by ``roi`` (the
    manifest's ``mask_roi`` / ``mask_r2_roi``; empty: the file's only one). Reoriented like the CT."""
    return _mask_and_its_series(path, ct, roi, patient)[0]


def read_case(image: Path | str, mask: Path | str, roi: str = "", *, patient: str | None = None) -> tuple[sitk.Image, sitk.Image]:
    """A manifest row's CT and mask. With a DICOM-SEG or RTSTRUCT mask the CT is the series it
    references (a patient's folder may hold a localizer and other phases beside it), matched by
    UID, never by file name; otherwise as :func:`read_volume` reads it."""
    mask_image, series_uid = _mask_and_its_series(mask, image, roi, patient)
    return read_volume(image, series_uid=series_uid if Path(image).is_dir() else None), mask_image


def _mask_and_its_series(path: Path | str, ct: Path | str, roi: str, patient: str | None) -> tuple[sitk.Image, str | None]:
    roi = str(roi or "").strip()
    if dicom_roi_kind(path):
        from crc_core.imaging.dicom_roi import read_roi_mask

        mask, info = read_roi_mask(path, ct, roi or None, patient=patient)
        return reorient(mask), info.series_uid
    if roi:
        raise CrcInputError(f"{patient + ': ' if patient else ''}manifest.csv names the ROI '{roi}' for {Path(path).name}, "
                            "which is an image mask, not a DICOM-SEG or RTSTRUCT: leave mask_roi empty for image masks.")
    return read_volume(path), None


def reorient(image: sitk.Image, orientation: str = ORIENTATION) -> sitk.Image:
    """The same image in space with its voxels stored in ``orientation`` order (a permutation and
    flips of the axes; no resampling, so values and geometry stay exact)."""
    current = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection())
    return image if current == orientation else sitk.DICOMOrient(image, orientation)


def _check_nifti_complete(path: Path) -> None:
    """ITK reads a truncated NIfTI without complaint, zero-filling what is missing: compare the
    size the header promises with the file (.nii) or with the gzip trailer's size field (.nii.gz,
    the uncompressed size modulo 2³²), which costs no decompression."""
    import nibabel

    try:
        header = nibabel.load(str(path)).header
    except Exception as exc:  # nibabel raises several types for damaged headers
        raise CrcInputError(f"{path} cannot be read as NIfTI ({exc}). Export it again from the viewer.") from exc
    # nibabel may read vox_offset as 0; the data then start right after the header (+ 4 bytes of
    # extension flag), as the NIfTI standard lays out a single file.
    offset = int(header["vox_offset"]) or int(header.sizeof_hdr) + 4
    expected = offset + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as handle:
            handle.seek(max(size - 4, 0))
            complete = size >= 18 and int.from_bytes(handle.read(4), "little") == expected % 2**32
    else:
        complete = size >= expected
    if not complete:
        raise CrcInputError(
            f"{path} is incomplete (truncated: the header promises {expected:,} bytes of image). "
            "Copy or export the file again."
        )


def read_header(path: Path | str) -> dict:
    """Size and spacing of a NIfTI file from its header only (nibabel; fast for a cohort listing);
    other formats through SimpleITK's image information reader."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel

        try:
            header = nibabel.load(str(path)).header
        except Exception as exc:  # nibabel raises several types for damaged headers
            raise CrcInputError(f"{path}: the NIfTI header cannot be read ({exc}).") from exc
        shape = tuple(int(v) for v in header.get_data_shape())
        zooms = tuple(float(v) for v in header.get_zooms())
        return {"size": shape, "spacing": zooms[: len(shape)]}
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CrcInputError(f"{path}: the header cannot be read ({_first_line(exc)}).") from exc
    return {"size": tuple(reader.GetSize()), "spacing": tuple(reader.GetSpacing())}


def binary_mask(mask: sitk.Image, label: int | None = None, *, where: str = "the mask") -> sitk.Image:
    """The ROI as a 0/1 UInt8 image. ``label`` selects one label value; without it a mask must
    hold a single non-zero label. An empty ROI is refused."""
    values = sitk.GetArrayViewFromImage(mask)
    present = [int(v) for v in np.unique(values) if v != 0]
    if label is None:
        if len(present) > 1:
            raise CrcInputError(
                f"{where} holds several labels ({', '.join(map(str, present))}); choose the tumour's label value."
            )
        chosen = values != 0
    else:
        if label not in present:
            found = ", ".join(map(str, present)) or "none"
            raise CrcInputError(f"{where} has no voxels with label {label} (labels found: {found}).")
        chosen = values == label
    if not chosen.any():
        raise CrcInputError(f"{where} is empty (all zero): no ROI was drawn or saved for this patient.")
    out = sitk.GetImageFromArray(chosen.astype(np.uint8))
    out.CopyInformation(mask)
    return out


#: How a reader's ROI is perturbed for the robustness check (Zwanenburg et al. 2019, Sci Rep 9:614):
#: eroded or dilated in-plane by 1 or 2 pixels of the CT's grid.
PERTURBATIONS = ("erode", "dilate")


def perturbed_mask(mask: sitk.Image, kind: str, pixels: int, label: int | None = None, *, where: str = "the mask") -> sitk.Image:
    """The ROI eroded or dilated by ``pixels`` in the axial plane, slice by slice (a 3 × 3 cross,
    ``pixels`` times), on the CT's own grid — before the largest slice is chosen and the crop is
    cut, so the crop follows the changed outline as it would a second reader's. An ROI that
    erodes away is refused by name."""
    from scipy import ndimage

    if kind not in PERTURBATIONS or int(pixels) < 1:
        raise CrcInputError(f"An ROI perturbation is erode or dilate by 1 pixel or more; got {kind!r} by {pixels!r}.")
    roi = sitk.GetArrayFromImage(binary_mask(mask, label, where=where)).astype(bool)
    cross = ndimage.generate_binary_structure(2, 1)[None]  # in-plane only: no change across slices
    change = ndimage.binary_erosion if kind == "erode" else ndimage.binary_dilation
    changed = change(roi, structure=cross, iterations=int(pixels))
    if not changed.any():
        raise CrcInputError(f"{where}: the ROI vanishes when eroded by {pixels} pixel(s); it is too small for this check.")
    out = sitk.GetImageFromArray(changed.astype(np.uint8))
    out.CopyInformation(mask)
    return out


# ---------------------------------------------------------------------------------------------
# Geometry


def check_geometry(image: sitk.Image, mask: sitk.Image, tolerance: float = 1e-3) -> None:
    """Refuse a mask that does not lie on the image's voxel grid, naming what differs and by how much.

    Size must match exactly; spacing and origin within ``tolerance`` × the image's spacing (mm);
    direction cosines within ``tolerance``. Fix by exporting the mask from the same image, or
    resample it explicitly with :func:`resample_mask_to_image`.
    """
    problems = []
    if image.GetDimension() != mask.GetDimension():
        problems.append(f"dimension: image {image.GetDimension()}D, mask {mask.GetDimension()}D")
    if image.GetSize() != mask.GetSize():
        problems.append(f"size: image {_xyz(image.GetSize(), 0)}, mask {_xyz(mask.GetSize(), 0)}")
    scale = min(image.GetSpacing())
    spacing_diff = np.abs(np.subtract(image.GetSpacing(), mask.GetSpacing()))
    if spacing_diff.max() > tolerance * scale:
        problems.append(
            f"spacing: image {_xyz(image.GetSpacing())} mm, mask {_xyz(mask.GetSpacing())} mm "
            f"(differs by up to {spacing_diff.max():.3g} mm)"
        )
    origin_diff = np.abs(np.subtract(image.GetOrigin(), mask.GetOrigin()))
    if origin_diff.max() > tolerance * scale:
        problems.append(
            f"origin: image {_xyz(image.GetOrigin())} mm, mask {_xyz(mask.GetOrigin())} mm "
            f"(differs by up to {origin_diff.max():.3g} mm)"
        )
    direction_diff = np.abs(np.subtract(image.GetDirection(), mask.GetDirection()))
    if direction_diff.max() > tolerance:
        problems.append(f"direction: cosines differ by up to {direction_diff.max():.3g}")
    if problems:
        raise GeometryError(
            "The mask does not lie on the image's voxel grid — " + "; ".join(problems) + ". "
            "Save the mask from the same image in the viewer, or choose to resample the mask onto the image."
        )


def _xyz(values: Sequence[float], decimals: int = 2) -> str:
    return " × ".join(f"{v:.{decimals}f}" for v in values)


def resample_mask_to_image(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The mask on the image's grid by nearest neighbour (labels stay labels)."""
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


# ---------------------------------------------------------------------------------------------
# The largest cross-section


def _mask_array(mask: sitk.Image | np.ndarray) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(mask) if isinstance(mask, sitk.Image) else np.asarray(mask)
    if array.ndim != 3:
        raise CrcInputError(f"A mask must be 3D (z, y, x); got {array.ndim} dimensions.")
    return array != 0


def largest_roi_slice(mask: sitk.Image | np.ndarray) -> int:
    """Index along z of the axial slice with the largest ROI area.

    Ties go to the slice nearest the middle of the ROI's z-extent (the more central slice of the
    tumour), then to the lower index. Takes a SimpleITK image or a z, y, x array.
    """
    roi = _mask_array(mask)
    areas = roi.reshape(roi.shape[0], -1).sum(axis=1)
    if areas.max() == 0:
        raise CrcInputError("The mask is empty (all zero): there is no ROI to take a slice from.")
    candidates = np.flatnonzero(areas == areas.max())
    occupied = np.flatnonzero(areas)
    middle = (occupied[0] + occupied[-1]) / 2.0
    return int(min(candidates, key=lambda z: (abs(z - middle), z)))


# ---------------------------------------------------------------------------------------------
# The crop


@dataclass(frozen=True)
class PreprocessConfig(JsonConfig):
    """How a case becomes the model's input. Defaults: the paper (abdominal window, the largest
    slice cropped to the ROI, PNG) at the 224 px ImageNet input size."""

    intensity: str = "abdomen"  # abdomen (W400/L40), soft_tissue (W350/L50), custom, zscore
    window_width: float = 400.0  # used by "custom"
    window_level: float = 40.0  # used by "custom"
    in_plane_mm: float | None = None  # resample the slice to this pixel size first
    margin_px: int = 0  # around the ROI's bounding box, in (resampled) pixels
    context: str = "2d"  # "2d": the slice; "2.5d": the slice and its neighbours as 3 channels
    mask_outside: bool = False  # set pixels outside the ROI to 0
    size: int = 224
    label: int | None = None
    resample_mask: bool = False  # put a mask of another grid onto the image (nearest neighbour)

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_MODES:
            raise CrcInputError(f"Intensity must be one of {', '.join(INTENSITY_MODES)}; got {self.intensity!r}.")
        if self.intensity == "custom" and not self.window_width > 0:
            raise CrcInputError(f"The window width must be positive; got {self.window_width}.")
        if self.in_plane_mm is not None and not 0.1 <= self.in_plane_mm <= 5:
            raise CrcInputError(f"In-plane resampling takes 0.1-5 mm; got {self.in_plane_mm}.")
        if not isinstance(self.margin_px, int) or not 0 <= self.margin_px <= 100:
            raise CrcInputError(f"The margin must be a whole number of pixels, 0-100; got {self.margin_px!r}.")
        if self.context not in ("2d", "2.5d"):
            raise CrcInputError(f"Context must be '2d' or '2.5d'; got {self.context!r}.")
        if not isinstance(self.size, int) or not 8 <= self.size <= 1024:
            raise CrcInputError(f"The input size must be 8-1024 pixels; got {self.size!r}.")

    @property
    def window(self) -> tuple[float, float] | None:
        """(width, level) in HU, or None for z-scores."""
        if self.intensity == "zscore":
            return None
        if self.intensity == "custom":
            return (float(self.window_width), float(self.window_level))
        return WINDOW_PRESETS[self.intensity]

    def describe(self) -> str:
        window = self.window
        parts = [f"W{window[0]:g}/L{window[1]:g}" if window else "z-score in the ROI"]
        if self.in_plane_mm:
            parts.append(f"{self.in_plane_mm:g} mm pixels")
        parts += [f"margin {self.margin_px} px", self.context.upper(), f"{self.size} px"]
        if self.mask_outside:
            parts.append("outside ROI masked")
        return ", ".join(parts)

    def pixel_parameters(self) -> dict:
        """What decides the crop's pixels, and nothing else: the window as used (a custom width
        typed while a preset is chosen changes nothing), the geometry, the code's version."""
        window = self.window
        return {
            "window_hu": list(window) if window else "zscore",
            "in_plane_mm": self.in_plane_mm,
            "margin_px": self.margin_px,
            "context": self.context,
            "mask_outside": self.mask_outside,
            "size": self.size,
            "label": self.label,
            "resample_mask": self.resample_mask,
            "orientation": ORIENTATION,
            "version": PREPROCESS_VERSION,
        }


@dataclass(frozen=True)
class CaseCrop:
    """One case's model input and what it was made from."""

    pixels: np.ndarray  # float32, channels × size × size, in [0, 1]
    roi: np.ndarray  # bool, size × size: the ROI of the central slice in the crop
    slice_index: int  # z index of the largest ROI cross-section
    box: tuple[int, int, int, int]  # row0, row1, col0, col1 of the square crop on the (resampled) slice
    roi_area_mm2: float
    pixel_mm: float  # in-plane pixel size after resampling, before resizing

    def to_png_array(self) -> np.ndarray:
        """uint8: grey for 2D, RGB (below, central, above slice) for 2.5D."""
        scaled = np.clip(np.rint(self.pixels * 255.0), 0, 255).astype(np.uint8)
        return scaled[0] if scaled.shape[0] == 1 else np.moveaxis(scaled, 0, -1)


def window_to_unit(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU to [0, 1]: level − width/2 maps to 0, level + width/2 to 1, clipped."""
    low = level - width / 2.0
    return np.clip((hu.astype(np.float32) - low) / width, 0.0, 1.0)


def zscore_to_unit(hu: np.ndarray, roi_values: np.ndarray) -> np.ndarray:
    """Standardise by the ROI's mean and SD (``roi_values``: the HU inside the ROI), then map
    ±3 SD to [0, 1]."""
    values = np.asarray(roi_values, dtype=np.float64)
    sd = values.std()
    if sd == 0:
        raise CrcInputError("All voxels in the ROI have one value: z-scores are undefined. Use a HU window.")
    z = (hu.astype(np.float32) - values.mean()) / sd
    return np.clip((z + ZSCORE_RANGE) / (2 * ZSCORE_RANGE), 0.0, 1.0).astype(np.float32)


def _resample_plane(plane: np.ndarray, spacing_yx: tuple[float, float], target: float, order: int) -> np.ndarray:
    from scipy import ndimage

    factors = (spacing_yx[0] / target, spacing_yx[1] / target)
    if abs(factors[0] - 1) < 1e-6 and abs(factors[1] - 1) < 1e-6:
        return plane
    return ndimage.zoom(plane, factors, order=order, mode="nearest", grid_mode=True)


def square_box(roi: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """The ROI's bounding box plus ``margin`` on each side, grown on its short side to a square
    centred on the ROI. It may reach beyond the slice; the crop pads there."""
    rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
    r0, r1 = rows[0] - margin, rows[-1] + 1 + margin
    c0, c1 = cols[0] - margin, cols[-1] + 1 + margin
    side = max(r1 - r0, c1 - c0)
    r0 -= (side - (r1 - r0)) // 2
    c0 -= (side - (c1 - c0)) // 2
    return int(r0), int(r0 + side), int(c0), int(c0 + side)


def _cut(plane: np.ndarray, box: tuple[int, int, int, int], fill: float) -> np.ndarray:
    r0, r1, c0, c1 = box
    pad = max(0, -r0, -c0, r1 - plane.shape[0], c1 - plane.shape[1])
    if pad:
        plane = np.pad(plane, pad, mode="constant", constant_values=fill)
    return plane[r0 + pad : r1 + pad, c0 + pad : c1 + pad]


def _resize(plane: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    if nearest:
        image = Image.fromarray(plane.astype(np.uint8) * 255)
        return np.asarray(image.resize((size, size), Image.Resampling.NEAREST)) > 127
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _check_finite(values: np.ndarray, where: str, detail: str) -> None:
    """Refuse NaN and ±Inf (a float CT's marks for missing data): a crop holding them is no input
    for a model, and training on it fails later, far from the cause."""
    if values.dtype.kind == "f":
        n = int(values.size - np.count_nonzero(np.isfinite(values)))
        if n:
            raise CrcInputError(f"{n} non-finite {where} ({detail}). Export the CT again with a HU value in every "
                                "voxel, or leave this patient out.")


def preprocess_case(
    image: sitk.Image,
    mask: sitk.Image,
    config: PreprocessConfig | None = None,
    *,
    where: str = "this case",
) -> CaseCrop:
    """The paper's preprocessing: the axial slice with the largest ROI, intensity-normalised,
    cropped square around the ROI (plus a margin), resized to ``config.size``.

    Pixels beyond the slice's edge are padded with the window's lowest value (0). For 2.5D the
    neighbouring slices (repeated at the volume's ends) are cut with the same box.
    """
    config = config or PreprocessConfig()
    if config.resample_mask:
        mask = resample_mask_to_image(mask, image)
    check_geometry(image, mask)
    roi_volume = sitk.GetArrayFromImage(binary_mask(mask, config.label, where=where)).astype(bool)
    hu = sitk.GetArrayViewFromImage(image)
    _check_finite(hu[roi_volume], "voxels in the ROI", f"NaN or ±Inf in the CT inside {where}")
    z = largest_roi_slice(roi_volume)
    if config.context == "2.5d":
        planes = [max(z - 1, 0), z, min(z + 1, hu.shape[0] - 1)]
    else:
        planes = [z]
    spacing_x, spacing_y = image.GetSpacing()[:2]
    if config.window is None:
        # Mean and SD from the ROI on the largest slice: the tissue the model is asked about.
        unit = zscore_to_unit(hu[planes], hu[z][roi_volume[z]])
    else:
        unit = window_to_unit(hu[planes], *config.window)
    roi = roi_volume[z]
    pixel_mm = float(spacing_x)
    if config.in_plane_mm:
        unit = np.stack([_resample_plane(p, (spacing_y, spacing_x), config.in_plane_mm, order=1) for p in unit])
        roi = _resample_plane(roi.astype(np.uint8), (spacing_y, spacing_x), config.in_plane_mm, order=0).astype(bool)
        pixel_mm = float(config.in_plane_mm)
        if not roi.any():
            raise CrcInputError(f"{where}: the ROI vanishes at {config.in_plane_mm} mm pixels; choose finer pixels.")
    box = square_box(roi, config.margin_px)
    crops = np.stack([_cut(p, box, 0.0) for p in unit])
    roi_crop = _cut(roi, box, False)
    if config.mask_outside:
        crops = crops * roi_crop[None]
    pixels = np.stack([_resize(c, config.size, nearest=False) for c in crops]).clip(0.0, 1.0)
    _check_finite(pixels, "pixels in the crop", f"NaN or ±Inf in the CT around the ROI of {where}")
    area = float(roi_volume[z].sum() * spacing_x * spacing_y)
    return CaseCrop(
        pixels=pixels.astype(np.float32),
        roi=_resize(roi_crop, config.size, nearest=True),
        slice_index=z,
        box=box,
        roi_area_mm2=area,
        pixel_mm=pixel_mm,
    )


def outline(roi: np.ndarray) -> np.ndarray:
    """The ROI's one-pixel border (for drawing over the CT)."""
    from scipy import ndimage

    roi = np.asarray(roi, dtype=bool)
    return roi & ~ndimage.binary_erosion(roi, border_value=0)


def overlay_rgb(grey: np.ndarray, outlines: Sequence[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """A [0, 1] grey image as uint8 RGB with ROI outlines drawn in the given colours."""
    rgb = np.repeat(np.clip(np.rint(np.asarray(grey) * 255), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    for roi, colour in outlines:
        rgb[outline(roi)] = colour
    return rgb

