"""How long the built-in sample takes to build: tables alone, and images with 1 vs all workers.

Prints figures only; never asserts on time. Run with `make bench` or `python bench/sample.py`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from crc_core.sample.cohort import SampleConfig, _default_workers, build_sample_workspace, generate_tables


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy size (12 patients, no full sample): checks it runs")
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, default workers: {_default_workers()}")
    tables_s = timed(lambda: generate_tables(SampleConfig()))
    print(f"tables only, 315 patients: {tables_s:.2f} s")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        n = 12 if args.smoke else 60
        serial = timed(lambda: build_sample_workspace(root / "one", SampleConfig(n_patients=n, workers=1)))
        parallel = timed(lambda: build_sample_workspace(root / "all", SampleConfig(n_patients=n)))
        print(f"{n} patients with images: 1 worker {serial:.1f} s, {_default_workers()} workers {parallel:.1f} s "
              f"(speed-up {serial / parallel:.2f}x)")
        if args.smoke:
            return
        full = timed(lambda: build_sample_workspace(root / "full", SampleConfig()))
        size_mb = sum(p.stat().st_size for p in (root / "full").rglob("*") if p.is_file()) / 1e6
        print(f"default sample (315 patients, images): {full:.1f} s, {size_mb:.0f} MB on disk")


if __name__ == "__main__":
    main()
