"""Grad-CAM and the lab-meeting report: one map of DenseNet-121 at 224 px on the CPU (Grad-CAM and
Grad-CAM++), the 95 validation patients of the sample with their trust checks, the report built
from it and the figures exported as PNG and SVG. Prints the figures; never asserts on time.

    .venv/bin/python bench/cam.py [--workspace DIR] [--images 20]

Without ImageNet weights in models/ the network is randomly initialised: the time per map is the
same, the maps mean nothing (the report says so).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fast_mode import prepared_workspace  # noqa: E402


def per_image(method: str, images: int) -> tuple[float, float]:
    """Median and fastest seconds per map over ``images`` random 224-px inputs (one warm-up first)."""
    import torch

    from crc_core import cam
    from crc_core.backbones import backbone, classifier

    torch.manual_seed(0)
    model = classifier("densenet121", weights="random")[0].eval()
    layer = backbone("densenet121").cam_layer
    cam.grad_cam(model, torch.rand(3, 224, 224), 1, layer, method=method)
    times = []
    for _ in range(images):
        x = torch.rand(3, 224, 224)
        started = time.perf_counter()
        cam.grad_cam(model, x, 1, layer, method=method)
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    parser.add_argument("--images", type=int, default=20, help="maps timed per method (default 20)")
    args = parser.parse_args()
    import numpy as np
    import torch

    from crc_core import cam, report
    from crc_core.devices import cpu_name
    from crc_core.runs import RunStore
    from crc_core.training import TrainConfig, train_run

    print(f"CPU: {cpu_name()}, capability {torch.backends.cpu.get_cpu_capability()}; torch threads {torch.get_num_threads()}")
    for method in cam.METHODS:
        median, fastest = per_image(method, args.images)
        print(f"{method}, DenseNet-121 at 224 px, one image: median {median:.3f} s, fastest {fastest:.3f} s "
              f"(goal ≤ 0.3 s; {0.3 / median:.2f}× the goal's speed)")

    scratch = Path(tempfile.mkdtemp(prefix="cam-bench-"))
    try:
        started = time.perf_counter()
        root = args.workspace or prepared_workspace(scratch)
        print(f"workspace ready in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        run_id = train_run(root, TrainConfig(backbones=("densenet121",), targets=("tsr",), device="cpu"))
        run = RunStore(root).run(run_id)
        print(f"features run of DenseNet-121 ({'ImageNet' if run.pretrained else 'random init'}) in "
              f"{time.perf_counter() - started:.1f} s")
        validation = len(RunStore(root).predictions(run_id, "validation"))
        started = time.perf_counter()
        path = cam.cohort_maps(root, run_id, "validation", sanity_patients=12)
        seconds = time.perf_counter() - started
        maps = cam.read_cohort_maps(path)
        print(f"Grad-CAM of the {validation} validation patients with ROI shares and 12 randomisation checks: "
              f"{seconds:.1f} s ({seconds / validation:.3f} s per patient, the checks included); cache "
              f"{path.stat().st_size / 1e6:.1f} MB; median ROI share {np.nanmedian(maps.roi_share):.2f} (ROI area "
              f"{np.median(maps.roi_area):.2f}), median randomisation ρ {np.nanmedian(maps.sanity):.2f}")
        for pseudonymise in (False, True):
            started = time.perf_counter()
            document = report.build_report(root, run_id, pseudonymise=pseudonymise)
            print(f"report{' (pseudonymised)' if pseudonymise else ''}: built in {time.perf_counter() - started:.2f} s "
                  f"(goal ≤ 10 s), {len(document.encode()) / 1e6:.1f} MB")
        started = time.perf_counter()
        try:
            written = report.write_figures(root, run_id, scratch / "figures.zip")
            print(f"figures as PNG + SVG: {time.perf_counter() - started:.1f} s, {written[0].stat().st_size / 1e6:.1f} MB zip")
        except Exception as exc:  # no Chromium on this machine: say so and go on
            print(f"figures as PNG + SVG: not measured ({exc})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
