"""How fast volumes become crops: the sample cohort serial vs parallel, cold vs cached, and
real-size volumes (512 × 512 × 80).

Goals (issue 5, 2 cores): ≥ 20 patients/s for the sample; a cached re-run ≤ 2 s; peak RSS ≤ 1.5 GB
at real size. Each scenario runs in its own process so that its peak RSS (the largest of the main
process and any worker) is its own. Prints figures only; never asserts on time.
Run with `make bench` or `python bench/preprocess.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REAL_SIZE_PATIENTS = 8


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


class TreeRssSampler:
    """Samples the RSS of this process plus its workers every 20 ms: the machine's real peak while
    workers run at once (ru_maxrss would give only the largest single process, and carries the
    parent's peak across fork and exec)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = _rss_mb(me) + sum(_rss_mb(child) for child in _children(me))
            self.peak_mb = max(self.peak_mb, total)
            time.sleep(0.02)

    def __enter__(self) -> "TreeRssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def scenario(workspace: str, workers: int) -> None:
    """Run once in this process and print seconds, counts and peak RSS as JSON."""
    from crc_core.imaging.preprocess import preprocess_cohort

    with TreeRssSampler() as sampler:
        started = time.perf_counter()
        result = preprocess_cohort(workspace, workers=workers)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "patients": len(result.index), "computed": result.processed,
                      "cached": result.cached, "rss_mb": sampler.peak_mb}))


def run(workspace: Path, workers: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--scenario", str(workspace), str(workers)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def build_real_size(root: Path, patients: int = REAL_SIZE_PATIENTS, side: int = 512) -> None:
    """Abdomen-like ``side`` × ``side`` × 80 int16 volumes with an ellipsoid tumour, NIfTI gzip, and a manifest."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = ["patient_id,image,mask"]
    zz, yy, xx = np.ogrid[:80, :side, :side]
    yy, xx = yy * (512 / side), xx * (512 / side)  # the same anatomy at any matrix size
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 <= 1
    for i in range(patients):
        hu = np.where(body, 40, -1000).astype(np.int16) + rng.normal(0, 15, (80, side, side)).astype(np.int16)
        cz, cy, cx = 40 + i % 5, 240 + 3 * i, 270 - 2 * i
        tumour = ((zz - cz) / 6.0) ** 2 + ((yy - cy) / 30.0) ** 2 + ((xx - cx) / 25.0) ** 2 <= 1
        for name, array in ((f"P{i:02d}_ct", hu), (f"P{i:02d}_mask", tumour.astype(np.uint8))):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing((0.75, 0.75, 5.0))
            sitk.WriteImage(image, str(root / "images" / f"{name}.nii.gz"), useCompression=True)
        rows.append(f"P{i:02d},images/P{i:02d}_ct.nii.gz,images/P{i:02d}_mask.nii.gz")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def report(label: str, figures: dict) -> None:
    rate = figures["patients"] / figures["seconds"]
    print(f"{label}: {figures['seconds']:.2f} s, {rate:.0f} patients/s "
          f"({figures['computed']} computed, {figures['cached']} cached); peak RSS {figures['rss_mb']:.0f} MB "
          "(main process and workers together)")


def main(smoke: bool = False) -> None:
    from crc_core.parallel import default_workers
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    workers = default_workers()
    patients, real_patients, side = (20, 2, 128) if smoke else (315, REAL_SIZE_PATIENTS, 512)
    print(f"cores: {workers}" + ("; smoke mode: toy sizes, the figures mean nothing" if smoke else ""))
    with tempfile.TemporaryDirectory() as scratch:
        sample = Path(scratch) / "sample"
        build_sample_workspace(sample, SampleConfig(n_patients=patients))
        serial = run(sample, 1)
        report(f"sample, {patients} patients, 1 worker, cold", serial)
        for crops in (sample / "crops").iterdir():
            if crops.is_dir():
                for path in crops.iterdir():
                    path.unlink()
        parallel = run(sample, workers)
        report(f"sample, {patients} patients, {workers} workers, cold", parallel)
        print(f"  parallel speed-up: {serial['seconds'] / parallel['seconds']:.2f}x")
        cached = run(sample, workers)
        report("sample, re-run with the same parameters (cache)", cached)
        real = Path(scratch) / "real"
        build_real_size(real, real_patients, side)
        report(f"real size {side} × {side} × 80, {real_patients} patients, 1 worker", run(real, 1))
        for crops in (real / "crops").iterdir():
            if crops.is_dir():
                for path in crops.iterdir():
                    path.unlink()
        report(f"real size {side} × {side} × 80, {real_patients} patients, {workers} workers", run(real, workers))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--scenario":
        scenario(sys.argv[2], int(sys.argv[3]))
    else:
        main(smoke="--smoke" in sys.argv[1:])
