"""Applying a finished run to new patients: another workspace's cohort (an external centre, new
patients) with crops made exactly as the run's, labels optional. The predictions go into the run's
store under the cohort's name (``external:<name>``), beside its training and validation ones.

A run trained on several partitions (k-fold, repeated splits) predicts with the mean probability
of its partition models; a holdout run with its one model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from crc_core.datasets import target_column
from crc_core.errors import CrcInputError
from crc_core.preprocess import crops_folder, preprocess_cohort, read_crop_set
from crc_core.runs import RunRecord, RunStore
from crc_core.tables import PATIENT_ID
from crc_core.workspace import Workspace

Progress = Callable[[int, int], None]
EXTERNAL_PREFIX = "external:"


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
    from crc_core.preprocess import load_crop

    ids, arrays = [], []
    for row in crops.ok.to_dict("records"):
        crop = load_crop(crops.folder, row)
        if crop is not None:
            ids.append(str(row["patient_id"]))
            arrays.append(crop.pixels)
    return ids, np.stack(arrays).astype(np.float32)


def _probabilities(workspace: Workspace, run: RunRecord, source: Workspace, ids: list[str], images, progress) -> np.ndarray:
    from crc_core.linear_models import LinearModel

    folder = workspace.runs_dir / run.run_id
    if run.mode == "finetune":
        from crc_core.backbones import classifier
        from crc_core.devices import plan_device
        from crc_core.finetune import evaluate

        import torch

        plan = plan_device(run.config.get("device", "auto"), run.config.get("precision", "auto"))
        checkpoints = sorted(folder.glob("best*.pt"))
        if not checkpoints:
            raise CrcInputError(f"Run {run.run_id} has no checkpoint in {folder}; it may have been trained elsewhere without it.")
        probs = [evaluate(classifier(run.backbone, weights=path)[0].to(plan.device), images(), None,
                          torch.nn.CrossEntropyLoss(), plan)[1] for path in checkpoints]
        return np.mean(probs, axis=0)
    models = [LinearModel.load(path) for path in sorted(folder.glob("model*.json"))]
    if not models:
        raise CrcInputError(f"Run {run.run_id} has no model file in {folder}.")
    if run.mode == "radiomics":
        from crc_core.features import radiomics_table

        features = radiomics_table(source, ids, label=run.config.get("radiomics_label"), progress=progress)[0].to_numpy(float)
    else:
        from crc_core.devices import plan_device
        from crc_core.features import cached_deep_features

        weights = run.info.get("weights", {})
        features = cached_deep_features(
            source, run.backbone, run.info["crop_key"], ids, images, plan_device("auto", "auto"),
            weights=weights.get("path") if weights.get("pretrained") else "random", seed=int(run.config.get("seed", 0)),
            progress=progress,
        )[0]
    return np.mean([model.predict(features) for model in models], axis=0)


def predict_cohort(workspace: Workspace, run_id: str, source: Workspace | Path, cohort: str, *,
                   progress: Progress | None = None) -> pd.DataFrame:
    """Predict every patient of ``source`` (cropped as the run's crops were) with run ``run_id``
    and store the predictions as cohort ``external:<cohort>``; labels are attached where ``source``
    has them. Returns the predictions."""
    workspace, source = Workspace.of(workspace), Workspace.of(source)
    name = str(cohort).strip()
    if not name or any(c in name for c in ":/\\"):
        raise CrcInputError(f"Name the cohort in a word or two, without ':' or slashes (got {cohort!r}).")
    store = RunStore(workspace)
    run = store.run(run_id)
    if run.status != "done":
        raise CrcInputError(f"Run {run_id} is {run.status}; only a finished run can predict.")
    crops = _crops_like_the_run(workspace, run, source, progress)
    ids, pixels = _images(crops)
    probs = _probabilities(workspace, run, source, ids, lambda: pixels, progress)
    table = pd.DataFrame({"patient_id": ids, "prob": probs})
    if source.labels_csv.exists():
        labels = source.read_table(source.labels_csv)
        column = target_column(run.target)
        if column in labels.columns:
            table = table.merge(labels[[PATIENT_ID, column]].rename(columns={column: "y_true"}), on="patient_id", how="left")
    store.set_predictions(run_id, EXTERNAL_PREFIX + name, table)
    return table
