"""The workspace: paths, problems a user can act on, atomic writes."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.workspace import (
    Workspace,
    atomic_write_bytes,
    atomic_write_csv,
    ensure_writable_dir,
    workflow_status,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_missing_workspace_says_how_to_rebuild(tmp_path):
    problems = Workspace(tmp_path / "nowhere").problems()
    assert len(problems) == 1
    assert "does not exist" in problems[0] and "crc-time --workspace" in problems[0]


def test_damaged_table_is_named(tmp_path):
    (tmp_path / "clinical.csv").write_bytes(b"\x00\x01not,a\ntable")
    (tmp_path / "pathology.csv").write_text("id,tsr\n1,50\n")
    problems = Workspace(tmp_path).problems()
    assert any("pathology.csv has no `patient_id` column" in p for p in problems)
    with pytest.raises(CrcInputError, match="pathology.csv has no `patient_id` column"):
        Workspace(tmp_path).require_usable()


def test_file_instead_of_folder(tmp_path):
    target = tmp_path / "ws"
    target.write_text("x")
    assert "is a file, not a folder" in Workspace(target).problems()[0]


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_csv_is_byte_stable(tmp_path):
    table = pd.DataFrame({"patient_id": ["A", "B"], "x": [1.5, None]})
    first = atomic_write_csv(tmp_path / "a.csv", table).read_bytes()
    second = atomic_write_csv(tmp_path / "b.csv", table).read_bytes()
    assert first == second == b"patient_id,x\nA,1.5\nB,\n"


def test_unwritable_folder_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CrcInputError, match="Cannot write to the folder"):
        ensure_writable_dir(blocker / "sub")


def test_workflow_status_of_sample(sample_workspace):
    status = {s.step: s for s in workflow_status(Workspace(sample_workspace))}
    assert list(status) == ["Cohort", "Labels", "CT & ROI", "Train", "Evaluate"]
    assert status["Cohort"].done
    assert "manifest.csv" in status["CT & ROI"].detail


def test_core_never_imports_streamlit():
    # Import every core module in a clean interpreter and check streamlit stayed out.
    modules = sorted(p.stem for p in (REPO_ROOT / "crc_core").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('crc_core.' + name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
