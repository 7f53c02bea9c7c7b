"""The run store: runs, metrics and predictions in SQLite (WAL), readable while written, across a
restart, with dead runs read as interrupted; metrics keyed by fold and stored once; a store of the
first schema opened and migrated; what a run is, and where its files are."""

from __future__ import annotations

import socket
import sqlite3
import time

import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.runs.store import NO_FOLD, SCHEMA_VERSION, RunFolder, RunMode, RunRecord, RunStore


def test_a_run_with_its_metrics_and_predictions_survives_a_restart(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(target="tsr", backbone="densenet121", mode="features", config={"seed": 3},
                              info={"code_version": "0.1.0"})
    store.add_metrics(run_id, [("step", 1, 0, "train_loss", 0.7), ("epoch", 1, 0, "val_auc", float("nan"))])
    store.set_predictions(run_id, "validation", pd.DataFrame({"patient_id": ["P2", "P1"], "y_true": [1, 0], "prob": [0.8, 0.3]}))
    store.set_predictions(run_id, "cv", pd.DataFrame({"patient_id": ["P3"], "prob": [0.5]}), fold=2)
    store.update(run_id, info={"weights": {"pretrained": True}})
    store.finish(run_id, "done", "fine")

    reopened = RunStore(tmp_path)  # a new process: only the files
    run = reopened.run(run_id)
    assert (run.status, run.message, run.config, run.random_init) == ("done", "fine", {"seed": 3}, False)
    assert run.info["code_version"] == "0.1.0" and run.mode is RunMode.FEATURES
    metrics = reopened.metrics([run_id])
    assert metrics["name"].tolist() == ["val_auc", "train_loss"] and pd.isna(metrics["value"].iloc[0])
    assert metrics["fold"].tolist() == [NO_FOLD, NO_FOLD]
    validation = reopened.predictions(run_id, "validation")
    assert validation[["patient_id", "y_true", "prob"]].values.tolist() == [["P2", 1, 0.8], ["P1", 0, 0.3]]
    assert validation["fold"].tolist() == [NO_FOLD, NO_FOLD]
    cv = reopened.predictions(run_id, "cv")
    assert cv["fold"].tolist() == [2] and pd.isna(cv["y_true"].iloc[0])
    with sqlite3.connect(tmp_path / "runs" / "runs.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_predictions_of_a_cohort_are_replaced_not_added(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(target="til", backbone="resnet50", mode="features", config={})
    for prob in (0.1, 0.9):
        store.set_predictions(run_id, "external:Lanzhou", pd.DataFrame({"patient_id": ["X1"], "prob": [prob]}))
    assert store.predictions(run_id)["prob"].tolist() == [0.9]


def test_a_run_that_stopped_beating_reads_as_interrupted_with_how_to_resume(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(target="tsr", backbone="resnet34", mode="finetune", config={})
    assert store.run(run_id).status == "running"
    store.update(run_id, heartbeat_at=time.time() - 600, host="gpu-server")
    run = store.run(run_id)
    assert run.status == "interrupted" and f"crc-time train --resume {run_id}" in run.message
    store.update(run_id, host=socket.gethostname(), pid=2**22 + 1, heartbeat_at=time.time())  # a dead local worker
    assert store.run(run_id).status == "interrupted"


def test_listing_many_runs_newest_first(tmp_path):
    store = RunStore(tmp_path)
    first = store.create_run(target="tsr", backbone="densenet121", mode="features", config={})
    with sqlite3.connect(store.path) as db:  # 499 more, as a long study accumulates them
        db.executemany("INSERT INTO runs (run_id, created_at, target, backbone, mode, status, config) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(f"r{i:03d}", time.time() + i, "is", "resnet50", "features", "done", "{}") for i in range(499)])
    table = store.table()
    assert len(table) == 500 and table["run_id"].iloc[0] == "r498" and table["run_id"].iloc[-1] == first
    assert [r.run_id for r in store.runs(target="tsr")] == [first]


def test_an_empty_or_damaged_store_is_said_plainly(tmp_path):
    assert RunStore(tmp_path).runs() == [] and RunStore(tmp_path).table().empty
    with pytest.raises(CrcInputError, match=r"There is no run 'nope'"):
        RunStore(tmp_path).run("nope")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "runs.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CrcInputError, match=r"runs\.sqlite is damaged .* Move it aside"):
        RunStore(tmp_path).runs()


def test_metrics_carry_their_fold_and_a_key_written_again_replaces_its_row(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run(target="tsr", backbone="resnet34", mode="finetune", config={})
    for fold in (0, 1):
        store.add_metrics(run_id, [("step", s, 0, "train_loss", 0.5 + fold) for s in (1, 2, 3)], fold=fold)
    # A resume redoes epoch 0 of fold 1: its steps are written again, not added.
    store.add_metrics(run_id, [("step", s, 0, "train_loss", 0.1) for s in (1, 2, 3)], fold=1)
    steps = store.metrics([run_id], "step")
    assert len(steps) == 6 and steps.groupby("fold")["value"].first().to_dict() == {0: 0.5, 1: 0.1}
    assert not steps["name"].str.contains("@").any()
    assert store.clear_metrics_after(run_id, -1, fold=0) == 3
    assert store.metrics([run_id])["fold"].unique().tolist() == [1]
    later = store.metrics([run_id], since=time.time() + 60)
    assert later.empty  # a live view reads only what is new


def _version_one_store(path):
    """A run store as the first schema wrote it: folds spelled into metric names, the penalty
    path's fold in its epoch column, AUCs stored as metrics, a resumed step stored twice."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.executescript("""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, created_at REAL NOT NULL, target TEXT NOT NULL, backbone TEXT NOT NULL,
            mode TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', config TEXT NOT NULL,
            info TEXT NOT NULL DEFAULT '{}', group_id TEXT, job_id TEXT, host TEXT NOT NULL DEFAULT '', pid INTEGER,
            heartbeat_at REAL NOT NULL DEFAULT 0, finished_at REAL);
        CREATE INDEX runs_by_time ON runs (created_at);
        CREATE TABLE metrics (run_id TEXT NOT NULL, scope TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
            name TEXT NOT NULL, value REAL, at REAL NOT NULL);
        CREATE INDEX metrics_by_run ON metrics (run_id, scope);
        CREATE TABLE predictions (run_id TEXT NOT NULL, cohort TEXT NOT NULL, fold INTEGER NOT NULL, patient_id TEXT NOT NULL,
            y_true INTEGER, prob REAL NOT NULL, PRIMARY KEY (run_id, cohort, fold, patient_id));
        CREATE TABLE store (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO store VALUES ('schema_version', '1');
        INSERT INTO runs (run_id, created_at, target, backbone, mode, status, config, info)
            VALUES ('old', 1.0, 'tsr', 'resnet34', 'finetune', 'done', '{"epochs": 2, "evaluation": "kfold"}',
                    '{"weights": {"pretrained": false}}');
        INSERT INTO metrics VALUES ('old', 'step', 1, 0, 'train_loss@0', 0.9, 1.0);
        INSERT INTO metrics VALUES ('old', 'step', 1, 0, 'train_loss@0', 0.8, 2.0);
        INSERT INTO metrics VALUES ('old', 'step', 1, 0, 'train_loss@1', 0.7, 2.0);
        INSERT INTO metrics VALUES ('old', 'epoch', 1, 0, 'val_loss@1', 0.6, 2.0);
        INSERT INTO metrics VALUES ('old', 'fold', 0, 0, 'auc:cv', 0.7, 2.0);
        INSERT INTO metrics VALUES ('old', 'penalty', 3, 1, 'cv_log_loss', 0.65, 2.0);
        INSERT INTO predictions VALUES ('old', 'cv', 0, 'P1', 1, 0.8);
        """)


def test_a_store_of_the_first_schema_opens_and_is_migrated_once(tmp_path):
    _version_one_store(tmp_path / "runs" / "runs.sqlite")
    store = RunStore(tmp_path)
    assert store.schema_version() == 1
    run = store.run("old")
    assert run.mode is RunMode.FINETUNE and run.random_init and run.done
    metrics = store.metrics(["old"])
    rows = set(zip(metrics["fold"], metrics["scope"], metrics["epoch"], metrics["step"], metrics["name"], metrics["value"]))
    assert rows == {(0, "step", 0, 1, "train_loss", 0.8), (1, "step", 0, 1, "train_loss", 0.7),
                    (1, "epoch", 0, 1, "val_loss", 0.6), (1, "penalty", 0, 3, "cv_log_loss", 0.65)}
    assert store.schema_version() == SCHEMA_VERSION
    assert store.predictions("old")["prob"].tolist() == [0.8]


def test_a_store_of_a_newer_schema_is_refused_not_misread(tmp_path):
    store = RunStore(tmp_path)
    store.create_run(target="tsr", backbone="resnet34", mode="features", config={})
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE store SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(CrcInputError, match=r"written by a newer CRC-TIME \(schema 99"):
        store.runs()


def test_a_run_says_what_it_is():
    def record(mode, **info):
        return RunRecord("r", 0.0, "tsr", "densenet121", mode, "done", "", {}, info)

    assert record("features", weights={"pretrained": False}).random_init
    assert not record("features", weights={"pretrained": True}).random_init
    assert not record("radiomics", weights={"pretrained": False}).random_init
    assert record("combined", weights={"pretrained": False}).random_init  # its DL run's network was random
    assert [record(m).has_network for m in RunMode] == [True, True, False, False]
    assert record("finetune", weights={"pretrained": True}).starting_weights == "ImageNet"
    with pytest.raises(CrcInputError, match="unknown mode 'svm'"):
        record("svm")


def test_the_run_folder_names_every_file_per_fold(tmp_path):
    folder = RunFolder(tmp_path)
    assert [folder.best_checkpoint().name, folder.best_checkpoint(2).name, folder.last_checkpoint(NO_FOLD).name] == \
        ["best.pt", "best-2.pt", "last.pt"]
    assert (folder.linear_model(0).name, folder.done_marker(3).name) == ("model-0.json", "done-3")
    assert folder.cam_maps("external:Lanzhou", "gradcam++").relative_to(tmp_path).as_posix() == "cam/external-Lanzhou-gradcampp.npz"
    assert folder.folds() == [None]
    folder.partitions.write_text('{"partitions": [{"fold": 0}, {"fold": 1}]}')
    assert folder.folds() == [0, 1]
