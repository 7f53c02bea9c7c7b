"""What a model learns from: one target's labels (``labels.csv``), the crops of the crop set in use
(the CT & ROI step) and the split (the Cohort step), joined per patient and checked.

Crops are decoded from their ``.npz`` arrays once per run and kept in memory, never re-read per
epoch. Problems are said in the words of the step that fixes them.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.imaging.preprocess import CropSet, latest_crops, load_crop, read_crop_set
from crc_core.cohort.splits import EXTERNAL, FOLD_COLUMN, TRAIN, VALIDATION, read_split
from crc_core.tables import PATIENT_ID, listing
from crc_core.workspace import Workspace

#: The four targets: the name a user types → (labels.csv column, what high means).
TARGETS: dict[str, tuple[str, str]] = {
    "tsr": ("tsr_high", "tumour-stroma ratio > 50% (high stroma)"),
    "til": ("til_high", "TIL grade 2-3 (high infiltration)"),
    "is": ("is_high", "Immune Score > 2 (high)"),
    "time": ("time_high", "TIME score 2-3 (high)"),
}
#: Fewer training patients than this in a class: a warning, the model is unreliable.
FEW_PER_CLASS = 10


def target_column(target: str) -> str:
    if target not in TARGETS:
        raise CrcInputError(f"Unknown target {target!r}; choose one of {', '.join(TARGETS)}.")
    return TARGETS[target][0]


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class LabelledCrops:
    """One target's patients with a label and a crop: IDs, 0/1 labels, their split (and fold, -1
    for none), the crop set, and what was left out and why."""

    target: str
    patient_ids: list[str]
    y: np.ndarray
    split: np.ndarray
    fold: np.ndarray
    crops: CropSet
    labels_hash: str
    split_hash: str
    warnings: list[str] = field(default_factory=list)
    _images: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.patient_ids)

    def images(self) -> np.ndarray:
        """Every patient's crop as float32 (N, C, H, W) in [0, 1], decoded once."""
        if self._images is None:
            rows = self.crops.index.set_index("patient_id")
            arrays = []
            for patient in self.patient_ids:
                crop = load_crop(self.crops.folder, rows.loc[patient].to_dict())
                if crop is None:
                    raise CrcInputError(f"The crop of {patient} in {self.crops.folder} is missing; run preprocessing again.")
                arrays.append(crop.pixels)
            self._images = np.stack(arrays).astype(np.float32)
        return self._images

    def where(self, split: str) -> np.ndarray:
        return self.split == split

    def counts(self, mask: np.ndarray | None = None) -> dict[int, int]:
        y = self.y if mask is None else self.y[mask]
        return {0: int((y == 0).sum()), 1: int((y == 1).sum())}

    def provenance(self) -> dict[str, str]:
        return {"crop_key": self.crops.key, "labels_hash": self.labels_hash, "split_hash": self.split_hash,
                "crop_set": self.crops.config.describe()}


def _crop_set(workspace: Workspace, crop_key: str | None) -> CropSet:
    if crop_key:
        folder = workspace.crops_dir / crop_key
        if not folder.is_dir():
            raise CrcInputError(f"There is no crop set {crop_key!r} in {workspace.crops_dir}. Run preprocessing on the CT & ROI page.")
        return read_crop_set(folder)
    crops = latest_crops(workspace)
    if crops is None or crops.ok.empty:
        raise CrcInputError(
            "No crops yet: run preprocessing on the CT & ROI page (or `crc-time preprocess`) before training."
        )
    return crops


def labelled_crops(
    workspace: Workspace,
    target: str,
    *,
    crop_key: str | None = None,
    allow_missing_crops: bool = False,
) -> LabelledCrops:
    """The training material of ``target``. Refuses: no labels, no crops or no split yet (naming the
    step to run); labelled patients without a crop (listed; ``allow_missing_crops`` trains on the
    others); one class only in the training cohort (with the counts). Warns: fewer than
    :data:`FEW_PER_CLASS` training patients in a class; patients without a label."""
    workspace = Workspace.of(workspace)
    column = target_column(target)
    if not workspace.labels_csv.exists():
        raise CrcInputError("No labels yet: build and save them on the Labels page (or `crc-time labels`) before training.")
    labels_bytes = workspace.labels_csv.read_bytes()
    labels = workspace.read_table(workspace.labels_csv)
    if column not in labels.columns:
        raise CrcInputError(f"{workspace.labels_csv} has no {column!r} column; build the labels again on the Labels page.")
    saved = read_split(workspace)
    if saved is None:
        raise CrcInputError("No split yet: make the training/validation split on the Cohort page (or `crc-time split`).")
    crops = _crop_set(workspace, crop_key)
    warnings: list[str] = []

    known = labels[[PATIENT_ID, column]].dropna(subset=[column])
    unlabelled = sorted(set(labels[PATIENT_ID]) - set(known[PATIENT_ID]))
    if unlabelled:
        warnings.append(f"{len(unlabelled)} patient(s) have no {column} label and are left out: {listing(unlabelled)}.")
    cropped = set(crops.ok["patient_id"])
    missing = [p for p in known[PATIENT_ID] if p not in cropped]
    if missing:
        reasons = crops.index.set_index("patient_id")["reason"] if "reason" in crops.index else None
        detail = "; ".join(
            f"{p} ({reasons[p]})" if reasons is not None and p in reasons.index and reasons[p] else f"{p} (not in the crop set)"
            for p in missing[:5]
        )
        if not allow_missing_crops:
            raise CrcInputError(
                f"{len(missing)} labelled patient(s) have no crop: {detail}{' …' if len(missing) > 5 else ''}. Fix their "
                f"images on the CT & ROI page, or choose to train on the {len(known) - len(missing)} others."
            )
        warnings.append(f"Trained without {len(missing)} labelled patient(s) that have no crop: {listing(missing)}.")
    known = known[known[PATIENT_ID].isin(cropped)]
    split_table = saved.table.set_index(PATIENT_ID)
    no_split = [p for p in known[PATIENT_ID] if p not in split_table.index]
    if no_split:
        warnings.append(f"{len(no_split)} patient(s) are in no split and are left out: {listing(no_split)}.")
        known = known[~known[PATIENT_ID].isin(no_split)]
    ids = list(known[PATIENT_ID])
    y = known[column].astype(int).to_numpy()
    split = split_table.loc[ids, "split"].astype(str).to_numpy()
    fold = (pd.to_numeric(split_table.loc[ids, FOLD_COLUMN], errors="coerce").fillna(-1).astype(int).to_numpy()
            if FOLD_COLUMN in split_table.columns else np.full(len(ids), -1))
    buffer = io.StringIO()
    saved.table.to_csv(buffer, index=False)
    data = LabelledCrops(target, ids, y, split, fold, crops, file_hash(labels_bytes), file_hash(buffer.getvalue().encode()), warnings)
    check_classes(data, data.where(TRAIN), "the training cohort")
    return data


def check_classes(data: LabelledCrops, mask: np.ndarray, where: str, *, y: np.ndarray | None = None) -> None:
    """Refuse one class only; warn under :data:`FEW_PER_CLASS` patients in a class. ``y``: labels
    other than the saved ones (a partition's own)."""
    labels = (data.y if y is None else np.asarray(y))[mask]
    counts = {0: int((labels == 0).sum()), 1: int((labels == 1).sum())}
    column, meaning = TARGETS[data.target]
    if min(counts.values()) == 0:
        raise CrcInputError(
            f"{where.capitalize()} has one class only for {column} ({counts[0]} low, {counts[1]} high): a model cannot "
            "learn to tell them apart. Check the label's cut-off on the Labels page or the split on the Cohort page."
        )
    if min(counts.values()) < FEW_PER_CLASS:
        warning = (f"Only {min(counts.values())} patients of one class in {where} for {column} ({counts[0]} low, "
                   f"{counts[1]} high): the model and its AUC are unreliable.")
        if warning not in data.warnings:
            data.warnings.append(warning)


__all__ = ["TARGETS", "LabelledCrops", "labelled_crops", "target_column", "TRAIN", "VALIDATION", "EXTERNAL"]
