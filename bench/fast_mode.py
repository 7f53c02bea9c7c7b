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


def prepared_workspace(folder: Path) -> Path:
    """The 315-patient sample with labels, its split and the paper's 224-px crops."""
    from crc_core.labels import label_workspace
    from crc_core.preprocess import preprocess_cohort
    from crc_core.sample import SampleConfig, build_sample_workspace

    root = folder / "workspace"
    build_sample_workspace(root, SampleConfig())
    label_workspace(root)
    preprocess_cohort(root)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="densenet121", help="comma-separated (default densenet121)")
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    args = parser.parse_args()
    from crc_core.runs import RunStore
    from crc_core.run_views import summary
    from crc_core.training import TrainConfig, train_grid

    scratch = Path(tempfile.mkdtemp(prefix="fast-mode-"))
    try:
        started = time.perf_counter()
        root = args.workspace or prepared_workspace(scratch)
        print(f"workspace ready in {time.perf_counter() - started:.1f} s: {root}")
        shutil.rmtree(root / "features", ignore_errors=True)
        backbones = tuple(b.strip() for b in args.backbones.split(","))
        config = TrainConfig(targets=("tsr", "til", "is", "time"), backbones=backbones)
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
