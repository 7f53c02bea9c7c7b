"""Pages' side of long work: start a step's worker with its config, follow it with a progress bar
and a Stop button, and say how it ended. The work itself runs in ``crc_core.jobs``' worker."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from crc_core.errors import CrcInputError
from crc_core.jobs import JobRunning, JobStatus, latest_job, read_job, request_stop, start_job
from crc_core.workspace import Workspace


def start_step(workspace: Workspace, step: str, config=None, args: tuple[str, ...] = ()) -> None:
    """Start a step's worker with its config and rerun; a second start is refused with a message."""
    try:
        start_job(workspace, step, config=config, args=args)
    except JobRunning as exc:
        st.warning(str(exc))
        return
    except CrcInputError as exc:
        st.error(str(exc))
        return
    st.rerun()


def show_job(workspace: Workspace, step: str, what: str, *, settled=None) -> tuple[JobStatus | None, bool]:
    """Follow the step's running worker, or say how the last one ended if it did not finish well —
    unless ``settled(job)`` says its outcome has been overtaken since (a run resumed elsewhere).
    Returns the last job (or None) and whether it is still running."""
    job = latest_job(workspace, step)
    if job is not None and not job.finished:
        follow_job(str(workspace.root), job.job_id, what)
        return job, True
    if job is not None and settled is not None and settled(job):
        return job, False
    if job is not None and job.state == "stopped":
        st.info(f"{what} was stopped: {job.message}")
    elif job is not None and job.state != "done":
        st.error(f"{what} {job.state}: {job.message}")
    return job, False


#: What Stop does, per step: where the worker stops and what is kept.
STOP_HELP = {
    "train": "The run stops after the batch at hand; Resume goes on from its last finished epoch.",
    "cam": "The maps stop after the batch of patients at hand; nothing half-done is kept.",
    "report": "The report stops after the section at hand; nothing half-written is kept.",
    "figures": "The export stops after the picture at hand; nothing half-written is kept.",
    "robustness": "The check stops after the patient or batch at hand; the crops cut so far are kept for the next try.",
    "predict": "Prediction stops after the patient at hand; the crops cut so far are kept for the next try.",
}


@st.fragment(run_every=1.0)
def follow_job(root: str, job_id: str, what: str) -> None:
    """A progress bar with a Stop button that follows a worker and reruns the page when it ends;
    the worker's own words (what it is doing now) on the bar."""
    workspace = Workspace(Path(root))
    status = read_job(workspace, job_id)
    if status is None or status.finished:
        st.rerun(scope="app")
    left, right = st.columns([5, 1])
    if status.message:
        text = f"{what}: {status.message}"
    else:
        text = f"{what}: {status.done} of {status.total}" if status.total else f"{what}: starting the worker"
    left.progress(status.fraction, text=text)
    if right.button("Stop", key=f"stop_{job_id}",
                    help=STOP_HELP.get(status.step, "The worker finishes the patient at hand and stops.")):
        request_stop(workspace, job_id)
        st.toast("Stopping…")
