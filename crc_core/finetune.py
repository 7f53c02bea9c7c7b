"""Fine-tuning a backbone on the crops, the paper's protocol as defaults: SGD (lr 0.01, momentum
0.9), batch 32, 100 epochs, ImageNet normalisation, light augmentation (flip, a small rotation,
intensity jitter), class-weighted cross-entropy, and the checkpoint with the lowest loss on the
selection cohort kept.

Reads top to bottom: :func:`train_one_epoch`, :func:`evaluate`, :func:`fit`. Crops arrive decoded
in memory; device and precision are chosen once (:mod:`crc_core.devices`); every epoch writes a
resumable checkpoint (model, optimiser, scheduler, epoch, best so far, random state). Under
``torchrun`` the model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPUs), each
process trains on its share of every batch, and only rank 0 writes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crc_core.devices import DevicePlan, autocast
from crc_core.errors import CrcInputError
from crc_core.features import model_input
from crc_core.workspace import atomic_write_bytes

#: (scope, step, epoch, name, value) rows for the run store.
MetricsSink = Callable[[list[tuple[str, int, int, str, float]]], None]


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

@dataclass(frozen=True)
class FinetuneSettings:
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # "cosine", "step" (x0.1 every 30 epochs) or "constant"
    augment: bool = True
    class_weights: bool = True
    early_stopping: int = 0  # epochs without a better selection loss before stopping; 0: never
    seed: int = 0


@dataclass
class FitResult:
    best_epoch: int
    best_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Distributed training (torchrun)


def world() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(plan: DevicePlan) -> bool:
    import torch.distributed as dist

    rank, size = world()
    if size == 1 or dist.is_initialized():
        return size > 1
    dist.init_process_group(backend="nccl" if plan.device == "cuda" else "gloo")
    return True


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


def scheduler_for(optimizer, settings: FinetuneSettings):
    import torch

    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, settings.epochs))
    if settings.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def train_one_epoch(model, optimizer, x: np.ndarray, y: np.ndarray, loss_fn, plan: DevicePlan, settings: FinetuneSettings,
                    generator, *, epoch: int, first_step: int, on_step: Callable[[int, float, int], None],
                    scaler=None) -> tuple[float, int, int]:
    """One pass over the training crops in shuffled batches; returns the mean loss, the number of
    images this process saw and the last global step. ``on_step(global_step, loss, images)`` after
    each batch."""
    import torch

    rank, size = world()
    model.train()
    order = torch.randperm(len(x), generator=generator).numpy()
    total, seen, step = 0.0, 0, first_step
    for start in range(0, len(order), settings.batch_size):
        batch_positions = order[start:start + settings.batch_size]
        if len(batch_positions) < 2 * size:
            # A last batch of one image per process: batch norm has no variance to learn from
            # (NaN statistics), and with several processes some would get none. All skip it alike.
            continue
        chosen = batch_positions[rank::size]
        batch = torch.from_numpy(x[chosen])
        if settings.augment:
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
                    f"Lower the learning rate (now {settings.lr:g}) or check the crops."
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
                    f"Out of memory with batches of {settings.batch_size} at epoch {epoch + 1}: choose a smaller batch "
                    f"(e.g. {max(1, settings.batch_size // 2)}) or a smaller input size."
                ) from exc
            raise
        step += 1
        total += float(loss.item()) * len(chosen)
        seen += len(chosen)
        on_step(step, float(loss.item()), len(chosen))
    return total / max(seen, 1), seen, step


def evaluate(model, x: np.ndarray, y: np.ndarray | None, loss_fn, plan: DevicePlan, batch_size: int = 64) -> tuple[float, np.ndarray]:
    """The mean loss (nan without labels) and the probability of class 1 for every crop."""
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
    return (total / len(x) if y is not None and len(x) else math.nan), np.concatenate(probs) if probs else np.zeros(0)


def auc(y: np.ndarray, prob: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(np.asarray(y).tolist())) != 2 or not np.isfinite(prob).all():
        return math.nan
    return float(roc_auc_score(y, prob))


# ---------------------------------------------------------------------------------------------
# The loop


def fit(model, train: tuple[np.ndarray, np.ndarray], select: tuple[np.ndarray, np.ndarray], settings: FinetuneSettings,
        plan: DevicePlan, folder: Path, *, sink: MetricsSink, tag: str = "", config: dict[str, Any] | None = None) -> FitResult:
    """Train ``model`` on ``train`` (crops, labels), keep the weights with the lowest loss on
    ``select``, write ``last.pt`` (resumable) and ``best.pt`` into ``folder`` every epoch, and
    resume from ``last.pt`` when it is there. Metrics go to ``sink``; ``tag`` suffixes their names
    when one run trains several models (folds)."""
    import torch
    import torch.nn as nn

    rank, size = world()
    distributed = init_distributed(plan) if size > 1 else False
    folder.mkdir(parents=True, exist_ok=True)
    last_path, best_path = folder / f"last{tag}.pt", folder / f"best{tag}.pt"
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    scheduler = scheduler_for(optimizer, settings)
    scaler = torch.amp.GradScaler(plan.device, enabled=plan.precision == "fp16")
    weights = class_weights(train[1]).to(plan.device) if settings.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    select_loss_fn = nn.CrossEntropyLoss()  # selection on the plain loss, whatever the classes' sizes
    start_epoch, best_loss, best_epoch, waited, step = 0, math.inf, -1, 0, 0
    if last_path.exists():
        state = torch.load(last_path, map_location=plan.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        scaler.load_state_dict(state.get("scaler", {}) or scaler.state_dict())
        start_epoch, best_loss, best_epoch = state["epoch"] + 1, state["best_loss"], state["best_epoch"]
        waited, step = state["waited"], state["step"]
    suffix = f"@{tag.lstrip('-')}" if tag else ""
    result = FitResult(best_epoch, best_loss, start_epoch, False)

    def on_step(global_step: int, loss: float, images: int) -> None:
        if rank == 0:
            sink([("step", global_step, epoch, f"train_loss{suffix}", loss)])

    for epoch in range(start_epoch, settings.epochs):
        started = time.perf_counter()
        train_loss, seen, step = train_one_epoch(net, optimizer, train[0], train[1], loss_fn, plan, settings, generator,
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
                _save_checkpoint({"model": model.state_dict(), "epoch": epoch, "loss": select_loss, "config": config or {}}, best_path)
            else:
                waited += 1
            _save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict(), "generator": generator.get_state(), "epoch": epoch,
                              "best_loss": best_loss, "best_epoch": best_epoch, "waited": waited, "step": step,
                              "config": config or {}}, last_path)
            sink([("epoch", step, epoch, name + suffix, value) for name, value in (
                ("train_loss", train_loss), ("val_loss", select_loss), ("val_auc", select_auc), ("lr", lr),
                ("seconds", seconds), ("images_per_s", seen * size / seconds if seconds else math.nan),
            )])
            result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": select_loss, "val_auc": select_auc})
        if distributed:
            import torch.distributed as dist

            flag = torch.tensor([waited], dtype=torch.int64)
            dist.broadcast(flag, src=0)
            waited = int(flag.item())
        result.epochs_run = epoch + 1
        if settings.early_stopping and waited >= settings.early_stopping:
            result.stopped_early = True
            break
    result.best_epoch, result.best_loss = best_epoch, best_loss
    if rank == 0 and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=plan.device, weights_only=True)["model"])
    return result


def precision_probe(backbone_name: str, images: np.ndarray, labels: np.ndarray) -> Callable[[str], float]:
    """``probe(precision) -> seconds per training step`` of ``backbone_name`` on these few crops,
    channels_last on the CPU: what :func:`crc_core.devices.plan_device` measures where the
    instruction set leaves the choice open."""

    def probe(precision: str) -> float:
        import torch

        from crc_core.backbones import classifier
        from crc_core.devices import time_steps

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
