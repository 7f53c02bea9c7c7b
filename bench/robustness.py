"""The reader check at the sample's size: a DenseNet-121 features run on the 315-patient sample
(224-px crops), then its robustness on the 95 validation patients — reader 2's ROI and reader 1's
eroded and dilated by 1 and 2 px (five crop sets cut, five times 95 crops scored) — timed cold
(crops cut) and warm (crops cached). Prints the figures; goal ≤ 60 s cold on 2 cores; never
asserts on time.

    .venv/bin/python bench/robustness.py [--workspace DIR]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    parser.add_argument("--smoke", action="store_true", help="toy size (40 patients, 64 px): checks it runs")
    args = parser.parse_args()
    import torch

    from crc_core.evaluate import robustness as rb
    from crc_core.networks.devices import cpu_name
    from crc_core.training.grid import TrainConfig, train_run

    print(f"CPU: {cpu_name()}, capability {torch.backends.cpu.get_cpu_capability()}; torch threads {torch.get_num_threads()}")
    scratch = Path(tempfile.mkdtemp(prefix="robustness-bench-"))
    try:
        root = args.workspace or prepared_workspace(scratch, smoke=args.smoke)
        run_id = train_run(root, TrainConfig(backbones=("densenet121",), targets=("tsr",), device="cpu"))
        for label in ("cold (five crop sets cut)", "warm (crops from the cache)"):
            started = time.perf_counter()
            result = rb.robustness(root, run_id)
            seconds = time.perf_counter() - started
            print(f"{label}: {seconds:.1f} s for {int(result.summary['n'].iloc[0])} patients × {len(result.summary) - 1} ROI "
                  f"variants (goal ≤ 60 s cold)")
        print(rb.summary_for_people(result).to_string(index=False))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
