"""Applying a finished run to new patients: another workspace's cohort (an external centre, new
patients) with crops made exactly as the run's, labels optional. The predictions go into the run's
store under the cohort's name (``external:<name>``), beside its training and validation ones.

A run trained on several partitions (k-fold, repeated splits) predicts with the mean probability
of its partition models; a holdout run with its one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from crc_core.configs import JsonConfig
from crc_core.training.datasets import target_column
from crc_core.errors import CrcInputError
from crc_core.jobs import StepMeter
from crc_core.imaging.preprocess import crops_folder, preprocess_cohort, read_crop_set
from crc_core.runs.store import RunMode, RunRecord, RunStore, load_run_model
from crc_core.tables import PATIENT_ID
from crc_core.workspace import Workspace

Progress = Callable[[int, int], None]
EXTERNAL_PREFIX = "external:"


@dataclass(frozen=True)
class PredictConfig(JsonConfig):
    """Which run predicts which other workspace's patients, stored under which cohort name."""

    run_id: str = ""
    source: str = ""
    cohort: str = ""

    def __post_init__(self) -> None:
        if not self.run_id:
            raise CrcInputError("Name the run to predict with.")
        if not str(self.source).strip():
            raise CrcInputError("Name the other centre's workspace folder (the one with its CT volumes and masks).")
        object.__setattr__(self, "cohort", check_cohort_name(self.cohort or Path(str(self.source)).name))


def check_cohort_name(cohort: str) -> str:
    """A cohort's name in a word or two, without ':' or slashes (it becomes ``external:<name>``)."""
    name = str(cohort).strip()
    if not name or any(c in name for c in ":/\\") or any(ord(c) < 32 for c in name):
        raise CrcInputError(f"Name the cohort in a word or two, without ':' or slashes (got {cohort!r}).")
    return name


def _volume_files(path: str) -> list[Path]:
    """A manifest's image as its files: the volume file, or a DICOM series folder's files by name."""
    where = Path(path)
    if where.is_dir():
        return sorted((f for f in where.iterdir() if f.is_file()), key=lambda f: f.name)
    return [where] if where.is_file() else []


def _same_volume(a: list[Path], b: list[Path]) -> bool:
    import filecmp
    import os

    if len(a) != len(b) or not a:
        return False
    return all(os.path.samefile(x, y) or filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))


def check_other_patients(workspace: Workspace, source: Workspace) -> None:
    """An external cohort is other patients than the run's own: refuse the workspace itself, and a
    folder holding one of its patients' CT volumes (the same file, or the same bytes: a copy of the
    workspace, or one linking its images) — their predictions would count as held out while the
    model was developed on them. Volumes are compared byte for byte only where sizes agree."""
    import os

    if source.root.resolve() == workspace.root.resolve() or (
            source.root.is_dir() and workspace.root.is_dir() and os.path.samefile(source.root, workspace.root)):
        raise CrcInputError(f"{source.root} is this workspace itself: its patients are the ones the run was developed on, "
                            "not an external cohort. Name the other centre's workspace folder.")
    if not (workspace.manifest_csv.exists() and source.manifest_csv.exists()):
        return
    from crc_core.imaging.preprocess import read_manifest

    own: dict[tuple[int, int], list[tuple[str, list[Path]]]] = {}
    mine, theirs = read_manifest(workspace), read_manifest(source)
    for pid, image in zip(mine["patient_id"], mine["image"]):
        files = _volume_files(image)
        if files:
            own.setdefault((len(files), sum(f.stat().st_size for f in files)), []).append((str(pid), files))
    same = []
    for pid, image in zip(theirs["patient_id"], theirs["image"]):
        files = _volume_files(image)
        size = (len(files), sum(f.stat().st_size for f in files)) if files else None
        match = next((own_id for own_id, own_files in own.get(size, []) if _same_volume(files, own_files)), None)
        if match is not None:
            same.append(f"{pid}" + ("" if match == str(pid) else f" (this workspace's {match})"))
            if len(same) == 5:  # enough to refuse and to name
                break
    if same:
        raise CrcInputError(f"{source.root} holds CT volumes of this workspace's own patients ({', '.join(same)}): an "
                            "external cohort must be other patients, or its AUC would count patients the model was "
                            "developed on as held out. Name the other centre's workspace folder.")


def _crops_like_the_run(workspace: Workspace, run: RunRecord, source: Workspace, progress: Progress | None):
    key = run.info.get("crop_key")
    if not key:
        raise CrcInputError(f"Run {run.run_id} records no crop set, so new crops cannot be made like its own.")
    config = read_crop_set(workspace.crops_dir / key).config
    folder = crops_folder(source, config)
    if not (folder / "index.csv").exists():
        preprocess_cohort(source, config, progress=progress, set_in_use=False)
    crops = read_crop_set(folder)
    if crops.ok.empty:
        raise CrcInputError(f"No patient of {source.root} could be cropped like the run's crops; see the CT & ROI page there.")
    return crops


def _images(crops) -> tuple[list[str], np.ndarray]:
    from crc_core.imaging.preprocess import load_crop

    ids, arrays = [], []
    for row in crops.ok.to_dict("records"):
        crop = load_crop(crops.folder, row)
        if crop is not None:
            ids.append(str(row["patient_id"]))
            arrays.append(crop.pixels)
    return ids, np.stack(arrays).astype(np.float32)


def score_images(workspace: Workspace, run: RunRecord, pixels: np.ndarray, folds=None,
                 progress: Progress | None = None, centres=None) -> np.ndarray:
    """A network run's probability of the high class for each crop (N, C, H, W): by the model of
    ``folds[i]`` where given (a patient scored by the fold that held it out), else by the mean of
    every fold's model (a holdout run's one model). Each model is rebuilt by
    :func:`crc_core.runs.store.load_run_model`, on the device and in the precision the run trained with."""
    import torch

    from crc_core.networks.devices import plan_device
    from crc_core.networks.onnx_forward import fastest_forward
    from crc_core.training.features import deep_features
    from crc_core.training.finetune import evaluate
    from crc_core.runs.store import NO_FOLD

    if not run.has_network:
        raise CrcInputError(f"Run {run.run_id} has no network to score crops with ({run.mode}).")
    plan = plan_device(run.config.get("device", "auto"), run.config.get("precision", "auto"))
    every = run.folder(workspace).folds()
    graphs = run.folder(workspace).path / "onnx"
    wanted = [None if f is None or f == NO_FOLD else int(f) for f in (folds if folds is not None else [None] * len(pixels))]
    out = np.full(len(pixels), np.nan)
    features = None
    # ``progress`` counts crops through networks, forward only: once for a features run (its folds
    # share one backbone), once per model for a fine-tuned one.
    groups = {fold: np.array([w == fold for w in wanted]) for fold in dict.fromkeys(wanted)}
    passes = len(pixels) if run.mode == RunMode.FEATURES else sum(
        int(rows.sum()) * (len(every) if fold is None else 1) for fold, rows in groups.items())
    counted = [0]

    def scored(before: int):
        return (lambda done, total, message="": progress(before + done, passes)) if progress else None

    for fold, rows in groups.items():
        models = [load_run_model(workspace, run, f) for f in (every if fold is None else [fold])]
        if run.mode == RunMode.FEATURES:
            # The folds share one frozen backbone: its features are computed once.
            # Forward only: through ONNX Runtime where a measurement here finds it faster (graphs kept
            # beside the run, checked against their golden pair before use).
            backbone = fastest_forward(models[0].network.backbone, plan, graphs, pixels.shape[1:])
            features = deep_features(backbone, pixels, plan, scored(0)) if features is None else features
            out[rows] = np.mean([m.linear.predict(harmonised(workspace, run, m.fold, features[rows], centres, rows))
                                 for m in models], axis=0)
            continue
        probs = []
        for model in models:
            network = fastest_forward(model.network.to(plan.device), plan, graphs, pixels.shape[1:])
            probs.append(evaluate(network, pixels[rows], None, torch.nn.CrossEntropyLoss(), plan,
                                  progress=scored(counted[0]))[1])
            counted[0] += int(rows.sum())
        out[rows] = np.mean(probs, axis=0)
    return out


def harmonised(workspace: Workspace, run: RunRecord, fold, features: np.ndarray, centres, rows=None) -> np.ndarray:
    """``features`` through the ComBat the run's fold learned, or as they are for a run without one."""
    if run.config.get("harmonise", "none") in ("none", None):
        return features
    from crc_core.training.harmonisation import ComBatModel

    if centres is None:
        raise CrcInputError(f"Run {run.run_id} harmonises features across centres (ComBat): these patients' centres are "
                            "needed (a 'centre' column in their clinical table).")
    chosen = np.asarray(centres) if rows is None else np.asarray(centres)[rows]
    return ComBatModel.load(run.folder(workspace).combat(fold)).apply(features, chosen)


def centres_of(source: Workspace, run: RunRecord, ids: list[str]):
    if run.config.get("harmonise", "none") in ("none", None):
        return None
    column = run.config.get("centre_column", "centre")
    clinical = source.read_clinical().set_index("patient_id")
    if column not in clinical.columns:
        raise CrcInputError(f"Run {run.run_id} harmonises features across centres: {source.clinical_csv} needs a {column!r} "
                            "column naming each patient's centre.")
    return clinical[column].reindex(ids).astype(str).to_numpy()


def _probabilities(workspace: Workspace, run: RunRecord, source: Workspace, ids: list[str], pixels: np.ndarray,
                   progress: Progress | None) -> np.ndarray:
    """The run's probability for each patient: the mean over its folds' models (one for holdout)."""
    if run.mode == RunMode.RADIOMICS:
        from crc_core.training.features import radiomics_table

        models = [load_run_model(workspace, run, fold) for fold in run.folder(workspace).folds()]
        features = radiomics_table(source, ids, label=run.config.get("radiomics_label"), progress=progress)[0].to_numpy(float)
        centres = centres_of(source, run, ids)
        return np.mean([model.linear.predict(harmonised(workspace, run, model.fold, features, centres)) for model in models],
                       axis=0)
    return score_images(workspace, run, pixels, progress=progress, centres=centres_of(source, run, ids))


def cohort_workspace(workspace: Workspace, run, cohort: str) -> Workspace:
    """The workspace holding a cohort's volumes and masks: the run's own for its cohorts, the other
    centre's for an ``external:`` cohort (where ``crc-time predict --from`` found it)."""
    if not cohort.startswith(EXTERNAL_PREFIX):
        return workspace
    where = run.info.get("external_sources", {}).get(cohort)
    name = cohort.removeprefix(EXTERNAL_PREFIX)
    if not where:
        raise CrcInputError(f"The {cohort} cohort was predicted before CRC-TIME kept where its patients came from: predict "
                            f"it again (the Evaluate page's Other centres tab, or crc-time predict --run {run.run_id} "
                            f"--from DIR --cohort {name}), then check.")
    if not Path(where).is_dir():
        raise CrcInputError(f"The {cohort} cohort came from {where}, which is not on this machine now: bring that "
                            f"workspace back, or predict the centre again from where it is.")
    return Workspace(Path(where))


def predict_cohort(workspace: Workspace, run_id: str, source: Workspace | Path, cohort: str, *,
                   progress: Progress | None = None) -> pd.DataFrame:
    """Predict every patient of ``source`` (cropped as the run's crops were) with run ``run_id``
    and store the predictions as cohort ``external:<cohort>``; labels are attached where ``source``
    has them. Returns the predictions."""
    workspace, source = Workspace.of(workspace), Workspace.of(source)
    name = check_cohort_name(cohort)
    if not source.root.is_dir():
        raise CrcInputError(f"{source.root} is not a folder on this machine: name the other centre's workspace folder.")
    store = RunStore(workspace)
    run = store.run(run_id)
    if not run.done:
        raise CrcInputError(f"Run {run_id} is {run.status}; only a finished run can predict.")
    if run.mode == RunMode.COMBINED:
        raise CrcInputError(f"Run {run_id} is a combined model: it needs the clinical variables of the new patients as well; "
                            f"predict with its DL run {run.info.get('parent_run', '?')} instead.")
    check_other_patients(workspace, source)
    # One counter, one named phase after another (found in use: 120/120 of the crops, then back to
    # 32/120 of the scores).
    cropping, scoring = "cutting the crops like the run's", ("PyRadiomics features" if run.mode == RunMode.RADIOMICS
                                                              else "scoring the crops")
    meter = StepMeter(progress, {cropping: 1.0, "reading the crops": 0.1, scoring: 1.0})
    meter.tell(cropping, 0, 1, "patients")
    crops = _crops_like_the_run(workspace, run, source, meter.part(cropping, "patients"))
    meter.tell("reading the crops", 0, len(crops.ok), "patients")
    ids, pixels = _images(crops)
    meter.tell(scoring, 0, len(ids), "patients" if run.mode == RunMode.RADIOMICS else "crops")
    probs = _probabilities(workspace, run, source, ids, pixels,
                           meter.part(scoring, "patients" if run.mode == RunMode.RADIOMICS else "crops"))
    meter.finish()
    table = pd.DataFrame({"patient_id": ids, "prob": probs})
    if source.labels_csv.exists():
        labels = source.read_table(source.labels_csv)
        column = target_column(run.target)
        if column in labels.columns:
            table = table.merge(labels[[PATIENT_ID, column]].rename(columns={column: "y_true"}), on="patient_id", how="left")
    store.set_predictions(run_id, EXTERNAL_PREFIX + name, table)
    # Where the centre's volumes are, for checks that cut its crops again (robustness).
    # Read again: another centre may have been predicted with this run while these crops were cut.
    sources = {**store.run(run_id).info.get("external_sources", {}), EXTERNAL_PREFIX + name: str(source.root.resolve())}
    store.update(run_id, info={"external_sources": sources})
    return table
