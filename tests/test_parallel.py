"""Specifications for crc_core.parallel: pool workers never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: A parent that runs two slow tasks on two workers; each task writes its worker's PID first.
#: "watchdog" makes the kernel's death signal an invalid prctl option, so that only the portable
#: fallback can end the workers (forked workers inherit the changed module).
PARENT = """
import os, sys, time
from pathlib import Path
from crc_core import parallel
from crc_core.parallel import map_in_workers

def sleep_in_worker(path):
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)
    return path

if __name__ == "__main__":
    folder = Path(sys.argv[1])
    if sys.argv[2] == "watchdog":
        parallel.PR_SET_PDEATHSIG = 0
    map_in_workers(sleep_in_worker, [str(folder / f"worker-{i}.pid") for i in range(2)], workers=2)
"""


def alive(pid: int) -> bool:
    """Running (a zombie counts as gone: in a container nobody may reap an orphan that exited)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc").is_dir():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(15)
@pytest.mark.parametrize("guard", ["kernel", "watchdog"])
def test_pool_workers_exit_when_their_parent_is_killed(tmp_path, guard):
    # Found in use: after kill -9 of `crc-time preprocess`, its two workers ran on for 44 minutes.
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), guard], cwd=REPO_ROOT, env=env)
    pids: list[int] = []
    try:
        files = [tmp_path / f"worker-{i}.pid" for i in range(2)]
        deadline = time.monotonic() + 5
        while not all(f.exists() and f.read_text() for f in files):
            assert parent.poll() is None, "the parent ended before its workers started"
            assert time.monotonic() < deadline, "the workers did not start within 5 s"
            time.sleep(0.05)
        pids = [int(f.read_text()) for f in files]
        assert all(alive(pid) for pid in pids)

        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 8
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in pids if alive(pid)] == [], "pool workers outlived their killed parent"
    finally:
        parent.kill()
        parent.wait()
        for pid in pids:  # only the workers this test started, by their PIDs
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
