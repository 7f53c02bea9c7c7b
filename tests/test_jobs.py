"""Worker-process jobs: the page starts a CLI step and reads its progress from the workspace."""

import json
import time

from crc_core.jobs import JobStatus, latest_job, read_job, start_job


def wait_finished(root, job_id, timeout_s=60.0) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_job(root, job_id)
        if status is not None and status.finished:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {read_job(root, job_id)}")


def test_a_job_runs_a_step_and_reports_done(tmp_path):
    root = tmp_path / "ws"
    started = start_job(root, root, "sample", ["--n", "12", "--no-images"])
    assert started.state == "running"
    status = wait_finished(root, started.job_id)
    assert status.state == "done", (root / "jobs" / started.job_id / "log.txt").read_text()
    assert "12 patients (8 train / 4 validation)" in status.message
    assert status.done == status.total > 0
    assert latest_job(root, "sample").job_id == started.job_id
    assert latest_job(root, "train") is None


def test_a_failing_job_keeps_the_users_message(tmp_path):
    root = tmp_path / "absent"
    started = start_job(tmp_path, root, "info")
    status = wait_finished(tmp_path, started.job_id)
    assert status.state == "failed"
    assert "does not exist" in status.message


def test_a_dead_worker_reads_as_interrupted(tmp_path):
    folder = tmp_path / "jobs" / "j1"
    folder.mkdir(parents=True)
    # PID 2**22 + 1 is above Linux's pid_max default, so no such process exists.
    dead = JobStatus("j1", "sample", "running", done=3, total=10, started_at=1.0, pid=2**22 + 1)
    (folder / "status.json").write_text(json.dumps(dead.__dict__))
    assert read_job(tmp_path, "j1").state == "interrupted"
