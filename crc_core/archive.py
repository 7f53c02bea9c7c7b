"""Imaging brought in as a zip or a folder: safe extraction, and a manifest from the file names.

A zip is checked whole before anything is written: a member with an absolute path or ``..``
refuses the archive, and so does a ``manifest.csv`` inside it that names a file outside the zip (or
not in it) or an ID that is a path, and content that would exceed :data:`MAX_EXTRACTED_BYTES` (by
the sizes the zip declares, and again while writing, since a declared size can lie). Files that are
not images are skipped and listed. Extraction goes to a scratch folder that is renamed into place,
and is removed again when the cases in it cannot be listed. A folder on this machine is the user's
own choice: its manifest may name files anywhere.

Folder conventions recognised by :func:`discover_cases` (masks: names holding ``mask``, ``seg``,
``roi`` or ``label``; a second reader's: also ``r2``, ``reader2`` or ``rater2``):

* ``<patient>/`` folders, each with a CT (a volume file or a DICOM folder) and mask files;
* ``images/<patient>.nii.gz`` with ``masks/<patient>.nii.gz`` (and ``masks_r2/``);
* flat files ``<patient>_ct.nii.gz``, ``<patient>_mask.nii.gz``, ``<patient>_mask_r2.nii.gz``.
"""

from __future__ import annotations

import os
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
from crc_core.tables import patient_ids, read_table
from crc_core.workspace import Workspace, atomic_write_csv, ensure_writable_dir

MAX_EXTRACTED_MB = 4096
MAX_EXTRACTED_BYTES = MAX_EXTRACTED_MB * 1024 * 1024
MASK_WORDS = ("mask", "seg", "roi", "label")
READER2_WORDS = ("r2", "reader2", "rater2", "reader_2")
MANIFEST_NAME = "manifest.csv"
#: The manifest's columns that name files, relative to the manifest's folder.
PATH_COLUMNS = ("image", "mask", "mask_r2")
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


def _member_path(name: str) -> str:
    return name.replace("\\", "/")


def _inside_zip(manifest_folder: PurePosixPath, value: str) -> str | None:
    """Where a manifest's path points inside the zip (a member name), or None when it leaves it:
    an absolute path, a drive letter, or more ``..`` than there are folders above the manifest."""
    text = _member_path(value)
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return None
    parts: list[str] = []
    for part in (manifest_folder / text).parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _check_zip_manifests(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], shown: str) -> None:
    """Refuse a zip whose ``manifest.csv`` names a file outside the zip or not in it, or an ID that
    is a path, naming the manifest's row, column and value: a zip is unpacked into the workspace,
    and what it lists must come with it (the user's choice of files elsewhere is a folder import)."""
    names = [_member_path(m.filename) for m in members]
    for member in members:
        inner = PurePosixPath(_member_path(member.filename))
        if inner.name.lower() != MANIFEST_NAME:
            continue
        where = f"{shown}: {member.filename}"
        read = read_table(archive.read(member), name=where)
        table = read.table
        patient_ids(table, what=where, row_numbers=read.row_numbers)
        problems = []
        for position, row_number in enumerate(read.row_numbers):
            for column in (c for c in PATH_COLUMNS if c in table.columns):
                value = table[column].iloc[position]
                if not isinstance(value, str) or not value.strip():
                    continue
                target = _inside_zip(inner.parent, value.strip())
                if target is None:
                    problems.append(f"row {row_number}, column {column!r}: {value!r} points outside the zip")
                elif not any(n == target or n.startswith(target + "/") for n in names):
                    problems.append(f"row {row_number}, column {column!r}: {value!r} is not in the zip")
        if problems:
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise CrcInputError(
                f"{where}: {'; '.join(problems[:5])}{more}. A manifest inside a zip may only name files inside "
                "the zip, by paths relative to the manifest (such as P001/ct.nii.gz); nothing was extracted. "
                "Put the files in the zip, or import the folder that holds them instead."
            )


def extract_zip(source: str | Path | BinaryIO, destination: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES,
                name: str | None = None) -> Extracted:
    """Extract the images of a zip into ``destination`` (which must not exist yet); ``name`` is the
    zip's name in messages (default: the upload's or the path's)."""
    destination = Path(destination)
    shown = name or getattr(source, "name", None) or (str(source) if isinstance(source, (str, Path)) else "the zip")
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
        _check_zip_manifests(archive, wanted, shown)
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
    layout; a ``manifest.csv`` inside wins, read by the one table reader with its IDs checked, and
    a file it names outside ``folder`` is given by its absolute path. Patients without an image or
    a mask are refused by name."""
    folder = Path(folder)
    given = sorted(folder.rglob(MANIFEST_NAME))
    if given:
        read = read_table(given[0])
        manifest = read.table
        manifest["patient_id"] = patient_ids(manifest, what=str(given[0]), row_numbers=read.row_numbers)
        manifest = manifest.astype(object).fillna("")
        inside, base = folder.resolve(), given[0].resolve().parent
        for column in PATH_COLUMNS:
            if column in manifest.columns:
                manifest[column] = [_located(inside, base, v) if v else "" for v in manifest[column]]
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


def _located(folder: Path, base: Path, value: str) -> str:
    """A manifest's path (relative to ``base``, or absolute) relative to ``folder`` when it lies
    inside, else absolute."""
    target = Path(os.path.normpath(base / Path(value).expanduser()))
    try:
        return str(target.relative_to(folder))
    except ValueError:
        return str(target)


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
    if zip_file is None:
        source = Path(str(folder).strip()).expanduser()
        if not source.is_dir():
            raise CrcInputError(f"{source} is not a folder on this machine. Type the full path of the folder.")
        return ImagingImport(write_manifest(workspace.root, source), source, skipped)
    # The upload's name becomes a folder name: only its letters, digits, '-' and '_'.
    name = re.sub(r"[^\w\-]+", "_", Path(zip_name or "imaging.zip").stem).strip("_") or "imaging"
    target = workspace.imaging_dir / name
    if target.exists():
        target = workspace.imaging_dir / f"{name}-{len(list(workspace.imaging_dir.iterdir()))}"
    made_imaging_dir = not workspace.imaging_dir.exists()
    extracted = None
    try:
        extracted = extract_zip(zip_file, target, name=zip_name)
        manifest = write_manifest(workspace.root, extracted.folder)
    except BaseException:
        # A refused import leaves the workspace as it was: no unpacked cases nobody can use.
        if extracted is not None:
            shutil.rmtree(extracted.folder, ignore_errors=True)
        if made_imaging_dir and workspace.imaging_dir.is_dir() and not any(workspace.imaging_dir.iterdir()):
            workspace.imaging_dir.rmdir()
        raise
    return ImagingImport(manifest, extracted.folder, extracted.skipped)
