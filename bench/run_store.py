"""The run store at the size of a long study: 500 runs with per-step metrics and predictions.
Prints how long listing them takes (goal: under 1 s) for the CLI's table and the Train page's
overview, whose AUCs are computed from the 157,500 stored predictions in the same query; never
asserts on time.

    .venv/bin/python bench/run_store.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20 runs instead of 500")
    args = parser.parse_args()
    n_runs = 20 if args.smoke else 500
    from crc_core.runs.store import RunStore
    from crc_core.runs.views import runs_overview

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        store = RunStore(Path(scratch))
        started = time.perf_counter()
        patients = [f"CRC{i:03d}" for i in range(315)]
        for i in range(n_runs):
            run_id = store.create_run(target=("tsr", "til", "is", "time")[i % 4], backbone="densenet121", mode="finetune",
                                      config={"epochs": 100, "evaluation": "holdout"}, info={"weights": {"pretrained": True}})
            store.add_metrics(run_id, [("step", s, s // 7, "train_loss", float(rng.random())) for s in range(700)])
            for cohort, ids in (("train", patients[:220]), ("validation", patients[220:])):
                y = rng.integers(0, 2, len(ids))
                store.set_predictions(run_id, cohort, pd.DataFrame({"patient_id": ids, "y_true": y, "prob": rng.random(len(ids))}))
            store.finish(run_id, "done")
        print(f"{n_runs} runs written (700 step metrics and 315 predictions each) in {time.perf_counter() - started:.1f} s; "
              f"store {store.path.stat().st_size / 2**20:.0f} MB")
        for label, list_them in (("crc-time runs table", store.table), ("Train page overview with AUCs", lambda: runs_overview(store))):
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                rows = len(list_them())
                timings.append(time.perf_counter() - started)
            print(f"{label}: {rows} runs listed in {min(timings):.3f} s (best of 3; goal under 1 s)")


if __name__ == "__main__":
    main()
