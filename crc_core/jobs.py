"""Long work in a worker process: start a ``crc-time`` step, record its progress, read it back.

Streamlit reruns a page on every click, so a page never runs long work itself: it starts the same
CLI step a user would type, in its own process, and polls the job's ``status.json`` in
``<workspace>/jobs/<job_id>/``. Closing the tab or restarting the app loses nothing; a worker that
died without finishing reads back as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from crc_core.workspace import atomic_write_text

JOBS_DIR = "jobs"
STATES = ("running", "done", "failed", "interrupted")


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    step: str
    state: str
    done: int = 0
    total: int = 0
    message: str = ""
    started_at: float = 0.0
    finished_at: float | None = None
    pid: int | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "interrupted")


def job_dir(jobs_root: Path, job_id: str) -> Path:
    return Path(jobs_root) / JOBS_DIR / job_id


def _write(jobs_root: Path, status: JobStatus) -> None:
    atomic_write_text(job_dir(jobs_root, status.job_id) / "status.json", json.dumps(asdict(status)))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that nobody reaped is a zombie: dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return True


def read_job(jobs_root: Path, job_id: str) -> JobStatus | None:
    path = job_dir(jobs_root, job_id) / "status.json"
    if not path.exists():
        return None
    status = JobStatus(**json.loads(path.read_text()))
    if status.state == "running" and not _pid_alive(status.pid):
        return replace(status, state="interrupted", message=status.message or "the worker stopped")
    return status


def latest_job(jobs_root: Path, step: str) -> JobStatus | None:
    """The most recently started job of ``step``, or None."""
    folder = Path(jobs_root) / JOBS_DIR
    if not folder.exists():
        return None
    found = [read_job(jobs_root, d.name) for d in folder.iterdir() if d.is_dir()]
    mine = [s for s in found if s is not None and s.step == step]
    return max(mine, key=lambda s: s.started_at) if mine else None


def start_job(jobs_root: Path, workspace: Path, step: str, step_args: Sequence[str] = ()) -> JobStatus:
    """Start ``crc-time --workspace WORKSPACE --job-dir ... STEP ARGS`` in a detached process."""
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = job_dir(jobs_root, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "crc_core.cli", "--workspace", str(workspace),
        "--job", str(folder), step, *step_args,
    ]
    with open(folder / "log.txt", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    status = JobStatus(job_id, step, "running", started_at=time.time(), pid=process.pid)
    if not (folder / "status.json").exists():
        _write(jobs_root, status)
    return status


class JobReporter:
    """Written to by the worker: progress, then done or failed. Used by the CLI's ``--job``."""

    def __init__(self, folder: Path, step: str):
        self.jobs_root = Path(folder).parent.parent
        self.status = JobStatus(
            job_id=Path(folder).name, step=step, state="running", started_at=time.time(), pid=os.getpid()
        )
        _write(self.jobs_root, self.status)

    def progress(self, done: int, total: int, message: str = "") -> None:
        self.status = replace(self.status, done=done, total=total, message=message)
        _write(self.jobs_root, self.status)

    def finish(self, state: str, message: str) -> None:
        self.status = replace(self.status, state=state, message=message, finished_at=time.time())
        _write(self.jobs_root, self.status)
