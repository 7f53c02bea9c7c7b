"""Per-patient work across processes: one task per patient, results as they finish, progress."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        for future in as_completed([pool.submit(function, task) for task in tasks]):
            advance(future.result())
    except BaseException:
        # A Stop or an error: drop the patients not yet started instead of working through them.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
