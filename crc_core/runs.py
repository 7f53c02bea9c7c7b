"""The run store: every training run of a workspace — its config, status, what it was trained on,
per-step and per-epoch metrics, and per-patient predictions for every cohort and fold.

One SQLite database, ``runs/runs.sqlite`` in WAL mode, with each run's checkpoints and logs in
``runs/<run_id>/`` beside it. Why SQLite rather than files written atomically: a page reads a run's
curves every second while its worker appends a row per step; in WAL mode readers get a consistent
snapshot without blocking the writer and never see half a row, where files would need either a new
file per step or a growing file rewritten whole. Listing 500 runs is one indexed query. The store
and the run folders copy as they are from a GPU server to a laptop, and the dashboard then shows
those runs like its own.

A run's liveness follows the job rule (:func:`crc_core.jobs.why_dead`): a heartbeat at least
every few seconds while it trains; a run that stopped beating reads as ``interrupted`` and can be
resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace

STORE_FILE = "runs.sqlite"
RUN_STATES = ("queued", "running", "done", "failed", "stopped", "interrupted")
FINISHED_STATES = ("done", "failed", "stopped", "interrupted")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    target TEXT NOT NULL,
    backbone TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL,
    info TEXT NOT NULL DEFAULT '{}',
    group_id TEXT,
    job_id TEXT,
    host TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    heartbeat_at REAL NOT NULL DEFAULT 0,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (created_at);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, scope);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT NOT NULL,
    cohort TEXT NOT NULL,
    fold INTEGER NOT NULL,
    patient_id TEXT NOT NULL,
    y_true INTEGER,
    prob REAL NOT NULL,
    PRIMARY KEY (run_id, cohort, fold, patient_id)
);
CREATE TABLE IF NOT EXISTS store (key TEXT PRIMARY KEY, value TEXT);
"""

#: ``fold`` of a prediction that belongs to no fold (a holdout cohort).
NO_FOLD = -1


@dataclass(frozen=True)
class RunRecord:
    """One run as stored: what was asked (``config``), what it ran on (``info``: device,
    precision, weights, code version, crop set, hashes of labels and split) and how it ended."""

    run_id: str
    created_at: float
    target: str
    backbone: str
    mode: str
    status: str
    message: str
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    job_id: str | None = None
    host: str = ""
    pid: int | None = None
    heartbeat_at: float = 0.0
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES

    @property
    def pretrained(self) -> bool:
        return bool(self.info.get("weights", {}).get("pretrained", self.mode == "radiomics"))

    def run_dir(self, workspace: Workspace) -> Path:
        return Workspace.of(workspace).runs_dir / self.run_id


def new_run_id(target: str, backbone: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{target}-{backbone}-{uuid.uuid4().hex[:4]}"


class RunStore:
    """The run store of one workspace. Every method opens its own short connection, so one
    object may be shared by a page's reruns and a worker's threads."""

    def __init__(self, workspace: Workspace | Path | str):
        self.workspace = Workspace.of(workspace)
        self.path = self.workspace.runs_dir / STORE_FILE

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise CrcInputError(f"The run store {self.path} cannot be opened ({exc}).") from exc
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            if write:
                connection.executescript(_SCHEMA)
                connection.execute("INSERT OR IGNORE INTO store VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            yield connection
            connection.commit()
        except sqlite3.DatabaseError as exc:
            raise CrcInputError(
                f"The run store {self.path} is damaged ({exc}). Move it aside to start a new one; the run "
                "folders beside it keep the checkpoints."
            ) from exc
        finally:
            connection.close()

    # -- writing (the worker) -------------------------------------------------------------------

    def create_run(self, *, target: str, backbone: str, mode: str, config: dict[str, Any],
                   info: dict[str, Any] | None = None, group_id: str | None = None,
                   job_id: str | None = None, status: str = "running", run_id: str | None = None) -> str:
        run_id = run_id or new_run_id(target, backbone)
        now = time.time()
        with self._connect(write=True) as db:
            db.execute(
                "INSERT INTO runs (run_id, created_at, target, backbone, mode, status, config, info, group_id, job_id,"
                " host, pid, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now, target, backbone, mode, status, json.dumps(config), json.dumps(info or {}), group_id,
                 job_id, socket.gethostname(), os.getpid(), now),
            )
        (self.workspace.runs_dir / run_id).mkdir(parents=True, exist_ok=True)
        return run_id

    def update(self, run_id: str, *, info: dict[str, Any] | None = None, **fields: Any) -> None:
        """Set columns (status, message, ...); ``info`` is merged into what is stored."""
        with self._connect(write=True) as db:
            if info is not None:
                row = db.execute("SELECT info FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                merged = {**json.loads(row[0] if row else "{}"), **info}
                fields["info"] = json.dumps(merged)
            if fields:
                columns = ", ".join(f"{name} = ?" for name in fields)
                db.execute(f"UPDATE runs SET {columns} WHERE run_id = ?", (*fields.values(), run_id))

    def claim(self, run_id: str) -> None:
        """This process now runs ``run_id`` (a start or a resume): its host, PID and a heartbeat."""
        self.update(run_id, status="running", message="", host=socket.gethostname(), pid=os.getpid(),
                    heartbeat_at=time.time(), finished_at=None)

    def heartbeat(self, run_id: str) -> None:
        with self._connect(write=True) as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id))

    def finish(self, run_id: str, status: str, message: str = "") -> None:
        if status not in FINISHED_STATES:
            raise ValueError(f"status must be one of {FINISHED_STATES}, not {status!r}")
        self.update(run_id, status=status, message=message, finished_at=time.time())

    def add_metrics(self, run_id: str, rows: Iterable[tuple[str, int, int, str, float]]) -> None:
        """Rows of (scope "step"/"epoch", step, epoch, name, value); also a heartbeat."""
        now = time.time()
        with self._connect(write=True) as db:
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(run_id, scope, int(step), int(epoch), name, _plain(value), now)
                            for scope, step, epoch, name, value in rows])
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (now, run_id))

    def clear_metrics_after(self, run_id: str, epoch: int) -> None:
        """Forget metrics of epochs after ``epoch`` (a resume redoes them)."""
        with self._connect(write=True) as db:
            db.execute("DELETE FROM metrics WHERE run_id = ? AND epoch > ?", (run_id, int(epoch)))

    def set_predictions(self, run_id: str, cohort: str, table: pd.DataFrame, fold: int | None = None) -> None:
        """Replace the run's predictions for ``cohort`` (and ``fold``): columns ``patient_id``,
        ``prob`` and optionally ``y_true``."""
        missing = [c for c in ("patient_id", "prob") if c not in table.columns]
        if missing:
            raise ValueError(f"predictions need columns {missing}")
        fold_value = NO_FOLD if fold is None else int(fold)
        y_true = table["y_true"] if "y_true" in table.columns else pd.Series([None] * len(table))
        rows = [
            (run_id, cohort, fold_value, str(p), None if pd.isna(y) else int(y), float(prob))
            for p, y, prob in zip(table["patient_id"], y_true, table["prob"])
        ]
        with self._connect(write=True) as db:
            db.execute("DELETE FROM predictions WHERE run_id = ? AND cohort = ? AND fold = ?", (run_id, cohort, fold_value))
            db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)

    # -- reading (the pages, the CLI) -----------------------------------------------------------

    def _records(self, where: str = "", parameters: Sequence[Any] = ()) -> list[RunRecord]:
        try:
            with self._connect() as db:
                rows = db.execute(
                    "SELECT run_id, created_at, target, backbone, mode, status, message, config, info, group_id,"
                    f" job_id, host, pid, heartbeat_at, finished_at FROM runs {where} ORDER BY created_at DESC",
                    parameters,
                ).fetchall()
        except FileNotFoundError:
            return []
        records = []
        for row in rows:
            record = RunRecord(*row[:7], json.loads(row[7]), json.loads(row[8] or "{}"), *row[9:])
            records.append(_with_liveness(record))
        return records

    def runs(self, *, target: str | None = None) -> list[RunRecord]:
        """Every run, newest first (running ones that stopped beating read as interrupted)."""
        return self._records("WHERE target = ?", (target,)) if target else self._records()

    def run(self, run_id: str) -> RunRecord:
        found = self._records("WHERE run_id = ?", (run_id,))
        if not found:
            known = ", ".join(r.run_id for r in self._records()[:5]) or "none yet"
            raise CrcInputError(f"There is no run {run_id!r} in {self.path} (latest: {known}).")
        return found[0]

    def metrics(self, run_ids: Sequence[str], scope: str | None = None) -> pd.DataFrame:
        columns = ["run_id", "scope", "step", "epoch", "name", "value", "at"]
        if not run_ids:
            return pd.DataFrame(columns=columns)
        marks = ", ".join("?" for _ in run_ids)
        where = f"run_id IN ({marks})" + (" AND scope = ?" if scope else "")
        try:
            with self._connect() as db:
                rows = db.execute(f"SELECT * FROM metrics WHERE {where} ORDER BY rowid",
                                  (*run_ids, *([scope] if scope else []))).fetchall()
        except FileNotFoundError:
            rows = []
        return pd.DataFrame(rows, columns=columns)

    def predictions(self, run_id: str, cohort: str | None = None) -> pd.DataFrame:
        """A run's predictions: ``cohort``, ``fold`` (-1 for none), ``patient_id``, ``y_true``, ``prob``."""
        columns = ["cohort", "fold", "patient_id", "y_true", "prob"]
        try:
            with self._connect() as db:
                query = "SELECT cohort, fold, patient_id, y_true, prob FROM predictions WHERE run_id = ?"
                rows = db.execute(query + (" AND cohort = ?" if cohort else "") + " ORDER BY rowid",
                                  (run_id, *([cohort] if cohort else []))).fetchall()
        except FileNotFoundError:
            rows = []
        table = pd.DataFrame(rows, columns=columns)
        table["y_true"] = table["y_true"].astype("Int64")
        return table

    def table(self) -> pd.DataFrame:
        """One row per run for listing: id, when, target, backbone, mode, status, weights."""
        return pd.DataFrame([
            {
                "run_id": r.run_id, "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
                "target": r.target, "backbone": r.backbone, "mode": r.mode, "status": r.status,
                "weights": "ImageNet" if r.pretrained else ("—" if r.mode == "radiomics" else "random init"),
                "message": r.message,
            }
            for r in self.runs()
        ], columns=["run_id", "started", "target", "backbone", "mode", "status", "weights", "message"])


def _plain(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is stored as NULL


def _with_liveness(record: RunRecord) -> RunRecord:
    from dataclasses import replace

    from crc_core.jobs import why_dead

    if record.status != "running":
        return record
    dead = why_dead(record.host, record.pid, record.heartbeat_at)
    if not dead:
        return record
    return replace(record, status="interrupted", message=f"{dead}; resume it with `crc-time train --resume {record.run_id}`")
