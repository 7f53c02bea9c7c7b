"""Imaging brought in as a zip or a folder: safe extraction, and a manifest from the file names.

A zip is checked whole before anything is written: a member with an absolute path or ``..``
refuses the archive, and so does content that would exceed :data:`MAX_EXTRACTED_BYTES` (by the
sizes the zip declares, and again while writing, since a declared size can lie). Files that are
not images are skipped and listed. Extraction goes to a scratch folder that is renamed into place.

Folder conventions recognised by :func:`discover_cases` (masks: names holding ``mask``, ``seg``,
``roi`` or ``label``; a second reader's: also ``r2``, ``reader2`` or ``rater2``):

* ``<patient>/`` folders, each with a CT (a volume file or a DICOM folder) and mask files;
* ``images/<patient>.nii.gz`` with ``masks/<patient>.nii.gz`` (and ``masks_r2/``);
* flat files ``<patient>_ct.nii.gz``, ``<patient>_mask.nii.gz``, ``<patient>_mask_r2.nii.gz``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.imaging import VOLUME_SUFFIXES
from crc_core.workspace import Workspace, atomic_write_csv, ensure_writable_dir

MAX_EXTRACTED_MB = 4096
MAX_EXTRACTED_BYTES = MAX_EXTRACTED_MB * 1024 * 1024
MASK_WORDS = ("mask", "seg", "roi", "label")
READER2_WORDS = ("r2", "reader2", "rater2", "reader_2")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Extracted:
    folder: Path
    files: list[str]
    skipped: list[str]  # members that are not images, left out


def _is_image_member(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(VOLUME_SUFFIXES) or lower.endswith(".ima"):
        return True
    base = PurePosixPath(lower).name
    # DICOM files from PACS often have no suffix at all (IM0001, 1.2.840...).
    return "." not in base or bool(re.fullmatch(r"[\d.]+", base)) or lower.endswith("manifest.csv")


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"^[A-Za-z]:", name))


def extract_zip(source: str | Path | BinaryIO, destination: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES) -> Extracted:
    """Extract the images of a zip into ``destination`` (which must not exist yet)."""
    destination = Path(destination)
    shown = getattr(source, "name", None) or str(source)
    if destination.exists():
        raise CrcInputError(f"{destination} exists already; choose a new folder for the extracted images.")
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CrcInputError(f"{shown} is not a zip archive ({exc}).") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        unsafe = [m.filename for m in members if _unsafe(m.filename)]
        if unsafe:
            raise CrcInputError(
                f"{shown} holds paths outside its own folder ({', '.join(unsafe[:5])}); nothing was extracted. "
                "Zip the folder again with relative paths."
            )
        wanted = [m for m in members if _is_image_member(m.filename)]
        skipped = [m.filename for m in members if not _is_image_member(m.filename)]
        declared = sum(m.file_size for m in wanted)
        if declared > max_bytes:
            raise CrcInputError(
                f"{shown} would unpack to {declared / 2**20:,.0f} MB, over the limit of {max_bytes / 2**20:,.0f} MB; "
                "nothing was extracted. Split the cohort into several zips."
            )
        if not wanted:
            raise CrcInputError(f"{shown} holds no image files ({len(skipped)} other files).")
        parent = ensure_writable_dir(destination.parent)
        scratch = Path(tempfile.mkdtemp(prefix=".unzip-", dir=parent))
        try:
            written = 0
            for member in wanted:
                target = scratch / PurePosixPath(member.filename.replace("\\", "/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as reader, open(target, "wb") as writer:
                    while chunk := reader.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:  # a zip that declared less than it holds
                            raise CrcInputError(
                                f"{shown} unpacks to more than the limit of {max_bytes / 2**20:,.0f} MB; nothing was kept."
                            )
                        writer.write(chunk)
            scratch.rename(destination)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return Extracted(destination, [m.filename for m in wanted], skipped)


def _without_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-.\s]+", _without_suffix(name).lower()) if w]


def _role(name: str) -> str:
    words = _words(name)
    joined = "_".join(words)
    if any(w in words or w in joined for w in MASK_WORDS):
        return "mask_r2" if any(w in words or w in joined for w in READER2_WORDS) else "mask"
    return "image"


def _patient_from_name(name: str) -> str:
    """The file name without role words: ``CRC001_roi_r1.nii.gz`` → ``CRC001``."""
    drop = set(MASK_WORDS) | set(READER2_WORDS) | {"ct", "image", "img", "r1", "reader1", "rater1", "volume"}
    kept = [w for w in re.split(r"[_\-\s]+", _without_suffix(name)) if w and w.lower() not in drop]
    return "_".join(kept)


def _is_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file()]
    if not files:
        return False
    with open(files[0], "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def discover_cases(folder: Path) -> pd.DataFrame:
    """A manifest (patient_id, image, mask, mask_r2; paths relative to ``folder``) from the folder's
    layout; a ``manifest.csv`` inside wins. Patients without an image or a mask are refused by
    name."""
    folder = Path(folder)
    given = list(folder.rglob("manifest.csv"))
    if given:
        manifest = pd.read_csv(given[0], dtype=str, keep_default_na=False)
        base = given[0].parent
        for column in ("image", "mask", "mask_r2"):
            if column in manifest.columns:
                manifest[column] = [str((base / v).relative_to(folder)) if v else "" for v in manifest[column]]
        return manifest
    # A zipped folder arrives wrapped in its own name: look inside the single wrapping folder.
    base = folder
    while True:
        entries = [e for e in base.iterdir() if not e.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and not _is_dicom_folder(entries[0]):
            base = entries[0]
        else:
            break
    prefix = base.relative_to(folder)
    cases: dict[str, dict[str, str]] = {}
    for path in sorted(base.rglob("*")):
        relative = path.relative_to(base)
        if path.is_dir():
            if _is_dicom_folder(path) and _role(path.name) == "image":
                patient = relative.parts[0] if len(relative.parts) > 1 else path.name
                cases.setdefault(patient, {})["image"] = str(relative)
            continue
        if not path.name.lower().endswith(VOLUME_SUFFIXES):
            continue
        role = _role(path.name)
        parents = [p.lower() for p in relative.parts[:-1]]
        if parents and parents[0] in ("images", "image", "ct"):
            role, patient = "image", _patient_from_name(path.name)
        elif parents and parents[0] in ("masks", "mask", "labels", "segmentations", "rois"):
            patient = _patient_from_name(path.name)
            role = "mask_r2" if role == "mask_r2" else "mask"
        elif parents and parents[0] in ("masks_r2", "masks-r2", "reader2"):
            role, patient = "mask_r2", _patient_from_name(path.name)
        elif parents:
            patient = relative.parts[0]
        else:
            patient = _patient_from_name(path.name)
        cases.setdefault(patient, {})[role] = str(relative)
    if not cases:
        raise CrcInputError(f"{folder} holds no CT volumes or masks (NIfTI, NRRD, MHA or DICOM).")
    incomplete = [p for p, roles in cases.items() if "image" not in roles or "mask" not in roles]
    if incomplete:
        raise CrcInputError(
            f"No image or no mask found for: {', '.join(sorted(incomplete)[:10])}. Name masks with "
            "'mask', 'seg' or 'roi' (e.g. P001_mask.nii.gz), or add a manifest.csv (patient_id, image, mask)."
        )
    def located(relative: str) -> str:
        return str(prefix / relative) if relative else ""

    rows = [{"patient_id": p, "image": located(r["image"]), "mask": located(r["mask"]),
             "mask_r2": located(r.get("mask_r2", ""))} for p, r in sorted(cases.items())]
    return pd.DataFrame(rows)


def write_manifest(workspace_root: Path, images_folder: Path) -> pd.DataFrame:
    """Discover the cases in ``images_folder`` and write the workspace's manifest.csv (atomic).
    Paths are relative for a folder inside the workspace and absolute for one elsewhere."""
    manifest = discover_cases(images_folder)
    images_folder = Path(images_folder).resolve()
    try:  # inside the workspace: relative paths, so the workspace can be moved whole
        base = images_folder.relative_to(Path(workspace_root).resolve())
    except ValueError:
        base = images_folder  # elsewhere on this machine: absolute paths, files left in place
    for column in ("image", "mask", "mask_r2"):
        if column in manifest.columns:
            manifest[column] = [str(base / v) if v else "" for v in manifest[column]]
    atomic_write_csv(Workspace(Path(workspace_root)).manifest_csv, manifest)
    return manifest


@dataclass(frozen=True)
class ImagingImport:
    """What an import of imaging did: the manifest written, where the images are, what was skipped."""

    manifest: pd.DataFrame
    source: Path
    skipped: list[str]

    def describe(self) -> str:
        text = f"manifest.csv lists {len(self.manifest)} patients from {self.source}."
        if self.skipped:
            text += f" Skipped {len(self.skipped)} files that are not images: {', '.join(self.skipped[:10])}."
        return text


def import_imaging(workspace, *, zip_file: BinaryIO | None = None, zip_name: str | None = None,
                   folder: str | Path | None = None) -> ImagingImport:
    """Bring a cohort's imaging into a workspace: a zip (unpacked into ``imaging/<name>/``) or a
    folder on this machine (left in place), then ``manifest.csv`` from its layout. Exactly one
    source; the manifest is written only when every patient has an image and a mask."""
    workspace = Workspace.of(workspace)
    if (zip_file is None) == (folder is None or not str(folder).strip()):
        raise CrcInputError("Give either a zip of volumes and masks or a folder on this machine, not both or neither.")
    skipped: list[str] = []
    if zip_file is not None:
        name = Path(zip_name or "imaging.zip").stem
        target = workspace.imaging_dir / name
        if target.exists():
            target = workspace.imaging_dir / f"{name}-{len(list(workspace.imaging_dir.iterdir()))}"
        extracted = extract_zip(zip_file, target)
        source, skipped = extracted.folder, extracted.skipped
    else:
        source = Path(str(folder).strip()).expanduser()
        if not source.is_dir():
            raise CrcInputError(f"{source} is not a folder on this machine. Type the full path of the folder.")
    manifest = write_manifest(workspace.root, source)
    return ImagingImport(manifest, source, skipped)
