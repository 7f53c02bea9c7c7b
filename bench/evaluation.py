"""Evaluation speed: DeLong's AUC CI at n = 10,000 and 100,000, the stratified bootstrap CI with 2000
resamples at n = 10,000, and the Evaluate page's render for one run (AppTest, a cold cache).
Prints the figures; never asserts on time.

    .venv/bin/python bench/evaluation.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def best_of(function, repeats: int = 3) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="n = 1,000 and 200 resamples; the page once")
    args = parser.parse_args()
    from crc_core.metrics.roc import auc_ci

    rng = np.random.default_rng(0)
    for n in ((1_000,) if args.smoke else (10_000, 100_000)):
        y = rng.integers(0, 2, n)
        score = np.clip(rng.normal(0.45 + 0.15 * y, 0.2), 0, 1)
        seconds = best_of(lambda: auc_ci(y, score))
        print(f"DeLong AUC CI, n = {n:,}: {1000 * seconds:.1f} ms (goal at 100,000: ≤ 50 ms)")
    n, resamples = (1_000, 200) if args.smoke else (10_000, 2000)
    y = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.45 + 0.15 * y, 0.2), 0, 1)
    seconds = best_of(lambda: auc_ci(y, score, "bootstrap", n_boot=resamples), repeats=1 if args.smoke else 2)
    print(f"bootstrap AUC CI, {resamples} stratified resamples, n = {n:,}: {seconds:.2f} s (goal at 2000 and 10,000: ≤ 1 s)")

    from streamlit.testing.v1 import AppTest

    from crc_core.runs.store import RunStore
    from crc_core.workspace import WORKSPACE_ENV

    import os

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "ws"
        root.mkdir()
        for name in ("clinical.csv", "pathology.csv"):
            (root / name).write_text("patient_id,x\nP1,1\nP2,2\n")
        store = RunStore(root)
        run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={}, info={"weights": {"pretrained": True}})
        for cohort, n in (("train", 220), ("validation", 95)):
            y = rng.integers(0, 2, n)
            prob = 1 / (1 + np.exp(-((2 * y - 1) + rng.normal(0, 1, n))))
            store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": [f"{cohort}{i}" for i in range(n)], "y_true": y, "prob": prob}))
        store.finish(run_id, "done")
        os.environ[WORKSPACE_ENV] = str(root)
        app = AppTest.from_file(str(REPO_ROOT / "pages" / "evaluate.py"), default_timeout=120)
        started = time.perf_counter()
        app.run()
        cold = time.perf_counter() - started
        started = time.perf_counter()
        app.run()
        warm = time.perf_counter() - started
        print(f"Evaluate page, one run (220 + 95 patients): {cold:.2f} s first render, {warm:.2f} s rerun (goal ≤ 2 s); "
              f"{'an exception' if app.exception else 'no exception'}")


if __name__ == "__main__":
    main()
