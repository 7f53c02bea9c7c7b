"""Fine-tuning images/s: the project's trainer against a plain reference loop, in one process.

The reference is what a first script does: fp32, contiguous NCHW, PNG crops decoded by a
DataLoader on every step. The trainer decodes the crops once and uses the device and precision
crc_core.networks.devices chooses for this CPU (bf16 autocast and channels_last where that is faster).
Prints the CPU capability first and ``ratio: X.XX`` (trainer / plain) last. Never asserts on time.

    .venv/bin/python bench/train_throughput.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"crop{i:04d}.png"
        Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def plain_loop(name: str, paths: list[Path], labels: np.ndarray, batch: int, steps: int) -> float:
    """fp32, NCHW, every PNG decoded by a DataLoader on every step: images/s."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from crc_core.networks.backbones import IMAGENET_MEAN, IMAGENET_STD, classifier

    class PngCrops(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            array = np.asarray(Image.open(paths[i]), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array)[None].expand(3, -1, -1)
            tensor = (tensor - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
            return tensor, int(labels[i])

    torch.manual_seed(0)
    model = classifier(name, weights="random")[0].train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PngCrops(), batch_size=batch, shuffle=True, num_workers=0)
    done, started = 0, None
    while done < steps + 1:
        for x, y in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == 1:
                started = time.perf_counter()  # the first step warms up
            if done == steps + 1:
                break
    return steps * batch / (time.perf_counter() - started)


def trainer_loop(name: str, pixels: np.ndarray, labels: np.ndarray, batch: int, steps: int) -> tuple[float, str]:
    """The project's own training step, ``crc_core.training.finetune.train_one_epoch`` (augmentation,
    model input, autocast, loss, step), over crops decoded once: images/s and the device plan.
    One epoch of ``steps + 1`` batches; the first batch warms up and is not timed."""
    import time as clock

    import torch

    from crc_core.networks.backbones import classifier
    from crc_core.networks.devices import plan_device
    from crc_core.training.finetune import FinetuneConfig, precision_probe, train_one_epoch

    probe = precision_probe(name, pixels[:8], labels[:8])
    plan = plan_device("auto", "auto", probe=probe, probe_key=f"{name} bench {pixels.shape[-1]}")
    torch.manual_seed(0)
    model = classifier(name, weights="random")[0].train().to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    config = FinetuneConfig(batch_size=batch)
    x, y = pixels[: batch * (steps + 1)], labels[: batch * (steps + 1)]
    ends: list[float] = []
    train_one_epoch(model, optimizer, x, y, torch.nn.CrossEntropyLoss(), plan, config, torch.Generator().manual_seed(0),
                    epoch=0, first_step=0, on_step=lambda *_: ends.append(clock.perf_counter()))
    if len(ends) < 2:
        raise RuntimeError(f"the trainer ran {len(ends)} batches; at least 2 are needed to time one")
    timed = len(ends) - 1
    return timed * batch / (ends[-1] - ends[0]), plan.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps of batch 16 instead of 5 of batch 32")
    parser.add_argument("--smoke", action="store_true", help="2 steps of batch 4 at 32 px: checks it runs")
    args = parser.parse_args()
    import torch

    from crc_core.networks.devices import cpu_flags, cpu_name

    flags = cpu_flags()
    print(f"CPU: {cpu_name()}; torch {torch.__version__}; capability {torch.backends.cpu.get_cpu_capability()}; "
          f"amx_bf16 {'yes' if 'amx_bf16' in flags else 'no'}, avx512_bf16 {'yes' if 'avx512_bf16' in flags else 'no'}; "
          f"{torch.get_num_threads()} threads; CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    batch, steps, size = (4, 2, 32) if args.smoke else (16, 3, 224) if args.quick else (32, 5, 224)
    n = batch * (steps + 2)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        paths = write_pngs(Path(scratch), n, size)
        from PIL import Image

        pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32)[None] / 255.0 for p in paths])
        for name in ("densenet121",) if args.smoke else ("densenet121", "resnet50"):
            plain = plain_loop(name, paths, labels, batch, steps)
            trainer, plan = trainer_loop(name, pixels, labels, batch, steps)
            ratios.append(trainer / plain)
            print(f"{name}: plain fp32 NCHW + PNG DataLoader {plain:.1f} images/s; trainer {trainer:.1f} images/s "
                  f"({plan}); {trainer / plain:.2f}x; peak RSS {peak_rss_mb():.0f} MB")
    print(f"ratio: {float(np.mean(ratios)):.2f}")


if __name__ == "__main__":
    main()
