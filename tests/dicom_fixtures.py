"""DICOM files for the SEG and RTSTRUCT tests: a CT series written slice by slice with pydicom,
SEGs written by highdicom, RTSTRUCTs written by hand (to control each contour) or by rt-utils.

File names are random and Instance Numbers run backwards, so a reader that sorts by either fails."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def write_ct_series(folder: Path, array: np.ndarray, *, spacing=(0.8, 0.8, 2.5), origin=(-100.0, -120.0, -50.0),
                    series_uid: str | None = None, frame_uid: str | None = None, study_uid: str | None = None,
                    patient_id: str = "DCM-0001") -> list[Dataset]:
    """``array`` (slices, rows, columns) as an axial CT series in ``folder``; returns the datasets."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    datasets = []
    n = array.shape[0]
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", patient_id, "19500101", "F"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, "20200101", "120000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "ACC123", "Who^Doctor"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.FrameOfReferenceUID = series_uid, 3, frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "TestVendor"
        ds.InstanceNumber = n - k  # backwards on purpose
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2]) + k * float(spacing[2])]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = np.ascontiguousarray(array[k].astype(np.int16)).tobytes()
        ds.save_as(folder / f"{uuid.uuid4().hex[:12]}", enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_seg(path: Path, ct: list[Dataset], segments: dict[str, np.ndarray], *, fractional: bool = False) -> Path:
    """A DICOM-SEG of ``segments`` (label → array (slices, rows, columns) in ``ct`` order) by highdicom."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, label in enumerate(segments)]
    stacked = np.stack([segments[label] for label in segments], axis=-1)
    pixels = stacked.astype(np.float32) if fractional else stacked.astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=100,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Tests", manufacturer_model_name="tests",
        software_versions="1", device_serial_number="1")
    seg.save_as(path)
    return path


def _contour(points_mm: np.ndarray, kind: str = "CLOSED_PLANAR", image_uid: str | None = None) -> Dataset:
    item = Dataset()
    item.ContourGeometricType = kind
    item.NumberOfContourPoints = len(points_mm)
    item.ContourData = [f"{v:.4f}" for v in np.asarray(points_mm, float).ravel()]
    if image_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT_IMAGE_STORAGE, image_uid
        item.ContourImageSequence = Sequence([ref])
    return item


def write_rtstruct(path: Path, ct: list[Dataset], rois: dict[str, list[tuple[str, np.ndarray]]], *,
                   series_uid: str | None = None, frame_uid: str | None = None,
                   contour_image_uids: dict | None = None) -> Path:
    """An RTSTRUCT by hand: ``rois`` maps a name to its contours [(type, points N × 3 in mm)].

    No ContourImageSequence unless ``contour_image_uids`` maps (roi, contour index) → SOP UID."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTSTRUCT_STORAGE, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID, "RTSTRUCT"
    ds.PatientID, ds.StudyInstanceUID = ct[0].PatientID, ct[0].StudyInstanceUID
    ds.SeriesInstanceUID, ds.StructureSetLabel = generate_uid(), "tests"
    frame_uid = frame_uid or ct[0].FrameOfReferenceUID
    series = Dataset()
    series.SeriesInstanceUID = series_uid or ct[0].SeriesInstanceUID
    study = Dataset()
    study.ReferencedSOPInstanceUID = ct[0].StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    ref_frame = Dataset()
    ref_frame.FrameOfReferenceUID = frame_uid
    ref_frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([ref_frame])
    roi_items, contour_items = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame_uid
        roi_items.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ContourSequence = Sequence([
            _contour(points, kind, (contour_image_uids or {}).get((name, i))) for i, (kind, points) in enumerate(contours)])
        contour_items.append(roi_contour)
    ds.StructureSetROISequence = Sequence(roi_items)
    ds.ROIContourSequence = Sequence(contour_items)
    ds.save_as(path, enforce_file_format=True)
    return path


def pixel_polygon_to_mm(ct: list[Dataset], k_sorted: int, columns, rows) -> np.ndarray:
    """Vertices given in pixel coordinates (column, row) of sorted slice ``k_sorted`` → mm (N × 3)."""
    first = sorted(ct, key=lambda d: float(d.ImagePositionPatient[2]))[k_sorted]
    x0, y0, z = (float(v) for v in first.ImagePositionPatient)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    columns, rows = np.asarray(columns, float), np.asarray(rows, float)
    return np.stack([x0 + columns * column_spacing, y0 + rows * row_spacing, np.full(columns.shape, z)], axis=1)


def read_back(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def pyradiomics_data(case: str):
    """(image, label) paths of PyRadiomics' ``case`` (lung1, lung2) from the pyradiomics-bhklab sdist's
    data/ folder, unpacked in a download cache (never committed), or skip saying how to get it.

    Looked up in $CRC_PYRADIOMICS_DATA, then ~/.cache/crc-time/pyradiomics-data, where
    ``make install-test`` puts them (tests/fetch_pyradiomics_data.py: the sdist from the package
    index, checked against its sha256)."""
    import os

    candidates = [os.environ.get("CRC_PYRADIOMICS_DATA", ""), str(Path.home() / ".cache/crc-time/pyradiomics-data")]
    for folder in filter(None, candidates):
        image, label = Path(folder) / f"{case}_image.nrrd", Path(folder) / f"{case}_label.nrrd"
        if image.is_file() and label.is_file():
            return image, label
    import pytest

    pytest.skip(f"PyRadiomics' {case} volumes are not in $CRC_PYRADIOMICS_DATA or ~/.cache/crc-time/pyradiomics-data "
                "(fetch them with: .venv/bin/python tests/fetch_pyradiomics_data.py)")


def nrrd_as_ct_series(folder: Path, image_path: Path):
    """A NRRD CT volume written as a DICOM series; returns (datasets, SimpleITK image, label array reader)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(image_path))
    assert np.allclose(image.GetDirection(), np.eye(3).ravel()), "these writers assume an axial identity direction"
    datasets = write_ct_series(folder, sitk.GetArrayFromImage(image), spacing=image.GetSpacing(), origin=image.GetOrigin())
    return datasets, image
