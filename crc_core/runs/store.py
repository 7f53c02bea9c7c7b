"""The run, in one place: what a training run is (:class:`RunRecord`: its mode, whether it started
from random weights, whether it has a network), where its files are (:class:`RunFolder`, per
fold), the store of every run of a workspace (:class:`RunStore`: config, status, metrics and
per-patient predictions), and the one way to rebuild a run's model (:func:`load_run_model`), which
prediction, Grad-CAM and the report all use.

The store is one SQLite database, ``runs/runs.sqlite`` in WAL mode, with each run's checkpoints
and models in ``runs/<run_id>/`` beside it. Why SQLite rather than files written atomically: a page
reads a run's curves every second while its worker appends a row per step; in WAL mode readers get
a consistent snapshot without blocking the writer and never see half a row, where files would need
either a new file per step or a growing file rewritten whole. Listing 500 runs is one indexed
query. The store and the run folders copy as they are from a GPU server to a laptop, and the
dashboard then shows those runs like its own.

Metrics are keyed by (run, fold, scope, epoch, step, name) and each key is stored once, so a resumed
run that redoes an interrupted epoch replaces its rows instead of adding them. A run lives by the
rule of jobs (:func:`crc_core.jobs.why_dead`): a ``running`` run that stopped beating reads as
``interrupted`` and can be resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from crc_core.errors import CrcInputError
from crc_core.jobs import ENDED, RUNNING, why_dead
from crc_core.workspace import Workspace

STORE_FILE = "runs.sqlite"
#: The states a run is ever given (the jobs' words; ``interrupted`` is read, never written).
RUN_STATES = (RUNNING, *ENDED)
FINISHED_STATES = ENDED
#: 1: metrics without a fold column (folds spelled into names, AUCs stored as metrics).
#: 2: metrics keyed by (run, fold, scope, epoch, step, name); AUCs come from predictions.
SCHEMA_VERSION = 2
#: ``fold`` of a model, metric or prediction that belongs to no fold (a holdout run).
NO_FOLD = -1
#: The cohort under which a features or radiomics run keeps its training patients' out-of-fold
#: scores (each from the inner cross-validation's model that never saw the patient): what a model
#: stacked on the run, such as the combined model, takes as a training patient's score.
OUT_OF_FOLD = "train_oof"


class RunMode(StrEnum):
    """What a run trained: a logistic regression on a frozen backbone's features, a fine-tuned
    backbone, a regression on PyRadiomics features, or a combined clinical + DL model fitted on
    another run's scores."""

    FEATURES = "features"
    FINETUNE = "finetune"
    RADIOMICS = "radiomics"
    COMBINED = "combined"

    @property
    def has_network(self) -> bool:
        """Whether the run has a network of its own (that Grad-CAM can explain, that starts from
        ImageNet or random weights)."""
        return self in (RunMode.FEATURES, RunMode.FINETUNE)

    @property
    def trained(self) -> bool:
        """Whether the run was trained by ``crc-time train`` (it has partitions and can resume)."""
        return self is not RunMode.COMBINED


def fold_tag(fold: int | None) -> str:
    """How a fold is spelled in file names: nothing for a holdout run, ``-k`` for fold k."""
    return "" if fold is None or fold == NO_FOLD else f"-{int(fold)}"


@dataclass(frozen=True)
class RunFolder:
    """Every file of one run, per fold: nothing else spells these names. ``fold`` is None (or
    :data:`NO_FOLD`) for a holdout run, k for fold or repeat k."""

    path: Path

    def best_checkpoint(self, fold: int | None = None) -> Path:
        """A fine-tuned model's weights at its lowest selection loss."""
        return self.path / f"best{fold_tag(fold)}.pt"

    def last_checkpoint(self, fold: int | None = None) -> Path:
        """Everything a fine-tune needs to go on: model, optimiser, scheduler, epoch, random state."""
        return self.path / f"last{fold_tag(fold)}.pt"

    def linear_model(self, fold: int | None = None) -> Path:
        """The logistic regression of a features or radiomics run, as JSON."""
        return self.path / f"model{fold_tag(fold)}.json"

    def combat(self, fold: int | None = None) -> Path:
        """The ComBat harmonisation a features or radiomics run learned, as JSON."""
        return self.path / f"combat{fold_tag(fold)}.json"

    def done_marker(self, fold: int | None = None) -> Path:
        """Written when a fold's model is finished, so a resume skips it."""
        return self.path / f"done{fold_tag(fold)}"

    @property
    def partitions(self) -> Path:
        """Which patients each fold trained on and predicted, fixed before training."""
        return self.path / "partitions.json"

    @property
    def cam_dir(self) -> Path:
        return self.path / "cam"

    def cam_maps(self, cohort: str, method: str) -> Path:
        """A cohort's cached Grad-CAM maps (``method``: gradcam or gradcam++)."""
        return self.cam_dir / f"{cohort.replace(':', '-')}-{method.replace('+', 'p')}.npz"

    def robustness(self, cohort: str, part: str) -> Path:
        """The reader check of a cohort: its ``scores`` and ``summary`` tables (CSV) and ``about``
        it (JSON: the threshold, who was left out)."""
        suffix = "json" if part == "about" else "csv"
        return self.path / "robustness" / f"{cohort.replace(':', '-')}-{part}.{suffix}"

    def folds(self) -> list[int | None]:
        """The run's folds as its partitions file records them (None for a holdout run); without
        that file (a run from before it existed, a combined model), from the model files found."""
        try:
            document = json.loads(self.partitions.read_text(encoding="utf-8"))
            folds = [p.get("fold") for p in document["partitions"]]
            return [None if f is None else int(f) for f in folds]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        found = sorted({_fold_of(path.stem) for pattern in ("best*.pt", "model*.json") for path in self.path.glob(pattern)},
                       key=lambda f: -1 if f is None else f)
        return found or [None]


def _fold_of(stem: str) -> int | None:
    _, _, tail = stem.partition("-")
    return int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class RunRecord:
    """One run as stored: what was asked (``config``), what it ran on (``info``: device,
    precision, weights, code version, crop set, hashes of labels and split) and how it ended."""

    run_id: str
    created_at: float
    target: str
    backbone: str
    mode: RunMode
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

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", RunMode(self.mode))
        except ValueError:
            raise CrcInputError(f"Run {self.run_id} has the unknown mode {self.mode!r}; it was written by another "
                                f"program. Modes: {', '.join(RunMode)}.") from None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def has_network(self) -> bool:
        return self.mode.has_network

    @property
    def weights(self) -> dict[str, Any]:
        """Where the network's starting weights came from (:class:`crc_core.networks.backbones.WeightsInfo`
        as a dict); a combined model carries its DL run's."""
        return dict(self.info.get("weights") or {})

    @property
    def random_init(self) -> bool:
        """True when the network (or, for a combined model, its DL run's network) started from
        random weights instead of ImageNet's: every table, figure and export must say so."""
        if self.mode is RunMode.RADIOMICS:
            return False
        weights = self.weights
        return bool(weights) and not weights.get("pretrained", False)

    @property
    def starting_weights(self) -> str:
        """The starting weights in words, for tables: ImageNet, random init, handcrafted."""
        if self.mode is RunMode.RADIOMICS:
            return "handcrafted"
        if not self.weights:
            return "—"
        return "random init" if self.random_init else "ImageNet"

    @property
    def evaluation(self) -> str:
        return str(self.config.get("evaluation", "holdout"))

    def folder(self, workspace: Workspace | Path | str) -> RunFolder:
        return RunFolder(Workspace.of(workspace).runs_dir / self.run_id)


def new_run_id(target: str, backbone: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{target}-{backbone}-{uuid.uuid4().hex[:4]}"


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
    fold INTEGER NOT NULL,
    scope TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, fold, scope, epoch, step, name)
);
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
#: The key under which the ``store`` table keeps a group's plan (the grid a job asked for).
_PLAN_KEY = "plan:"
METRIC_COLUMNS = ["run_id", "fold", "scope", "epoch", "step", "name", "value", "at"]
_RUN_COLUMNS = ("run_id, created_at, target, backbone, mode, status, message, config, info, group_id, job_id, host, pid, "
                "heartbeat_at, finished_at")


def _schema_version(db: sqlite3.Connection) -> int:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "store" not in tables:
        return 0 if "runs" not in tables else 1
    row = db.execute("SELECT value FROM store WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else 1
    except (TypeError, ValueError):
        return 1


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Version 1 spelled the fold into metric names (``train_loss@3``), kept the penalty path's fold
    in its epoch column and stored AUCs as metrics; version 2 has a fold column, one row per key,
    and takes AUCs from the predictions (so the old AUC rows are dropped)."""
    columns = [row[1] for row in db.execute("PRAGMA table_info(metrics)")]
    if "fold" in columns:
        return
    old = db.execute("SELECT run_id, scope, step, epoch, name, value, at FROM metrics ORDER BY rowid").fetchall()
    db.execute("ALTER TABLE metrics RENAME TO metrics_v1")
    db.execute("DROP INDEX IF EXISTS metrics_by_run")
    db.executescript(_SCHEMA)
    rows = []
    for run_id, scope, step, epoch, name, value, at in old:
        fold = NO_FOLD
        if scope == "fold":
            if name.startswith("auc:"):
                continue
            scope, fold, step, epoch = "model", int(step), 0, 0
        elif scope == "penalty":
            fold, epoch = int(epoch), 0
        elif "@" in name:
            name, _, tail = name.partition("@")
            fold = int(tail) if tail.lstrip("-").isdigit() else NO_FOLD
        rows.append((run_id, fold, scope, int(epoch), int(step), name, value, at))
    # In rowid order, so where a resume stored a step twice the later value stays.
    db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("DROP TABLE metrics_v1")


class RunStore:
    """The run store of one workspace. Every method opens its own short connection, so one
    object may be shared by a page's reruns and a worker's threads."""

    def __init__(self, workspace: Workspace | Path | str):
        self.workspace = Workspace.of(workspace)
        self.path = self.workspace.runs_dir / STORE_FILE

    def _damaged(self, exc: Exception) -> CrcInputError:
        return CrcInputError(f"The run store {self.path} is damaged ({exc}). Move it aside to start a new one; the run "
                             "folders beside it keep the checkpoints.")

    def _open(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        return connection

    def _bring_up_to_date(self, db: sqlite3.Connection) -> None:
        """Create a new store, or read the schema version of an existing one and migrate an older
        one in place (in one transaction); a newer one is refused rather than misread."""
        version = _schema_version(db)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise CrcInputError(f"The run store {self.path} was written by a newer CRC-TIME (schema {version}; this one "
                                f"reads up to {SCHEMA_VERSION}). Update CRC-TIME to open it.")
        with db:
            if version == 1:
                _migrate_v1(db)
            db.executescript(_SCHEMA)
            db.execute("INSERT OR REPLACE INTO store VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._open()
        try:
            self._bring_up_to_date(connection)
            yield connection
            connection.commit()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            connection.close()

    def schema_version(self) -> int:
        """The schema version of the store on disk (0: none yet)."""
        if not self.path.exists():
            return 0
        connection = self._open()
        try:
            return _schema_version(connection)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            connection.close()

    # -- writing (the worker) -------------------------------------------------------------------

    def create_run(self, *, target: str, backbone: str, mode: str, config: dict[str, Any],
                   info: dict[str, Any] | None = None, group_id: str | None = None,
                   job_id: str | None = None, status: str = RUNNING, run_id: str | None = None) -> str:
        mode = RunMode(mode)
        if status not in RUN_STATES:
            raise ValueError(f"status must be one of {RUN_STATES}, not {status!r}")
        run_id = run_id or new_run_id(target, backbone)
        now = time.time()
        with self._connect(write=True) as db:
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now, target, backbone, str(mode), status, json.dumps(config), json.dumps(info or {}), group_id,
                 job_id, socket.gethostname(), os.getpid(), now, now if status in FINISHED_STATES else None),
            )
        self.folder(run_id).path.mkdir(parents=True, exist_ok=True)
        return run_id

    def folder(self, run_id: str) -> RunFolder:
        return RunFolder(self.workspace.runs_dir / run_id)

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
        self.update(run_id, status=RUNNING, message="", host=socket.gethostname(), pid=os.getpid(),
                    heartbeat_at=time.time(), finished_at=None)

    def heartbeat(self, run_id: str) -> None:
        with self._connect(write=True) as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id))

    def finish(self, run_id: str, status: str, message: str = "") -> None:
        if status not in FINISHED_STATES:
            raise ValueError(f"status must be one of {FINISHED_STATES}, not {status!r}")
        self.update(run_id, status=status, message=message, finished_at=time.time())

    def add_metrics(self, run_id: str, rows: Iterable[tuple[str, int, int, str, float]], *, fold: int | None = None) -> None:
        """Rows of (scope, step, epoch, name, value) of one ``fold`` (None: no fold); a row whose
        key is stored already replaces it. Also a heartbeat."""
        now = time.time()
        fold_value = NO_FOLD if fold is None else int(fold)
        with self._connect(write=True) as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(run_id, fold_value, scope, int(epoch), int(step), name, _plain(value), now)
                            for scope, step, epoch, name, value in rows])
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (now, run_id))

    def clear_metrics_after(self, run_id: str, epoch: int, *, fold: int | None = None) -> int:
        """Forget a fold's metrics of epochs after ``epoch`` (a resume redoes them; -1: all of the
        fold's). Returns how many rows went."""
        with self._connect(write=True) as db:
            cursor = db.execute("DELETE FROM metrics WHERE run_id = ? AND fold = ? AND epoch > ?",
                                (run_id, NO_FOLD if fold is None else int(fold), int(epoch)))
            return cursor.rowcount

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

    def set_plan(self, group_id: str, config: dict[str, Any]) -> None:
        """Keep what a job of several runs asked for (the whole grid's config), under the group id
        its runs carry, before its first run starts: a Stop then leaves a record of the runs that
        never started, and Resume goes on with them."""
        with self._connect(write=True) as db:
            db.execute("INSERT OR REPLACE INTO store VALUES (?, ?)", (_PLAN_KEY + group_id, json.dumps(config)))

    # -- reading (the pages, the CLI) -----------------------------------------------------------

    def plan(self, group_id: str | None) -> dict[str, Any] | None:
        """The grid config a group of runs was started with (:meth:`set_plan`), or None (a single
        run, or a group from before plans were kept)."""
        if not group_id:
            return None
        try:
            with self._connect() as db:
                row = db.execute("SELECT value FROM store WHERE key = ?", (_PLAN_KEY + group_id,)).fetchone()
        except FileNotFoundError:
            return None
        try:
            return json.loads(row[0]) if row else None
        except ValueError as exc:
            raise self._damaged(exc) from exc

    def _records(self, where: str = "", parameters: Sequence[Any] = ()) -> list[RunRecord]:
        try:
            with self._connect() as db:
                rows = db.execute(f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY created_at DESC", parameters).fetchall()
        except FileNotFoundError:
            return []
        records = []
        for row in rows:
            try:
                config, info = json.loads(row[7]), json.loads(row[8] or "{}")
            except ValueError as exc:
                raise self._damaged(exc) from exc
            records.append(_with_liveness(RunRecord(*row[:7], config, info, *row[9:])))
        return records

    def runs(self, *, target: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Every run (of ``target``, in ``status``), newest first; running ones that stopped
        beating read as interrupted."""
        found = self._records("WHERE target = ?", (target,)) if target else self._records()
        return [r for r in found if status is None or r.status == status]

    def run(self, run_id: str) -> RunRecord:
        found = self._records("WHERE run_id = ?", (run_id,))
        if not found:
            known = ", ".join(r.run_id for r in self._records()[:5]) or "none yet"
            raise CrcInputError(f"There is no run {run_id!r} in {self.path} (latest: {known}).")
        return found[0]

    def metrics(self, run_ids: Sequence[str], scope: str | None = None, *, since: float | None = None) -> pd.DataFrame:
        """Metrics of the runs: ``run_id``, ``fold`` (-1 for none), ``scope``, ``epoch``, ``step``,
        ``name``, ``value``, ``at``; with ``since``, only rows written after that time (a live
        view reads what is new since its last look)."""
        if not run_ids:
            return pd.DataFrame(columns=METRIC_COLUMNS)
        marks = ", ".join("?" for _ in run_ids)
        where = f"run_id IN ({marks})" + (" AND scope = ?" if scope else "") + (" AND at > ?" if since is not None else "")
        parameters = (*run_ids, *([scope] if scope else []), *([since] if since is not None else []))
        try:
            with self._connect() as db:
                rows = db.execute(f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE {where} "
                                  "ORDER BY run_id, fold, scope, epoch, step", parameters).fetchall()
        except FileNotFoundError:
            rows = []
        return pd.DataFrame(rows, columns=METRIC_COLUMNS)

    def predictions(self, run_id: str | Sequence[str], cohort: str | None = None) -> pd.DataFrame:
        """Predictions of a run (or of several, with a ``run_id`` column first): ``cohort``,
        ``fold`` (-1 for none), ``patient_id``, ``y_true``, ``prob``."""
        several = not isinstance(run_id, str)
        ids = list(run_id) if several else [run_id]
        columns = ["run_id", "cohort", "fold", "patient_id", "y_true", "prob"]
        rows = []
        if ids:
            marks = ", ".join("?" for _ in ids)
            try:
                with self._connect() as db:
                    query = f"SELECT {', '.join(columns)} FROM predictions WHERE run_id IN ({marks})"
                    rows = db.execute(query + (" AND cohort = ?" if cohort else "") + " ORDER BY rowid",
                                      (*ids, *([cohort] if cohort else []))).fetchall()
            except FileNotFoundError:
                rows = []
        table = pd.DataFrame(rows, columns=columns)
        table["y_true"] = table["y_true"].astype("Int64")
        return table if several else table.drop(columns=["run_id"])

    def table(self) -> pd.DataFrame:
        """One row per run for listing: id, when, target, backbone, mode, status, weights."""
        return pd.DataFrame([
            {
                "run_id": r.run_id, "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
                "target": r.target, "backbone": r.backbone, "mode": str(r.mode), "status": r.status,
                "weights": r.starting_weights, "message": r.message,
            }
            for r in self.runs()
        ], columns=["run_id", "started", "target", "backbone", "mode", "status", "weights", "message"])


def _plain(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is stored as NULL


def resume_hint(run_id: str) -> str:
    return f"resume it with `crc-time train --resume {run_id}` or the Resume button on the Train page"


def _with_liveness(record: RunRecord) -> RunRecord:
    if record.status != RUNNING:
        return record
    dead = why_dead(record.host, record.pid, record.heartbeat_at)
    if not dead:
        return record
    return replace(record, status="interrupted", message=f"{dead}; {resume_hint(record.run_id)}")


# ---------------------------------------------------------------------------------------------
# A run's model, rebuilt


@dataclass
class RunModel:
    """One fold's model of a run, as trained. ``network`` takes ImageNet-normalised crops and gives
    the logits of (low, high) — a fine-tuned backbone, or a features run's frozen backbone with its
    logistic regression as the last layer; None for a radiomics run. ``linear`` is the regression
    of a features or radiomics run. ``top`` names the network's last layer, which gives the logits
    and which training learned (a randomisation check draws it at random). ``cam_layer`` is the
    layer Grad-CAM explains by default."""

    run: RunRecord
    fold: int | None
    network: Any | None
    linear: Any | None
    cam_layer: str | None
    top: str | None
    weights_path: str
    note: str = ""


def starting_weights(run: RunRecord) -> str:
    """The weights a run's backbone started from, as :func:`crc_core.networks.backbones.classifier` takes
    them: ``"random"``, or the ImageNet checkpoint on this machine. A run whose weights came
    through torchvision's download recorded where they went; an older one recorded the URL, and
    the checkpoint is then looked for where torchvision keeps it."""
    from crc_core.networks.backbones import backbone, candidate_weight_files

    weights = run.weights
    if not weights.get("pretrained"):
        return "random"
    path = str(weights.get("path") or "")
    if path and "://" not in path and Path(path).is_file():
        return path
    spec = backbone(run.backbone)
    wanted = Path(path.split("?")[0]).name if path else ""
    for _, candidate in candidate_weight_files(spec):
        if candidate.is_file() and (not wanted or candidate.name == wanted):
            return str(candidate)
    raise CrcInputError(
        f"Run {run.run_id} started from the ImageNet weights {wanted or spec.weights_file}, which are not on this machine "
        f"any more. Copy that file into models/ (see models/README.md) to use the run's model here."
    )


def load_run_model(workspace: Workspace | Path | str, run: RunRecord, fold: int | None = None) -> RunModel:
    """The model of ``fold`` (None: a holdout run's one model) of a finished run, rebuilt from its
    folder: predict, Grad-CAM and the report all take it from here. Refuses by name a run without a
    model of its own (a combined model), a fold the run does not have, and missing files."""
    import torch

    from crc_core.networks.backbones import backbone, classifier, feature_extractor
    from crc_core.networks.linear_models import LinearModel, features_network

    folder = run.folder(workspace)
    if run.mode is RunMode.COMBINED:
        raise CrcInputError(f"Run {run.run_id} is a combined model: its DL score comes from run "
                            f"{run.info.get('parent_run', '?')}, whose model to load instead.")
    folds = folder.folds()
    fold = None if fold == NO_FOLD else fold
    if fold is None and folds != [None]:
        fold = folds[0]
    if fold not in folds:
        raise CrcInputError(f"Run {run.run_id} has no fold {fold}; its folds are "
                            f"{', '.join('none' if f is None else str(f) for f in folds)}.")
    note = (f"the model of fold {fold}, the first of {len(folds)} (one per fold or repeat)"
            if len(folds) > 1 and fold == folds[0] else f"the model of fold {fold} of {len(folds)}" if len(folds) > 1 else "")
    if run.mode is RunMode.FINETUNE:
        checkpoint = folder.best_checkpoint(fold)
        if not checkpoint.is_file():
            raise CrcInputError(f"Run {run.run_id} has no checkpoint {checkpoint.name} in {folder.path}: copy it with the "
                                "run, or train again.")
        spec = backbone(run.backbone)
        network = classifier(spec.name, weights=checkpoint)[0].eval()
        top = "classifier" if spec.family == "densenet" else "fc"
        return RunModel(run, fold, network, None, spec.cam_layer, top, str(checkpoint), note)
    model_file = folder.linear_model(fold)
    if not model_file.is_file():
        raise CrcInputError(f"Run {run.run_id} has no model file {model_file.name} in {folder.path}: copy it with the run, "
                            "or train again.")
    linear = LinearModel.load(model_file)
    if run.mode is RunMode.RADIOMICS:
        return RunModel(run, fold, None, linear, None, None, "", note)
    spec = backbone(run.backbone)
    source = starting_weights(run)
    # The frozen backbone must be the one whose features were fitted: random weights are drawn
    # from the run's seed, exactly as the features were computed.
    torch.manual_seed(int(run.config.get("seed", 0)))
    extractor = feature_extractor(classifier(spec.name, weights=source)[0], spec.name)
    network = features_network(extractor, linear)
    return RunModel(run, fold, network, linear, f"backbone.{spec.cam_layer}", "head", source,
                    "; ".join(filter(None, ["the frozen backbone feeding the logistic regression", note])))
