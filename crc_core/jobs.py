"""Long work in a worker process: start a ``crc-time`` step with its config, follow its progress,
stop it, and tell a live worker from a dead one.

Streamlit reruns a page on every click, so a page never runs long work itself: it writes the step's
config into a job folder (``<workspace>/jobs/<job_id>/config.json``) and starts the same CLI step a
user would type, ``crc-time ... STEP --config config.json``, in its own process. The worker writes
``status.json`` (progress, a heartbeat at least every :data:`HEARTBEAT_S` seconds, its host and
PID) and honours a Stop (a ``stop`` file). There is one running job per step and workspace.

A job is alive while its heartbeat is fresh; on this host a dead PID ends it at once. PIDs are
reused over hours and a run copied from a GPU server has no local PID at all, so the PID alone
never keeps a job "running". Training runs (:mod:`crc_core.runs.store`) live by the same rule and the
same words: :func:`why_dead` decides for both, and one :class:`Heartbeat` thread per process beats
for the job and for the run it trains.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace, atomic_write_text

#: The one vocabulary of jobs and runs. ``interrupted`` is never written: it is what a ``running``
#: worker without a heartbeat reads as. ``damaged`` is a job whose status file cannot be read.
RUNNING = "running"
ENDED = ("done", "failed", "stopped", "interrupted")
STATES = (RUNNING, *ENDED, "damaged")
FINISHED = (*ENDED, "damaged")
HEARTBEAT_S = 5.0
#: A running job whose heartbeat is older than this reads as interrupted.
STALE_AFTER_S = 30.0
STATUS_JSON, CONFIG_JSON, LOG_TXT, STOP_FILE, WORKER_PID = "status.json", "config.json", "log.txt", "stop", "worker.pid"


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
    host: str = ""
    heartbeat_at: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    #: What the worker is doing now (a :class:`ProgressNote`'s phase) and the seconds it expects
    #: the step still to take (None while unknown).
    phase: str = ""
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def describe(self) -> str:
        """``preprocess: 120/315, started 14:02:11 on host`` for messages."""
        started = time.strftime("%H:%M:%S", time.localtime(self.started_at)) if self.started_at else "?"
        if self.phase:
            progress = f"{self.phase}, {100 * self.fraction:.0f}%, "
        else:
            progress = f"{self.done}/{self.total}, " if self.total else ""
        return f"{self.step} job {self.job_id} ({progress}started {started} on {self.host or 'an unknown host'})"


class Heartbeat:
    """The one heartbeat thread of a process: every :data:`HEARTBEAT_S` seconds it calls each beat
    registered (a job's status file, a training run's row), so a worker that trains beats once for
    both, and a long computation that reports no progress still shows it is alive."""

    def __init__(self, every_s: float = HEARTBEAT_S):
        self.every_s = every_s
        self._beats: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._next = 0

    def add(self, beat: Callable[[], None]) -> int:
        with self._lock:
            self._next += 1
            self._beats[self._next] = beat
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
            return self._next

    def remove(self, token: int) -> None:
        with self._lock:
            self._beats.pop(token, None)

    @contextmanager
    def beating(self, beat: Callable[[], None]) -> Iterator[None]:
        token = self.add(beat)
        try:
            yield
        finally:
            self.remove(token)

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            with self._lock:
                beats = list(self._beats.values())
            for beat in beats:
                try:
                    beat()
                except Exception:  # a missed beat is a late one; the next may succeed
                    continue


#: This process's heartbeat.
HEARTBEAT = Heartbeat()


class JobStopped(Exception):
    """Raised inside a worker when the user asked it to stop."""


class JobRunning(CrcInputError):
    """A second start of a step that is already running in this workspace."""


def _jobs_dir(workspace: Workspace | Path) -> Path:
    return Workspace.of(workspace).jobs_dir


def job_dir(workspace: Workspace | Path, job_id: str) -> Path:
    return _jobs_dir(workspace) / job_id


def _write(folder: Path, status: JobStatus) -> None:
    atomic_write_text(folder / STATUS_JSON, json.dumps(asdict(status)))


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
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _log_tail(folder: Path, lines: int = 3) -> str:
    try:
        text = (folder / LOG_TXT).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def _step_of(job_id: str) -> str:
    parts = job_id.split("-")
    return parts[2] if len(parts) >= 4 else "unknown"


def read_job(workspace: Workspace | Path, job_id: str, *, now: float | None = None) -> JobStatus | None:
    """The job's status, ``None`` when it has none; never raises for a damaged file (the job
    then reads as ``damaged``). A running job without a fresh heartbeat, or whose worker on this
    host has died, reads as ``interrupted``."""
    folder = job_dir(workspace, job_id)
    path = folder / STATUS_JSON
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(JobStatus)}
        status = JobStatus(**{k: v for k, v in document.items() if k in known})
        if status.state not in STATES:
            raise ValueError(f"unknown state {status.state!r}")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return JobStatus(job_id, _step_of(job_id), "damaged",
                         message=f"{path} cannot be read ({exc}); the job's outcome is unknown. Start the step again.")
    if status.state != "running":
        return status
    pid = status.pid
    if pid is None:
        try:
            pid = int((folder / WORKER_PID).read_text())
        except (OSError, ValueError):
            pid = None
    dead = why_dead(status.host, pid, status.heartbeat_at or status.started_at, now=now)
    if dead:
        tail = _log_tail(folder) if "stopped without finishing" in dead else ""
        return replace(status, state="interrupted", message=dead + (f" (last words: {tail})" if tail else ""))
    return status


def why_dead(host: str, pid: int | None, heartbeat_at: float, *, now: float | None = None) -> str:
    """Why a worker that claims to run is dead, or "" while it lives: a dead PID on this host, or
    no heartbeat for :data:`STALE_AFTER_S`. Shared by jobs and training runs."""
    if host == socket.gethostname() and pid is not None and not _pid_alive(pid):
        return "the worker stopped without finishing"
    age = (time.time() if now is None else now) - heartbeat_at
    if age > STALE_AFTER_S:
        return f"no sign of life from the worker for {age:.0f} s"
    return ""


def list_jobs(workspace: Workspace | Path, step: str | None = None) -> list[JobStatus]:
    """Every job (of ``step``), newest first."""
    folder = _jobs_dir(workspace)
    if not folder.exists():
        return []
    found = [read_job(workspace, d.name) for d in folder.iterdir() if d.is_dir()]
    mine = [s for s in found if s is not None and (step is None or s.step == step)]
    return sorted(mine, key=lambda s: (s.started_at, s.job_id), reverse=True)


def latest_job(workspace: Workspace | Path, step: str) -> JobStatus | None:
    """The most recently started job of ``step``, or None."""
    jobs = list_jobs(workspace, step)
    return jobs[0] if jobs else None


def running_job(workspace: Workspace | Path, step: str) -> JobStatus | None:
    return next((job for job in list_jobs(workspace, step) if not job.finished), None)


def _lock_path(workspace: Workspace | Path, step: str) -> Path:
    return _jobs_dir(workspace) / f"{step}.lock"


def _take_lock(workspace: Workspace | Path, step: str, job_id: str) -> None:
    """One running job per step and workspace: an exclusive lock file naming the job; a lock
    whose job has finished (or vanished) is stale and taken over."""
    lock = _lock_path(workspace, step)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = lock.read_text().strip() if lock.exists() else ""
            status = read_job(workspace, holder) if holder else None
            if status is not None and not status.finished:
                raise JobRunning(
                    f"The {step} step is already running in {Workspace.of(workspace).root}: {status.describe()}. "
                    "Wait for it to finish, or stop it first."
                ) from None
            if status is None and holder and time.time() - lock.stat().st_mtime < STALE_AFTER_S:
                raise JobRunning(f"The {step} step is just starting in {Workspace.of(workspace).root}; wait a moment.") from None
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(job_id)
        return
    raise JobRunning(f"Could not start the {step} step: another start is under way. Try again.")


def release_lock(workspace: Workspace | Path, step: str, job_id: str) -> None:
    lock = _lock_path(workspace, step)
    try:
        if lock.read_text().strip() == job_id:
            lock.unlink()
    except OSError:
        pass


def start_job(
    workspace: Workspace | Path,
    step: str,
    *,
    config: Any = None,
    args: Sequence[str] = (),
) -> JobStatus:
    """Start ``crc-time --workspace W --job DIR STEP [--config DIR/config.json] ARGS`` in a
    detached process and return its first status. ``config`` (a :class:`~crc_core.configs.JsonConfig`)
    is written to the job folder as it is, never rebuilt into flags. A second start of a running
    step raises :class:`JobRunning`."""
    workspace = Workspace.of(workspace)
    job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{step}-{uuid.uuid4().hex[:6]}"
    folder = job_dir(workspace, job_id)
    _take_lock(workspace, step, job_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "crc_core.cli", "--workspace", str(workspace.root), "--job", str(folder), step]
        if config is not None:
            config.save(folder / CONFIG_JSON)
            command += ["--config", str(folder / CONFIG_JSON)]
        command += list(args)
        now = time.time()
        # Written before the worker exists, so the worker's own first word (even "failed") always
        # comes after it and is never overwritten.
        status = JobStatus(job_id, step, "running", started_at=now, host=socket.gethostname(), heartbeat_at=now)
        _write(folder, status)
        with open(folder / LOG_TXT, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        atomic_write_text(folder / WORKER_PID, str(process.pid))
    except BaseException:
        release_lock(workspace, step, job_id)
        raise
    return read_job(workspace, job_id) or status


def job_config(workspace: Workspace | Path, job_id: str, kind: type):
    """The config a job was started with, as ``kind`` (a :class:`~crc_core.configs.JsonConfig`),
    or None when it had none or it cannot be read."""
    path = job_dir(workspace, job_id) / CONFIG_JSON
    try:
        return kind.load(path) if path.is_file() else None
    except (CrcInputError, OSError, ValueError):
        return None


def request_stop(workspace: Workspace | Path, job_id: str) -> None:
    """Ask a worker to stop; it finishes the patient (or batch) at hand and reports ``stopped``."""
    folder = job_dir(workspace, job_id)
    if folder.exists():
        atomic_write_text(folder / STOP_FILE, str(time.time()))


# ---------------------------------------------------------------------------------------------
# Progress: one way for every worker to say what it does, how far it is and when it will be done

#: The overall counter of a :class:`StepMeter` runs from 0 to this, whatever its phases count.
METER_SCALE = 1000


def eta_text(seconds: float | None) -> str:
    """``00:02:41`` (or ``1.5 days``; ``—`` while unknown): the one spelling of an ETA."""
    if seconds is None or seconds != seconds:
        return "—"
    seconds = max(0.0, float(seconds))
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f} days"


class ProgressNote(str):
    """A progress message that carries its fields: the phase at hand, how far it is (``done`` of
    ``total`` ``unit``), and the seconds left (``eta_s``; None until a pace is known). A plain
    callback ``progress(done, total, message)`` reads it as the message; :class:`JobReporter`
    writes its fields into the job's status."""

    phase: str
    done: int
    total: int
    unit: str
    eta_s: float | None

    def __new__(cls, text: str, *, phase: str, done: int, total: int, unit: str = "", eta_s: float | None = None):
        note = super().__new__(cls, text)
        note.phase, note.done, note.total, note.unit, note.eta_s = phase, int(done), int(total), unit, eta_s
        return note

    def retold(self, text: str, within: str = "") -> "ProgressNote":
        """The same fields under other words, the phase named ``within`` a larger step (a run's
        note inside its job's: ``TSR × ResNet-34 (1 of 2): starting``)."""
        phase = f"{within}: {self.phase}" if within else self.phase
        return ProgressNote(text, phase=phase, done=self.done, total=self.total, unit=self.unit, eta_s=self.eta_s)


def retold(message: str, text: str, within: str = "") -> str:
    """``text`` with the fields of ``message`` when it is a :class:`ProgressNote` (see
    :meth:`ProgressNote.retold`)."""
    return message.retold(text, within) if isinstance(message, ProgressNote) else text


class StepMeter:
    """The progress of one long step as named phases, one after another, on one counter that only
    goes forward (0 … :data:`METER_SCALE`), each tick with an ETA. ``phases``: the phase names in
    order, or name → weight (its share of the step's time, equal by default); a phase that does not
    happen (a cache hit) is skipped over. The ETA is the phase's own pace for the rest of it, and
    the step's pace so far for the phases after it. Every worker reports through one of these, so
    the page, the terminal and the job's status all read the same fields."""

    def __init__(self, progress: Callable[..., None] | None, phases: Sequence[str] | dict[str, float], *,
                 clock: Callable[[], float] = time.monotonic):
        weights = dict(phases) if isinstance(phases, dict) else {name: 1.0 for name in phases}
        if not weights or any(w < 0 for w in weights.values()):
            raise ValueError("a meter needs phases with weights of 0 or more")
        self.progress = progress
        self.names = list(weights)
        self.weights = [float(w) for w in weights.values()]
        self.clock = clock
        self.started = clock()
        self.position = -1
        self.phase_started = self.started
        self.counter = 0
        self.last: ProgressNote | None = None
        # Seconds spent in the weighted phases already over, and their weight: the step's pace.
        self._spent, self._spent_weight = 0.0, 0.0

    def extend(self, phases: Sequence[str] | dict[str, float]) -> None:
        """Phases to come after the ones declared, once the step knows them (a run learns its
        folds after reading its data)."""
        weights = dict(phases) if isinstance(phases, dict) else {name: 1.0 for name in phases}
        for name, weight in weights.items():
            if name in self.names or weight < 0:
                raise ValueError(f"phase {name!r} is declared already or has a negative weight")
            self.names.append(name)
            self.weights.append(float(weight))

    def _enter(self, index: int) -> None:
        if index != self.position:
            now = self.clock()
            if self.position >= 0 and self.weights[self.position] > 0:
                self._spent += now - self.phase_started
                self._spent_weight += self.weights[self.position]
            self.position, self.phase_started = index, now

    def _eta(self, index: int, fraction: float) -> float | None:
        """The phase's own pace for the rest of it; the pace of the weighted phases so far (seconds
        per unit of weight) for the phases after it. None while nothing has been measured."""
        elapsed = self.clock() - self.phase_started
        weight, after = self.weights[index], sum(self.weights[index + 1:])
        measured = self._spent_weight + weight * fraction
        pace = (self._spent + (elapsed if weight > 0 else 0.0)) / measured if measured > 0 else None
        if fraction > 0:
            phase_left = elapsed / fraction * (1 - fraction)
        elif pace is not None:
            phase_left = pace * weight
        else:
            return None
        if not after:
            return phase_left
        return None if pace is None else phase_left + pace * after

    def tell(self, phase: str, done: int, total: int, unit: str = "", detail: str = "", *, count: bool = True,
             rate: bool = False) -> ProgressNote:
        """Phase ``phase`` has ``done`` of ``total`` ``unit`` behind it; ``detail``: more words (a
        batch, an epoch); ``count=False`` leaves the count to the detail; ``rate``: say the pace in
        ``unit`` per second. Earlier phases count as done; the counter never goes back."""
        index = self.names.index(phase)
        # A phase told again after a later one began (a worker's stray last tick) moves nothing back.
        self._enter(max(index, self.position))
        total = max(int(total), 0)
        done = min(max(int(done), 0), total) if total else 0
        fraction = done / total if total else 0.0
        whole = sum(self.weights) or 1.0
        counter = int(METER_SCALE * (sum(self.weights[:index]) + self.weights[index] * fraction) / whole)
        self.counter = max(self.counter, min(counter, METER_SCALE))
        eta = self._eta(index, fraction)
        words = [f"step {index + 1} of {len(self.names)} · {phase}" if len(self.names) > 1 else phase]
        if count and total:
            words[0] += f": {done} of {total}{' ' + unit if unit else ''}"
        if detail:
            words.append(detail)
        elapsed = self.clock() - self.phase_started
        if rate and done and elapsed > 0:
            words.append(f"{done / elapsed:.1f} {unit or 'items'}/s")
        if eta is not None:
            words.append(f"ETA {eta_text(eta)}")
        note = ProgressNote(" · ".join(words), phase=phase, done=done, total=total, unit=unit, eta_s=eta)
        self.last = note
        if self.progress is not None:
            self.progress(self.counter, METER_SCALE, note)
        return note

    def part(self, phase: str, unit: str = "", *, rate: bool = False) -> Callable[..., None]:
        """A ``progress(done, total, message="")`` callback for a library call inside ``phase``
        (a crop run, a feature batch loop); its own message is replaced by the meter's words."""

        def tell(done: int, total: int, message: str = "") -> None:
            self.tell(phase, done, total, unit, rate=rate)

        return tell

    def finish(self, phase: str | None = None) -> None:
        """The last phase (or ``phase``) is over: the counter reaches its end."""
        phase = phase or self.names[-1]
        last = self.last if self.last is not None and self.last.phase == phase and self.last.total else None
        self.tell(phase, last.total if last else 1, last.total if last else 1, last.unit if last else "")


#: What a worker says before its step's first progress (importing PyTorch alone takes seconds).
WORKER_STARTING = "starting: loading the worker's libraries"


class JobReporter:
    """The worker's side (the CLI's ``--job``): progress, a heartbeat thread, Stop, the outcome."""

    def __init__(self, folder: Path, step: str):
        self.folder = Path(folder)
        self.workspace = Workspace(self.folder.parent.parent)
        now = time.time()
        previous = read_job(self.workspace, self.folder.name)
        self.status = JobStatus(
            job_id=self.folder.name, step=step, state="running", pid=os.getpid(), host=socket.gethostname(),
            started_at=previous.started_at if previous else now, heartbeat_at=now, message=WORKER_STARTING,
        )
        self._lock = threading.Lock()
        self._stop_seen = threading.Event()
        self._write()
        self._beat = HEARTBEAT.add(self._heartbeat)

    def _write(self) -> None:
        with self._lock:
            self.status = replace(self.status, heartbeat_at=time.time())
            _write(self.folder, self.status)

    def _heartbeat(self) -> None:
        self._write()
        if self.stop_requested() and not self._stop_seen.is_set():
            self._stop_seen.set()
            # The main thread may be deep in one long computation: interrupt it there.
            os.kill(os.getpid(), signal.SIGINT)

    def stop_requested(self) -> bool:
        return (self.folder / STOP_FILE).exists()

    def progress(self, done: int, total: int, message: str = "") -> None:
        if self.stop_requested():
            self._stop_seen.set()
            raise JobStopped(f"stopped by the user at {done}/{total}")
        with self._lock:
            self.status = replace(self.status, done=done, total=total, message=str(message),
                                  phase=getattr(message, "phase", ""), eta_s=getattr(message, "eta_s", None))
        self._write()

    def finish(self, state: str, message: str, result: dict[str, Any] | None = None) -> None:
        HEARTBEAT.remove(self._beat)
        with self._lock:
            self.status = replace(self.status, state=state, message=message, finished_at=time.time(),
                                  result=dict(result or {}))
        self._write()
        release_lock(self.workspace, self.status.step, self.status.job_id)
