"""A cohort's volumes to crops: the manifest, one worker per volume on all cores, and a cache.

Crops go to ``<workspace>/crops/<key>/`` where ``key`` is a hash of what decides the pixels
(:meth:`~crc_core.imaging.volumes.PreprocessConfig.pixel_parameters`, the preprocessing code's version
included): per patient a PNG (as the paper) and an ``.npz`` (the float input, the ROI, the slice
index), named by a hash of the patient ID (:func:`crop_file_stem`), ``index.csv`` (one row per
patient: the ID, status, slice, box, the two file names, the source files' size and time stamps)
and ``params.json``. A re-run with the same parameters reuses every crop whose source files
are unchanged. ``crops/latest.json`` names the crop set the later steps (Train) use; a run in which
no patient of the manifest could be cropped (every mask empty, a label no mask holds) leaves it on
the last good set, with that set's index untouched, and writes its rows to ``failed-run.csv``. A
failing patient gets a row with its message (a CT with NaN or infinite voxels in the ROI is one);
the others go on. A crop set follows the manifest: it lists only the patients ``manifest.csv``
lists (:func:`latest_crops`), and an import that changes a patient's files drops that patient's
crops (:func:`keep_crops_of_manifest`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from crc_core.imaging import volumes as imaging
from crc_core.errors import CrcInputError
from crc_core.parallel import Progress, map_in_workers
from crc_core.tables import listing, patient_ids, read_table
from crc_core.workspace import Workspace, atomic_write_bytes, atomic_write_csv, atomic_write_text

INDEX_CSV = "index.csv"
#: The rows of a run in which no patient could be cropped (the set's own index stays as it was).
FAILED_RUN_CSV = "failed-run.csv"
PARAMS_JSON = "params.json"
MANIFEST_COLUMNS = ("patient_id", "image", "mask")
INDEX_COLUMNS = [
    "patient_id", "status", "message", "reason", "slice_index", "box", "roi_area_mm2", "pixel_mm", "png", "npz", "source",
]


def config_key(config: imaging.PreprocessConfig) -> str:
    """The crop set's name: a hash of what decides its pixels, nothing else."""
    text = json.dumps(config.pixel_parameters(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def crop_file_stem(patient_id: str) -> str:
    """The name of a patient's crop files: a hash of the ID, never the ID's text, so that no ID
    (``../../x``, ``/x``, ``a/b``) can name a file outside the crop folder, whatever reached the
    worker. ``index.csv`` keeps the ID beside the names."""
    return "crop-" + hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:16]


def crop_file(folder: Path, name: object) -> Path | None:
    """A crop file named in ``index.csv``, or None when the name is not a plain file name in the
    crop folder (an edited or damaged index must not make a reader open a file elsewhere)."""
    text = str(name or "")
    if not text or text != Path(text).name or text.startswith(".") or "\\" in text:
        return None
    return Path(folder) / text


#: The masks a crop set may be cut with: reader 1's (``mask``, the crop set the steps use),
#: reader 2's (``mask_r2``), or reader 1's eroded or dilated in-plane by 1 or 2 pixels — the
#: robustness check's variants (:mod:`crc_core.evaluate.robustness`).
MASK_VARIANTS = ("reader1", "reader2", "erode1", "erode2", "dilate1", "dilate2")


def _check_variant(variant: str) -> None:
    if variant not in MASK_VARIANTS:
        raise CrcInputError(f"The mask variant must be one of {', '.join(MASK_VARIANTS)}; got {variant!r}.")


def crops_folder(workspace: Workspace, config: imaging.PreprocessConfig, variant: str = "reader1") -> Path:
    """Where the crops of ``config`` (and of a mask ``variant``) live; reader 1's carry the bare key."""
    _check_variant(variant)
    key = config_key(config)
    return Workspace.of(workspace).crops_dir / (key if variant == "reader1" else f"{key}-{variant}")


class NothingCropped(CrcInputError):
    """Every patient failed: the crop set in use stays the last good one."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.result = {"key": key, "ok": 0}


# ---------------------------------------------------------------------------------------------
# The manifest


def read_manifest(workspace: Workspace) -> pd.DataFrame:
    """``manifest.csv`` with paths resolved against its folder; names what is missing."""
    workspace = Workspace.of(workspace)
    path = workspace.manifest_csv
    if not path.exists():
        raise CrcInputError(
            f"{path} is missing: no CT volumes are listed for this workspace. Bring in a zip or a folder of "
            f"volumes and masks on the CT & ROI page (or, for the sample, `crc-time --workspace {workspace.root} sample`)."
        )
    read = read_table(path)
    manifest = read.table
    absent = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if absent:
        raise CrcInputError(
            f"{path} lacks the column(s) {', '.join(absent)}; it needs patient_id, image, mask and optionally mask_r2 "
            "(and mask_roi / mask_r2_roi: the segment or ROI of a DICOM-SEG or RTSTRUCT mask)."
        )
    manifest["patient_id"] = patient_ids(manifest, what=str(path), row_numbers=read.row_numbers)
    manifest = manifest.astype(object).fillna("")
    for column in ("image", "mask", "mask_r2"):
        if column in manifest.columns:
            manifest[column] = [str((path.parent / v).resolve()) if v else "" for v in manifest[column]]
    return manifest.reset_index(drop=True)


def file_stamp(path: str) -> str:
    """Size and modification time: a changed file is processed again."""
    if not path:
        return ""
    p = Path(path)
    if p.is_dir():
        entries = [e.stat() for e in p.iterdir() if e.is_file()]
        return f"dir:{len(entries)}:{sum(e.st_size for e in entries)}:{max((e.st_mtime_ns for e in entries), default=0)}"
    try:
        stat = p.stat()
    except OSError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


# ---------------------------------------------------------------------------------------------
# One case (runs in a worker process)


@dataclass(frozen=True)
class _Task:
    patient_id: str
    image: str
    mask: str
    folder: str
    config: imaging.PreprocessConfig
    source: str
    perturbation: tuple[str, int] | None = None  # ("erode" | "dilate", pixels)
    roi: str = ""  # the segment or ROI of a DICOM-SEG / RTSTRUCT mask (manifest's mask_roi)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def failure_reason(message: str, patient_id: str, files: list[str]) -> str:
    """A failure's message without what is particular to the patient (file names, the ID), so
    that the same problem in 315 patients reads as one reason."""
    reason = message
    for path, word in sorted(((f, w) for f, w in files if f), key=lambda pair: -len(pair[0])):
        reason = reason.replace(path, word).replace(Path(path).name, word)
    return reason.replace(f"Patient {patient_id}", "The patient").replace(patient_id, "the patient")


def _run_case(task: _Task) -> dict:
    row = {"patient_id": task.patient_id, "source": task.source}
    files = [(task.image, "the CT"), (task.mask, "the mask")]
    try:
        if not task.image or not task.mask:
            raise CrcInputError("manifest.csv gives no image or no mask for this patient.")
        image, mask = imaging.read_case(task.image, task.mask, task.roi, patient=task.patient_id)
        if task.perturbation is not None:
            if task.config.resample_mask:
                mask = imaging.resample_mask_to_image(mask, image)
            mask = imaging.perturbed_mask(mask, *task.perturbation, task.config.label, where=Path(task.mask).name)
        crop = imaging.preprocess_case(image, mask, task.config, where=Path(task.mask).name)
    except CrcInputError as exc:
        message = str(exc)
        return {**row, "status": "failed", "message": message, "reason": failure_reason(message, task.patient_id, files)}
    except Exception as exc:  # one broken volume must not stop the cohort; say what happened
        message = f"{type(exc).__name__}: {exc}"
        return {**row, "status": "failed", "message": message, "reason": failure_reason(message, task.patient_id, files)}
    folder = Path(task.folder)
    stem = crop_file_stem(task.patient_id)
    png, npz = f"{stem}.png", f"{stem}.npz"
    atomic_write_bytes(folder / png, _png_bytes(crop.to_png_array()))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, pixels=crop.pixels, roi=crop.roi, slice_index=crop.slice_index, box=np.asarray(crop.box))
    atomic_write_bytes(folder / npz, buffer.getvalue())
    return {
        **row, "status": "ok", "message": "", "reason": "", "slice_index": crop.slice_index,
        "box": " ".join(map(str, crop.box)), "roi_area_mm2": round(crop.roi_area_mm2, 2),
        "pixel_mm": round(crop.pixel_mm, 4), "png": png, "npz": npz,
    }


# ---------------------------------------------------------------------------------------------
# The cohort


@dataclass(frozen=True)
class PreprocessResult:
    folder: Path
    index: pd.DataFrame
    processed: int  # cases computed in this run
    cached: int  # cases served from the cache
    seconds: float

    @property
    def failures(self) -> pd.DataFrame:
        return self.index[self.index["status"] != "ok"][["patient_id", "message"]]

    @property
    def n_ok(self) -> int:
        return int((self.index["status"] == "ok").sum())

    def summary(self) -> str:
        return (
            f"{self.n_ok} of {len(self.index)} patients cropped ({self.processed} computed, {self.cached} from the cache) "
            f"in {self.seconds:.1f} s; {len(self.index) - self.n_ok} failed."
        )


def failure_groups(index: pd.DataFrame) -> pd.DataFrame:
    """The failed patients of a crop index grouped by reason: ``reason``, ``patients`` (count),
    ``examples`` (a few IDs), most frequent first."""
    failed = index[index["status"] != "ok"]
    if failed.empty:
        return pd.DataFrame(columns=["reason", "patients", "examples"])
    reasons = failed["reason"].where(failed["reason"].astype(bool), failed["message"]) if "reason" in failed else failed["message"]
    groups = failed.groupby(reasons.to_numpy(), sort=False)["patient_id"]
    table = pd.DataFrame({
        "reason": list(groups.groups),
        "patients": [len(ids) for _, ids in groups],
        "examples": [listing(list(ids), 3) for _, ids in groups],
    })
    return table.sort_values("patients", ascending=False, kind="stable").reset_index(drop=True)


def describe_failures(index: pd.DataFrame, limit: int = 3) -> str:
    groups = failure_groups(index)
    parts = [f"{row.patients} × {row.reason.rstrip('.')}" for row in groups.head(limit).itertuples()]
    more = f"; and {len(groups) - limit} other reasons" if len(groups) > limit else ""
    return "; ".join(parts) + more


def _read_index(folder: Path) -> pd.DataFrame:
    path = folder / INDEX_CSV
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise CrcInputError(f"{path} cannot be read ({exc}); run preprocessing again.") from exc
    missing = [c for c in ("patient_id", "status", "message") if c not in table.columns]
    if missing:
        raise CrcInputError(f"{path} lacks the column(s) {', '.join(missing)}; run preprocessing again.")
    return table.reindex(columns=INDEX_COLUMNS, fill_value="")


def _cached_rows(folder: Path) -> dict[str, dict]:
    if not (folder / INDEX_CSV).exists():
        return {}
    try:
        table = _read_index(folder)
    except CrcInputError:
        return {}  # a damaged index only costs the cache
    rows = {}
    for row in table.to_dict("records"):
        files = [crop_file(folder, row["npz"]), crop_file(folder, row["png"])]
        if row["status"] == "ok" and all(f is not None and f.exists() for f in files):
            rows[row["patient_id"]] = row
    return rows


def preprocess_cohort(
    workspace: Workspace | Path,
    config: imaging.PreprocessConfig | None = None,
    *,
    workers: int | None = None,
    patients: list[str] | None = None,
    progress: Progress | None = None,
    set_in_use: bool = True,
    variant: str = "reader1",
) -> PreprocessResult:
    """Crop every patient of ``manifest.csv`` (or the listed ``patients``), in parallel on
    ``workers`` processes (default: all cores), each holding one volume at a time. With
    ``set_in_use`` (default) the crop set becomes the one later steps use. ``variant``: the mask
    cut with (:data:`MASK_VARIANTS`); any but reader 1's is a crop set of its own, never the one in
    use, and a patient without a second reader's mask is named in it as failed."""
    started = time.perf_counter()
    workspace = Workspace.of(workspace)
    config = config or imaging.PreprocessConfig()
    _check_variant(variant)
    set_in_use = set_in_use and variant == "reader1"
    manifest = read_manifest(workspace)
    listed = set(manifest["patient_id"])
    if variant == "reader2":
        if "mask_r2" not in manifest.columns:
            raise CrcInputError(f"{workspace.manifest_csv} has no mask_r2 column: no second reader's masks are listed. "
                                "Add them on the CT & ROI page (a mask_r2 file per patient) for the reader check.")
        manifest = manifest.assign(mask=manifest["mask_r2"], mask_roi=manifest.get("mask_r2_roi", ""))
    perturbation = None if variant in ("reader1", "reader2") else (variant[:-1], int(variant[-1]))
    if patients is not None:
        unknown = sorted(set(patients) - set(manifest["patient_id"]))
        if unknown:
            raise CrcInputError(f"Not in manifest.csv: {', '.join(unknown[:10])}.")
        manifest = manifest[manifest["patient_id"].isin(patients)]
    folder = crops_folder(workspace, config, variant)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / PARAMS_JSON, json.dumps({
        "key": config_key(config), "config": config.to_dict(), "pixel_parameters": config.pixel_parameters(),
        "description": config.describe(), "variant": variant,
    }, indent=2))
    cached = _cached_rows(folder)
    rows: dict[str, dict] = {}
    tasks = []
    for record in manifest.to_dict("records"):
        roi = str(record.get("mask_roi", "") or "")
        # The ROI chosen is part of the source: another segment of the same SEG is another crop.
        source = f"{file_stamp(record['image'])}|{file_stamp(record['mask'])}" + (f"|roi:{roi}" if roi else "")
        previous = cached.get(record["patient_id"])
        if previous is not None and previous["source"] == source:
            rows[record["patient_id"]] = previous
        else:
            tasks.append(_Task(record["patient_id"], record["image"], record["mask"], str(folder), config, source,
                               perturbation, roi))
    if progress:
        progress(len(rows), len(manifest))
    for row in map_in_workers(_run_case, tasks, workers=workers, progress=progress,
                              done_before=len(rows), total=len(manifest)):
        rows[row["patient_id"]] = row
    order = list(manifest["patient_id"])
    index = pd.DataFrame([rows[p] for p in order]).reindex(columns=INDEX_COLUMNS)
    # Keep earlier rows of the manifest's patients not in this run (a subset run must not forget
    # the rest); a patient the manifest no longer lists leaves the set.
    earlier = {p: r for p, r in cached.items() if p not in rows and p in listed}
    if earlier:
        index = pd.concat([pd.DataFrame(list(earlier.values())).reindex(columns=INDEX_COLUMNS), index], ignore_index=True)
    result = PreprocessResult(folder, index, processed=len(tasks), cached=len(manifest) - len(tasks),
                              seconds=time.perf_counter() - started)
    if result.n_ok == 0:
        atomic_write_csv(folder / FAILED_RUN_CSV, index)
        if not _in_use(workspace, folder):  # the set in use keeps its crops: a run that cropped nothing never empties it
            atomic_write_csv(folder / INDEX_CSV, index)
        raise NothingCropped(
            f"Nothing was cropped: all {len(index)} patients failed — {describe_failures(index)}. "
            "The crop set in use is unchanged.",
            config_key(config),
        )
    atomic_write_csv(folder / INDEX_CSV, index)
    (folder / FAILED_RUN_CSV).unlink(missing_ok=True)
    if set_in_use:
        atomic_write_text(workspace.crops_pointer, json.dumps({"key": config_key(config)}))
    return result


def _in_use(workspace: Workspace, folder: Path) -> bool:
    try:
        return json.loads(workspace.crops_pointer.read_text(encoding="utf-8")).get("key") == folder.name
    except (OSError, ValueError, AttributeError):
        return False


def failed_run(workspace: Workspace | Path, key: str) -> pd.DataFrame | None:
    """The rows of the last run of crop set ``key`` in which no patient could be cropped (None:
    no such run), for saying why."""
    path = Workspace.of(workspace).crops_dir / str(key) / FAILED_RUN_CSV
    if not path.exists():
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise CrcInputError(f"{path} cannot be read ({exc}); run preprocessing again.") from exc
    return table.reindex(columns=INDEX_COLUMNS, fill_value="")


@dataclass(frozen=True)
class CropSet:
    """A crop set on disk: its folder, the parameters that made it and its index."""

    folder: Path
    config: imaging.PreprocessConfig
    index: pd.DataFrame

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def ok(self) -> pd.DataFrame:
        return self.index[self.index["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        return self.index[self.index["status"] != "ok"]


def read_crop_set(folder: Path) -> CropSet:
    """A crop set's parameters and index; a damaged ``params.json`` or ``index.csv`` is named."""
    folder = Path(folder)
    params_path = folder / PARAMS_JSON
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
        config = imaging.PreprocessConfig.from_dict(params["config"], source=str(params_path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"{params_path} is damaged ({exc}); run preprocessing again.") from exc
    return CropSet(folder, config, _read_index(folder))


def latest_crops(workspace: Workspace) -> CropSet | None:
    """The crop set in use (named by ``crops/latest.json``), or None when there is none; it lists
    only the patients ``manifest.csv`` lists (a patient an import dropped is no longer in use)."""
    workspace = Workspace.of(workspace)
    pointer = workspace.crops_pointer
    if not pointer.exists():
        return None
    try:
        key = json.loads(pointer.read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"{pointer} is damaged ({exc}); run preprocessing again.") from exc
    crops = read_crop_set(workspace.crops_dir / str(key))
    listed = listed_ids(workspace)
    if listed is None:
        return crops
    return CropSet(crops.folder, crops.config, crops.index[crops.index["patient_id"].isin(listed)].reset_index(drop=True))


def listed_ids(workspace: Workspace) -> set[str] | None:
    """The patient IDs ``manifest.csv`` lists; None when there is none or it cannot be read (its
    own page says why)."""
    path = Workspace.of(workspace).manifest_csv
    if not path.exists():
        return None
    try:
        read = read_table(path)
        return set(patient_ids(read.table, what=str(path), row_numbers=read.row_numbers))
    except CrcInputError:
        return None


def _variant_of(folder: Path) -> str:
    suffix = folder.name.rpartition("-")[2] if "-" in folder.name else "reader1"
    return suffix if suffix in MASK_VARIANTS else "reader1"


def keep_crops_of_manifest(workspace: Workspace | Path) -> int:
    """After an import: drop from every crop set the rows of patients ``manifest.csv`` no longer
    lists, or lists with other files than the crop was cut from (a merged or replaced patient), so
    that no crop of files a patient no longer has is served. Returns the rows dropped."""
    workspace = Workspace.of(workspace)
    if not workspace.crops_dir.is_dir():
        return 0
    manifest = read_manifest(workspace)
    mask_column = {"reader2": "mask_r2"}
    dropped = 0
    for folder in sorted(p for p in workspace.crops_dir.iterdir() if (p / INDEX_CSV).is_file()):
        column = mask_column.get(_variant_of(folder), "mask")
        sources = {row["patient_id"]: f"{file_stamp(row['image'])}|{file_stamp(row.get(column, ''))}"
                   for row in manifest.to_dict("records")}
        try:
            index = _read_index(folder)
        except CrcInputError:
            continue  # a damaged index is named where it is read
        current = [sources.get(p) == s for p, s in zip(index["patient_id"], index["source"])]
        if not all(current):
            dropped += len(current) - sum(current)
            atomic_write_csv(folder / INDEX_CSV, index[current])
    return dropped


def load_crop(folder: Path, row: dict) -> imaging.CaseCrop | None:
    path = crop_file(folder, row.get("npz"))
    if row.get("status") != "ok" or path is None or not path.is_file():
        return None
    with np.load(path) as data:
        box = tuple(int(v) for v in data["box"])
        return imaging.CaseCrop(
            pixels=data["pixels"], roi=data["roi"], slice_index=int(data["slice_index"]), box=box,
            roi_area_mm2=float(row.get("roi_area_mm2") or 0.0), pixel_mm=float(row.get("pixel_mm") or 0.0),
        )
