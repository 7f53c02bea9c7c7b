"""Two readers' ROIs across a cohort: Dice and HD95 per patient, PyRadiomics features from both
ROIs, and per-feature ICC(2,1) with a paired Wilcoxon test (the paper's inter-observer check).

Writes ``<workspace>/agreement/``: ``masks.csv`` (per patient), ``features_r1.csv`` and
``features_r2.csv`` (per patient × feature), ``features.csv`` (per feature: ICC, CI, p),
``summary.json`` and ``config.json``. The folder is built aside and swapped in whole, so a run
without features leaves no feature table of an earlier run behind. One volume per worker process,
on all cores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from crc_core.imaging import agreement

from crc_core.imaging import volumes as imaging
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.jobs import StepMeter
from crc_core.parallel import Progress, map_in_workers
from crc_core.imaging.preprocess import read_manifest
from crc_core.workspace import Workspace, atomic_write_csv, atomic_write_text, replace_folder

MASKS_CSV, FEATURES_CSV, SUMMARY_JSON, CONFIG_JSON = "masks.csv", "features.csv", "summary.json", "config.json"
#: The last phase of the reader study: each feature's agreement.
FEATURE_PHASE = "ICC(2,1) and Wilcoxon test per feature"
MASK_COLUMNS = ["patient_id", "status", "message", "dice", "hd95_mm", "volume_r1_ml", "volume_r2_ml"]


@dataclass(frozen=True)
class AgreementConfig(JsonConfig):
    """What the reader study computes: PyRadiomics features as well as Dice and HD95 (default),
    and which label value of the masks is the tumour (``None``: the masks' single label)."""

    with_features: bool = True
    label: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.with_features, bool):
            raise CrcInputError(f"with_features must be true or false; got {self.with_features!r}.")
        if self.label is not None and (isinstance(self.label, bool) or not isinstance(self.label, int) or self.label < 1):
            raise CrcInputError(f"The tumour label must be a whole number 1 or more; got {self.label!r}.")


@dataclass(frozen=True)
class ReaderStudyResult:
    masks: pd.DataFrame
    features: pd.DataFrame | None  # per feature; None without PyRadiomics
    seconds: float
    note: str = ""

    def summary(self) -> str:
        ok = self.masks[self.masks["status"] == "ok"]
        if ok.empty:
            return f"None of the {len(self.masks)} patients with two readers could be compared ({self.seconds:.1f} s)."
        text = (f"{len(ok)} of {len(self.masks)} patients with two readers: median Dice {ok['dice'].median():.3f}, "
                f"median HD95 {ok['hd95_mm'].median():.1f} mm")
        if self.features is not None and len(self.features):
            text += (f"; {len(self.features)} PyRadiomics features, "
                     f"{100 * agreement.share_reliable(self.features):.0f}% with ICC ≥ {agreement.RELIABLE_ICC}")
        return text + f" ({self.seconds:.1f} s)." + (f" {self.note}" if self.note else "")


def _one_patient(task: tuple[str, str, str, str, bool, int | None, str, str]) -> dict:
    patient, image_path, mask1_path, mask2_path, with_features, label, roi1, roi2 = task
    row: dict = {"patient_id": patient}
    try:
        image, _ = imaging.read_case(image_path, mask1_path, roi1, patient=patient)
        masks = []
        for who, path, roi in (("reader 1", mask1_path, roi1), ("reader 2", mask2_path, roi2)):
            mask = imaging.read_mask(path, image_path, roi, patient=patient)
            imaging.check_geometry(image, mask)
            masks.append(imaging.binary_mask(mask, label, where=f"{who}'s mask"))
        arrays = [sitk.GetArrayFromImage(m).astype(bool) for m in masks]
        spacing_zyx = tuple(reversed(image.GetSpacing()))
        row.update(agreement.mask_agreement(arrays[0], arrays[1], spacing_zyx))
        if with_features:
            row["features_r1"] = agreement.radiomics_features(image, masks[0])
            row["features_r2"] = agreement.radiomics_features(image, masks[1])
        row.update(status="ok", message="")
    except CrcInputError as exc:
        row.update(status="failed", message=str(exc))
    except Exception as exc:  # one patient's failure must not stop the others
        row.update(status="failed", message=f"{type(exc).__name__}: {exc}")
    return row


def radiomics_available() -> bool:
    try:
        import radiomics  # noqa: F401
    except ImportError:
        return False
    return True


def reader_agreement(
    workspace: Workspace | Path,
    config: AgreementConfig | None = None,
    *,
    workers: int | None = None,
    patients: list[str] | None = None,
    progress: Progress | None = None,
) -> ReaderStudyResult:
    """Agreement of the two readers' masks (``mask`` and ``mask_r2`` in manifest.csv)."""
    started = time.perf_counter()
    config = config or AgreementConfig()
    with_features, label = config.with_features, config.label
    workspace = Workspace.of(workspace)
    manifest = read_manifest(workspace)
    if "mask_r2" not in manifest.columns or not manifest["mask_r2"].astype(bool).any():
        raise CrcInputError("manifest.csv lists no second reader's masks (column mask_r2); there is nothing to compare.")
    manifest = manifest[manifest["mask_r2"].astype(bool)]
    if patients is not None:
        manifest = manifest[manifest["patient_id"].isin(patients)]
    note = ""
    if with_features and not radiomics_available():
        with_features, note = False, "PyRadiomics is not installed: features were skipped."
    tasks = [(r["patient_id"], r["image"], r["mask"], r["mask_r2"], with_features, label, str(r.get("mask_roi", "") or ""),
              str(r.get("mask_r2_roi", "") or "")) for r in manifest.to_dict("records")]
    # Nearly all the time goes into the patients (PyRadiomics twice each); the per-feature tests are quick.
    comparing = "Dice, HD95" + (" and PyRadiomics features of both readers' ROIs" if with_features else " of both readers' ROIs")
    meter = StepMeter(progress, {comparing: 0.95, FEATURE_PHASE: 0.05 if with_features else 0.0})
    meter.tell(comparing, 0, len(tasks), "patients")
    rows = map_in_workers(_one_patient, tasks, workers=workers, progress=meter.part(comparing, "patients"))
    order = {p: i for i, p in enumerate(manifest["patient_id"])}
    rows.sort(key=lambda r: order[r["patient_id"]])
    features_r1 = {r["patient_id"]: r.pop("features_r1") for r in rows if "features_r1" in r}
    features_r2 = {r["patient_id"]: r.pop("features_r2") for r in rows if "features_r2" in r}
    masks = pd.DataFrame(rows).reindex(columns=MASK_COLUMNS)
    features = None
    tables: dict[str, pd.DataFrame] = {MASKS_CSV: masks}
    if features_r1:
        table_r1 = pd.DataFrame.from_dict(features_r1, orient="index").rename_axis("patient_id")
        table_r2 = pd.DataFrame.from_dict(features_r2, orient="index").rename_axis("patient_id")
        tables["features_r1.csv"] = table_r1.reset_index()
        tables["features_r2.csv"] = table_r2.reset_index()
        if len(table_r1) >= 2:
            meter.tell(FEATURE_PHASE, 0, 1, detail=f"{table_r1.shape[1]} features")
            features = agreement.feature_agreement(table_r1, table_r2)
            tables[FEATURES_CSV] = features
    meter.finish()
    result = ReaderStudyResult(masks, features, time.perf_counter() - started, note)

    def write(folder: Path) -> None:
        for name, table in tables.items():
            atomic_write_csv(folder / name, table)
        atomic_write_text(folder / SUMMARY_JSON, json.dumps({"summary": result.summary()}))
        config.save(folder / CONFIG_JSON)

    replace_folder(workspace.agreement_dir, write)
    return result


def read_reader_study(workspace: Workspace) -> tuple[pd.DataFrame, pd.DataFrame | None, str] | None:
    """The saved masks table, feature table (or None) and summary, or None when not computed.
    Damaged files are named, with what to do."""
    folder = Workspace.of(workspace).agreement_dir
    if not (folder / MASKS_CSV).exists():
        return None
    try:
        masks = pd.read_csv(folder / MASKS_CSV, dtype={"patient_id": str}, keep_default_na=False, na_values=[""])
        missing = [c for c in MASK_COLUMNS if c not in masks.columns]
        if missing:
            raise ValueError(f"no column(s) {', '.join(missing)}")
        features = pd.read_csv(folder / FEATURES_CSV) if (folder / FEATURES_CSV).exists() else None
        if features is not None and "icc" not in features.columns:
            raise ValueError(f"{FEATURES_CSV} has no 'icc' column")
        summary = json.loads((folder / SUMMARY_JSON).read_text())["summary"] if (folder / SUMMARY_JSON).exists() else ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(
            f"The reader agreement in {folder} is damaged ({exc}). Compute it again, or delete the folder."
        ) from exc
    return masks, features, summary
