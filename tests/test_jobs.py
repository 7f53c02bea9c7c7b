"""Worker-process jobs: the page starts a CLI step with its config and reads its progress from the
workspace; a heartbeat tells a live worker from a dead one; Stop is honoured; one job per step."""

import json
import os
import socket
import time

import pytest

from crc_core.jobs import (
    HEARTBEAT_S,
    STALE_AFTER_S,
    JobRunning,
    JobStatus,
    job_dir,
    latest_job,
    read_job,
    request_stop,
    running_job,
    start_job,
)
from crc_core.sample.cohort import SampleConfig
from crc_core.workspace import Workspace


def wait_finished(workspace, job_id, timeout_s=90.0) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_job(workspace, job_id)
        if status is not None and status.finished:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {read_job(workspace, job_id)}")


def write_status(workspace, job_id, **fields) -> None:
    folder = job_dir(workspace, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "status.json").write_text(json.dumps({"job_id": job_id, "step": "sample", **fields}))


def test_a_job_runs_a_step_from_its_config_and_reports_done(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    started = start_job(workspace, "sample", config=SampleConfig(n_patients=12, with_images=False))
    assert started.state == "running" and started.host == socket.gethostname()
    assert SampleConfig.load(job_dir(workspace, started.job_id) / "config.json").n_patients == 12
    status = wait_finished(workspace, started.job_id)
    assert status.state == "done", (job_dir(workspace, started.job_id) / "log.txt").read_text()
    assert "12 patients (8 train / 4 validation)" in status.message
    assert status.done == status.total > 0 and status.heartbeat_at >= status.started_at
    assert latest_job(workspace, "sample").job_id == started.job_id
    assert latest_job(workspace, "train") is None


def test_a_fast_failing_worker_keeps_its_failed_state_and_the_users_message(tmp_path):
    # The starter writes its status before the worker exists, so the worker's "failed" is never
    # overwritten by the starter's "running".
    workspace = Workspace(tmp_path)
    for _ in range(3):
        started = start_job(workspace, "info")
        status = wait_finished(workspace, started.job_id)
        assert status.state == "failed"
        assert "holds no cohort yet" in status.message


def test_a_second_start_of_a_running_step_is_refused(tmp_path):
    # Found in use: a double click on "Compute reader agreement" started two jobs in one folder.
    workspace = Workspace(tmp_path / "ws")
    first = start_job(workspace, "sample", config=SampleConfig(n_patients=60, with_images=True, workers=1))
    with pytest.raises(JobRunning, match=r"The sample step is already running in .*: sample job .* Wait for it"):
        start_job(workspace, "sample", config=SampleConfig(n_patients=12, with_images=False))
    request_stop(workspace, first.job_id)
    status = wait_finished(workspace, first.job_id)
    assert status.state == "stopped" and "stopped by the user" in status.message
    assert running_job(workspace, "sample") is None
    again = start_job(workspace, "sample", config=SampleConfig(n_patients=12, with_images=False))  # the lock is free
    assert wait_finished(workspace, again.job_id).state == "done"


def test_a_dead_worker_on_this_host_reads_as_interrupted(tmp_path):
    # PID 2**22 + 1 is above Linux's pid_max default, so no such process exists.
    write_status(tmp_path, "j1", state="running", done=3, total=10, started_at=time.time(), pid=2**22 + 1,
                 host=socket.gethostname(), heartbeat_at=time.time())
    assert read_job(tmp_path, "j1").state == "interrupted"


def test_liveness_is_the_heartbeat_not_a_pid(tmp_path):
    now = time.time()
    # A run copied from a GPU server: another host, no local PID; alive while its heartbeat is fresh.
    write_status(tmp_path, "remote", state="running", started_at=now - 3600, host="gpu-server-7", heartbeat_at=now - 2)
    assert read_job(tmp_path, "remote").state == "running"
    assert read_job(tmp_path, "remote", now=now + STALE_AFTER_S + 1).state == "interrupted"
    # A reused PID (our own process is alive) does not keep a silent job running.
    write_status(tmp_path, "reused", state="running", started_at=now - 600, pid=os.getpid(),
                 host=socket.gethostname(), heartbeat_at=now - 600)
    status = read_job(tmp_path, "reused")
    assert status.state == "interrupted" and "no sign of life" in status.message
    assert HEARTBEAT_S <= 10


def test_a_damaged_status_reads_as_damaged_never_an_exception(tmp_path):
    folder = job_dir(tmp_path, "20260101-120000-preprocess-abc123")
    folder.mkdir(parents=True)
    (folder / "status.json").write_text('{"job_id": "x", "step": ')
    status = read_job(tmp_path, folder.name)
    assert status.state == "damaged" and status.finished and status.step == "preprocess"
    assert "status.json cannot be read" in status.message
    (folder / "status.json").write_text('{"job_id": "x", "step": "preprocess", "state": "exploded"}')
    assert read_job(tmp_path, folder.name).state == "damaged"
    assert latest_job(tmp_path, "preprocess").state == "damaged"
