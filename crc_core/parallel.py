"""Per-patient work across processes: one task per patient, results as they finish, progress; the
workers end with the process that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable, TypeVar

Progress = Callable[[int, int], None]
Task = TypeVar("Task")
Result = TypeVar("Result")


def _cuda_initialised() -> bool:
    """CUDA does not survive fork: once this process has touched the GPU, workers start with spawn.
    (Spawning whenever torch is merely imported would re-run the parent's main script in every
    worker, which breaks under hosts that replace ``__main__``, such as Streamlit.)"""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


#: Linux's prctl option that sends the calling process a signal when its parent dies.
PR_SET_PDEATHSIG = 1
#: How often a worker's watchdog looks for its parent, in seconds.
PARENT_POLL_S = 1.0


def _gone(pid: int) -> bool:
    """True when process ``pid`` has ended (a zombie, killed but not yet reaped, counts as ended)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except (OSError, IndexError):
            return True
    if os.name == "nt":
        return False  # os.kill(pid, 0) would terminate the process there, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _die_with_parent(owner_pid: int) -> None:
    """Pool worker initializer: end this worker when the process that started the pool ends.

    ProcessPoolExecutor stops its workers only when the parent shuts the pool down, so a kill -9
    of ``crc-time preprocess`` left its two workers running as orphans for 44 minutes. On Linux
    the kernel kills the worker at once (``PR_SET_PDEATHSIG``); everywhere, and for a parent that
    died before that took effect, a watchdog thread looks every :data:`PARENT_POLL_S` for a new
    parent (the worker was orphaned) or an ended owner (under forkserver the parent is the server).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the worker
    parent = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent or _gone(owner_pid)

    if orphaned():
        os._exit(1)

    def watch() -> None:
        while not orphaned():
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def map_in_workers(
    function: Callable[[Task], Result],
    tasks: Iterable[Task],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    done_before: int = 0,
    total: int | None = None,
) -> list[Result]:
    """``function`` over ``tasks`` on ``workers`` processes (default: all cores; in this process
    when one), results in completion order. ``progress(done, total)`` counts ``done_before``
    (e.g. cached cases) in."""
    tasks = list(tasks)
    total = done_before + len(tasks) if total is None else total
    workers = min(workers or default_workers(), max(1, len(tasks)))
    results: list[Result] = []

    def advance(result: Result) -> None:
        results.append(result)
        if progress:
            progress(done_before + len(results), total)

    if workers == 1:
        for task in tasks:
            advance(function(task))
        return results
    context = multiprocessing.get_context("spawn") if _cuda_initialised() else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with_parent,
                               initargs=(os.getpid(),))
    try:
        for future in as_completed([pool.submit(function, task) for task in tasks]):
            advance(future.result())
    except BaseException:
        # A Stop or an error: drop the patients not yet started instead of working through them.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
