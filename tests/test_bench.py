"""Every benchmark runs, at toy size (``--smoke``), and prints its figure line: a rename or a moved
name can never again break one silently (``train_throughput.py`` once imported a class renamed a
release earlier, inside a function, so its ``--help`` passed and its run crashed).

Only that it runs and what it prints are checked, never how long it took (machines are noisy).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

#: The line each benchmark prints with its figure, as a pattern. A new benchmark must add its
#: line here (test_every_benchmark_is_checked), so none is left outside the net.
FIGURE_LINES = {
    "table1.py": r"^Table 1, 315 patients: best \d+ ms, median \d+ ms",
    "run_store.py": r"^Train page overview with AUCs: 20 runs listed in \d+\.\d+ s",
    "evaluation.py": r"^Evaluate page, one run .*: \d+\.\d+ s first render, \d+\.\d+ s rerun .*; no exception$",
    "sample.py": r"^12 patients with images: 1 worker \d+\.\d s, \d+ workers \d+\.\d s \(speed-up \d+\.\d+x\)",
    "preprocess.py": r"^real size 128 × 128 × 80, 2 patients, \d+ workers: \d+\.\d+ s",
    "train_throughput.py": r"^ratio: \d+\.\d\d$",
    "fast_mode.py": r"^warm \(features from the cache\): 1 runs in \d+\.\d s; validation AUC: tsr × densenet121 \d\.\d{3}",
    "cam.py": r"^ratio: \d+\.\d\d \(Grad-CAM ÷ bare forward",
    "robustness.py": r"^warm \(crops from the cache\): \d+\.\d s for \d+ patients × 5 ROI variants",
    "idle.py": r"^ratio: \d+\.\d \(default watcher ÷ the project's settings\)$",
    "onnx_forward.py": r"^ratio R: densenet121 \d+\.\d\d, resnet50 \d+\.\d\d \(ONNX Runtime fp32 ÷ torch fp32",
    "evaluate_page.py": r"^click inside a view: \d+\.\d\d s \(goal ≤ 1 s\); ratio: \d+\.\d\d ",
}
#: Those that build a workspace, train, or start a browser: tens of seconds each, in the slow lane.
SLOW = {"preprocess.py", "train_throughput.py", "fast_mode.py", "cam.py", "robustness.py", "idle.py", "evaluate_page.py", "onnx_forward.py"}


def _benchmarks() -> list[str]:
    return sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))


def test_every_benchmark_is_checked():
    assert set(_benchmarks()) <= set(FIGURE_LINES), (
        f"add the figure line of {sorted(set(_benchmarks()) - set(FIGURE_LINES))} to FIGURE_LINES")


@pytest.mark.parametrize("script", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])
                                    for name in _benchmarks()])
def test_benchmark_runs_in_smoke_mode_and_prints_its_figure(script, tmp_path):
    if script == "idle.py" and not (Path("/usr/bin/chromium").exists() or Path("/usr/bin/chromium-browser").exists()):
        pytest.skip("the idle benchmark drives Debian's chromium, which is not installed")
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert re.search(FIGURE_LINES[script], done.stdout, re.MULTILINE), (
        f"{script} --smoke did not print its figure line /{FIGURE_LINES[script]}/:\n{done.stdout[-3000:]}")
