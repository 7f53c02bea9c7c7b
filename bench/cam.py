"""Grad-CAM at the speed of the network, and the lab-meeting report: on the sample's 95 validation
patients at 224 px, the Grad-CAM of a DenseNet-121 features run (maps, ROI shares and the
randomisation check of every patient) against a bare torchvision DenseNet-121 forward pass of the
same 95 crops in the same run (fp32, channels_last, inference_mode, batch 32) — the ratio is the
figure (goal ≤ 4: a forward and backward pass cost about three forwards); the fast mode's feature
extraction against the same bare pass (it should stay about 1); then the report and the figures.
Prints the figures; never asserts on time.

    .venv/bin/python bench/cam.py [--workspace DIR]

Without ImageNet weights in models/ the network is randomly initialised: the time per map is the
same, the maps mean nothing (the report says so).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fast_mode import prepared_workspace  # noqa: E402


def bare_forward(images) -> float:
    """Seconds for torchvision's DenseNet-121 to read ``images`` (N, 1 or 3, H, W) in [0, 1]: fp32,
    channels_last, inference_mode, batches of 32 — the floor any use of the network stands on."""
    import torch
    import torchvision

    from crc_core.training.features import model_input

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(model_input(images[:4]).contiguous(memory_format=torch.channels_last))  # warm-up
        started = time.perf_counter()
        for start in range(0, len(images), 32):
            model(model_input(images[start:start + 32]).contiguous(memory_format=torch.channels_last))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    parser.add_argument("--smoke", action="store_true", help="toy size (40 patients, 64 px): checks it runs")
    args = parser.parse_args()
    import numpy as np
    import torch

    from crc_core.evaluate import cam

    from crc_core.reporting import report
    from crc_core.training.datasets import labelled_crops
    from crc_core.networks.devices import cpu_name, plan_device
    from crc_core.training.features import cached_deep_features
    from crc_core.runs.store import RunStore
    from crc_core.training.grid import TrainConfig, train_run

    print(f"CPU: {cpu_name()}, capability {torch.backends.cpu.get_cpu_capability()}; torch threads {torch.get_num_threads()}")
    scratch = Path(tempfile.mkdtemp(prefix="cam-bench-"))
    try:
        started = time.perf_counter()
        root = args.workspace or prepared_workspace(scratch, smoke=args.smoke)
        print(f"workspace ready in {time.perf_counter() - started:.1f} s")
        run_id = train_run(root, TrainConfig(backbones=("densenet121",), targets=("tsr",), device="cpu"))
        store = RunStore(root)
        run = store.run(run_id)
        validation = store.predictions(run_id, "validation")["patient_id"].tolist()
        data = labelled_crops(root, "tsr")
        positions = [data.patient_ids.index(p) for p in validation]
        images = data.images()[positions]
        bare = bare_forward(images)
        print(f"bare DenseNet-121 forward of the {len(images)} validation crops ({images.shape[-1]} px): {bare:.1f} s "
              f"({len(images) / bare:.1f} images/s)")

        shutil.rmtree(root / "features", ignore_errors=True)
        started = time.perf_counter()
        cached_deep_features(root, "densenet121", data.crops.key, validation, lambda: images, plan_device("cpu", "auto"),
                             weights="random" if run.random_init else "imagenet")
        features = time.perf_counter() - started
        print(f"fast-mode feature extraction of the same crops: {features:.1f} s; ratio to the bare network "
              f"{features / bare:.2f} (goal: about 1)")

        first = []
        started = time.perf_counter()
        path = cam.cohort_maps(root, run_id, "validation",
                               progress=lambda done, total, message="": first.append(time.perf_counter() - started)
                               if done and not first else None)
        seconds = time.perf_counter() - started
        maps = cam.read_cohort_maps(path)
        print(f"Grad-CAM of the {len(maps.patient_ids)} validation patients ({'ImageNet' if not run.random_init else 'random init'}), "
              f"ROI shares and the randomisation check of every patient: {seconds:.1f} s; first progress after "
              f"{first[0] if first else float('nan'):.1f} s; median ROI share {cam.median(maps.roi_share):.2f} (ROI area "
              f"{np.median(maps.roi_area):.2f}), median randomisation ρ {cam.median(maps.sanity):.2f}")
        print(f"ratio: {seconds / bare:.2f} (Grad-CAM ÷ bare forward of the same images; goal ≤ 4)")

        for pseudonymise in (False, True):
            started = time.perf_counter()
            document = report.build_report(root, run_id, pseudonymise=pseudonymise)
            print(f"report{' (pseudonymised)' if pseudonymise else ''}: built in {time.perf_counter() - started:.2f} s "
                  f"(goal ≤ 10 s), {len(document.encode()) / 1e6:.1f} MB")
        said = []
        started = time.perf_counter()
        try:
            written = report.write_figures(root, run_id, scratch / "figures.zip",
                                           progress=lambda d, t, m="": said.append((time.perf_counter() - started, m)))
            first_picture = next(t for t, m in said if " as PNG: 1 of " in m)
            print(f"figures as PNG + SVG: {time.perf_counter() - started:.1f} s, {written[0].stat().st_size / 1e6:.1f} MB zip; "
                  f"first word after {said[0][0]:.2f} s (\"{said[0][1]}\"), \"{said[1][1]}\" after {first_picture:.2f} s")
        except Exception as exc:  # no Chromium on this machine: say so and go on
            print(f"figures as PNG + SVG: not measured ({exc})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
