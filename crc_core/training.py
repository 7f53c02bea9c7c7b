"""Training runs: one target × one backbone × one mode, or a queued grid of them, each cell its own
run in the run store (:mod:`crc_core.runs`).

Modes: ``features`` (the frozen backbone's pooled features, cached, then a penalised logistic
regression — seconds on a laptop), ``finetune`` (the paper's protocol, :mod:`crc_core.finetune`)
and ``radiomics`` (PyRadiomics features of the ROI with the same regression: the handcrafted
comparator). Evaluation: the saved training/validation split (``holdout``, as the paper), the
folds of a k-fold split (``kfold``), or repeated seeded random splits (``repeated``) — the paper's
own stated limitation was one split. Partitions are fixed and written to the run folder before any
model sees a patient; nothing searches seeds for the best-looking split.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import crc_core
from crc_core.backbones import BACKBONES, backbone
from crc_core.configs import JsonConfig
from crc_core.datasets import TARGETS, LabelledCrops, check_classes, labelled_crops
from crc_core.errors import CrcInputError
from crc_core.runs import RunStore
from crc_core.splits import EXTERNAL, TRAIN, VALIDATION
from crc_core.workspace import Workspace, atomic_write_text

MODES = ("features", "finetune", "radiomics")
EVALUATIONS = ("holdout", "kfold", "repeated")
SELECTIONS = ("validation_loss", "inner_split")
SCHEDULES = ("cosine", "step", "constant")
Progress = Callable[[int, int], None]

#: Said on the page and in every fine-tuned run: the paper's model selection looks at the validation cohort.
SELECTION_NOTE = (
    "The paper kept the epoch with the lowest loss; choosing it on the validation cohort lets the "
    "validation cohort take part in selecting the model, so its AUC is optimistic. An inner split of "
    "the training cohort keeps the validation cohort untouched."
)


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """A training request: every target × backbone is its own run. Defaults are the paper's
    protocol; ``mode`` defaults to the fast frozen-feature mode, which a laptop CPU runs in seconds."""

    targets: tuple[str, ...] = ("tsr",)
    backbones: tuple[str, ...] = ("densenet121",)
    mode: str = "features"
    evaluation: str = "holdout"
    n_folds: int = 5
    n_repeats: int = 20
    repeat_train_fraction: float = 0.7
    seed: int = 0
    weights: str = "imagenet"  # "imagenet", "random", or the path of a checkpoint
    download_weights: bool = False
    require_pretrained: bool = False
    crop_key: str | None = None
    allow_missing_crops: bool = False
    # fine-tuning (the paper's protocol)
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    augment: bool = True
    class_weights: bool = True
    selection: str = "validation_loss"
    inner_fraction: float = 0.2
    early_stopping: int = 0
    device: str = "auto"
    precision: str = "auto"
    # radiomics
    radiomics_label: int | None = None

    def __post_init__(self) -> None:
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        names = (self.backbones,) if isinstance(self.backbones, str) else tuple(self.backbones)
        if not targets or any(t not in TARGETS for t in targets):
            raise CrcInputError(f"Targets must be some of {', '.join(TARGETS)}; got {', '.join(map(str, targets)) or 'none'}.")
        object.__setattr__(self, "targets", tuple(dict.fromkeys(targets)))
        if self.mode not in MODES:
            raise CrcInputError(f"The mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if self.mode == "radiomics":
            names = ("radiomics",)
        else:
            if not names:
                raise CrcInputError(f"Choose at least one backbone of {', '.join(BACKBONES)}.")
            names = tuple(backbone(b).name for b in names)
        object.__setattr__(self, "backbones", tuple(dict.fromkeys(names)))
        if self.evaluation not in EVALUATIONS:
            raise CrcInputError(f"The evaluation must be one of {', '.join(EVALUATIONS)}; got {self.evaluation!r}.")
        if self.n_folds not in (5, 10):
            raise CrcInputError(f"Cross-validation uses 5 or 10 folds; got {self.n_folds!r}.")
        if not 2 <= int(self.n_repeats) <= 200:
            raise CrcInputError(f"Repeated splits take 2-200 repeats; got {self.n_repeats!r}.")
        if not 0.3 <= float(self.repeat_train_fraction) <= 0.9:
            raise CrcInputError(f"The training share of repeated splits must be 0.3-0.9; got {self.repeat_train_fraction!r}.")
        if not 1 <= int(self.epochs) <= 1000:
            raise CrcInputError(f"Epochs must be 1-1000; got {self.epochs!r}.")
        if not 2 <= int(self.batch_size) <= 1024:
            raise CrcInputError(f"The batch size must be 2-1024; got {self.batch_size!r}.")
        if not 0 < float(self.lr) <= 1:
            raise CrcInputError(f"The learning rate must be above 0 and at most 1; got {self.lr!r}.")
        if self.schedule not in SCHEDULES:
            raise CrcInputError(f"The schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}.")
        if self.selection not in SELECTIONS:
            raise CrcInputError(f"Model selection must be one of {', '.join(SELECTIONS)}; got {self.selection!r}.")
        if not 0.1 <= float(self.inner_fraction) <= 0.5:
            raise CrcInputError(f"The inner selection share must be 0.1-0.5; got {self.inner_fraction!r}.")
        if int(self.seed) < 0 or int(self.early_stopping) < 0:
            raise CrcInputError("The seed and the early-stopping patience must be 0 or more.")

    def cells(self) -> list["TrainConfig"]:
        """The grid, one config per target × backbone, in the order they run."""
        return [replace(self, targets=(t,), backbones=(b,)) for t in self.targets for b in self.backbones]

    @property
    def target(self) -> str:
        return self.targets[0]

    @property
    def backbone(self) -> str:
        return self.backbones[0]


# ---------------------------------------------------------------------------------------------
# Partitions: fixed before training


@dataclass(frozen=True)
class Partition:
    """One model to train: its training patients and the cohorts it predicts (cohort → mask)."""

    fold: int | None
    train: np.ndarray
    predict: dict[str, np.ndarray]
    select: np.ndarray | None = None  # fine-tuning's selection patients (None: the validation cohort)

    @property
    def tag(self) -> str:
        return "" if self.fold is None else f"-{self.fold}"


def partitions(data: LabelledCrops, config: TrainConfig) -> list[Partition]:
    """The partitions of ``config.evaluation``; external patients are only ever predicted."""
    internal = data.split != EXTERNAL
    external = {"external": data.split == EXTERNAL} if (data.split == EXTERNAL).any() else {}
    if config.evaluation == "holdout":
        validation = data.where(VALIDATION)
        if not validation.any():
            raise CrcInputError("The split has no validation patients; make a 7:3 split on the Cohort page, or "
                                "choose cross-validation or repeated splits.")
        check_classes(data, validation, "the validation cohort")
        return [Partition(None, data.where(TRAIN), {"train": data.where(TRAIN), "validation": validation, **external})]
    if config.evaluation == "kfold":
        fold = data.fold.copy()
        if (fold[internal] < 0).any():
            from sklearn.model_selection import StratifiedKFold

            fold = np.full(len(data), -1)
            positions = np.flatnonzero(internal)
            splitter = StratifiedKFold(n_splits=config.n_folds, shuffle=True, random_state=config.seed)
            for k, (_, held) in enumerate(splitter.split(positions, data.y[positions])):
                fold[positions[held]] = k
        return [Partition(int(k), internal & (fold != k), {"cv": internal & (fold == k)})
                for k in sorted(set(fold[internal].tolist()))]
    from sklearn.model_selection import train_test_split

    positions = np.flatnonzero(internal)
    out = []
    for r in range(config.n_repeats):
        chosen, _ = train_test_split(positions, train_size=config.repeat_train_fraction, stratify=data.y[positions],
                                     random_state=config.seed + r)
        train = np.zeros(len(data), dtype=bool)
        train[chosen] = True
        out.append(Partition(r, train, {"repeat": internal & ~train}))
    return out


def _record_partitions(folder: Path, data: LabelledCrops, parts: list[Partition], config: TrainConfig) -> None:
    document = {
        "evaluation": config.evaluation, "seed": config.seed,
        "partitions": [
            {"fold": p.fold, "train": [data.patient_ids[i] for i in np.flatnonzero(p.train)],
             **{cohort: [data.patient_ids[i] for i in np.flatnonzero(mask)] for cohort, mask in p.predict.items()}}
            for p in parts
        ],
    }
    atomic_write_text(folder / "partitions.json", json.dumps(document))


# ---------------------------------------------------------------------------------------------
# Provenance


def code_version() -> str:
    """The package version and, in a git checkout, the commit (with "+changes" if dirty)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return crc_core.__version__ + (f"+{commit}" if commit else "") + ("+changes" if dirty else "")


class _Heartbeat:
    """Beats for a run every few seconds while a long computation gives no progress."""

    def __init__(self, store: RunStore, run_id: str, every_s: float = 5.0):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(store, run_id, every_s), daemon=True)

    def _beat(self, store: RunStore, run_id: str, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                store.heartbeat(run_id)
            except CrcInputError:
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class RunContext:
    workspace: Workspace
    store: RunStore
    run_id: str
    config: TrainConfig
    progress: Progress | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.workspace.runs_dir / self.run_id

    def sink(self, rows) -> None:
        rows = list(rows)
        self.store.add_metrics(self.run_id, rows)
        epochs = [epoch for scope, _, epoch, name, _ in rows if scope == "epoch" and name.startswith("val_loss")]
        if epochs and self.progress and self.config.mode == "finetune":
            self.progress(epochs[-1] + 1, self.config.epochs)


def _store_predictions(ctx: RunContext, data: LabelledCrops, part: Partition, probs: dict[str, np.ndarray]) -> None:
    for cohort, values in probs.items():
        if not np.isfinite(values).all():
            from crc_core.finetune import TrainingFailed

            raise TrainingFailed(f"The model gives no probability (NaN) for {int((~np.isfinite(values)).sum())} patient(s) "
                                 f"of the {cohort} cohort: training diverged. Lower the learning rate or check the crops.")
    for cohort, mask in part.predict.items():
        table = pd.DataFrame({"patient_id": np.asarray(data.patient_ids)[mask], "y_true": data.y[mask], "prob": probs[cohort]})
        ctx.store.set_predictions(ctx.run_id, cohort, table, fold=part.fold)
        finite = np.isfinite(table["prob"]).all()
        if finite and table["y_true"].nunique() == 2:
            from sklearn.metrics import roc_auc_score

            value = float(roc_auc_score(table["y_true"], table["prob"]))
            ctx.sink([("fold", part.fold if part.fold is not None else -1, 0, f"auc:{cohort}", value)])


def _fast_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition], features: np.ndarray) -> None:
    from crc_core.linear_models import fit_penalised_logistic

    for i, part in enumerate(parts):
        model = fit_penalised_logistic(features[part.train], data.y[part.train], seed=ctx.config.seed)
        model.save(ctx.folder / f"model{part.tag}.json")
        _store_predictions(ctx, data, part, {cohort: model.predict(features[mask]) for cohort, mask in part.predict.items()})
        fold = part.fold if part.fold is not None else -1
        # The fast mode's training curve: cross-validated log-loss along the penalty path.
        ctx.sink([("fold", fold, 0, "penalty_C", model.c)]
                 + [("penalty", i, fold, "cv_log_loss", loss) for i, loss in enumerate(model.cv_log_loss)])
        if ctx.progress:
            ctx.progress(i + 1, len(parts))


def _plan(config: TrainConfig, data: LabelledCrops | None = None):
    from crc_core.devices import plan_device

    probe = None
    if data is not None and config.mode == "finetune":
        probe = _precision_probe(config, data)
    return plan_device(config.device, config.precision, probe=probe,
                       probe_key=f"{config.backbone} {config.mode} {data.images().shape[-1] if data is not None else ''}")


def _precision_probe(config: TrainConfig, data: LabelledCrops):
    from crc_core.finetune import precision_probe

    return precision_probe(config.backbone, data.images()[:8], data.y[:8])


def _features_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    from crc_core.features import cached_deep_features

    config = ctx.config
    plan = _plan(config)
    ctx.store.update(ctx.run_id, info={"device": plan.to_dict()})
    features, weights, cached = cached_deep_features(
        ctx.workspace, config.backbone, data.crops.key, data.patient_ids, data.images, plan, weights=config.weights,
        download=config.download_weights, require_pretrained=config.require_pretrained, seed=config.seed,
        progress=ctx.progress,
    )
    ctx.store.update(ctx.run_id, info={"weights": weights.to_dict(), "features_cached": cached,
                                       "feature_dim": int(features.shape[1])})
    if not weights.pretrained:
        ctx.notes.append(f"Random initialisation: {weights.note}.")
    _fast_mode(ctx, data, parts, features)


def _radiomics_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    from crc_core.features import radiomics_table

    table, cached = radiomics_table(ctx.workspace, data.patient_ids, label=ctx.config.radiomics_label,
                                    progress=ctx.progress)
    ctx.store.update(ctx.run_id, info={"features_cached": cached, "feature_dim": int(table.shape[1]),
                                       "weights": {"pretrained": False, "source": "handcrafted", "path": "", "note": ""}})
    _fast_mode(ctx, data, parts, table.to_numpy(dtype=float))


def _finetune_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    from crc_core.backbones import classifier
    from crc_core.finetune import FinetuneSettings, evaluate, fit, world

    config = ctx.config
    plan = _plan(config, data)
    ctx.store.update(ctx.run_id, info={"device": plan.to_dict(), "selection_note": SELECTION_NOTE
                                       if config.selection == "validation_loss" else "inner split of the training cohort"})
    settings = FinetuneSettings(config.epochs, config.batch_size, config.lr, config.momentum, config.weight_decay,
                                config.schedule, config.augment, config.class_weights, config.early_stopping, config.seed)
    images = data.images()
    for part in parts:
        done = ctx.folder / f"done{part.tag}"
        if done.exists():
            continue  # a resumed run keeps what finished
        import torch

        torch.manual_seed(config.seed)
        model, weights = classifier(config.backbone, weights=config.weights, download=config.download_weights,
                                    require_pretrained=config.require_pretrained)
        ctx.store.update(ctx.run_id, info={"weights": weights.to_dict()})
        if not weights.pretrained and not ctx.notes:
            ctx.notes.append(f"Random initialisation: {weights.note}.")
        select_mask = part.select if part.select is not None else _selection(data, part, config)
        train_mask = part.train & ~select_mask
        result = fit(model, (images[train_mask], data.y[train_mask]), (images[select_mask], data.y[select_mask]), settings,
                     plan, ctx.folder, sink=ctx.sink, tag=part.tag, config=config.to_dict())
        loss_fn = torch.nn.CrossEntropyLoss()
        probs = {cohort: evaluate(model, images[mask], data.y[mask], loss_fn, plan)[1] for cohort, mask in part.predict.items()}
        _store_predictions(ctx, data, part, probs)
        ctx.store.update(ctx.run_id, info={f"best_epoch{part.tag}": result.best_epoch, f"stopped_early{part.tag}": result.stopped_early})
        if world()[0] == 0:
            atomic_write_text(done, str(result.best_epoch))


def _selection(data: LabelledCrops, part: Partition, config: TrainConfig) -> np.ndarray:
    """The patients fine-tuning selects its epoch on: the validation cohort (the paper), or a seeded
    stratified inner share of the training patients (then the validation cohort stays unseen)."""
    if config.selection == "validation_loss" and "validation" in part.predict:
        return part.predict["validation"].copy()
    from sklearn.model_selection import train_test_split

    positions = np.flatnonzero(part.train)
    _, chosen = train_test_split(positions, test_size=config.inner_fraction, stratify=data.y[positions],
                                 random_state=config.seed)
    mask = np.zeros(len(data), dtype=bool)
    mask[chosen] = True
    return mask


MODE_RUNNERS = {"features": _features_mode, "finetune": _finetune_mode, "radiomics": _radiomics_mode}


class _QuietStore:
    """What processes other than rank 0 of a torchrun job write to: nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _distributed_run_id(run_id: str | None) -> str:
    """Under torchrun, rank 0's run id, handed to every process."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    shared = [run_id]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def train_run(workspace: Workspace, config: TrainConfig | None, *, store: RunStore | None = None,
              progress: Progress | None = None, group_id: str | None = None, job_id: str | None = None,
              resume: str | None = None) -> str:
    """Train one cell (``config`` of one target and backbone) as one run and return its id. The run
    is created first, so a refusal (no labels, one class, ...) is recorded on it too. Under
    ``torchrun`` every process trains, rank 0 alone writes."""
    from crc_core.finetune import world
    from crc_core.jobs import JobStopped

    workspace = Workspace.of(workspace)
    store = store or RunStore(workspace)
    rank, size = world()
    if size > 1:
        if config is not None and config.mode != "finetune":
            raise CrcInputError("torchrun spreads fine-tuning over processes; run the features and radiomics modes without it.")
        if rank != 0:
            run_id = _distributed_run_id(None)
            config = TrainConfig.from_dict(store.run(run_id).config)
            ctx = RunContext(workspace, _QuietStore(), run_id, config)
            data = labelled_crops(workspace, config.target, crop_key=config.crop_key,
                                  allow_missing_crops=config.allow_missing_crops)
            _finetune_mode(ctx, data, partitions(data, config))
            return run_id
    if resume:
        run = store.run(resume)
        if run.status == "done":
            raise CrcInputError(f"Run {resume} has finished already; there is nothing to resume.")
        config, run_id = TrainConfig.from_dict(run.config), resume
        store.claim(run_id)
    else:
        if len(config.cells()) != 1:
            raise ValueError("train_run trains one target × backbone; use train_grid for several")
        run_id = store.create_run(target=config.target, backbone=config.backbone, mode=config.mode, config=config.to_dict(),
                                  info={"code_version": code_version()}, group_id=group_id, job_id=job_id)
    if size > 1:
        _distributed_run_id(run_id)
        store.update(run_id, info={"world_size": size})
    ctx = RunContext(workspace, store, run_id, config, progress)
    try:
        with _Heartbeat(store, run_id):
            data = labelled_crops(workspace, config.target, crop_key=config.crop_key,
                                  allow_missing_crops=config.allow_missing_crops)
            parts = partitions(data, config)
            if not (ctx.folder / "partitions.json").exists():
                _record_partitions(ctx.folder, data, parts, config)
            store.update(run_id, info={**data.provenance(), "counts": {s: data.counts(data.where(s)) for s in (TRAIN, VALIDATION)},
                                       "n_patients": len(data), "warnings": data.warnings})
            MODE_RUNNERS[config.mode](ctx, data, parts)
    except (JobStopped, KeyboardInterrupt):
        store.finish(run_id, "stopped", f"stopped by the user; `crc-time train --resume {run_id}` goes on")
        raise
    except CrcInputError as exc:
        store.finish(run_id, "failed", str(exc))
        raise
    except BaseException as exc:
        store.finish(run_id, "failed", f"unexpected error: {exc!r}")
        raise
    store.finish(run_id, "done", " ".join(ctx.notes + data.warnings))
    return run_id


def train_grid(workspace: Workspace, config: TrainConfig, *, progress: Progress | None = None,
               job_id: str | None = None) -> list[str]:
    """Every target × backbone of ``config``, one after the other, each its own run."""
    import uuid

    store = RunStore(workspace)
    cells = config.cells()
    group = uuid.uuid4().hex[:8] if len(cells) > 1 else None
    ids = []
    for i, cell in enumerate(cells):
        def cell_progress(done: int, total: int, i: int = i) -> None:
            if progress:
                progress(i * 1000 + int(1000 * done / max(total, 1)), len(cells) * 1000)

        ids.append(train_run(workspace, cell, store=store, progress=cell_progress, group_id=group, job_id=job_id))
    return ids


def _summaries(metrics: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """run id → cohort → {auc, sd, n} from fold-scope AUC metrics."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    aucs = metrics[metrics["name"].str.startswith("auc:")]
    for (run_id, name), rows in aucs.groupby(["run_id", "name"], sort=False):
        values = rows["value"].dropna().to_numpy()
        out.setdefault(run_id, {})[name.split(":", 1)[1]] = {
            "auc": float(values.mean()) if len(values) else math.nan,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan, "n": int(len(values)),
        }
    return out


def summary(store: RunStore, run_id: str) -> dict[str, Any]:
    """AUCs of a finished run: per cohort for a holdout run, mean ± SD over folds or repeats."""
    return _summaries(store.metrics([run_id], "fold")).get(run_id, {})


# ---------------------------------------------------------------------------------------------
# For the page and the CLI


def readiness(workspace: Workspace) -> list[str]:
    """What is still missing before a model can train, each with the step that makes it."""
    from crc_core.preprocess import latest_crops
    from crc_core.splits import read_split

    workspace = Workspace.of(workspace)
    missing = []
    if not workspace.labels_csv.exists():
        missing.append("No labels yet: build and save them on the Labels page.")
    try:
        crops = latest_crops(workspace)
    except CrcInputError as exc:
        crops = None
        missing.append(str(exc))
    else:
        if crops is None or crops.ok.empty:
            missing.append("No crops yet: run preprocessing on the CT & ROI page.")
    try:
        if read_split(workspace) is None:
            missing.append("No split yet: make one on the Cohort page.")
    except CrcInputError as exc:
        missing.append(str(exc))
    return missing


def live_status(store: RunStore, run_id: str) -> dict[str, Any]:
    """Where a running (or finished) run is: epoch, ETA, images/s, device, precision, weights."""
    run = store.run(run_id)
    epochs = store.metrics([run_id], "epoch")
    seconds = epochs.loc[epochs["name"] == "seconds", "value"]
    speed = epochs.loc[epochs["name"] == "images_per_s", "value"]
    done = int(epochs["epoch"].max()) + 1 if len(epochs) else 0
    total = int(run.config.get("epochs", 0)) if run.mode == "finetune" else 0
    device = run.info.get("device", {})
    return {
        "run": run, "epoch": done, "epochs": total,
        "eta_s": float(seconds.mean()) * (total - done) if total and len(seconds) else None,
        "images_per_s": float(speed.iloc[-1]) if len(speed) else None,
        "device": f"{device.get('device', '?')} {device.get('precision', '')}".strip(),
        "weights": run.info.get("weights", {}),
    }


def runs_overview(store: RunStore) -> pd.DataFrame:
    """One row per run with its AUCs: per cohort for holdout, mean ± SD over folds otherwise."""
    runs = store.runs()
    summaries = _summaries(store.metrics([r.run_id for r in runs], "fold"))  # one query for all runs
    rows = []
    for run in runs:
        row = {"run_id": run.run_id, "target": run.target, "backbone": run.backbone, "mode": run.mode,
               "evaluation": run.config.get("evaluation", "holdout"), "status": run.status,
               "weights": "ImageNet" if run.pretrained else ("handcrafted" if run.mode == "radiomics" else "random init")}
        for cohort, value in summaries.get(run.run_id, {}).items():
            text = f"{value['auc']:.3f}" + (f" ± {value['sd']:.3f} (n = {value['n']})" if value["n"] > 1 else "")
            row[f"AUC {cohort}"] = text
        rows.append(row)
    return pd.DataFrame(rows)


def fold_aucs(store: RunStore, run_ids: list[str]) -> pd.DataFrame:
    """AUC of every fold or repeat of the runs: ``run_id``, ``cohort``, ``fold``, ``auc``."""
    metrics = store.metrics(run_ids, "fold")
    aucs = metrics[metrics["name"].str.startswith("auc:")].copy()
    aucs["cohort"] = aucs["name"].str.split(":").str[1]
    return aucs.rename(columns={"step": "fold", "value": "auc"})[["run_id", "cohort", "fold", "auc"]]
