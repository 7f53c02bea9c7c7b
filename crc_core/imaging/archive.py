"""Imaging brought in as a zip or a folder: safe extraction, and a manifest from the file names.

A zip is checked whole before anything is written: a member with an absolute path or ``..``
refuses the archive, and so do a member that is both a file and a folder, a name too long for the
file system, an encrypted member, a ``manifest.csv`` inside it that names a file outside the zip
(or not in it) or an ID that is a path, and content that would exceed :data:`MAX_EXTRACTED_BYTES`
(by the sizes the zip declares, and again while writing, since a declared size can lie; a member
whose data do not match what the zip declares is named). Files that are not images are skipped and
listed. Extraction goes to a scratch folder that is renamed into place, and is removed again when
the cases in it cannot be listed. Paths from a zip are taken as written: never ``~``-expanded, and
a manifest inside it never points outside the extracted folder. A folder on this machine is the
user's own choice: its manifest may name files anywhere.

Folder conventions recognised by :func:`discover_cases` (masks: names holding ``mask``, ``seg``,
``roi`` or ``label``; a second reader's: also ``r2``, ``reader2`` or ``rater2``). A CT is a volume
file or a DICOM series: a folder of two or more DICOM files, whatever they are called (``.dcm``,
``.DCM``, ``.ima``, no suffix: found by their content), several series in one folder told apart by
Series Instance UID when read (:func:`crc_core.imaging.volumes.read_dicom_series`).

* ``<patient>/`` folders, each with a CT and mask files;
* ``images/<patient>.nii.gz`` (or ``images/<patient>/`` DICOM) with ``masks/<patient>.nii.gz``
  (and ``masks_r2/``);
* flat files ``<patient>_ct.nii.gz``, ``<patient>_mask.nii.gz``, ``<patient>_mask_r2.nii.gz``;
* one patient: the folder (or the zip) holds the CT and mask directly (``CRC009/ct/``,
  ``CRC009/mask.nii.gz``); the patient is named by the folder (the zip).

Every patient ID found is checked as a table's IDs are (not empty, no path separator, no leading
dot, no control character), naming the folder or file it came from.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.imaging.volumes import VOLUME_SUFFIXES
from crc_core.tables import _path_like, id_text, listing, patient_ids, read_table
from crc_core.workspace import Workspace, atomic_write_csv, ensure_writable_dir

MAX_EXTRACTED_MB = 4096
MAX_EXTRACTED_BYTES = MAX_EXTRACTED_MB * 1024 * 1024
MASK_WORDS = ("mask", "seg", "roi", "label")
READER2_WORDS = ("r2", "reader2", "rater2", "reader_2")
MANIFEST_NAME = "manifest.csv"
#: The manifest's columns that name files, relative to the manifest's folder.
PATH_COLUMNS = ("image", "mask", "mask_r2")
#: Folders that hold every patient's CT, reader 1's masks, reader 2's masks.
IMAGE_FOLDERS = ("images", "image", "ct")
MASK_FOLDERS = ("masks", "mask", "labels", "segmentations", "rois")
READER2_FOLDERS = ("masks_r2", "masks-r2", "reader2")
#: Suffixes a user gives DICOM files; DICOM files without one are found by their content.
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")
#: Volume files that are never one slice of a DICOM series.
FILE_VOLUME_SUFFIXES = tuple(s for s in VOLUME_SUFFIXES if s not in DICOM_SUFFIXES)
#: What zip tools and file browsers add and nobody means: macOS resource forks, an index of a CD.
JUNK_FOLDERS = ("__MACOSX",)
JUNK_FILES = ("DICOMDIR", ".DS_Store", "Thumbs.db")
#: Longest file or folder name most file systems take, in bytes (UTF-8).
MAX_NAME_BYTES = 255
#: How to proceed when the workspace lists patients already: add the new ones (a patient listed
#: in both takes the new files) or list only the new ones.
MERGE, REPLACE = "merge", "replace"
IMPORT_MODES = (MERGE, REPLACE)
_CHUNK = 1 << 20
_DICOM_MARKER_AT, _DICOM_MARKER = 128, b"DICM"


@dataclass(frozen=True)
class Extracted:
    folder: Path
    files: list[str]
    skipped: list[str]  # members that are not images, left out


# ---------------------------------------------------------------------------------------------
# Zips


def _has_dicom_marker(head: bytes) -> bool:
    return head[_DICOM_MARKER_AT:_DICOM_MARKER_AT + 4] == _DICOM_MARKER


def _is_image_name(name: str) -> bool:
    lower = name.lower()
    if lower.endswith(VOLUME_SUFFIXES) or lower.endswith(DICOM_SUFFIXES):
        return True
    base = PurePosixPath(lower).name
    # DICOM files from PACS often have no suffix at all (IM0001, 1.2.840...).
    return "." not in base or bool(re.fullmatch(r"[\d.]+", base)) or lower.endswith("manifest.csv")


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"^[A-Za-z]:", name))


def _member_path(name: str) -> str:
    return name.replace("\\", "/")


def _member_error(shown: str, member: str, exc: BaseException) -> CrcInputError:
    """What went wrong reading one member, in words: the zip, the member, what to do."""
    if isinstance(exc, RuntimeError) and "encrypt" in str(exc).lower():
        return CrcInputError(f"{shown}: {member} is encrypted (password-protected); nothing was extracted. "
                             "Zip the folder again without a password.")
    if isinstance(exc, NotImplementedError):
        return CrcInputError(f"{shown}: {member} is compressed with a method this zip reader does not know ({exc}); "
                             "nothing was extracted. Zip the folder again with the usual (deflate) compression.")
    return CrcInputError(
        f"{shown}: {member} cannot be unpacked ({type(exc).__name__}: {exc}) — its data do not match what the zip "
        "declares (a damaged or truncated download); nothing was extracted. Copy or zip the folder again."
    )


def _check_member_names(members: list[zipfile.ZipInfo], shown: str) -> None:
    """Refuse names the file system cannot hold before writing anything: a member that is both a
    file and a folder (``P1/ct`` and ``P1/ct/x.dcm``), one listed twice, a name over
    :data:`MAX_NAME_BYTES`, an encrypted member."""
    files: dict[str, str] = {}
    folders: set[str] = set()
    twice, long_names, locked = [], [], []
    for member in members:
        path = PurePosixPath(_member_path(member.filename))
        key = str(path)
        if key in files:
            twice.append(member.filename)
        files[key] = member.filename
        folders.update(str(parent) for parent in path.parents if str(parent) != ".")
        if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in path.parts):
            long_names.append(member.filename)
        if member.flag_bits & 0x1:
            locked.append(member.filename)
    if locked:
        raise CrcInputError(f"{shown} is encrypted (password-protected: {listing(locked, 3)}); nothing was extracted. "
                            "Zip the folder again without a password.")
    both = sorted(files[k] for k in files if k in folders)
    if both:
        raise CrcInputError(
            f"{shown}: {listing(both, 3)} is both a file and a folder in the zip; nothing was extracted. "
            "Rename the file or the folder and zip again."
        )
    if twice:
        raise CrcInputError(f"{shown}: {listing(sorted(set(twice)), 3)} appears twice in the zip; nothing was "
                            "extracted. Zip the folder again.")
    if long_names:
        shown_names = ", ".join(repr(n[:60] + "…") for n in long_names[:3])
        raise CrcInputError(
            f"{shown}: the name of {shown_names} is longer than {MAX_NAME_BYTES} bytes, more than the file system "
            "takes; nothing was extracted. Give the file or folder a shorter name and zip again."
        )


def _is_image_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, shown: str) -> bool:
    """A volume, a DICOM file by its name or its content (``DICM`` after the preamble, whatever
    the file is called), or a manifest."""
    if _is_image_name(member.filename):
        return True
    if member.file_size < _DICOM_MARKER_AT + 4:
        return False
    try:
        with archive.open(member) as reader:
            return _has_dicom_marker(reader.read(_DICOM_MARKER_AT + 4))
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError, zlib.error) as exc:
        raise _member_error(shown, member.filename, exc) from exc


def _inside_zip(manifest_folder: PurePosixPath, value: str) -> str | None:
    """Where a manifest's path points inside the zip (a member name), or None when it leaves it:
    an absolute path, a drive letter, or more ``..`` than there are folders above the manifest.
    ``~`` is a folder's name here, as it is in the zip."""
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
        try:
            data = archive.read(member)
        except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError, zlib.error) as exc:
            raise _member_error(shown, member.filename, exc) from exc
        read = read_table(data, name=where)
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
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CrcInputError(f"{shown} is not a zip archive, or a damaged one ({exc}). Zip the folder again.") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        unsafe = [m.filename for m in members if _unsafe(m.filename)]
        if unsafe:
            raise CrcInputError(
                f"{shown} holds paths outside its own folder ({', '.join(unsafe[:5])}); nothing was extracted. "
                "Zip the folder again with relative paths."
            )
        _check_member_names(members, shown)
        wanted = [m for m in members if _is_image_member(archive, m, shown)]
        skipped = [m.filename for m in members if m not in wanted]
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
                target = scratch / PurePosixPath(_member_path(member.filename))
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as reader, open(target, "wb") as writer:
                        while chunk := reader.read(_CHUNK):
                            written += len(chunk)
                            if written > max_bytes:  # a zip that declared less than it holds
                                raise CrcInputError(
                                    f"{shown} unpacks to more than the limit of {max_bytes / 2**20:,.0f} MB; "
                                    "nothing was kept."
                                )
                            writer.write(chunk)
                except CrcInputError:
                    raise
                except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError,
                        zlib.error) as exc:
                    raise _member_error(shown, member.filename, exc) from exc
            scratch.rename(destination)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return Extracted(destination, [m.filename for m in wanted], skipped)


# ---------------------------------------------------------------------------------------------
# Names


def _without_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES + DICOM_SUFFIXES:
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


#: Words that say what a file is, never whose: ``CRC001_roi_r1.nii.gz`` is CRC001's, ``ct.nii.gz``
#: nobody's in particular (the folder's patient).
_ROLE_WORDS = frozenset(MASK_WORDS) | frozenset(READER2_WORDS) | {
    "ct", "image", "img", "r1", "reader1", "rater1", "volume", "dicom", "series", "scan"}


def _patient_from_name(name: str) -> str:
    """The file name without role words: ``CRC001_roi_r1.nii.gz`` → ``CRC001``; ``ct.nii.gz`` → ``""``."""
    kept = [w for w in re.split(r"[_\-\s]+", _without_suffix(name)) if w and w.lower() not in _ROLE_WORDS]
    return "_".join(kept)


# ---------------------------------------------------------------------------------------------
# A folder's cases


def _is_dicom_file(path: Path) -> bool:
    """DICOM by the suffix a user gave it, or by its content (``DICM`` after the 128-byte preamble)."""
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            return _has_dicom_marker(handle.read(_DICOM_MARKER_AT + 4))
    except OSError:
        return False


def _is_junk(name: str) -> bool:
    return name in JUNK_FILES or name.startswith("._") or name.lower() == MANIFEST_NAME


def _volumes_and_series(base: Path) -> list[Path]:
    """Every CT or mask under ``base`` (itself included): volume files, and DICOM series folders (a
    folder with two or more DICOM files, whatever they are called: its files are slices, never
    volumes of their own). A lone DICOM file is a volume (one slice, or a multi-frame file)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in JUNK_FOLDERS)
        here = Path(root)
        dicom = []
        for name in sorted(files):
            if _is_junk(name):
                continue
            path = here / name
            if name.lower().endswith(FILE_VOLUME_SUFFIXES):
                found.append(path)
            elif _is_dicom_file(path):
                dicom.append(path)
        found.extend([here] if len(dicom) >= 2 else dicom)
    return found


def _place(relative: PurePosixPath, own: tuple[str, str]) -> tuple[str, str, str]:
    """The patient, role (image, mask, mask_r2) and origin (the name the patient was read from, for
    messages) of a CT or mask at ``relative`` to the layout's base. ``own`` (patient, origin) is
    the patient of what lies directly in the base and names nobody (``ct.nii.gz``,
    ``mask.nii.gz``, DICOM files in the base itself)."""
    parts = relative.parts
    role = _role(relative.name) if parts else "image"
    if len(parts) > 1:
        top = parts[0].lower()
        inside = f"{'the folder' if len(parts) > 2 else 'the file'} {parts[0]}/{parts[1]!r}"
        if top in IMAGE_FOLDERS:
            return _patient_from_name(parts[1]), "image", inside
        if top in MASK_FOLDERS:
            return _patient_from_name(parts[1]), "mask_r2" if role == "mask_r2" else "mask", inside
        if top in READER2_FOLDERS:
            return _patient_from_name(parts[1]), "mask_r2", inside
        return parts[0], role, f"the folder {parts[0]!r}"
    named = _patient_from_name(parts[0]) if parts else ""
    return (named, role, f"the name {parts[0]!r}") if named else (*own[:1], role, own[1])


def _unwrapped(folder: Path) -> Path:
    """A zipped folder arrives wrapped in its own name: the folder inside single wrapping folders."""
    base = folder
    while True:
        entries = [e for e in base.iterdir() if not _is_junk(e.name) and e.name not in JUNK_FOLDERS]
        if len(entries) == 1 and entries[0].is_dir():
            base = entries[0]
        else:
            return base


def _own_patient(folder: Path, base: Path, given: str | None) -> tuple[str, str]:
    """Who the CT and mask lying directly in ``base`` belong to, and where the name comes from:
    the innermost folder from ``base`` up to ``folder`` whose name names a patient
    (``CRC009/DICOM/``: CRC009), else ``given`` (a zip's name), else ``folder``'s name."""
    current = base
    while current != folder:
        if _patient_from_name(current.name):
            return current.name, f"the folder {current.relative_to(folder).as_posix()!r}"
        current = current.parent
    if given:
        return given, f"the zip's name {given!r}"
    return folder.name, f"the folder {folder.name!r}"


def _check_found_ids(folder: Path, origins: dict[str, str]) -> None:
    """Refuse a patient ID from a folder or file name that is empty or could be taken for a path,
    naming where it came from (an ID names files later: crops, maps, exports)."""
    problems = []
    for patient, origin in origins.items():
        text = id_text(patient)
        why = "is empty" if not text else _path_like(text)
        if why:
            problems.append(f"{origin} gives the patient ID {patient!r}, which {why}")
    if problems:
        raise CrcInputError(
            f"{folder}: {'; '.join(problems[:5])}{'; and more' if len(problems) > 5 else ''}. Nothing was imported. "
            "Rename the folder or file: a patient ID uses letters, digits, spaces, '-', '_' or '.' (not first), "
            "and no tab or other control character."
        )


def _describe_roles(roles: dict[str, str]) -> str:
    has = [{"image": "a CT", "mask": "a mask", "mask_r2": "a second reader's mask"}[r] for r in roles]
    lacks = [w for r, w in (("image", "no CT"), ("mask", "no mask")) if r not in roles]
    return ", ".join(has + lacks)


def discover_cases(folder: Path, *, own_patient: str | None = None, from_zip: bool = False) -> pd.DataFrame:
    """A manifest (patient_id, image, mask, mask_r2; paths relative to ``folder``) from the folder's
    layout; a ``manifest.csv`` inside wins, read by the one table reader with its IDs checked, and
    a file it names outside ``folder`` is given by its absolute path (never for ``from_zip``: a
    zip's manifest stays inside the zip, and ``~`` is no home folder there). ``own_patient`` names
    the patient whose CT and mask lie directly in ``folder`` (default: the folder's name). Patients
    without an image or a mask, or with two, are refused by name."""
    folder = Path(folder)
    given = sorted(folder.rglob(MANIFEST_NAME))
    if given:
        return _given_manifest(folder, given[0], from_zip)
    base = _unwrapped(folder)
    own = _own_patient(folder, base, own_patient)
    cases: dict[str, dict[str, str]] = {}
    origins: dict[str, str] = {}
    twice: list[str] = []
    for path in _volumes_and_series(base):
        relative = PurePosixPath(path.relative_to(base).as_posix()) if path != base else PurePosixPath()
        patient, role, origin = _place(relative, own)
        origins.setdefault(patient, origin)
        roles = cases.setdefault(patient, {})
        if role in roles:
            twice.append(f"{patient}: {roles[role]} and {relative} (both taken for its {role})")
        roles[role] = str(relative) if relative.parts else "."
    if not cases:
        raise CrcInputError(f"{folder} holds no CT volumes or masks (NIfTI, NRRD, MHA or DICOM).")
    _check_found_ids(folder, origins)
    same = pd.Series(list(cases)).map(id_text)
    if same.duplicated().any():
        clash = [p for p in cases if (same == id_text(p)).sum() > 1]
        raise CrcInputError(f"{folder}: {listing([repr(p) for p in clash], 4)} name one patient (they differ only by "
                            "spaces at an end); nothing was imported. Merge or rename the folders.")
    if twice:
        raise CrcInputError(
            f"{folder}: two files for one role — {'; '.join(twice[:5])}. Keep one CT and one mask per patient "
            "(a DICOM series in a folder of its own), or add a manifest.csv (patient_id, image, mask)."
        )
    incomplete = [p for p, roles in cases.items() if "image" not in roles or "mask" not in roles]
    if incomplete:
        shown = [f"{p} ({_describe_roles(cases[p])})" for p in sorted(incomplete)[:10]]
        raise CrcInputError(
            f"No image or no mask found for: {', '.join(shown)}. Name masks with "
            "'mask', 'seg' or 'roi' (e.g. P001_mask.nii.gz), or add a manifest.csv (patient_id, image, mask)."
        )
    prefix = PurePosixPath(base.relative_to(folder).as_posix())

    def located(relative: str) -> str:
        return os.path.normpath(str(prefix / relative)) if relative else ""

    rows = [{"patient_id": id_text(p), "image": located(r["image"]), "mask": located(r["mask"]),
             "mask_r2": located(r.get("mask_r2", ""))} for p, r in sorted(cases.items())]
    return pd.DataFrame(rows)


def _given_manifest(folder: Path, path: Path, from_zip: bool) -> pd.DataFrame:
    read = read_table(path)
    manifest = read.table
    manifest["patient_id"] = patient_ids(manifest, what=str(path), row_numbers=read.row_numbers)
    manifest = manifest.astype(object).fillna("")
    inside, base = folder.resolve(), path.resolve().parent
    for column in PATH_COLUMNS:
        if column in manifest.columns:
            manifest[column] = [_located(inside, base, v, expand_home=not from_zip) if v else "" for v in manifest[column]]
    if from_zip:
        outside = [f"{p}: {v}" for p, *values in manifest[["patient_id", *[c for c in PATH_COLUMNS if c in manifest]]]
                   .itertuples(index=False) for v in values if v and Path(v).is_absolute()]
        if outside:
            raise CrcInputError(f"{path}: {listing(outside, 3)} lies outside the zip; nothing was imported. A manifest "
                                "inside a zip names files inside it, by paths relative to the manifest.")
    return manifest


def _located(folder: Path, base: Path, value: str, *, expand_home: bool = True) -> str:
    """A manifest's path (relative to ``base``, or absolute) relative to ``folder`` when it lies
    inside, else absolute. ``~`` is the user's home only where the user typed it (a folder's
    manifest), never in a zip's."""
    given = Path(value).expanduser() if expand_home else Path(value)
    target = Path(os.path.normpath(base / given))
    try:
        return str(target.relative_to(folder))
    except ValueError:
        return str(target)


def _listed(workspace_root: Path, images_folder: Path, *, own_patient: str | None = None,
            from_zip: bool = False) -> pd.DataFrame:
    """The cases of ``images_folder`` as manifest rows: paths relative to the workspace for a
    folder inside it, absolute for one elsewhere."""
    manifest = discover_cases(images_folder, own_patient=own_patient, from_zip=from_zip)
    images_folder = Path(images_folder).resolve()
    try:  # inside the workspace: relative paths, so the workspace can be moved whole
        base = images_folder.relative_to(Path(workspace_root).resolve())
    except ValueError:
        base = images_folder  # elsewhere on this machine: absolute paths, files left in place
    for column in PATH_COLUMNS:
        if column in manifest.columns:
            manifest[column] = [os.path.normpath(str(base / v)) if v else "" for v in manifest[column]]
    return manifest


def write_manifest(workspace_root: Path, images_folder: Path, *, own_patient: str | None = None,
                   from_zip: bool = False) -> pd.DataFrame:
    """Discover the cases in ``images_folder`` and write the workspace's manifest.csv (atomic).
    Paths are relative for a folder inside the workspace and absolute for one elsewhere."""
    manifest = _listed(workspace_root, images_folder, own_patient=own_patient, from_zip=from_zip)
    atomic_write_csv(Workspace(Path(workspace_root)).manifest_csv, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# An import into a workspace


class ManifestExists(CrcInputError):
    """The workspace lists patients already: the import must be told to merge or replace."""

    def __init__(self, path: Path, listed: int | None):
        count = f"{listed} patients" if listed is not None else "patients (the file cannot be read)"
        super().__init__(
            f"{path} lists {count} already. Choose to merge (add the new patients; one listed in both takes "
            "the new files) or to replace (list only the new patients); nothing was changed."
        )
        self.listed = listed


def listed_patients(workspace) -> int | None:
    """How many patients ``manifest.csv`` lists (None: none, or it cannot be read)."""
    path = Workspace.of(workspace).manifest_csv
    if not path.exists():
        return None
    try:
        return len(read_table(path).table)
    except CrcInputError:
        return None


@dataclass(frozen=True)
class ImagingImport:
    """What an import of imaging did: the manifest written, where the images are, what was skipped,
    and how it met the patients listed before (``mode``: merge or replace)."""

    manifest: pd.DataFrame
    source: Path
    skipped: list[str]
    mode: str | None = None
    imported: list[str] = field(default_factory=list)  # the patients of this import
    replaced: list[str] = field(default_factory=list)  # listed before, now with the new files
    dropped: list[str] = field(default_factory=list)  # listed before, no longer listed

    def describe(self) -> str:
        text = f"manifest.csv lists {_patients(len(self.manifest))} from {self.source}."
        if self.mode == MERGE:
            kept = len(self.manifest) - len(self.imported)
            text = (f"manifest.csv lists {_patients(len(self.manifest))}: {len(self.imported)} from {self.source} "
                    f"merged with {kept} listed before.")
            if self.replaced:
                text += f" {len(self.replaced)} were listed before and take the new files: {listing(self.replaced, 5)}."
        elif self.mode == REPLACE and self.dropped:
            text += (f" Replaced the earlier list; no longer listed: {listing(self.dropped, 5)} (their crops are "
                     "left out of the crop set in use).")
        if self.skipped:
            text += f" Skipped {len(self.skipped)} files that are not images: {', '.join(self.skipped[:10])}."
        return text


def _patients(n: int) -> str:
    return f"{n} patient" if n == 1 else f"{n} patients"


def _earlier_manifest(path: Path) -> pd.DataFrame:
    """The manifest as written (paths as text), IDs checked, to merge new rows into."""
    read = read_table(path)
    table = read.table.astype(object).fillna("")
    table["patient_id"] = patient_ids(table, what=str(path), row_numbers=read.row_numbers)
    return table


def _combine(path: Path, new: pd.DataFrame, mode: str | None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The manifest to write, the patients listed before that take new files, and those no longer
    listed. Replace needs nothing of the earlier list but its IDs (a damaged one is simply replaced)."""
    if mode is None or not path.exists():
        return new, [], []
    ids = set(new["patient_id"])
    if mode == REPLACE:
        try:
            before = list(_earlier_manifest(path)["patient_id"])
        except CrcInputError:
            before = []
        return new, [p for p in before if p in ids], [p for p in before if p not in ids]
    earlier = _earlier_manifest(path)
    kept = earlier[~earlier["patient_id"].isin(ids)]
    combined = pd.concat([kept, new], ignore_index=True).astype(object).fillna("")
    columns = ["patient_id", *[c for c in PATH_COLUMNS if c in combined.columns],
               *[c for c in combined.columns if c not in ("patient_id", *PATH_COLUMNS)]]
    return combined[columns], [p for p in earlier["patient_id"] if p in ids], []


def import_imaging(workspace, *, zip_file: BinaryIO | None = None, zip_name: str | None = None,
                   folder: str | Path | None = None, mode: str | None = None) -> ImagingImport:
    """Bring a cohort's imaging into a workspace: a zip (unpacked into ``imaging/<name>/``) or a
    folder on this machine (left in place), then ``manifest.csv`` from its layout. Exactly one
    source; the manifest is written only when every patient has an image and a mask. Where a
    manifest exists, ``mode`` must say what becomes of its patients (:data:`MERGE` or
    :data:`REPLACE`; else :class:`ManifestExists`, before anything is unpacked); the crop set in
    use then lists only the patients still listed, with the files they are listed with."""
    from crc_core.imaging.preprocess import keep_crops_of_manifest

    workspace = Workspace.of(workspace)
    if (zip_file is None) == (folder is None or not str(folder).strip()):
        raise CrcInputError("Give either a zip of volumes and masks or a folder on this machine, not both or neither.")
    if mode is not None and mode not in IMPORT_MODES:
        raise CrcInputError(f"An import into a workspace with a manifest merges or replaces; got {mode!r}.")
    path = workspace.manifest_csv
    if path.exists() and mode is None:
        raise ManifestExists(path, listed_patients(workspace))
    if mode == MERGE and path.exists():
        _earlier_manifest(path)  # a damaged list to merge into is named before anything is unpacked
    skipped: list[str] = []
    if zip_file is None:
        source = Path(str(folder).strip()).expanduser()
        if not source.is_dir():
            raise CrcInputError(f"{source} is not a folder on this machine. Type the full path of the folder.")
        new = _listed(workspace.root, source)
        extracted = None
    else:
        # The upload's name becomes a folder name: only its letters, digits, '-' and '_'.
        name = re.sub(r"[^\w\-]+", "_", Path(zip_name or "imaging.zip").stem).strip("_") or "imaging"
        target = workspace.imaging_dir / name
        if target.exists():
            target = workspace.imaging_dir / f"{name}-{len(list(workspace.imaging_dir.iterdir()))}"
        made_imaging_dir = not workspace.imaging_dir.exists()
        extracted = None
        try:
            extracted = extract_zip(zip_file, target, name=zip_name)
            new = _listed(workspace.root, extracted.folder, own_patient=name, from_zip=True)
        except BaseException:
            # A refused import leaves the workspace as it was: no unpacked cases nobody can use.
            if extracted is not None:
                shutil.rmtree(extracted.folder, ignore_errors=True)
            if made_imaging_dir and workspace.imaging_dir.is_dir() and not any(workspace.imaging_dir.iterdir()):
                workspace.imaging_dir.rmdir()
            raise
        source, skipped = extracted.folder, extracted.skipped
    combined, replaced, dropped = _combine(path, new, mode)
    atomic_write_csv(path, combined)
    keep_crops_of_manifest(workspace)
    return ImagingImport(combined, source, skipped, mode if mode else None, list(new["patient_id"]), replaced, dropped)
