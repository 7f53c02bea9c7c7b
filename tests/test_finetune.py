"""The paper's fine-tuning protocol (crc_core.training.finetune), on a network small enough to train in a
second: a resumed fit equals an uninterrupted one, early stopping, class weights and augmentation.
The loop, its checkpoints and its selection are the real ones; only the backbone is tiny."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crc_core.networks.devices import DevicePlan  # noqa: E402
from crc_core.training.finetune import (FinetuneConfig, augment, class_weights, fit, read_checkpoint,  # noqa: E402
                               train_one_epoch)

PLAN = DevicePlan("cpu", "fp32", False, "test")


def tiny_network(seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))


def crops(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Crops whose class shows as brightness: the high class is brighter, with noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = np.clip(rng.normal(0.35 + 0.3 * y[:, None, None, None], 0.1, (n, 1, 16, 16)), 0, 1).astype(np.float32)
    return x, y


def run_fit(tmp_path, config, *, resume=None, on_epoch=None, select=None, name="run"):
    train = crops(24, 0)
    select = select or crops(12, 1)
    rows: list = []
    model = tiny_network()
    result = fit(model, train, select, config, PLAN, tmp_path / f"{name}-best.pt", tmp_path / f"{name}-last.pt",
                 seed=3, sink=rows.extend, resume=resume, on_epoch=on_epoch)
    return model, result, rows


def epoch_numbers(history):
    """What an epoch measured, without its timings (which no two runs share)."""
    return [{k: v for k, v in epoch.items() if k not in ("seconds", "images_per_s")} for epoch in history]


def test_a_resumed_fit_equals_an_uninterrupted_one_on_the_same_seed(tmp_path):
    config = FinetuneConfig(epochs=4, batch_size=8, lr=0.05)
    whole_model, whole, _ = run_fit(tmp_path, config, name="whole")

    class Killed(Exception):
        pass

    def killed_after_epoch_two(numbers):
        if numbers["epoch"] == 1:
            raise Killed  # as a kill after the epoch's checkpoint was written

    with pytest.raises(Killed):
        run_fit(tmp_path, config, on_epoch=killed_after_epoch_two, name="parts")
    state = read_checkpoint(tmp_path / "parts-last.pt")
    assert state["epoch"] == 1
    resumed_model, resumed, _ = run_fit(tmp_path, config, resume=state, name="parts")

    assert resumed.epochs_run == whole.epochs_run == 4
    assert (resumed.best_epoch, resumed.best_loss) == (whole.best_epoch, whole.best_loss)
    assert epoch_numbers(resumed.history) == epoch_numbers(whole.history[2:])
    for (name, a), (_, b) in zip(whole_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after resuming"


def test_early_stopping_stops_after_the_patience_without_a_better_selection_loss(tmp_path):
    # The selection crops carry the opposite labels: the better the network learns the training
    # crops, the worse its selection loss, so the first epoch stays the best one.
    x, y = crops(12, 1)
    config = FinetuneConfig(epochs=30, batch_size=8, lr=0.05, early_stopping=2, schedule="constant")
    _, result, _ = run_fit(tmp_path, config, select=(x, 1 - y))
    assert result.stopped_early
    losses = [epoch["val_loss"] for epoch in result.history]
    assert result.best_loss == min(losses) == losses[result.best_epoch]
    assert result.epochs_run == result.best_epoch + 1 + 2 < 30
    assert all(loss >= result.best_loss for loss in losses[result.best_epoch + 1:])


def test_without_early_stopping_every_epoch_runs_and_the_best_is_kept(tmp_path):
    x, y = crops(12, 1)
    config = FinetuneConfig(epochs=5, batch_size=8, lr=0.05, schedule="constant")
    model, result, _ = run_fit(tmp_path, config, select=(x, 1 - y))
    assert not result.stopped_early and result.epochs_run == 5
    best = torch.load(tmp_path / "run-best.pt", weights_only=True)
    assert best["epoch"] == result.best_epoch
    for name, value in model.state_dict().items():  # the model handed back is the best epoch's
        assert torch.equal(value, best["model"][name])


def test_class_weights_are_sklearns_balanced_weights():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 0, 1, 1])
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    assert class_weights(y).numpy() == pytest.approx(expected, rel=1e-6)


def test_class_weights_weigh_both_classes_alike_in_the_loss():
    y = np.array([0] * 9 + [1])
    weights = class_weights(y)
    counts = np.bincount(y)
    assert weights[0].item() * counts[0] == pytest.approx(weights[1].item() * counts[1])


def test_augmentation_keeps_shape_and_range_and_follows_its_generator():
    x = torch.from_numpy(crops(8, 0)[0]).expand(-1, 3, -1, -1).contiguous()
    once = augment(x, torch.Generator().manual_seed(5))
    again = augment(x, torch.Generator().manual_seed(5))
    other = augment(x, torch.Generator().manual_seed(6))
    assert once.shape == x.shape and float(once.min()) >= 0 and float(once.max()) <= 1
    assert torch.equal(once, again) and not torch.equal(once, other) and not torch.equal(once, x)


def test_augmentation_of_a_uniform_crop_changes_only_its_intensity():
    # A flip or a ±10° rotation of a uniform image (borders replicated) leaves it uniform; only the
    # intensity jitter (×0.9-1.1, ±0.05) moves it.
    x = torch.full((16, 3, 16, 16), 0.5)
    out = augment(x, torch.Generator().manual_seed(0))
    per_image = out.flatten(1)
    assert torch.allclose(per_image.min(1).values, per_image.max(1).values, atol=1e-5)
    assert float(per_image.mean(1).min()) >= 0.5 * 0.9 - 0.05 - 1e-6
    assert float(per_image.mean(1).max()) <= 0.5 * 1.1 + 0.05 + 1e-6


def test_one_epoch_skips_a_last_batch_of_one_crop():
    x, y = crops(17, 0)  # batches of 8: 8, 8 and one crop left over
    model = tiny_network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = []
    _, seen, last_step = train_one_epoch(model, optimizer, x, y, torch.nn.CrossEntropyLoss(), PLAN,
                                         FinetuneConfig(batch_size=8, augment=False), torch.Generator().manual_seed(0),
                                         epoch=0, first_step=0, on_step=lambda *a: steps.append(a))
    assert (seen, last_step, len(steps)) == (16, 2, 2)
