"""The run store: runs, metrics and predictions in SQLite (WAL), readable while written, across a
restart, with dead runs read as interrupted."""

from __future__ import annotations

import socket
import sqlite3
import time

import pandas as pd
import pytest

from crc_core.errors import CrcInputError
from crc_core.runs import NO_FOLD, RunStore


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
    assert (run.status, run.message, run.config, run.pretrained) == ("done", "fine", {"seed": 3}, True)
    assert run.info["code_version"] == "0.1.0"
    metrics = reopened.metrics([run_id])
    assert metrics["name"].tolist() == ["train_loss", "val_auc"] and pd.isna(metrics["value"].iloc[1])
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
