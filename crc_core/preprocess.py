"""A cohort's volumes to crops: the manifest, one worker per volume on all cores, and a cache.

Crops go to ``<workspace>/crops/<key>/`` where ``key`` is a hash of the
:class:`~crc_core.imaging.PreprocessConfig`: ``<patient>.png`` (as the paper), ``<patient>.npz``
(the float input, the ROI, the slice index), ``index.csv`` (one row per patient: status, slice,
box, the source files' size and time stamps) and ``params.json``. A re-run with the same
parameters reuses every crop whose source files are unchanged. ``crops/latest.json`` names the
crops the later steps (Train) use. A failing patient gets a row with its message; the others go on.
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

from crc_core import imaging
from crc_core.errors import CrcInputError
from crc_core.parallel import Progress, map_in_workers
from crc_core.workspace import Workspace, atomic_write_bytes, atomic_write_csv, atomic_write_text

CROPS_DIR = "crops"
LATEST_JSON = "latest.json"
INDEX_CSV = "index.csv"
PARAMS_JSON = "params.json"
MANIFEST_COLUMNS = ("patient_id", "image", "mask")
INDEX_COLUMNS = [
    "patient_id", "status", "message", "slice_index", "box", "roi_area_mm2", "pixel_mm", "png", "npz", "source",
]


def config_key(config: imaging.PreprocessConfig) -> str:
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def crops_folder(workspace: Workspace, config: imaging.PreprocessConfig) -> Path:
    return workspace.root / CROPS_DIR / config_key(config)


# ---------------------------------------------------------------------------------------------
# The manifest


def read_manifest(workspace: Workspace) -> pd.DataFrame:
    """``manifest.csv`` with paths resolved against its folder; names what is missing."""
    path = workspace.manifest_csv
    if not path.exists():
        raise CrcInputError(
            f"{path} is missing: no CT volumes are listed for this workspace. Build the sample with "
            f"`crc-time --workspace {workspace.root} sample`, or upload a zip of volumes and masks."
        )
    try:
        manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise CrcInputError(f"{path} cannot be read as a CSV table ({exc}).") from exc
    absent = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if absent:
        raise CrcInputError(
            f"{path} lacks the column(s) {', '.join(absent)}; it needs patient_id, image, mask and optionally mask_r2."
        )
    duplicated = manifest["patient_id"][manifest["patient_id"].duplicated()].unique()
    if len(duplicated):
        raise CrcInputError(f"{path}: patient(s) listed twice: {', '.join(duplicated[:10])}.")
    for column in ("image", "mask", "mask_r2"):
        if column in manifest.columns:
            manifest[column] = [str((path.parent / v).resolve()) if v else "" for v in manifest[column]]
    return manifest.reset_index(drop=True)


def _stamp(path: str) -> str:
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


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _run_case(task: _Task) -> dict:
    row = {"patient_id": task.patient_id, "source": task.source}
    try:
        if not task.image or not task.mask:
            raise CrcInputError("manifest.csv gives no image or no mask for this patient.")
        image = imaging.read_volume(task.image)
        mask = imaging.read_volume(task.mask)
        crop = imaging.preprocess_case(image, mask, task.config, where=Path(task.mask).name)
    except CrcInputError as exc:
        return {**row, "status": "failed", "message": str(exc)}
    except Exception as exc:  # one broken volume must not stop the cohort; say what happened
        return {**row, "status": "failed", "message": f"{type(exc).__name__}: {exc}"}
    folder = Path(task.folder)
    png, npz = f"{task.patient_id}.png", f"{task.patient_id}.npz"
    atomic_write_bytes(folder / png, _png_bytes(crop.to_png_array()))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, pixels=crop.pixels, roi=crop.roi, slice_index=crop.slice_index, box=np.asarray(crop.box))
    atomic_write_bytes(folder / npz, buffer.getvalue())
    return {
        **row, "status": "ok", "message": "", "slice_index": crop.slice_index,
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

    def summary(self) -> str:
        ok = int((self.index["status"] == "ok").sum())
        return (
            f"{ok} of {len(self.index)} patients cropped ({self.processed} computed, {self.cached} from the cache) "
            f"in {self.seconds:.1f} s; {len(self.index) - ok} failed."
        )


def _cached_rows(folder: Path) -> dict[str, dict]:
    index = folder / INDEX_CSV
    if not index.exists():
        return {}
    table = pd.read_csv(index, dtype={"patient_id": str, "source": str}, keep_default_na=False)
    rows = {}
    for row in table.to_dict("records"):
        if row["status"] == "ok" and (folder / str(row["npz"])).exists() and (folder / str(row["png"])).exists():
            rows[row["patient_id"]] = row
    return rows


def preprocess_cohort(
    workspace: Workspace | Path,
    config: imaging.PreprocessConfig | None = None,
    *,
    workers: int | None = None,
    patients: list[str] | None = None,
    progress: Progress | None = None,
) -> PreprocessResult:
    """Crop every patient of ``manifest.csv`` (or the listed ``patients``), in parallel on
    ``workers`` processes (default: all cores), each holding one volume at a time."""
    started = time.perf_counter()
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(Path(workspace))
    config = config or imaging.PreprocessConfig()
    manifest = read_manifest(workspace)
    if patients is not None:
        unknown = sorted(set(patients) - set(manifest["patient_id"]))
        if unknown:
            raise CrcInputError(f"Not in manifest.csv: {', '.join(unknown[:10])}.")
        manifest = manifest[manifest["patient_id"].isin(patients)]
    folder = crops_folder(workspace, config)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / PARAMS_JSON, json.dumps({"key": config_key(config), "config": config.to_dict(),
                                                         "description": config.describe()}, indent=2))
    cached = _cached_rows(folder)
    rows: dict[str, dict] = {}
    tasks = []
    for record in manifest.to_dict("records"):
        source = f"{_stamp(record['image'])}|{_stamp(record['mask'])}"
        previous = cached.get(record["patient_id"])
        if previous is not None and previous["source"] == source:
            rows[record["patient_id"]] = previous
        else:
            tasks.append(_Task(record["patient_id"], record["image"], record["mask"], str(folder), config, source))
    if progress:
        progress(len(rows), len(manifest))
    for row in map_in_workers(_run_case, tasks, workers=workers, progress=progress,
                              done_before=len(rows), total=len(manifest)):
        rows[row["patient_id"]] = row
    order = list(manifest["patient_id"])
    index = pd.DataFrame([rows[p] for p in order]).reindex(columns=INDEX_COLUMNS)
    # Keep earlier rows of patients not in this run (a subset run must not forget the rest).
    earlier = {p: r for p, r in cached.items() if p not in rows}
    if earlier:
        index = pd.concat([pd.DataFrame(list(earlier.values())).reindex(columns=INDEX_COLUMNS), index], ignore_index=True)
    atomic_write_csv(folder / INDEX_CSV, index)
    atomic_write_text(workspace.root / CROPS_DIR / LATEST_JSON, json.dumps({"key": config_key(config)}))
    return PreprocessResult(folder, index, processed=len(tasks), cached=len(manifest) - len(tasks),
                            seconds=time.perf_counter() - started)


def latest_crops(workspace: Workspace) -> tuple[Path, imaging.PreprocessConfig, pd.DataFrame] | None:
    """The crops made last (folder, parameters, index), or None when there are none."""
    pointer = workspace.root / CROPS_DIR / LATEST_JSON
    if not pointer.exists():
        return None
    try:
        folder = workspace.root / CROPS_DIR / json.loads(pointer.read_text())["key"]
        params = json.loads((folder / PARAMS_JSON).read_text())
        index = pd.read_csv(folder / INDEX_CSV, dtype={"patient_id": str}, keep_default_na=False)
    except (OSError, ValueError, KeyError) as exc:
        raise CrcInputError(f"The crops in {pointer.parent} are damaged ({exc}); run preprocessing again.") from exc
    return folder, imaging.PreprocessConfig(**params["config"]), index


def load_crop(folder: Path, row: dict) -> imaging.CaseCrop | None:
    path = Path(folder) / str(row.get("npz", ""))
    if row.get("status") != "ok" or not path.is_file():
        return None
    with np.load(path) as data:
        box = tuple(int(v) for v in data["box"])
        return imaging.CaseCrop(
            pixels=data["pixels"], roi=data["roi"], slice_index=int(data["slice_index"]), box=box,
            roi_area_mm2=float(row.get("roi_area_mm2") or 0.0), pixel_mm=float(row.get("pixel_mm") or 0.0),
        )
