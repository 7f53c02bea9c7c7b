"""A cohort to crops: parallel, cached, failures per patient; zips and folder conventions."""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from crc_core.imaging import archive

from crc_core.imaging import volumes as imaging

from crc_core.imaging import preprocess
from crc_core.cli import main as cli_main
from crc_core.errors import CrcInputError
from crc_core.sample.cohort import SampleConfig, build_sample_workspace
from crc_core.workspace import Workspace


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small") / "workspace"
    build_sample_workspace(root, SampleConfig(n_patients=12, workers=1))
    return root


@pytest.fixture
def cohort(small_cohort, tmp_path) -> Path:
    root = tmp_path / "workspace"
    shutil.copytree(small_cohort, root)
    return root


def test_every_patient_gets_a_png_and_an_array_and_a_rerun_is_served_from_the_cache(cohort):
    first = preprocess.preprocess_cohort(cohort, workers=2)
    assert first.processed == 12 and first.cached == 0
    assert (first.index["status"] == "ok").all()
    for row in first.index.itertuples():
        assert (first.folder / row.png).is_file() and (first.folder / row.npz).is_file()
    again = preprocess.preprocess_cohort(cohort, workers=2)
    assert again.processed == 0 and again.cached == 12
    pd.testing.assert_frame_equal(again.index.astype(str), first.index.astype(str))
    # A changed mask is processed again; the others stay cached.
    mask = Path(preprocess.read_manifest(Workspace(cohort))["mask"][3])
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    third = preprocess.preprocess_cohort(cohort, workers=1)
    assert (third.processed, third.cached) == (1, 11)


def crop_arrays(result) -> dict:
    arrays = {}
    for row in result.index.to_dict("records"):
        crop = preprocess.load_crop(result.folder, row)
        arrays[row["patient_id"]] = (crop.pixels, crop.roi, crop.slice_index, (result.folder / row["png"]).read_bytes())
    return arrays


def test_parallel_and_serial_crops_are_identical(cohort):
    serial = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=64), workers=1)
    serial_arrays = crop_arrays(serial)
    shutil.rmtree(serial.folder)
    parallel = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=64), workers=2)
    parallel_arrays = crop_arrays(parallel)
    assert list(parallel_arrays) == list(serial_arrays)
    for patient, (pixels, roi, z, png) in serial_arrays.items():
        other = parallel_arrays[patient]
        np.testing.assert_array_equal(other[0], pixels)  # every pixel of the model's input
        np.testing.assert_array_equal(other[1], roi)
        assert other[2] == z and other[3] == png  # the same slice, and byte-identical PNGs
    crops = preprocess.latest_crops(Workspace(cohort))
    assert crops.folder == parallel.folder and crops.config.size == 64 and len(crops.ok) == 12


def test_crops_match_preprocess_case_on_the_same_files(cohort):
    result = preprocess.preprocess_cohort(cohort, workers=1)
    row = preprocess.read_manifest(Workspace(cohort)).iloc[0]
    direct = imaging.preprocess_case(imaging.read_volume(row["image"]), imaging.read_volume(row["mask"]))
    stored = preprocess.load_crop(result.folder, result.index.iloc[0].to_dict())
    np.testing.assert_array_equal(stored.pixels, direct.pixels)
    assert stored.slice_index == direct.slice_index


def test_bad_cases_fail_alone_with_their_reason(cohort):
    manifest = preprocess.read_manifest(Workspace(cohort))
    truncated = Path(manifest["image"][0])
    truncated.write_bytes(truncated.read_bytes()[:5000])
    empty = Path(manifest["mask"][1])
    blank = sitk.Image(sitk.ReadImage(str(empty)))
    sitk.WriteImage(blank * 0, str(empty))
    moved = Path(manifest["mask"][2])
    shifted = sitk.ReadImage(str(moved))
    shifted.SetOrigin((3.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(moved))
    result = preprocess.preprocess_cohort(cohort, workers=2)
    failed = result.failures.set_index("patient_id")["message"]
    ids = list(manifest["patient_id"])
    assert "incomplete" in failed[ids[0]]
    assert "empty" in failed[ids[1]]
    assert "origin" in failed[ids[2]]
    assert (result.index["status"] == "ok").sum() == 9
    assert "9 of 12 patients cropped" in result.summary()


def test_a_run_where_every_patient_fails_says_so_and_keeps_the_last_good_crops(cohort):
    # Found in use: label value 2 failed everyone, yet the page said "ready" over a wall of text.
    good = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32), workers=2)
    with pytest.raises(preprocess.NothingCropped, match=r"Nothing was cropped: all 12 patients failed — 12 × the mask has "
                                                       r"no voxels with label 2 \(labels found: 1\)\. The crop set in use is unchanged") as failed:
        preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32, label=2), workers=2)
    crops = preprocess.latest_crops(Workspace(cohort))
    assert crops.folder == good.folder and len(crops.ok) == 12
    failed_set = preprocess.read_crop_set(Workspace(cohort).crops_dir / failed.value.result["key"])
    groups = preprocess.failure_groups(failed_set.index)
    assert groups.to_dict("records") == [{"reason": "the mask has no voxels with label 2 (labels found: 1).",
                                          "patients": 12, "examples": "CRC001, CRC002, CRC003 and 9 more"}]


def test_the_crop_key_covers_what_changes_the_pixels_and_nothing_else():
    base = imaging.PreprocessConfig()
    # A custom width typed while the abdomen preset is chosen changes no pixel: same crop set.
    assert preprocess.config_key(base) == preprocess.config_key(imaging.PreprocessConfig(window_width=123.456789))
    custom = imaging.PreprocessConfig(intensity="custom", window_width=400.0, window_level=40.0)
    assert preprocess.config_key(custom) == preprocess.config_key(base)  # the same window, named two ways
    for changed in (imaging.PreprocessConfig(margin_px=10), imaging.PreprocessConfig(size=128),
                    imaging.PreprocessConfig(intensity="custom", window_width=123.456789, window_level=40.0)):
        assert preprocess.config_key(changed) != preprocess.config_key(base)
    assert base.pixel_parameters()["version"] == imaging.PREPROCESS_VERSION
    assert imaging.PreprocessConfig.from_json(custom.to_json()) == custom


def test_new_preprocessing_code_never_serves_old_crops(monkeypatch):
    before = preprocess.config_key(imaging.PreprocessConfig())
    monkeypatch.setattr(imaging, "PREPROCESS_VERSION", imaging.PREPROCESS_VERSION + 1)
    assert preprocess.config_key(imaging.PreprocessConfig()) != before


def test_a_custom_window_reaches_the_worker_exactly(cohort, tmp_path, capsys):
    # Found in review: the page rebuilt a command line and rounded 123.456789 to 123.457.
    config = imaging.PreprocessConfig(intensity="custom", window_width=123.456789, window_level=-7.25, size=32)
    config.save(tmp_path / "config.json")
    assert cli_main(["--workspace", str(cohort), "preprocess", "--config", str(tmp_path / "config.json"), "--workers", "1"]) == 0
    crops = preprocess.latest_crops(Workspace(cohort))
    assert crops.config == config
    assert "W123.457/L-7.25" in capsys.readouterr().out
    # A flag overrides the file; what neither names keeps the default.
    assert cli_main(["--workspace", str(cohort), "preprocess", "--config", str(tmp_path / "config.json"),
                     "--size", "16", "--workers", "1"]) == 0
    assert preprocess.latest_crops(Workspace(cohort)).config.size == 16
    (tmp_path / "typo.json").write_text('{"margin": 10}')
    assert cli_main(["--workspace", str(cohort), "preprocess", "--config", str(tmp_path / "typo.json")]) == 2
    assert "unknown setting(s) 'margin' for PreprocessConfig" in capsys.readouterr().err


def test_damaged_crop_files_are_named(cohort):
    result = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=16), workers=1)
    (result.folder / "params.json").write_text("{")
    with pytest.raises(CrcInputError, match=r"params\.json is damaged .* run preprocessing again"):
        preprocess.latest_crops(Workspace(cohort))
    Workspace(cohort).crops_pointer.write_text("not json")
    with pytest.raises(CrcInputError, match=r"latest\.json is damaged"):
        preprocess.latest_crops(Workspace(cohort))


def test_missing_manifest_says_how_to_get_one(tmp_path):
    (tmp_path / "ws").mkdir()
    with pytest.raises(CrcInputError, match="manifest.csv is missing"):
        preprocess.preprocess_cohort(tmp_path / "ws")


def test_cli_preprocess_prints_a_summary(cohort, capsys):
    assert cli_main(["--workspace", str(cohort), "preprocess", "--margin", "10", "--size", "64", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "12 of 12 patients cropped" in out and "margin 10 px" in out


# ---------------------------------------------------------------------------------------------
# A patient ID is never a path


def tree(root: Path) -> dict[str, bytes]:
    """Every file and folder under ``root`` (files with their bytes)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


def deep_cohort(small_cohort: Path, tmp_path: Path) -> Path:
    """The small cohort four folders below ``tmp_path``, so that four '..' from its crop folder
    still land inside ``tmp_path``, where the test can see them."""
    root = tmp_path / "a" / "b" / "workspace"
    shutil.copytree(small_cohort, root)
    return root


@pytest.mark.parametrize("bad", ["../../../../outside/x", "{tmp}/outside/x"])
def test_a_manifest_with_a_path_for_an_id_is_refused_and_nothing_is_written_anywhere(small_cohort, tmp_path, bad):
    root = deep_cohort(small_cohort, tmp_path)
    bad = bad.format(tmp=tmp_path)  # an absolute path, inside what the test can watch
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[3, "patient_id"] = bad
    manifest.to_csv(root / "manifest.csv", index=False)
    before = tree(tmp_path)
    with pytest.raises(CrcInputError, match=r"manifest\.csv: the patient ID in row 5 .* contains '/'.*never a file or folder"):
        preprocess.preprocess_cohort(root, imaging.PreprocessConfig(size=16), workers=1)
    assert tree(tmp_path) == before


def test_crop_files_are_named_safely_even_for_an_id_that_reached_the_worker(small_cohort, tmp_path):
    root = deep_cohort(small_cohort, tmp_path)
    record = preprocess.read_manifest(Workspace(root)).iloc[0]
    config = imaging.PreprocessConfig(size=16)
    folder = preprocess.crops_folder(Workspace(root), config)
    folder.mkdir(parents=True)
    before = tree(tmp_path)
    for bad in ("../../../../outside/x", f"{tmp_path}/outside/y", "sub/dir/z", ".."):
        row = preprocess._run_case(preprocess._Task(bad, record["image"], record["mask"], str(folder), config, "s"))
        assert row["status"] == "ok" and row["patient_id"] == bad
        assert Path(row["png"]).name == row["png"] and Path(row["npz"]).name == row["npz"]
        assert "outside" not in row["png"] + row["npz"] and not row["png"].startswith(".")
        assert preprocess.load_crop(folder, row) is not None
    after = tree(tmp_path)
    new = sorted(set(after) - set(before))
    assert len(new) == 8 and all(Path(tmp_path / name).parent == folder for name in new), new
    assert {name: after[name] for name in before} == before


# ---------------------------------------------------------------------------------------------
# Zips and folders


def zip_bytes(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive_file:
        for name, data in entries.items():
            archive_file.writestr(name, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("bad", ["../evil.nii.gz", "/etc/evil.nii.gz", "a/../../evil.nii.gz"])
def test_zip_with_paths_outside_is_refused_and_nothing_extracted(tmp_path, bad):
    source = zip_bytes({"ok/P1_ct.nii.gz": b"x", bad: b"y"})
    with pytest.raises(CrcInputError, match="outside its own folder"):
        archive.extract_zip(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_zip_over_the_size_cap_is_refused_before_extracting(tmp_path):
    source = zip_bytes({"P1_ct.nii.gz": b"0" * 5000, "P1_mask.nii.gz": b"0" * 5000})
    with pytest.raises(CrcInputError, match="over the limit"):
        archive.extract_zip(source, tmp_path / "out", max_bytes=8000)
    assert not (tmp_path / "out").exists()


def test_non_images_are_skipped_and_listed(tmp_path, small_cohort):
    manifest = pd.read_csv(small_cohort / "manifest.csv")
    entries = {f"cohort/{Path(p).name}": (small_cohort / p).read_bytes() for p in manifest.loc[:1, ["image", "mask"]].to_numpy().ravel()}
    entries["cohort/notes.txt"] = b"reader notes"
    entries["cohort/report.pdf"] = b"%PDF"
    extracted = archive.extract_zip(zip_bytes(entries), tmp_path / "out")
    assert sorted(extracted.skipped) == ["cohort/notes.txt", "cohort/report.pdf"]
    found = archive.discover_cases(tmp_path / "out")
    assert list(found["patient_id"]) == list(manifest["patient_id"][:2])
    assert found["mask_r2"].eq("").all()


def test_not_a_zip(tmp_path):
    with pytest.raises(CrcInputError, match="not a zip"):
        archive.extract_zip(io.BytesIO(b"plain text"), tmp_path / "out")


def write_case(path: Path, value: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((4, 16, 16), np.int16)
    array[1:3, 4:9, 4:9] = value
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


@pytest.mark.parametrize(
    "layout",
    [
        {"P1/ct.nii.gz": "image", "P1/mask.nii.gz": "mask", "P1/mask_r2.nii.gz": "mask_r2", "P2/ct.nrrd": "image", "P2/seg.nrrd": "mask"},
        {"images/P1.nii.gz": "image", "masks/P1.nii.gz": "mask", "masks_r2/P1.nii.gz": "mask_r2", "images/P2.nii.gz": "image", "masks/P2.nii.gz": "mask"},
        {"P1_ct.nii.gz": "image", "P1_mask.nii.gz": "mask", "P1_mask_r2.nii.gz": "mask_r2", "P2_ct.mha": "image", "P2_roi.mha": "mask"},
    ],
)
def test_folder_conventions_are_recognised(tmp_path, layout):
    for relative in layout:
        write_case(tmp_path / "cases" / relative)
    manifest = archive.discover_cases(tmp_path / "cases").set_index("patient_id")
    assert list(manifest.index) == ["P1", "P2"]
    for relative, role in layout.items():
        patient = "P1" if "P1" in relative else "P2"
        assert manifest.loc[patient, role] == relative


def test_a_patient_without_a_mask_is_named(tmp_path):
    write_case(tmp_path / "cases" / "P1_ct.nii.gz")
    write_case(tmp_path / "cases" / "P2_ct.nii.gz")
    write_case(tmp_path / "cases" / "P2_mask.nii.gz")
    with pytest.raises(CrcInputError, match="No image or no mask found for: P1"):
        archive.discover_cases(tmp_path / "cases")


def test_write_manifest_then_preprocess(tmp_path):
    workspace = tmp_path / "ws"
    for patient in ("A1", "A2"):
        write_case(workspace / "imaging" / patient / "ct.nii.gz", value=300)
        write_case(workspace / "imaging" / patient / "mask.nii.gz")
    manifest = archive.write_manifest(workspace, workspace / "imaging")
    assert manifest["image"][0] == "imaging/A1/ct.nii.gz"
    result = preprocess.preprocess_cohort(workspace, imaging.PreprocessConfig(size=16), workers=1)
    assert (result.index["status"] == "ok").all()


@pytest.mark.parametrize("outside", ["../../../../etc/passwd", "/etc/passwd"])
def test_a_manifest_in_a_zip_may_only_name_files_in_the_zip_and_nothing_is_extracted(tmp_path, outside):
    # Found in review: the first was imported and read, the second escaped as a ValueError and left
    # the extracted files behind.
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "clinical.csv").write_text("patient_id\nP1\n")
    listing = f"patient_id,image,mask\nP1,P1_ct.nii.gz,P1_mask.nii.gz\nP2,{outside},P2_mask.nii.gz\n"
    source = zip_bytes({"cohort/manifest.csv": listing.encode(), "cohort/P1_ct.nii.gz": b"x",
                        "cohort/P1_mask.nii.gz": b"x", "cohort/P2_mask.nii.gz": b"x"})
    before = tree(tmp_path)
    with pytest.raises(CrcInputError, match=rf"cohort\.zip: cohort/manifest\.csv: row 3, column 'image': "
                                            rf"{re.escape(repr(outside))} points outside the zip.*nothing was extracted"):
        archive.import_imaging(workspace, zip_file=source, zip_name="cohort.zip")
    assert tree(tmp_path) == before


def test_a_manifest_in_a_zip_naming_an_absent_file_or_a_path_for_an_id_is_refused_before_extracting(tmp_path):
    absent = zip_bytes({"manifest.csv": b"patient_id,image,mask\nP1,P1_ct.nii.gz,P1_mask.nii.gz\n",
                        "P1_ct.nii.gz": b"x"})
    with pytest.raises(CrcInputError, match=r"manifest\.csv: row 2, column 'mask': 'P1_mask\.nii\.gz' is not in the zip"):
        archive.import_imaging(tmp_path / "ws", zip_file=absent, zip_name="cohort.zip")
    path_id = zip_bytes({"manifest.csv": b"patient_id,image,mask\n../x,P1_ct.nii.gz,P1_ct.nii.gz\n", "P1_ct.nii.gz": b"x"})
    with pytest.raises(CrcInputError, match=r"manifest\.csv: the patient ID in row 2 \('\.\./x'\) contains '/'"):
        archive.import_imaging(tmp_path / "ws", zip_file=path_id, zip_name="cohort.zip")
    assert list(tmp_path.iterdir()) == []


def test_a_zip_whose_cases_are_incomplete_leaves_nothing_extracted(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = zip_bytes({"P1_ct.nii.gz": b"x", "P2_ct.nii.gz": b"x", "P2_mask.nii.gz": b"x"})
    with pytest.raises(CrcInputError, match="No image or no mask found for: P1"):
        archive.import_imaging(workspace, zip_file=source, zip_name="cohort.zip")
    assert list(workspace.iterdir()) == []


def test_a_folder_manifest_may_name_files_anywhere_on_this_machine(tmp_path):
    elsewhere = tmp_path / "scans"
    write_case(elsewhere / "P1_ct.nii.gz", value=300)
    write_case(elsewhere / "P1_mask.nii.gz")
    folder = tmp_path / "listing"
    folder.mkdir()
    (folder / "manifest.csv").write_text(
        f"patient_id,image,mask\nP1,{elsewhere / 'P1_ct.nii.gz'},../scans/P1_mask.nii.gz\n"
    )
    archive.import_imaging(tmp_path / "ws", folder=folder)
    manifest = preprocess.read_manifest(Workspace(tmp_path / "ws"))
    assert manifest["image"][0] == str(elsewhere / "P1_ct.nii.gz")
    assert manifest["mask"][0] == str(elsewhere / "P1_mask.nii.gz")
    result = preprocess.preprocess_cohort(tmp_path / "ws", imaging.PreprocessConfig(size=16), workers=1)
    assert (result.index["status"] == "ok").all()


# ---------------------------------------------------------------------------------------------
# DICOM series, whatever their files are called (found in use: a `.dcm` series was taken for one
# slice, `slice_013.dcm`: 176 × 176 × 1, or each file for a patient)


def write_dicom_series(folder: Path, n: int = 6, *, name: str = "slice_{i:03d}.dcm", series_uid: str | None = None) -> str:
    """A real CT series: pydicom's CT_small slice written ``n`` times 5 mm apart, one file each."""
    import copy

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = series_uid or generate_uid()
    x, y, z = (float(v) for v in template.ImagePositionPatient)
    for i in range(n):
        dataset = copy.deepcopy(template)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.InstanceNumber = i + 1
        dataset.ImagePositionPatient = [x, y, z + 5.0 * i]
        dataset.SliceLocation = z + 5.0 * i
        dataset.save_as(folder / name.format(i=i, uid=series_uid[-6:]))
    return series_uid


def write_mask_on(series: Path, path: Path) -> None:
    """An ROI on the series' own grid (slices 2-3, a 20 × 30 box)."""
    image = imaging.read_volume(series)
    roi = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    roi[2:4, 40:60, 50:80] = 1
    mask = sitk.GetImageFromArray(roi)
    mask.CopyInformation(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(mask, str(path))


def dicom_cohort(root: Path, name: str, *, inside: str = "ct") -> Path:
    """Two patients, each a DICOM series (files called ``name``) and a NIfTI mask."""
    for patient in ("P1", "P2"):
        series = root / patient / inside if inside else root / patient
        write_dicom_series(series, name=name)
        write_mask_on(series, root / patient / "mask.nii.gz")
    return root


def zipped(folder: Path, wrapper: str = "") -> io.BytesIO:
    return zip_bytes({str(PurePosixPath(wrapper) / p.relative_to(folder).as_posix()) if wrapper else p.relative_to(folder).as_posix():
                      p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})


DICOM_NAMES = ["slice_{i:03d}.dcm", "IM{i:04d}.DCM", "{i}.ima", "IM{i:04d}", "1.2.840.{i}", "slice.{i:03d}"]


@pytest.mark.parametrize("name", DICOM_NAMES)
@pytest.mark.parametrize("inside", ["ct", ""])  # P1/ct/<slices> and P1/<slices> beside the mask
def test_a_dicom_series_is_one_image_whatever_its_files_are_called_from_a_folder_and_a_zip(tmp_path, name, inside):
    folder = dicom_cohort(tmp_path / "pacs", name, inside=inside)
    for how in ("folder", "zip"):
        workspace = tmp_path / f"ws-{how}"
        if how == "folder":
            archive.import_imaging(workspace, folder=folder)
        else:
            archive.import_imaging(workspace, zip_file=zipped(folder, "export"), zip_name="export.zip")
        manifest = preprocess.read_manifest(Workspace(workspace))
        assert list(manifest["patient_id"]) == ["P1", "P2"], how
        for row in manifest.itertuples():
            assert Path(row.image).is_dir() and Path(row.image).name == (inside or row.patient_id), (how, row.image)
            assert imaging.read_volume(row.image).GetSize() == (128, 128, 6)
        result = preprocess.preprocess_cohort(workspace, imaging.PreprocessConfig(size=16), workers=1)
        assert (result.index["status"] == "ok").all(), (how, result.failures.to_dict("records"))
        assert set(result.index["slice_index"].astype(int)) <= {2, 3}


def test_a_folder_with_two_dicom_series_is_one_image_read_by_series_uid(tmp_path):
    folder = tmp_path / "pacs"
    write_dicom_series(folder / "P1" / "ct", 6, name="{uid}_{i:03d}.dcm")
    write_dicom_series(folder / "P1" / "ct", 3, name="{uid}_{i:03d}.dcm")  # a scout series beside the CT
    write_mask_on(folder / "P1" / "ct", folder / "P1" / "mask.nii.gz")
    for extracted in (folder, None):
        workspace = tmp_path / ("ws-folder" if extracted else "ws-zip")
        if extracted:
            archive.import_imaging(workspace, folder=folder)
        else:
            archive.import_imaging(workspace, zip_file=zipped(folder), zip_name="pacs.zip")
        manifest = preprocess.read_manifest(Workspace(workspace))
        assert list(manifest["patient_id"]) == ["P1"] and Path(manifest["image"][0]).name == "ct"
        assert imaging.read_volume(manifest["image"][0]).GetSize()[2] == 6  # the longer series, by its UID
        result = preprocess.preprocess_cohort(workspace, imaging.PreprocessConfig(size=16), workers=1)
        assert result.n_ok == 1


# ---------------------------------------------------------------------------------------------
# Hostile and damaged zips: a clear refusal naming the zip and the member, nothing left behind


def patched_zip(entries: dict[str, bytes], member: str, *, flags: int | None = None, size: int | None = None) -> io.BytesIO:
    """A deflated zip whose ``member`` declares other flags (bit 0: encrypted) or another size, in
    its local header and the central directory, as a damaged or hostile zip does."""
    import struct

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive_file:
        for name, data in entries.items():
            archive_file.writestr(name, data)
    data = bytearray(buffer.getvalue())
    name = member.encode()
    for signature, name_length_at, name_at, flags_at, size_at in ((b"PK\x03\x04", 26, 30, 6, 22), (b"PK\x01\x02", 28, 46, 8, 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", data, start + name_length_at)[0]
            if bytes(data[start + name_at : start + name_at + length]) == name:
                if flags is not None:
                    struct.pack_into("<H", data, start + flags_at, flags)
                if size is not None:
                    struct.pack_into("<I", data, start + size_at, size)
            start += 4
    return io.BytesIO(bytes(data))


def case_bytes(value: int = 1) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "v.nii.gz"
        write_case(path, value)
        return path.read_bytes()


def test_a_zip_member_under_a_folder_called_tilde_stays_inside_the_zip(tmp_path, monkeypatch):
    # Found in review: discovery expanded '~' and the manifest then pointed into the user's home.
    home = tmp_path / "home"
    write_case(home / "ct.nii.gz", value=999)
    write_case(home / "mask.nii.gz")
    monkeypatch.setenv("HOME", str(home))
    workspace = tmp_path / "ws"
    source = zip_bytes({"manifest.csv": b"patient_id,image,mask\nP1,~/ct.nii.gz,~/mask.nii.gz\n",
                        "~/ct.nii.gz": case_bytes(300), "~/mask.nii.gz": case_bytes()})
    archive.import_imaging(workspace, zip_file=source, zip_name="cohort.zip")
    manifest = preprocess.read_manifest(Workspace(workspace))
    extracted = (workspace / "imaging" / "cohort").resolve()
    for column in ("image", "mask"):
        assert Path(manifest[column][0]).is_relative_to(extracted), manifest[column][0]
        assert not Path(manifest[column][0]).is_relative_to(home)
    assert "~" not in (workspace / "manifest.csv").read_text().split("\n")[0]
    assert (workspace / "manifest.csv").read_text().count("imaging/cohort/~/") == 2


def hostile_zips() -> dict[str, tuple[io.BytesIO, str]]:
    ok = {"P1/ct.nii.gz": b"x" * 300, "P1/mask.nii.gz": b"y" * 300}
    return {
        "file and folder": (zip_bytes({**ok, "P2/ct": b"z", "P2/ct/IM0001.dcm": b"z"}),
                            r"cohort\.zip: P2/ct is both a file and a folder in the zip; nothing was extracted\. Rename"),
        "long name": (zip_bytes({**ok, f"P2/{'a' * 300}_ct.nii.gz": b"z"}),
                      r"cohort\.zip: the name of 'P2/aaaa.*' is longer than 255 bytes.*nothing was extracted\. Give the file"),
        "encrypted": (patched_zip(ok, "P1/mask.nii.gz", flags=0x1),
                      r"cohort\.zip is encrypted \(password-protected: P1/mask\.nii\.gz\); nothing was extracted\. Zip the "
                      r"folder again without a password"),
        "size lies": (patched_zip(ok, "P1/mask.nii.gz", size=100),
                      r"cohort\.zip: P1/mask\.nii\.gz cannot be unpacked \(BadZipFile: .*\) — its data do not match what the "
                      r"zip declares .*nothing was extracted\. Copy or zip the folder again"),
    }


@pytest.mark.parametrize("kind", list(hostile_zips()))
def test_a_damaged_or_hostile_zip_is_refused_naming_the_member_and_leaves_nothing(tmp_path, kind):
    source, message = hostile_zips()[kind]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    before = tree(tmp_path)
    with pytest.raises(CrcInputError, match=message):
        archive.import_imaging(workspace, zip_file=source, zip_name="cohort.zip")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("folder_name, why", [("..P001", "starts with a dot"), ("P\t001", "contains a control character"),
                                              ("P\x07001", "contains a control character")])
def test_a_folder_name_that_is_no_patient_id_is_refused_naming_the_folder(tmp_path, folder_name, why):
    entries = {f"{folder_name}/ct.nii.gz": case_bytes(300), f"{folder_name}/mask.nii.gz": case_bytes(),
               "P002/ct.nii.gz": case_bytes(300), "P002/mask.nii.gz": case_bytes()}
    message = rf"the folder {re.escape(repr(folder_name))} gives the patient ID {re.escape(repr(folder_name))}, which {why}.*Nothing was imported"
    folder = tmp_path / "pacs"
    for name, data in entries.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    before = tree(workspace)
    with pytest.raises(CrcInputError, match=message):
        archive.import_imaging(workspace, folder=folder)
    with pytest.raises(CrcInputError, match=message):
        archive.import_imaging(workspace, zip_file=zip_bytes(entries), zip_name="cohort.zip")
    assert tree(workspace) == before


# ---------------------------------------------------------------------------------------------
# What a crop may not be: NaN or infinite; and a run that crops nobody never empties the set in use


def _float_ct_with(path: Path, mask_path: Path, where: str, value: float, count: int | None = None) -> int:
    """The CT stored as float32 with ``value`` written into ``count`` voxels of the ROI (``where``:
    "roi") or into every voxel just outside it ("around"); returns how many voxels were set."""
    from scipy import ndimage

    image = sitk.ReadImage(str(path))
    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) != 0
    chosen = roi if where == "roi" else ndimage.binary_dilation(roi, iterations=2) & ~roi
    positions = np.flatnonzero(chosen)[:count] if count else np.flatnonzero(chosen)
    hu.flat[positions] = value
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))
    return len(positions)


def test_nan_or_infinite_voxels_in_the_roi_fail_that_patient_with_their_count(cohort):
    # Found in review: NaN voxels gave NaN crops that were kept, and a training on them failed later.
    manifest = preprocess.read_manifest(Workspace(cohort))
    ids = list(manifest["patient_id"])
    _float_ct_with(Path(manifest["image"][0]), Path(manifest["mask"][0]), "roi", np.nan, count=3)
    _float_ct_with(Path(manifest["image"][1]), Path(manifest["mask"][1]), "roi", np.inf, count=1)
    _float_ct_with(Path(manifest["image"][2]), Path(manifest["mask"][2]), "around", np.nan)
    result = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32, margin_px=10), workers=1)
    failed = result.failures.set_index("patient_id")["message"]
    assert sorted(failed.index) == sorted(ids[:3])
    assert failed[ids[0]].startswith("3 non-finite voxels in the ROI (NaN or ±Inf in the CT inside ")
    assert failed[ids[1]].startswith("1 non-finite voxels in the ROI")
    assert re.match(r"\d+ non-finite pixels in the crop \(NaN or ±Inf in the CT around the ROI", failed[ids[2]])
    assert "leave this patient out" in failed[ids[0]]
    for row in result.index[result.index["status"] == "ok"].to_dict("records"):
        assert np.isfinite(preprocess.load_crop(result.folder, row).pixels).all()
    reasons = preprocess.failure_groups(result.index)["reason"]
    assert any(r.startswith("3 non-finite voxels in the ROI (NaN or ±Inf in the CT inside the mask)") for r in reasons)


def test_a_run_in_which_every_mask_is_empty_keeps_the_crop_set_in_use_as_it_was(cohort):
    # Found in review: the set in use was rewritten with every patient failed: it read as empty.
    good = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32), workers=1)
    for path in preprocess.read_manifest(Workspace(cohort))["mask"]:
        mask = sitk.ReadImage(path)
        sitk.WriteImage(mask * 0, path)
    with pytest.raises(preprocess.NothingCropped, match=r"all 12 patients failed — 12 × the mask is empty.*"
                                                       r"The crop set in use is unchanged"):
        preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32), workers=1)
    crops = preprocess.latest_crops(Workspace(cohort))
    assert crops.folder == good.folder and len(crops.ok) == 12
    failed = preprocess.failed_run(Workspace(cohort), good.folder.name)
    assert len(failed) == 12 and (failed["status"] == "failed").all()


def test_a_label_no_listed_mask_holds_never_makes_a_set_of_unlisted_patients_the_one_in_use(cohort):
    # A set cut earlier with label 7 holds two patients the manifest no longer lists: a run with
    # label 7 that crops none of the listed ones must not put that set in use.
    manifest_path = Workspace(cohort).manifest_csv
    manifest = preprocess.read_manifest(Workspace(cohort))
    for path in manifest["mask"][:2]:
        mask = sitk.ReadImage(path)
        sitk.WriteImage(mask * 7, path)
    preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32, label=7), workers=1)
    good = preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32), workers=1)
    listed = pd.read_csv(manifest_path, dtype=str)
    listed.iloc[2:].to_csv(manifest_path, index=False)
    with pytest.raises(preprocess.NothingCropped, match=r"all 10 patients failed — 10 × the mask has no voxels with label 7"):
        preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=32, label=7), workers=1)
    assert preprocess.latest_crops(Workspace(cohort)).folder == good.folder


# ---------------------------------------------------------------------------------------------
# A second import: merge or replace, said explicitly; the crops follow the manifest
# (found in use: manifest.csv replaced without a word, "1 of 4 cropped" against 3 listed)


def nifti_cohort(folder: Path, patients: dict[str, int]) -> Path:
    """``<patient>/ct.nii.gz`` and ``mask.nii.gz`` per patient; the value tells the CTs apart."""
    for patient, value in patients.items():
        write_case(folder / patient / "ct.nii.gz", value=value)
        write_case(folder / patient / "mask.nii.gz")
    return folder


def test_an_import_into_a_workspace_with_a_manifest_must_say_merge_or_replace(tmp_path):
    workspace = tmp_path / "ws"
    first = nifti_cohort(tmp_path / "first", {"P1": 100, "P2": 100})
    second = nifti_cohort(tmp_path / "second", {"P2": 300, "P3": 300})
    archive.import_imaging(workspace, folder=first)
    listed = (workspace / "manifest.csv").read_bytes()
    before = tree(tmp_path)
    with pytest.raises(archive.ManifestExists, match=r"manifest\.csv lists 2 patients already\. Choose to merge .* or to "
                                                    r"replace .*nothing was changed"):
        archive.import_imaging(workspace, folder=second)
    with pytest.raises(archive.ManifestExists):
        archive.import_imaging(workspace, zip_file=zipped(second), zip_name="second.zip")
    assert tree(tmp_path) == before and (workspace / "manifest.csv").read_bytes() == listed
    with pytest.raises(CrcInputError, match="merges or replaces; got 'append'"):
        archive.import_imaging(workspace, folder=second, mode="append")

    merged = archive.import_imaging(workspace, folder=second, mode=archive.MERGE)
    manifest = preprocess.read_manifest(Workspace(workspace)).set_index("patient_id")
    assert list(manifest.index) == ["P1", "P2", "P3"]
    assert manifest.loc["P1", "image"] == str(first / "P1" / "ct.nii.gz")
    assert manifest.loc["P2", "image"] == str(second / "P2" / "ct.nii.gz")  # listed in both: the new files
    assert merged.replaced == ["P2"] and "3 patients: 2 from" in merged.describe() and "P2" in merged.describe()

    replaced = archive.import_imaging(workspace, zip_file=zipped(first), zip_name="first.zip", mode=archive.REPLACE)
    manifest = preprocess.read_manifest(Workspace(workspace))
    assert list(manifest["patient_id"]) == ["P1", "P2"]
    assert all(Path(p).is_relative_to((workspace / "imaging" / "first").resolve()) for p in manifest["image"])
    assert replaced.dropped == ["P3"] and "no longer listed: P3" in replaced.describe()


def test_the_crop_set_in_use_lists_only_the_patients_the_manifest_lists_with_their_files(tmp_path):
    workspace = tmp_path / "ws"
    first = nifti_cohort(tmp_path / "first", {"P1": 100, "P2": 100, "P3": 100, "P4": 100})
    archive.import_imaging(workspace, folder=first)
    config = imaging.PreprocessConfig(size=16)
    preprocess.preprocess_cohort(workspace, config, workers=1)
    assert len(preprocess.latest_crops(Workspace(workspace)).ok) == 4

    second = nifti_cohort(tmp_path / "second", {"P2": 300, "P3": 100})
    archive.import_imaging(workspace, folder=second, mode=archive.REPLACE)
    crops = preprocess.latest_crops(Workspace(workspace))
    # P1 and P4 are no longer listed; P2 and P3 now have other files: no crop of theirs is in use
    assert crops.index.empty, crops.index[["patient_id", "status"]]
    again = preprocess.preprocess_cohort(workspace, config, workers=1)
    assert (again.processed, again.cached) == (2, 0)
    assert sorted(preprocess.latest_crops(Workspace(workspace)).ok["patient_id"]) == ["P2", "P3"]
    row = again.index[again.index["patient_id"] == "P2"].iloc[0].to_dict()
    assert preprocess.load_crop(again.folder, row).pixels.max() > 0.9  # the new CT (300 HU), not the old (100 HU: 0.65)

    merged = nifti_cohort(tmp_path / "third", {"P5": 100})
    archive.import_imaging(workspace, folder=merged, mode=archive.MERGE)  # P2 and P3 keep their files and crops
    crops = preprocess.latest_crops(Workspace(workspace))
    assert sorted(crops.ok["patient_id"]) == ["P2", "P3"] and "P5" not in set(crops.index["patient_id"])


def test_a_crop_set_never_lists_a_patient_the_manifest_dropped_by_hand(cohort):
    preprocess.preprocess_cohort(cohort, imaging.PreprocessConfig(size=16), workers=1)
    manifest_path = Workspace(cohort).manifest_csv
    listed = pd.read_csv(manifest_path, dtype=str)
    listed.iloc[3:].to_csv(manifest_path, index=False)
    crops = preprocess.latest_crops(Workspace(cohort))
    assert sorted(crops.index["patient_id"]) == sorted(listed["patient_id"][3:])


# ---------------------------------------------------------------------------------------------
# A folder (or a zip) holding one patient (found in use: "no image or no mask for: CRC009, ct")


def one_patient(folder: Path, layout: str) -> Path:
    if layout == "nifti":
        write_case(folder / "ct.nii.gz", value=300)
        write_case(folder / "mask.nii.gz")
    elif layout == "dicom folder":  # as the issue met it: ct/ and a mask named by the patient
        write_dicom_series(folder / "ct")
        write_mask_on(folder / "ct", folder / f"{folder.name}_mask.nii.gz")
    else:  # "dicom files": the slices beside the mask
        write_dicom_series(folder, name="IM{i:04d}.dcm")
        write_mask_on(folder, folder / "seg.nii.gz")
    return folder


@pytest.mark.parametrize("layout", ["nifti", "dicom folder", "dicom files"])
def test_a_folder_holding_one_patient_is_that_patient_named_by_the_folder(tmp_path, layout):
    folder = one_patient(tmp_path / "CRC009", layout)
    imports = {
        "folder": dict(folder=folder),
        "zip with the folder": dict(zip_file=zipped(folder, "CRC009"), zip_name="export.zip"),
        "zip of the files": dict(zip_file=zipped(folder), zip_name="CRC009.zip"),
    }
    for how, source in imports.items():
        workspace = tmp_path / f"ws-{how}"
        imported = archive.import_imaging(workspace, **source)
        assert list(imported.manifest["patient_id"]) == ["CRC009"], how
        result = preprocess.preprocess_cohort(workspace, imaging.PreprocessConfig(size=16), workers=1)
        assert result.n_ok == 1, (how, result.failures.to_dict("records"))


def test_files_named_by_their_patient_keep_that_name_in_a_folder_named_otherwise(tmp_path):
    write_case(tmp_path / "batch" / "P1_ct.nii.gz", value=300)
    write_case(tmp_path / "batch" / "P1_mask.nii.gz")
    assert list(archive.discover_cases(tmp_path / "batch")["patient_id"]) == ["P1"]
    write_case(tmp_path / "CRC010" / "ct.nii.gz", value=300)
    with pytest.raises(CrcInputError, match=r"No image or no mask found for: CRC010 \(a CT, no mask\)"):
        archive.discover_cases(tmp_path / "CRC010")
