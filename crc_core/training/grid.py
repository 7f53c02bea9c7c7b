"""Training runs: one target × one backbone × one mode, or a grid of them, each cell its own run in
the run store (:mod:`crc_core.runs.store`). Reads top to bottom like torchvision's reference ``train.py``:
the config, :func:`train_run` (one run: checks, partitions, the mode's trainer, the outcome),
:func:`train_grid`, then the modes and the pieces they share.

Modes: ``features`` (the frozen backbone's pooled features, cached, then a penalised logistic
regression — seconds on a laptop), ``finetune`` (:mod:`crc_core.training.finetune`) and ``radiomics``
(PyRadiomics features of the ROI with the same regression: the handcrafted comparator).
Evaluation: the saved training/validation split (``holdout``, as the paper), the folds of a k-fold
split (``kfold``), or repeated seeded random splits (``repeated``) — the paper's own stated
limitation was one split. Partitions are fixed and written to the run folder before any model sees
a patient; nothing searches seeds for the best-looking split. Whatever a label learns from data
(the Immune Score's marker medians) is learned again inside each partition's training part.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

import crc_core
from crc_core.networks.backbones import BACKBONES, backbone
from crc_core.configs import JsonConfig
from crc_core.training.datasets import TARGETS, LabelledCrops, check_classes, labelled_crops, target_column
from crc_core.errors import CrcInputError
from crc_core.training.finetune import FinetuneConfig, TrainingFailed, world
from crc_core.jobs import HEARTBEAT, JobStopped, ProgressNote, StepMeter, retold
from crc_core.runs.store import NO_FOLD, OUT_OF_FOLD, RunFolder, RunMode, RunStore, resume_hint
from crc_core.cohort.splits import EXTERNAL, TRAIN, VALIDATION
from crc_core.workspace import Workspace, atomic_write_text

MODES = tuple(str(m) for m in RunMode if m.trained)
EVALUATIONS = ("holdout", "kfold", "repeated")
#: ComBat across centres in the features and radiomics modes: none; learned on each partition's
#: training patients and applied to the rest (every centre needs training patients); or fitted on
#: every patient of the partition, validation and external ones too (transductive, named so).
HARMONISATIONS = ("none", "training", "transductive")
#: The first phase of every run: reading its data, building its network, loading its weights.
STARTING = "starting"
#: ``progress(done, total, message)``: how far the run is, in words a user reads (a
#: :class:`crc_core.jobs.ProgressNote`, with its phase and ETA).
Progress = Callable[..., None]
Say = Callable[[str], None]

#: Said on the page and in every fine-tuned run: the paper's model selection looks at the validation cohort.
SELECTION_NOTE = (
    "The paper kept the epoch with the lowest loss; choosing it on the validation cohort lets the "
    "validation cohort take part in selecting the model, so its AUC is optimistic. An inner split of "
    "the training cohort keeps the validation cohort untouched."
)
#: Flat fine-tuning keys of configs written before the fine-tune settings were nested (version 1).
_FLAT_FINETUNE_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "augment", "class_weights",
                       "selection", "inner_fraction", "early_stopping")


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """A training request: every target × backbone is its own run. ``mode`` defaults to the fast
    frozen-feature mode, which a laptop CPU runs in seconds; ``finetune`` holds the fine-tuning
    protocol (:class:`crc_core.training.finetune.FinetuneConfig`) and is None in the other modes."""

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
    device: str = "auto"
    precision: str = "auto"
    radiomics_label: int | None = None
    harmonise: str = "none"
    centre_column: str = "centre"
    finetune: FinetuneConfig | None = None

    def __post_init__(self) -> None:
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        names = (self.backbones,) if isinstance(self.backbones, str) else tuple(self.backbones)
        if not targets or any(t not in TARGETS for t in targets):
            raise CrcInputError(f"Targets must be some of {', '.join(TARGETS)}; got {', '.join(map(str, targets)) or 'none'}.")
        object.__setattr__(self, "targets", tuple(dict.fromkeys(targets)))
        if self.mode not in MODES:
            raise CrcInputError(f"The mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if self.mode == RunMode.RADIOMICS:
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
        if int(self.seed) < 0:
            raise CrcInputError("The seed must be 0 or more.")
        if self.harmonise not in HARMONISATIONS:
            raise CrcInputError(f"Harmonisation must be one of {', '.join(HARMONISATIONS)}; got {self.harmonise!r}.")
        if self.harmonise != "none" and self.mode == RunMode.FINETUNE:
            raise CrcInputError("ComBat harmonises feature tables: choose the features or radiomics mode for it.")
        finetune = self.finetune
        if isinstance(finetune, Mapping):
            finetune = FinetuneConfig.from_dict(finetune)
        # The fine-tuning protocol belongs to fine-tuning: a features run's config shows none of it.
        if self.mode == RunMode.FINETUNE:
            finetune = finetune or FinetuneConfig()
        else:
            finetune = None
        object.__setattr__(self, "finetune", finetune)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str | None = None) -> "TrainConfig":
        """Also reads the flat fine-tuning keys of runs stored before they were nested, and of the
        command line's flags (``--epochs`` ...)."""
        if isinstance(values, Mapping):
            values = dict(values)
            flat = {k: values.pop(k) for k in _FLAT_FINETUNE_KEYS if k in values}
            nested = values.get("finetune") or {}
            if flat and isinstance(nested, Mapping):  # anything else is refused by its type below
                values["finetune"] = {**nested, **flat}
        return super().from_dict(values, source=source)

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        if self.finetune is None:
            values.pop("finetune")
        else:
            values["finetune"] = self.finetune.to_dict()
        return values

    def cells(self) -> list["TrainConfig"]:
        """The grid, one config per target × backbone, in the order they run."""
        return [replace(self, targets=(t,), backbones=(b,)) for t in self.targets for b in self.backbones]

    @property
    def target(self) -> str:
        return self.targets[0]

    @property
    def backbone(self) -> str:
        return self.backbones[0]

    def describe(self) -> str:
        """``TSR × DenseNet-121 (frozen features)`` for progress and messages."""
        from crc_core.runs.views import MODE_NAMES

        name = BACKBONES[self.backbone].title if self.backbone in BACKBONES else "PyRadiomics"
        return f"{self.target.upper()} × {name} ({MODE_NAMES[RunMode(self.mode)]})"


# ---------------------------------------------------------------------------------------------
# One run


def train_run(workspace: Workspace, config: TrainConfig | None, *, store: RunStore | None = None,
              progress: Progress | None = None, say: Say | None = None, group_id: str | None = None,
              job_id: str | None = None, resume: str | None = None, restart: bool = False) -> str:
    """Train one cell (``config`` of one target and backbone) as one run and return its id.

    Everything a user can fix is checked before the run is written: no labels, no crops, one class,
    an unknown crop set, a weights file that is not one — so a refusal leaves no failed run behind.
    ``resume``: go on with a stopped or interrupted run from its last checkpoints (``restart``:
    start its unfinished folds again from epoch 0). Under ``torchrun`` every process trains, rank
    0 alone writes."""
    workspace = Workspace.of(workspace)
    store = store or RunStore(workspace)
    rank, size = world()
    if size > 1 and rank != 0:
        asked = config if config is not None else TrainConfig.from_dict(store.run(resume).config)
        return _follow_rank_zero(workspace, store, asked.device)
    if resume:
        run = store.run(resume)
        if run.done:
            raise CrcInputError(f"Run {resume} has finished already; there is nothing to resume.")
        if run.status == "running":
            raise CrcInputError(f"Run {resume} is still running (on {run.host or 'another machine'}); stop it first.")
        if not run.mode.trained:
            raise CrcInputError(f"Run {resume} is a {run.mode} model: it is fitted, not trained, and has nothing to resume.")
        config, run_id = TrainConfig.from_dict(run.config, source=f"run {resume}"), resume
    else:
        if config is None or len(config.cells()) != 1:
            raise ValueError("train_run trains one target × backbone; use train_grid for several")
        run_id = None
    if size > 1 and config.mode != RunMode.FINETUNE:
        raise CrcInputError("torchrun spreads fine-tuning over processes; run the features and radiomics modes without it.")
    meter = StepMeter(progress, {STARTING: 0.0})
    meter.tell(STARTING, 0, 1, detail="reading the labels, the split and the crops", count=False)
    data = labelled_crops(workspace, config.target, crop_key=config.crop_key, allow_missing_crops=config.allow_missing_crops)
    fold_notes: list[str] = []
    parts = partitions(workspace, data, config, notes=fold_notes, save_folds=True)
    if say:
        for note in fold_notes:
            say(note)
    _check_weights(config)
    if config.harmonise != "none":  # what ComBat would refuse about the centres, before anything is written
        from crc_core.training.harmonisation import check_centres, patient_centres

        check_centres(patient_centres(workspace.read_clinical(), config.centre_column, data.patient_ids),
                      [(p.train, list(p.predict.values())) for p in parts], transductive=config.harmonise == "transductive")
    if run_id is None:
        run_id = store.create_run(target=config.target, backbone=config.backbone, mode=config.mode, config=config.to_dict(),
                                  info={"code_version": code_version()}, group_id=group_id, job_id=job_id)
    else:
        _check_resumable(store, store.run(run_id), parts, restart)
        store.claim(run_id)
        store.update(run_id, job_id=job_id)
    if size > 1:
        _share_run_id(run_id, config.device)
        store.update(run_id, info={"world_size": size})
    ctx = RunContext(workspace, store, run_id, config, len(parts), progress, say, notes=list(fold_notes), meter=meter)
    try:
        with HEARTBEAT.beating(lambda: store.heartbeat(run_id)):
            if not ctx.folder.partitions.exists():
                _record_partitions(ctx.folder, data, parts, config)
            store.update(run_id, info={**data.provenance(), "counts": {s: data.counts(data.where(s)) for s in (TRAIN, VALIDATION)},
                                       "n_patients": len(data), "n_partitions": len(parts), "warnings": data.warnings,
                                       "label_cutoffs": {str(p.fold): p.cutoffs for p in parts if p.cutoffs}})
            MODE_RUNNERS[config.mode](ctx, data, parts)
    except (JobStopped, KeyboardInterrupt):
        store.finish(run_id, "stopped", f"stopped by the user; {resume_hint(run_id)}")
        raise
    except CrcInputError as exc:
        store.finish(run_id, "failed", str(exc))
        raise
    except BaseException as exc:
        store.finish(run_id, "failed", f"unexpected error: {exc!r}")
        raise
    store.finish(run_id, "done", " ".join(dict.fromkeys(ctx.notes + data.warnings)))
    if progress:
        progress(1, 1, ProgressNote(f"{config.describe()}: done", phase="done", done=1, total=1, eta_s=0.0))
    return run_id


def train_grid(workspace: Workspace, config: TrainConfig, *, progress: Progress | None = None, say: Say | None = None,
               job_id: str | None = None) -> list[str]:
    """Every target × backbone of ``config``, one after the other, each its own run. A grid of
    several runs keeps its plan in the run store first (:meth:`RunStore.set_plan`), so a Stop leaves
    a record of the runs that never started and :func:`resume_job` goes on with them."""
    import uuid

    store = RunStore(workspace)
    cells = config.cells()
    group = uuid.uuid4().hex[:8] if len(cells) > 1 else None
    if group:
        store.set_plan(group, config.to_dict())
    return _train_cells(workspace, store, cells, list(range(len(cells))), group, progress=progress, say=say, job_id=job_id)


def queued_cells(store: RunStore, group_id: str | None) -> list[TrainConfig]:
    """The runs a job of several asked for that never started (no run of its group has their target
    and backbone), in the order they were to run; none for a single run."""
    plan = store.plan(group_id)
    if plan is None:
        return []
    started = {(r.target, r.backbone) for r in store.runs() if r.group_id == group_id}
    return [c for c in TrainConfig.from_dict(plan, source=f"the plan of job group {group_id}").cells()
            if (c.target, c.backbone) not in started]


def never_started_text(cells: list[TrainConfig]) -> str:
    """``the 1 run of this job that never started: TIL × ResNet-34 (frozen features)``."""
    if not cells:
        return ""
    return (f"the {len(cells)} run{'s' if len(cells) > 1 else ''} of this job that never started: "
            + ", ".join(c.describe() for c in cells))


@dataclass(frozen=True)
class Unfinished:
    """A training job with work left: its stopped or interrupted run (None when the job stopped
    between two runs) and the runs it asked for that never started. ``run_id`` is what
    ``crc-time train --resume`` takes to go on with both."""

    run_id: str
    stopped: Any  # the stopped or interrupted RunRecord, or None
    queued: list[TrainConfig]

    def describe(self) -> str:
        """What Resume does, in words."""
        rest = never_started_text(self.queued)
        if self.stopped is None:
            return f"The training job stopped before {rest}. Resume trains them."
        run = self.stopped
        head = f"Run {run.run_id} ({_described(run)}) is {run.status}: {run.message}."
        return head + (f" Resume goes on with it, then trains {rest}." if rest else "")


def unfinished(store: RunStore) -> list[Unfinished]:
    """Every training job with work left, newest first: a stopped or interrupted run (with the runs
    of its job that never started), or a job whose runs all finished but which stopped before the
    rest of its runs started."""
    runs = store.runs()
    found, seen_groups = [], set()
    for run in runs:  # newest first
        if not run.mode.trained or run.status == "running":
            if run.group_id:
                seen_groups.add(run.group_id)  # a running job's queue is its own business
            continue
        if run.group_id in seen_groups and run.group_id:
            continue
        if run.status in ("stopped", "interrupted"):
            found.append(Unfinished(run.run_id, run, queued_cells(store, run.group_id)))
        elif run.group_id:
            queued = queued_cells(store, run.group_id)
            if queued and not any(r.group_id == run.group_id and r.status in ("stopped", "interrupted") for r in runs):
                found.append(Unfinished(run.run_id, None, queued))
        if run.group_id:
            seen_groups.add(run.group_id)
    return found


def resume_job(workspace: Workspace, run_id: str, *, restart: bool = False, progress: Progress | None = None,
               say: Say | None = None, job_id: str | None = None) -> list[str]:
    """Go on with the job ``run_id`` belongs to: the run itself from its last checkpoints when it
    was stopped or interrupted (``restart``: its unfinished folds from epoch 0), then every run its
    job asked for that never started. Returns the ids of the runs trained."""
    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(run_id)
    queued = queued_cells(store, run.group_id)
    plan = store.plan(run.group_id)
    order = [(c.target, c.backbone) for c in TrainConfig.from_dict(plan).cells()] if plan else [(run.target, run.backbone)]
    ids = []
    if not run.done or not queued:
        cell_progress = _cell_progress(progress, order.index((run.target, run.backbone)), len(order), _described(run))
        ids.append(train_run(workspace, None, store=store, progress=cell_progress, say=say, job_id=job_id, resume=run_id,
                             restart=restart))
    positions = [order.index((c.target, c.backbone)) for c in queued]
    return ids + _train_cells(workspace, store, queued, positions, run.group_id, progress=progress, say=say, job_id=job_id,
                              of=len(order))


def _described(run) -> str:
    try:
        return TrainConfig.from_dict(run.config).describe()
    except CrcInputError:
        return f"{run.target.upper()} × {run.backbone}"


def _cell_progress(progress: Progress | None, position: int, of: int, what: str) -> Progress | None:
    """A run's progress as part of its job: run ``position`` of ``of`` on one counter that only goes forward."""
    if progress is None:
        return None

    def tell(done: int, total: int, message: str = "") -> None:
        where = f" ({position + 1} of {of})" if of > 1 else ""
        # The note keeps its fields (phase, ETA of the run at hand) under the job's words.
        progress(position * 1000 + int(1000 * done / max(total, 1)), of * 1000, retold(message, f"{what}{where}: {message}", f"{what}{where}"))

    return tell


def _train_cells(workspace: Workspace, store: RunStore, cells: list[TrainConfig], positions: list[int], group: str | None,
                 *, progress: Progress | None, say: Say | None, job_id: str | None, of: int | None = None) -> list[str]:
    """Train ``cells`` one after the other (``positions``: where each stands in its job of ``of``
    runs). A Stop names, on the stopped run and on the terminal, the runs that never started."""
    of = of or len(cells)
    ids = []
    try:
        for cell, position in zip(cells, positions):
            ids.append(train_run(workspace, cell, store=store, progress=_cell_progress(progress, position, of, cell.describe()),
                                 say=say, group_id=group, job_id=job_id))
    except (JobStopped, KeyboardInterrupt):
        left = queued_cells(store, group)
        mine = [r for r in store.runs() if r.group_id == group]  # newest first
        if left and mine and say:
            say(f"Stopped before {never_started_text(left)}; `crc-time train --resume {mine[0].run_id}` goes on with "
                "the job and trains them.")
        raise
    return ids


def _check_weights(config: TrainConfig) -> None:
    """A weights file named by the user is read and matched to the backbone before anything runs."""
    if config.mode == RunMode.RADIOMICS or config.weights in ("imagenet", "random"):
        return
    from crc_core.networks.backbones import check_weights_file

    check_weights_file(config.weights, config.backbone)


def _check_resumable(store: RunStore, run, parts: list["Partition"], restart: bool) -> None:
    """A fine-tune goes on from each unfinished fold's ``last.pt``. A fold that trained epochs but
    lost its checkpoint, or whose checkpoint is damaged, is said by name, and starts again from
    epoch 0 only when asked (``restart``), its earlier epochs forgotten."""
    folder = run.folder(store.workspace)
    if run.mode != RunMode.FINETUNE:
        return
    from crc_core.training.finetune import read_checkpoint

    epochs = store.metrics([run.run_id], "epoch")
    for part in parts:
        if folder.done_marker(part.fold).exists():
            continue
        last = folder.last_checkpoint(part.fold)
        trained = epochs[epochs["fold"] == (NO_FOLD if part.fold is None else part.fold)]["epoch"]
        if restart:
            last.unlink(missing_ok=True)
            folder.best_checkpoint(part.fold).unlink(missing_ok=True)
            store.clear_metrics_after(run.run_id, -1, fold=part.fold)
            continue
        where = "" if part.fold is None else f" of fold {part.fold}"
        if not last.exists() and len(trained):
            raise CrcInputError(
                f"The checkpoint {last.name}{where} of run {run.run_id} is gone, so its {int(trained.max()) + 1} epoch(s) cannot "
                f"be gone on from. Start it again from epoch 0 (the Train page's \"Start again\", or `crc-time train --resume "
                f"{run.run_id} --restart`); its earlier epochs are then forgotten."
            )
        if last.exists():
            read_checkpoint(last)


# ---------------------------------------------------------------------------------------------
# Partitions: fixed before training, each with its own labels


@dataclass(frozen=True)
class Partition:
    """One model to train: its training patients, the cohorts it predicts (cohort → mask), and
    the labels of every patient under the cut-offs learned from its training patients."""

    fold: int | None
    train: np.ndarray
    predict: dict[str, np.ndarray]
    y: np.ndarray
    cutoffs: dict[str, Any] = field(default_factory=dict)


def partitions(workspace: Workspace, data: LabelledCrops, config: TrainConfig, *,
               notes: list[str] | None = None, save_folds: bool = False) -> list[Partition]:
    """The partitions of ``config.evaluation``, each with its labels; external patients are only
    ever predicted. Refuses a partition whose training or held-out patients hold one class.
    k-fold on a split without folds uses the folds saved for it (:func:`crc_core.cohort.splits.kfold_assignment`);
    what changed since they were drawn goes to ``notes``, and ``save_folds`` keeps them once every
    partition is accepted."""
    drawn = None
    internal = data.split != EXTERNAL
    external = {"external": data.split == EXTERNAL} if (data.split == EXTERNAL).any() else {}
    if config.evaluation == "holdout":
        validation = data.where(VALIDATION)
        if not validation.any():
            raise CrcInputError("The split has no validation patients; make a 7:3 split on the Cohort page, or "
                                "choose cross-validation or repeated splits.")
        shapes = [(None, data.where(TRAIN), {"train": data.where(TRAIN), "validation": validation, **external})]
    elif config.evaluation == "kfold":
        fold = data.fold.copy()
        if (fold[internal] < 0).any():
            # A split without folds (the saved 7:3): the folds drawn for it are saved and reused, so
            # a change of labels does not redraw them; a change of patients does, and says so.
            from crc_core.cohort.splits import kfold_assignment

            positions = np.flatnonzero(internal)
            drawn = kfold_assignment(workspace, [data.patient_ids[i] for i in positions], data.y[positions],
                                     target=config.target, n_folds=config.n_folds, seed=config.seed)
            fold = np.full(len(data), -1)
            fold[positions] = drawn.fold
        shapes = [(int(k), internal & (fold != k), {"cv": internal & (fold == k)}) for k in sorted(set(fold[internal].tolist()))]
    else:
        from sklearn.model_selection import train_test_split

        positions = np.flatnonzero(internal)
        shapes = []
        for r in range(config.n_repeats):
            chosen, _ = train_test_split(positions, train_size=config.repeat_train_fraction, stratify=data.y[positions],
                                         random_state=config.seed + r)
            train = np.zeros(len(data), dtype=bool)
            train[chosen] = True
            shapes.append((r, train, {"repeat": internal & ~train}))
    parts = []
    for fold, train, predict in shapes:
        y, cutoffs = _labels_of_part(workspace, data, train)
        part = Partition(fold, train, predict, y, cutoffs)
        name = "the training cohort" if fold is None else f"the training patients of fold {fold}"
        check_classes(data, train, name, y=y)
        if fold is None:
            check_classes(data, predict["validation"], "the validation cohort", y=y)
        parts.append(part)
    if drawn is not None:
        if drawn.message and notes is not None:
            notes.append(drawn.message)
        if save_folds:
            drawn.save()
    return parts


def _labels_of_part(workspace: Workspace, data: LabelledCrops, train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The target's labels with every data-driven cut-off learned from ``train`` alone (the IS
    marker medians, which the Immune Score and TIME labels depend on); the saved labels where the
    target's rule learns nothing from data."""
    from crc_core.labels.rules import labels_for_training_part

    if data.target not in ("is", "time"):  # TSR and TIL cut-offs are fixed numbers, learned from nothing
        return data.y, {}
    rebuilt = labels_for_training_part(workspace, [data.patient_ids[i] for i in np.flatnonzero(train)])
    if rebuilt is None:
        return data.y, {}
    column = target_column(data.target)
    values = rebuilt.labels.set_index("patient_id")[column].reindex(data.patient_ids)
    if values.isna().any():
        missing = [p for p, v in zip(data.patient_ids, values) if pd.isna(v)]
        raise CrcInputError(f"The {column} label of {', '.join(missing[:5])} cannot be rebuilt from the pathology table; "
                            "build the labels again on the Labels page.")
    return values.astype(int).to_numpy(), {m: c["value"] for m, c in rebuilt.cutoffs.items()}


def _record_partitions(folder: RunFolder, data: LabelledCrops, parts: list[Partition], config: TrainConfig) -> None:
    ids = np.asarray(data.patient_ids)
    document = {
        "evaluation": config.evaluation, "seed": config.seed,
        "partitions": [
            {"fold": p.fold, "train": ids[p.train].tolist(),
             **{cohort: ids[mask].tolist() for cohort, mask in p.predict.items()},
             "labels": dict(zip(ids.tolist(), p.y.astype(int).tolist())), "cutoffs": p.cutoffs}
            for p in parts
        ],
    }
    atomic_write_text(folder.partitions, json.dumps(document))


# ---------------------------------------------------------------------------------------------
# What a running run shares with its modes


@dataclass
class RunContext:
    workspace: Workspace
    store: RunStore
    run_id: str
    config: TrainConfig
    n_parts: int
    progress: Progress | None = None
    say: Say | None = None
    notes: list[str] = field(default_factory=list)
    #: The run's progress, phase by phase (:class:`crc_core.jobs.StepMeter`); each mode declares its phases.
    meter: StepMeter | None = None

    def __post_init__(self) -> None:
        if self.meter is None:
            self.meter = StepMeter(self.progress, {STARTING: 0.0})

    def starting(self, what: str) -> None:
        """Say what the run does before its first batch or feature (minutes on a CPU, found in use)."""
        self.meter.tell(STARTING, 0, 1, detail=what, count=False)

    def fit_phase(self, part: "Partition") -> str:
        where = self.part_name(part)
        return f"fitting {self.config.target.upper()}" + (f", {where}" if where else "")

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.workspace.runs_dir / self.run_id)

    def sink(self, fold: int | None) -> Callable[[list], None]:
        """Where one fold's metric rows go."""
        return lambda rows: self.store.add_metrics(self.run_id, rows, fold=fold)

    def note_weights(self, weights) -> None:
        """Record where the network's weights came from, as soon as that is known, so the page
        says "random initialisation" when the run starts rather than when it ends."""
        self.store.update(self.run_id, info={"weights": weights.to_dict()})
        if not weights.pretrained:
            note = f"Random initialisation: {weights.note}."
            if note not in self.notes:
                self.notes.append(note)
                if self.say:
                    self.say(note)

    def part_name(self, part: Partition) -> str:
        return "" if part.fold is None else f"{'fold' if self.config.evaluation == 'kfold' else 'repeat'} {part.fold + 1} of {self.n_parts}"


def _store_predictions(ctx: RunContext, data: LabelledCrops, part: Partition, probs: dict[str, np.ndarray]) -> None:
    for cohort, values in probs.items():
        if not np.isfinite(values).all():
            raise TrainingFailed(f"The model gives no probability (NaN) for {int((~np.isfinite(values)).sum())} patient(s) "
                                 f"of the {cohort} cohort: training diverged. Lower the learning rate or check the crops.")
    ids = np.asarray(data.patient_ids)
    for cohort, values in probs.items():
        mask = part.predict.get(cohort, part.train)
        table = pd.DataFrame({"patient_id": ids[mask], "y_true": part.y[mask], "prob": values})
        ctx.store.set_predictions(ctx.run_id, cohort, table, fold=part.fold)


# ---------------------------------------------------------------------------------------------
# The modes


def _centres(ctx: RunContext, data: LabelledCrops) -> np.ndarray:
    """Each patient's centre, from the clinical table's centre column (what ComBat harmonises across)."""
    from crc_core.training.harmonisation import patient_centres

    return patient_centres(ctx.workspace.read_clinical(), ctx.config.centre_column, data.patient_ids)


def _harmonised(ctx: RunContext, part: Partition, features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The partition's features after ComBat: learned on its training patients and applied to every
    patient it predicts, or (transductive) fitted on all of them at once; kept beside the model."""
    from crc_core.training.harmonisation import combat_transductive, fit_combat

    used = part.train.copy()
    for mask in part.predict.values():
        used |= mask
    out = features.copy()
    if ctx.config.harmonise == "transductive":
        harmonised, model = combat_transductive(features[used], centres[used])
        out[used] = harmonised
    else:
        model = fit_combat(features[part.train], centres[part.train])
        out[used] = model.apply(features[used], centres[used])
    model.save(ctx.folder.combat(part.fold))
    return out


def _fast_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition], features: np.ndarray) -> None:
    from crc_core.networks.linear_models import fit_with_out_of_fold

    centres = _centres(ctx, data) if ctx.config.harmonise != "none" else None
    raw = features
    for part in parts:
        phase = ctx.fit_phase(part)
        ctx.meter.tell(phase, 0, 1, "fits")
        features = raw if centres is None else _harmonised(ctx, part, raw, centres)
        model, out_of_fold = fit_with_out_of_fold(features[part.train], part.y[part.train], seed=ctx.config.seed,
                                                  progress=ctx.meter.part(phase, "fits"))
        model.save(ctx.folder.linear_model(part.fold))
        probs = {cohort: model.predict(features[mask]) for cohort, mask in part.predict.items()}
        if part.fold is None:
            probs[OUT_OF_FOLD] = out_of_fold
        _store_predictions(ctx, data, part, probs)
        # The fast mode's training curve: cross-validated log-loss along the penalty path.
        ctx.sink(part.fold)([("model", 0, 0, "penalty_C", model.c)]
                            + [("penalty", i_c, 0, "cv_log_loss", loss) for i_c, loss in enumerate(model.cv_log_loss)])


def _fit_phases(ctx: RunContext, parts: list[Partition]) -> dict[str, float]:
    """The fits of the fast modes, together about as long as the features before them."""
    return {ctx.fit_phase(p): 1.0 / len(parts) for p in parts}


def _features_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    from crc_core.training.features import cached_deep_features

    config = ctx.config
    phase = f"features of {len(data)} crops"
    ctx.meter.extend({phase: 1.0, **_fit_phases(ctx, parts)})
    ctx.starting("choosing the device")
    plan = _plan(config)
    ctx.store.update(ctx.run_id, info={"device": plan.to_dict()})
    ctx.starting(f"building {BACKBONES[config.backbone].title} and loading its weights")

    def weights_known(weights) -> None:
        ctx.note_weights(weights)
        ctx.starting("looking for the features in the cache, else loading the crops")

    features, weights, cached = cached_deep_features(
        ctx.workspace, config.backbone, data.crops.key, data.patient_ids, data.images, plan, weights=config.weights,
        download=config.download_weights, require_pretrained=config.require_pretrained, seed=config.seed,
        progress=ctx.meter.part(phase, "crops", rate=True), on_weights=weights_known,
    )
    ctx.store.update(ctx.run_id, info={"features_cached": cached, "feature_dim": int(features.shape[1])})
    _fast_mode(ctx, data, parts, features)


def _radiomics_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    from crc_core.training.features import radiomics_table

    phase = f"PyRadiomics features of {len(data)} patients"
    ctx.meter.extend({phase: 1.0, **_fit_phases(ctx, parts)})
    ctx.meter.tell(phase, 0, len(data), "patients")
    table, cached = radiomics_table(ctx.workspace, data.patient_ids, label=ctx.config.radiomics_label,
                                    progress=ctx.meter.part(phase, "patients"))
    ctx.store.update(ctx.run_id, info={"features_cached": cached, "feature_dim": int(table.shape[1]),
                                       "weights": {"pretrained": False, "source": "handcrafted", "path": "", "note": ""}})
    _fast_mode(ctx, data, parts, table.to_numpy(dtype=float))


def _finetune_mode(ctx: RunContext, data: LabelledCrops, parts: list[Partition]) -> None:
    import torch

    from crc_core.networks.backbones import classifier
    from crc_core.training.finetune import batches_per_epoch, evaluate, fit, read_checkpoint

    config, tune = ctx.config, ctx.config.finetune
    left = [p for p in parts if not ctx.folder.done_marker(p.fold).exists()]  # a resumed run keeps what finished
    phases = {p.fold: "fine-tuning" + (f", {ctx.part_name(p)}" if p.fold is not None else "") for p in left}
    ctx.meter.extend(list(phases.values()))
    ctx.starting("measuring the precision on this machine" if config.device in ("auto", "cpu") and config.precision == "auto"
                 else "choosing the device")
    plan = _plan(config, data)
    rank = world()[0]
    ctx.store.update(ctx.run_id, info={"device": plan.to_dict(), "setting_sources": tune.sources(), "selection_note":
                                       SELECTION_NOTE if tune.selection == "validation_loss" else "inner split of the training cohort"})
    ctx.starting(f"loading {len(data)} crops into memory")
    images = data.images()
    name = BACKBONES[config.backbone].title
    for part in left:
        phase = phases[part.fold]
        ctx.meter.tell(phase, 0, 1, detail=f"building {name} and loading its weights", count=False)
        torch.manual_seed(config.seed)
        model, weights = classifier(config.backbone, weights=config.weights, download=config.download_weights,
                                    require_pretrained=config.require_pretrained)
        if rank == 0:
            ctx.note_weights(weights)
        select_mask = _selection(data, part, tune, config.seed)
        train_mask = part.train & ~select_mask
        last = ctx.folder.last_checkpoint(part.fold)
        state = read_checkpoint(last, plan.device) if last.exists() else None
        if state is not None and rank == 0:
            # The interrupted epoch's rows go; the epoch is done again.
            ctx.store.clear_metrics_after(ctx.run_id, int(state["epoch"]), fold=part.fold)
        batches = batches_per_epoch(int(train_mask.sum()), tune.batch_size)
        if rank == 0:
            ctx.store.update(ctx.run_id, info={"batches_per_epoch": batches, "batch_size": tune.batch_size})
        # Counted from where this process began, so a resumed fold's pace is its own.
        begun = (int(state["epoch"]) + 1) * batches if state is not None else 0
        total = max(tune.epochs * batches - begun, 1)

        def on_batch(b, phase=phase, batches=batches, begun=begun, total=total) -> None:
            ctx.meter.tell(phase, b.epoch * batches + b.batch - begun, total, count=False,
                           detail=f"epoch {b.epoch + 1} of {tune.epochs} · batch {b.batch} of {b.batches} · "
                                  f"{b.images_per_s:.1f} images/s")

        def on_epoch(numbers: dict, phase=phase, batches=batches, begun=begun, total=total) -> None:
            epoch = int(numbers["epoch"])
            note = ctx.meter.tell(phase, (epoch + 1) * batches - begun, total, count=False, detail=(
                f"epoch {epoch + 1}/{tune.epochs} · train loss {numbers['train_loss']:.4f} · selection loss "
                f"{numbers['val_loss']:.4f} · selection AUC {numbers['val_auc']:.3f} · {numbers['images_per_s']:.1f} images/s"))
            if ctx.say:
                ctx.say(str(note))

        result = fit(model, (images[train_mask], part.y[train_mask]), (images[select_mask], part.y[select_mask]), tune, plan,
                     ctx.folder.best_checkpoint(part.fold), ctx.folder.last_checkpoint(part.fold), seed=config.seed,
                     sink=ctx.sink(part.fold), resume=state, on_batch=on_batch if rank == 0 else None,
                     on_epoch=on_epoch if rank == 0 else None, checkpoint_config=config.to_dict())
        if rank != 0:
            continue
        loss_fn = torch.nn.CrossEntropyLoss()
        probs = {cohort: evaluate(model, images[mask], part.y[mask], loss_fn, plan)[1] for cohort, mask in part.predict.items()}
        _store_predictions(ctx, data, part, probs)
        ctx.store.update(ctx.run_id, info={f"best_epoch{'' if part.fold is None else '-' + str(part.fold)}": result.best_epoch,
                                           f"stopped_early{'' if part.fold is None else '-' + str(part.fold)}": result.stopped_early})
        atomic_write_text(ctx.folder.done_marker(part.fold), str(result.best_epoch))


def _selection(data: LabelledCrops, part: Partition, tune: FinetuneConfig, seed: int) -> np.ndarray:
    """The patients fine-tuning selects its epoch on: the validation cohort (the paper), or a seeded
    stratified inner share of the training patients (then the validation cohort stays unseen)."""
    if tune.selection == "validation_loss" and "validation" in part.predict:
        return part.predict["validation"].copy()
    from sklearn.model_selection import train_test_split

    positions = np.flatnonzero(part.train)
    _, chosen = train_test_split(positions, test_size=tune.inner_fraction, stratify=part.y[positions], random_state=seed)
    mask = np.zeros(len(data), dtype=bool)
    mask[chosen] = True
    return mask


MODE_RUNNERS = {RunMode.FEATURES: _features_mode, RunMode.FINETUNE: _finetune_mode, RunMode.RADIOMICS: _radiomics_mode}


def _plan(config: TrainConfig, data: LabelledCrops | None = None):
    from crc_core.networks.devices import plan_device

    probe = None
    if data is not None and config.mode == RunMode.FINETUNE:
        from crc_core.training.finetune import precision_probe

        probe = precision_probe(config.backbone, data.images()[:8], data.y[:8])
    return plan_device(config.device, config.precision, probe=probe,
                       probe_key=f"{config.backbone} {config.mode} {data.images().shape[-1] if data is not None else ''}")


# ---------------------------------------------------------------------------------------------
# torchrun: set up once, here


def _share_run_id(run_id: str | None, device: str = "auto") -> str:
    """Join the process group (NCCL on GPUs, gloo on CPUs or where the CPU was asked for) and hand
    rank 0's run id to every process."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and device in ("auto", "cuda") else "gloo")
    shared = [run_id]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


class _QuietStore:
    """What processes other than rank 0 of a torchrun job write to: nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _follow_rank_zero(workspace: Workspace, store: RunStore, device: str) -> str:
    """A process other than rank 0: train the run rank 0 created, writing nothing. ``device``: as
    every process read it from the same command line, so all choose the same backend."""
    run_id = _share_run_id(None, device)
    run = store.run(run_id)
    config = TrainConfig.from_dict(run.config)
    data = labelled_crops(workspace, config.target, crop_key=config.crop_key, allow_missing_crops=config.allow_missing_crops)
    _finetune_mode(RunContext(workspace, _QuietStore(), run_id, config, 0), data, partitions(workspace, data, config))
    return run_id


# ---------------------------------------------------------------------------------------------
# Provenance and readiness


def code_version() -> str:
    """The package version and, in a git checkout, the commit (with "+changes" if dirty)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return crc_core.__version__ + (f"+{commit}" if commit else "") + ("+changes" if dirty else "")


def readiness(workspace: Workspace) -> list[str]:
    """What is still missing before a model can train, each with the step that makes it."""
    from crc_core.imaging.preprocess import latest_crops
    from crc_core.cohort.splits import read_split

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


__all__ = ["TrainConfig", "FinetuneConfig", "train_run", "train_grid", "resume_job", "queued_cells", "unfinished", "partitions", "MODES", "EVALUATIONS"]
