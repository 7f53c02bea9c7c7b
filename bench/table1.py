"""How long Table 1 takes: the sample cohort (315 patients × 26 variables) and 100,000 patients.

Goals (issue 4, 2 cores): ≤ 100 ms and ≤ 3 s. Prints figures only; never asserts on time.
Run with `make bench` or `python bench/table1.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from crc_core.sample.cohort import SampleConfig, generate_tables
from crc_core.cohort.table1 import TableOneOptions, table_one


def best_of(repeats: int, action) -> tuple[float, float]:
    """Best and median wall time in seconds over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def enlarge(clinical: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A cohort of ``n`` patients drawn from the sample's rows, continuous values jittered so
    that ties stay realistic and the tests see new data; the split re-drawn 7:3."""
    rng = np.random.default_rng(seed)
    big = clinical.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    for column in big.select_dtypes("float").columns:
        big[column] = (big[column] * rng.normal(1.0, 0.02, n)).round(2)
    big["split"] = np.where(rng.random(n) < 0.7, "train", "validation")
    big["patient_id"] = [f"B{i:06d}" for i in range(n)]
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2 repeats and 2,000 instead of 100,000 patients")
    args = parser.parse_args()
    repeats, big_n = (2, 2_000) if args.smoke else (20, 100_000)
    clinical = generate_tables(SampleConfig()).clinical
    variables = [c for c in clinical.columns if c not in ("patient_id", "split")]
    print(f"sample: {len(clinical)} patients × {len(variables)} variables")
    best, median = best_of(repeats, lambda: table_one(clinical, "split"))
    print(f"Table 1, 315 patients: best {best * 1e3:.0f} ms, median {median * 1e3:.0f} ms (goal ≤ 100 ms)")
    best_smd, _ = best_of(repeats, lambda: table_one(clinical, "split", options=TableOneOptions(smd=True)))
    print(f"  with SMD: best {best_smd * 1e3:.0f} ms")
    best_sw, _ = best_of(repeats, lambda: table_one(clinical, "split", options=TableOneOptions(normality="shapiro")))
    print(f"  Shapiro-Wilk instead of KS: best {best_sw * 1e3:.0f} ms")
    big = enlarge(clinical, big_n)
    best_big, median_big = best_of(1 if args.smoke else 3, lambda: table_one(big, "split"))
    print(f"Table 1, {big_n:,} patients: best {best_big:.2f} s, median {median_big:.2f} s (goal ≤ 3 s); "
          f"{best_big / best:.0f}× the sample's time for {len(big) / len(clinical):.0f}× the patients")


if __name__ == "__main__":
    main()
