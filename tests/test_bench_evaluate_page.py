"""bench/evaluate_page.py runs end to end in its smoke mode and prints its figure (never a time
asserted: machines are noisy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_evaluate_page_bench_prints_its_figure():
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "evaluate_page.py"), "--smoke"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^click inside a view: \d+\.\d\d s \(goal ≤ 1 s\); ratio: \d+\.\d\d ", done.stdout, re.M), done.stdout
    assert re.search(r"^every view drawn \(before issue 27\): first render \d+\.\d\d s", done.stdout, re.M), done.stdout
