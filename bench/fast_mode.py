"""The fast mode on the sample: frozen DenseNet-121 features + penalised logistic regression for all
four targets, cold (features computed) and warm (features from the cache). Prints the figures and
each target's validation AUC; never asserts on time.

    .venv/bin/python bench/fast_mode.py [--backbones densenet121,resnet50] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


#: ``--smoke``: the same steps at toy size, so the tests run every benchmark in seconds and a
#: rename can never silently break one. Its figures mean nothing.
SMOKE_PATIENTS, SMOKE_SIZE = 40, 64


def prepared_workspace(folder: Path, *, smoke: bool = False) -> Path:
    """The 315-patient sample with labels, its split and the paper's 224-px crops (with ``smoke``,
    40 patients and 64-px crops, the smallest a DenseNet still gives Grad-CAM a 2 × 2 map)."""
    from crc_core.imaging.volumes import PreprocessConfig
    from crc_core.labels.rules import label_workspace
    from crc_core.imaging.preprocess import preprocess_cohort
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    root = folder / "workspace"
    build_sample_workspace(root, SampleConfig(n_patients=SMOKE_PATIENTS) if smoke else SampleConfig())
    label_workspace(root)
    preprocess_cohort(root, PreprocessConfig(size=SMOKE_SIZE) if smoke else None)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="densenet121", help="comma-separated (default densenet121)")
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    parser.add_argument("--smoke", action="store_true", help="toy size (40 patients, 64 px, one target): checks it runs")
    args = parser.parse_args()
    from crc_core.runs.store import RunStore
    from crc_core.runs.views import summary
    from crc_core.training.grid import TrainConfig, train_grid

    scratch = Path(tempfile.mkdtemp(prefix="fast-mode-"))
    try:
        started = time.perf_counter()
        root = args.workspace or prepared_workspace(scratch, smoke=args.smoke)
        print(f"workspace ready in {time.perf_counter() - started:.1f} s: {root}")
        shutil.rmtree(root / "features", ignore_errors=True)
        backbones = tuple(b.strip() for b in args.backbones.split(","))
        targets = ("tsr",) if args.smoke else ("tsr", "til", "is", "time")
        config = TrainConfig(targets=targets, backbones=backbones)
        for label in ("cold (features computed)", "warm (features from the cache)"):
            started = time.perf_counter()
            run_ids = train_grid(root, config)
            seconds = time.perf_counter() - started
            store = RunStore(root)
            aucs = []
            for run_id in run_ids:
                run = store.run(run_id)
                result = summary(store, run_id)
                aucs.append(f"{run.target} × {run.backbone} {result['validation']['auc']:.3f}"
                            + (" (random init)" if run.random_init else ""))
            print(f"{label}: {len(run_ids)} runs in {seconds:.1f} s; validation AUC: {'; '.join(aucs)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
