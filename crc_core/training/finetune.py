"""Fine-tuning a backbone on the crops: the paper's protocol where the paper states it — 100 epochs,
batch 32, learning rate 0.01, ImageNet normalisation, the model with the lowest loss kept — and our
choices where it is silent, each named in :data:`SETTING_SOURCES` (SGD with momentum 0.9 and weight
decay 1e-4 as torchvision's reference recipe, a cosine schedule, light augmentation, class-weighted
cross-entropy).

Reads top to bottom: :class:`FinetuneConfig`, :func:`train_one_epoch`, :func:`evaluate`,
:func:`fit`. Crops arrive decoded in memory; device and precision are chosen once
(:mod:`crc_core.networks.devices`); every epoch writes a resumable checkpoint (model, optimiser, scheduler,
epoch, best so far, random state). Under ``torchrun`` (set up once, by
:func:`crc_core.training.grid.train_run`) the model is wrapped in DistributedDataParallel, each process
trains on its share of every batch, and only rank 0 writes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crc_core.configs import JsonConfig
from crc_core.networks.devices import DevicePlan, autocast
from crc_core.errors import CrcInputError
from crc_core.training.features import model_input
from crc_core.workspace import atomic_write_bytes

#: (scope, step, epoch, name, value) rows of one fold for the run store.
MetricsSink = Callable[[list[tuple[str, int, int, str, float]]], None]
SCHEDULES = ("cosine", "step", "constant")
SELECTIONS = ("validation_loss", "inner_split")

PAPER, OURS = "the paper", "ours"
#: Whose each fine-tuning default is, and why where it is ours: shown beside each setting on the
#: Train page, kept in every run's info and written into the report's methods. The paper states
#: only the epochs, batch size, initial learning rate, ImageNet normalisation and the minimum-loss model.
SETTING_SOURCES: dict[str, tuple[str, str]] = {
    "epochs": (PAPER, "100 epochs"),
    "batch_size": (PAPER, "batch size 32"),
    "lr": (PAPER, "initial learning rate 0.01"),
    "normalisation": (PAPER, "ImageNet mean and SD"),
    "selection": (PAPER, "the model with the minimum loss"),
    "optimizer": (OURS, "the paper names no optimiser; SGD is torchvision's reference recipe for these backbones"),
    "momentum": (OURS, "torchvision's reference recipe"),
    "weight_decay": (OURS, "torchvision's reference recipe"),
    "schedule": (OURS, "the paper names no schedule; cosine decay over the epochs"),
    "augment": (OURS, "the paper names none; flip, ±10° rotation and intensity jitter, as 220 patients overfit without"),
    "class_weights": (OURS, "n / (2 n_class) per class, so an unbalanced label is not learned as its majority"),
    "inner_fraction": (OURS, "the share of the training cohort the epoch is chosen on, with an inner split"),
    "early_stopping": (OURS, "off, as the paper trains all its epochs"),
}


def source_of(setting: str) -> str:
    """``the paper`` or ``ours: why`` for a setting of :data:`SETTING_SOURCES`."""
    whose, why = SETTING_SOURCES[setting]
    return "the paper's" if whose == PAPER else f"ours ({why})"


@dataclass(frozen=True)
class FinetuneConfig(JsonConfig):
    """How a backbone is fine-tuned; whose each default is: :data:`SETTING_SOURCES`."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine", "step" (x0.1 every 30 epochs) or "constant"
    augment: bool = True
    class_weights: bool = True
    selection: str = "validation_loss"  # or "inner_split"
    inner_fraction: float = 0.2
    early_stopping: int = 0  # epochs without a better selection loss before stopping; 0: never

    def __post_init__(self) -> None:
        if not 1 <= int(self.epochs) <= 1000:
            raise CrcInputError(f"Epochs must be 1-1000; got {self.epochs!r}.")
        if not 2 <= int(self.batch_size) <= 1024:
            raise CrcInputError(f"The batch size must be 2-1024; got {self.batch_size!r}.")
        if not 0 < float(self.lr) <= 1:
            raise CrcInputError(f"The learning rate must be above 0 and at most 1; got {self.lr!r}.")
        if not 0 <= float(self.momentum) < 1 or float(self.weight_decay) < 0:
            raise CrcInputError("The momentum must be 0 or more and below 1, the weight decay 0 or more.")
        if self.schedule not in SCHEDULES:
            raise CrcInputError(f"The schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}.")
        if self.selection not in SELECTIONS:
            raise CrcInputError(f"Model selection must be one of {', '.join(SELECTIONS)}; got {self.selection!r}.")
        if not 0.1 <= float(self.inner_fraction) <= 0.5:
            raise CrcInputError(f"The inner selection share must be 0.1-0.5; got {self.inner_fraction!r}.")
        if int(self.early_stopping) < 0:
            raise CrcInputError("The early-stopping patience must be 0 or more.")

    def sources(self) -> dict[str, str]:
        """Each setting with its value and whose it is — "32: the paper's", "0.9: ours (why)", or
        "8: changed from the paper's 32" — for the run's info and the report's methods."""
        values = {**self.to_dict(), "optimizer": "SGD", "normalisation": "ImageNet"}
        defaults = {**FinetuneConfig().to_dict(), "optimizer": "SGD", "normalisation": "ImageNet"}
        out = {}
        for name in SETTING_SOURCES:
            if values[name] != defaults[name]:
                whose = "the paper's" if SETTING_SOURCES[name][0] == PAPER else "our default"
                out[name] = f"{values[name]}: changed from {whose} {defaults[name]}"
            else:
                out[name] = f"{values[name]}: {source_of(name)}"
        return out


class TrainingFailed(CrcInputError):
    """Training cannot go on (NaN loss, out of memory): the run is marked failed, the log kept."""


def _save_checkpoint(state: dict, path: Path) -> None:
    """A checkpoint written whole or not at all: a run killed mid-save keeps its previous
    ``best.pt`` and ``last.pt``, which Grad-CAM, prediction and resume then read."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: Path, device: str = "cpu") -> dict:
    """A resumable checkpoint of ours, or one line naming it when it is damaged."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
            raise ValueError("it holds no model and epoch")
        return state
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise CrcInputError(f"The checkpoint {path} is damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
                            "resume cannot read it. Start the run again from epoch 0 (Resume → start again, or "
                            "`crc-time train --resume RUN --restart`).") from exc


@dataclass
class FitResult:
    best_epoch: int
    best_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchProgress:
    """Where a fit is within an epoch, for live progress: batches done of the epoch's, images/s
    so far in this epoch."""

    epoch: int
    batch: int
    batches: int
    images_per_s: float
    seconds: float


def world() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches one epoch of ``n_train`` crops takes (a last batch of one crop is skipped)."""
    full, rest = divmod(n_train, batch_size)
    return full + (1 if rest >= 2 else 0)


# ---------------------------------------------------------------------------------------------
# Pieces


def augment(batch, generator):
    """Random horizontal flip, rotation within ±10°, and intensity jitter (×0.9-1.1, ±0.05) of
    crops in [0, 1] (N, C, H, W), drawn from ``generator``."""
    import torch
    import torch.nn.functional as F

    n = batch.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(n, 1, 1, 1), batch.flip(-1), batch)
    angle = (torch.rand(n, generator=generator) * 20.0 - 10.0) * math.pi / 180.0
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    batch = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=generator)
    shift = 0.1 * torch.rand(n, 1, 1, 1, generator=generator) - 0.05
    return (batch * scale + shift).clamp(0.0, 1.0)


def class_weights(y: np.ndarray):
    """n / (2 n_c) per class, so both classes weigh the same in the loss."""
    import torch

    counts = np.bincount(np.asarray(y, dtype=int), minlength=2).astype(float)
    return torch.tensor(len(y) / (2.0 * np.maximum(counts, 1.0)), dtype=torch.float32)


def scheduler_for(optimizer, config: FinetuneConfig):
    import torch

    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def train_one_epoch(model, optimizer, x: np.ndarray, y: np.ndarray, loss_fn, plan: DevicePlan, config: FinetuneConfig,
                    generator, *, epoch: int, first_step: int, on_step: Callable[[int, float, int, int], None],
                    scaler=None) -> tuple[float, int, int]:
    """One pass over the training crops in shuffled batches; returns the mean loss, the number of
    images this process saw and the last global step. ``on_step(global_step, loss, batch, images)``
    after each batch (``batch`` counts from 1 within the epoch)."""
    import torch

    rank, size = world()
    model.train()
    order = torch.randperm(len(x), generator=generator).numpy()
    total, seen, step, batch_number = 0.0, 0, first_step, 0
    for start in range(0, len(order), config.batch_size):
        batch_positions = order[start:start + config.batch_size]
        if len(batch_positions) < 2 * size:
            # A last batch of one image per process: batch norm has no variance to learn from
            # (NaN statistics), and with several processes some would get none. All skip it alike.
            continue
        chosen = batch_positions[rank::size]
        batch = torch.from_numpy(x[chosen])
        if config.augment:
            batch = augment(batch if batch.shape[1] == 3 else batch.expand(-1, 3, -1, -1), generator)
        inputs = model_input(batch.numpy(), plan)
        targets = torch.from_numpy(y[chosen]).long().to(plan.device)
        try:
            optimizer.zero_grad(set_to_none=True)
            with autocast(plan):
                loss = loss_fn(model(inputs).float(), targets)
            if not torch.isfinite(loss):
                raise TrainingFailed(
                    f"The training loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}: training stopped. "
                    f"Lower the learning rate (now {config.lr:g}) or check the crops."
                )
            if scaler is not None and scaler.is_enabled():  # fp16 needs its gradients scaled
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        except RuntimeError as exc:
            if _is_oom(exc):
                raise TrainingFailed(
                    f"Out of memory with batches of {config.batch_size} at epoch {epoch + 1}: choose a smaller batch "
                    f"(e.g. {max(1, config.batch_size // 2)}) or a smaller input size."
                ) from exc
            raise
        step += 1
        batch_number += 1
        total += float(loss.item()) * len(chosen)
        seen += len(chosen)
        on_step(step, float(loss.item()), batch_number, len(chosen) * size)
    return total / max(seen, 1), seen, step


def evaluate(model, x: np.ndarray, y: np.ndarray | None, loss_fn, plan: DevicePlan, batch_size: int = 64,
             progress: Callable[[int, int], None] | None = None) -> tuple[float, np.ndarray]:
    """The mean loss (nan without labels) and the probability of class 1 for every crop;
    ``progress(done, total)`` after each batch."""
    import torch

    model.eval()
    probs, total = [], 0.0
    with torch.inference_mode(), autocast(plan):
        for start in range(0, len(x), batch_size):
            logits = model(model_input(x[start:start + batch_size], plan)).float()
            probs.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
            if y is not None:
                targets = torch.from_numpy(y[start:start + batch_size]).long().to(plan.device)
                total += float(loss_fn(logits, targets).item()) * len(targets)
            if progress:
                progress(min(start + batch_size, len(x)), len(x))
    return (total / len(x) if y is not None and len(x) else math.nan), np.concatenate(probs) if probs else np.zeros(0)


def auc(y: np.ndarray, prob: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(np.asarray(y).tolist())) != 2 or not np.isfinite(prob).all():
        return math.nan
    return float(roc_auc_score(y, prob))


# ---------------------------------------------------------------------------------------------
# The loop


def fit(model, train: tuple[np.ndarray, np.ndarray], select: tuple[np.ndarray, np.ndarray], config: FinetuneConfig,
        plan: DevicePlan, best_path: Path, last_path: Path, *, seed: int, sink: MetricsSink,
        resume: dict | None = None, on_batch: Callable[[BatchProgress], None] | None = None,
        on_epoch: Callable[[dict[str, float]], None] | None = None, checkpoint_config: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` on ``train`` (crops, labels), keep the weights with the lowest loss on
    ``select`` in ``best_path``, and write everything needed to go on into ``last_path`` every
    epoch. ``resume``: a checkpoint read by :func:`read_checkpoint` to go on from. Metrics go to
    ``sink`` (one fold's); ``on_batch`` hears of every batch, ``on_epoch`` of every epoch's
    numbers (``epoch``, ``train_loss``, ``val_loss``, ``val_auc``, ``images_per_s``, ``seconds``)."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    rank, size = world()
    distributed = size > 1 and dist.is_available() and dist.is_initialized()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = scheduler_for(optimizer, config)
    scaler = torch.amp.GradScaler(plan.device, enabled=plan.precision == "fp16")
    weights = class_weights(train[1]).to(plan.device) if config.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    select_loss_fn = nn.CrossEntropyLoss()  # selection on the plain loss, whatever the classes' sizes
    start_epoch, best_loss, best_epoch, waited, step = 0, math.inf, -1, 0, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        scaler.load_state_dict(resume.get("scaler", {}) or scaler.state_dict())
        start_epoch, best_loss, best_epoch = resume["epoch"] + 1, resume["best_loss"], resume["best_epoch"]
        waited, step = resume["waited"], resume["step"]
    result = FitResult(best_epoch, best_loss, start_epoch, False)
    batches = batches_per_epoch(len(train[0]), config.batch_size)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        seen_so_far = [0]

        def on_step(global_step: int, loss: float, batch: int, images: int, epoch: int = epoch) -> None:
            seen_so_far[0] += images
            if rank == 0:
                sink([("step", global_step, epoch, "train_loss", loss)])
                if on_batch:
                    elapsed = time.perf_counter() - started
                    on_batch(BatchProgress(epoch, batch, batches, seen_so_far[0] / elapsed if elapsed else math.nan, elapsed))

        train_loss, seen, step = train_one_epoch(net, optimizer, train[0], train[1], loss_fn, plan, config, generator,
                                                 epoch=epoch, first_step=step, on_step=on_step, scaler=scaler)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        seconds = time.perf_counter() - started
        if rank == 0:
            select_loss, select_prob = evaluate(model, select[0], select[1], select_loss_fn, plan)
            select_auc = auc(select[1], select_prob)
            improved = select_loss < best_loss
            if improved:
                best_loss, best_epoch, waited = select_loss, epoch, 0
                _save_checkpoint({"model": model.state_dict(), "epoch": epoch, "loss": select_loss,
                                  "config": checkpoint_config or {}}, best_path)
            else:
                waited += 1
            _save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict(), "generator": generator.get_state(), "epoch": epoch,
                              "best_loss": best_loss, "best_epoch": best_epoch, "waited": waited, "step": step,
                              "config": checkpoint_config or {}}, last_path)
            numbers = {"train_loss": train_loss, "val_loss": select_loss, "val_auc": select_auc, "lr": lr,
                       "seconds": seconds, "images_per_s": seen * size / seconds if seconds else math.nan}
            sink([("epoch", step, epoch, name, value) for name, value in numbers.items()])
            result.history.append({"epoch": epoch, **numbers})
            if on_epoch:
                on_epoch({"epoch": epoch, **numbers})
        if distributed:
            flag = torch.tensor([waited], dtype=torch.int64)
            dist.broadcast(flag, src=0)
            waited = int(flag.item())
        result.epochs_run = epoch + 1
        if config.early_stopping and waited >= config.early_stopping:
            result.stopped_early = True
            break
    result.best_epoch, result.best_loss = best_epoch, best_loss
    if rank == 0 and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=plan.device, weights_only=True)["model"])
    return result


def precision_probe(backbone_name: str, images: np.ndarray, labels: np.ndarray) -> Callable[[str], float]:
    """``probe(precision) -> seconds per training step`` of ``backbone_name`` on these few crops,
    channels_last on the CPU: what :func:`crc_core.networks.devices.plan_device` measures where the
    instruction set leaves the choice open."""

    def probe(precision: str) -> float:
        import torch

        from crc_core.networks.backbones import classifier
        from crc_core.networks.devices import time_steps

        model = classifier(backbone_name, weights="random")[0].to(memory_format=torch.channels_last)
        plan = DevicePlan("cpu", precision, True, "probe")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
        x, y = model_input(images, plan), torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())

        def step() -> None:
            optimizer.zero_grad()
            with autocast(plan):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            optimizer.step()

        return time_steps(step, 2)

    return probe
