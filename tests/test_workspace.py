"""The workspace: paths, problems a user can act on, atomic writes."""

import os
from pathlib import Path

import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.workflow import workflow_status
from crc_core.workspace import (
    Workspace,
    atomic_write_bytes,
    atomic_write_csv,
    ensure_writable_dir,
    remember_workspace,
    remembered_workspace,
    replace_folder,
    start_workspace_path,
    WORKSPACE_ENV,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_missing_workspace_says_how_to_start(tmp_path):
    problems = Workspace(tmp_path / "nowhere").problems()
    assert len(problems) == 1
    assert "does not exist" in problems[0] and "Import your tables on the Cohort page" in problems[0]
    assert "crc-time --workspace" in problems[0]


def test_empty_folder_holds_no_cohort(tmp_path):
    assert "holds no cohort yet" in Workspace(tmp_path).problems()[0]


def test_damaged_table_is_named_and_a_users_table_is_not_told_to_rebuild_the_sample(tmp_path):
    (tmp_path / "clinical.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "pathology.csv").write_text("id,tsr\n1,50\n")
    problems = Workspace(tmp_path).problems()
    assert any("clinical.csv is not a text table: it looks like a PNG image" in p for p in problems)
    assert any("pathology.csv has no 'patient_id' column" in p for p in problems)
    assert not any("sample" in p for p in problems)
    assert all("import the tables again on the Cohort page" in p for p in problems)
    with pytest.raises(CrcInputError, match="pathology.csv has no 'patient_id' column"):
        Workspace(tmp_path).require_usable()
    (tmp_path / "sample.json").write_text("{}")
    assert all("Rebuild the sample" in p for p in Workspace(tmp_path).problems())


def test_a_windows_1252_table_copied_into_a_workspace_is_read(tmp_path):
    # The same reader as uploads: cp1252 "Müller" is not UTF-8, and pd.read_csv would fail on it.
    (tmp_path / "clinical.csv").write_bytes("patient_id,name,age\nP1,Müller,61\nP2,Café,70\n".encode("cp1252"))
    (tmp_path / "pathology.csv").write_text("patient_id,tsr_percent\nP1,40\nP2,60\n")
    workspace = Workspace(tmp_path)
    assert workspace.problems() == []
    clinical = workspace.read_clinical()
    assert clinical["name"].tolist() == ["Müller", "Café"]
    assert clinical["age"].tolist() == [61, 70]


def test_remove_derived_leaves_the_tables_and_the_imaging(tmp_path):
    workspace = Workspace(tmp_path)
    for path in (workspace.clinical_csv, workspace.pathology_csv, workspace.manifest_csv, *workspace.derived_from_tables):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = workspace.remove_derived()
    assert {p.name for p in removed} == {"column_mapping.json", "split.csv", "split.json", "labels.csv",
                                         "labels.json", "latest.json", "sample.json"}
    assert workspace.clinical_csv.exists() and workspace.manifest_csv.exists()


def test_the_last_workspace_chosen_is_remembered_unless_the_environment_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv(WORKSPACE_ENV, raising=False)
    assert remembered_workspace() is None
    chosen = tmp_path / "mine"
    chosen.mkdir()
    remember_workspace(chosen)
    assert remembered_workspace() == chosen.resolve()
    assert start_workspace_path() == chosen.resolve()
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "named"))
    assert start_workspace_path() == tmp_path / "named"
    monkeypatch.delenv(WORKSPACE_ENV)
    chosen.rmdir()  # a folder that is gone is not offered
    assert start_workspace_path() == Path("workspace")


def test_replace_folder_swaps_whole_and_keeps_the_old_on_failure(tmp_path):
    target = tmp_path / "agreement"
    target.mkdir()
    (target / "features.csv").write_text("old")

    def without_features(folder):
        (folder / "masks.csv").write_text("new")

    replace_folder(target, without_features)
    assert sorted(p.name for p in target.iterdir()) == ["masks.csv"]

    def broken(folder):
        (folder / "half.csv").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        replace_folder(target, broken)
    assert sorted(p.name for p in target.iterdir()) == ["masks.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agreement"]


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
    assert not status["CT & ROI"].done
    assert "manifest.csv" in status["CT & ROI"].detail


def test_replacing_the_tables_forgets_the_old_cohorts_saved_folds(tmp_path):
    # Found in review: folds drawn on the old cohort's patients were kept, so the new cohort's first
    # k-fold run reported every patient "added and removed" before drawing them again.
    from crc_core.cohort.splits import folds_csv

    workspace = Workspace(tmp_path)
    saved = folds_csv(workspace, "tsr", 5, 0)
    saved.parent.mkdir(parents=True)
    saved.write_text("patient_id,fold,label_at_draw\nP1,0,1\n")
    unrelated = workspace.folds_dir / "README.txt"
    unrelated.write_text("mine")
    removed = workspace.remove_derived()
    assert saved in removed and not saved.exists()
    assert unrelated.exists()  # only what CRC-TIME wrote there
