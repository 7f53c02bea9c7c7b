"""Streamlit helpers shared by the pages: the active workspace, its sidebar, jobs, errors.

Everything that calls ``st.*`` and is used by more than one page lives here, never in ``crc_core``.
The active workspace lives in the URL (``?workspace=``), so a reload or a link keeps it; a new tab
opens the last workspace chosen. Each page calls :func:`require_workspace` itself, so a page works
opened by URL, after a restart, or alone under AppTest.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from crc_core.errors import CrcInputError
from crc_core.jobs import JobRunning, JobStatus, latest_job, read_job, request_stop, start_job
from crc_core.workflow import CohortSummary, cohort_summary
from crc_core.workspace import Workspace, remember_workspace, start_workspace_path

WORKSPACE_PARAM = "workspace"
FLASH_KEY = "flash_messages"


def active_workspace() -> Workspace:
    """The workspace in the URL, else ``$CRC_TIME_WORKSPACE``, else the last one chosen, else
    ``./workspace``."""
    chosen = st.query_params.get(WORKSPACE_PARAM)
    return Workspace(Path(chosen) if chosen else start_workspace_path())


def switch_workspace(path: Path | str) -> None:
    """Make ``path`` the active workspace of this tab (the URL) and the one a new tab opens."""
    st.query_params[WORKSPACE_PARAM] = str(path)
    remember_workspace(path)


def stamp(path: Path) -> int:
    """A file's modification time (0 when absent), for cache keys that follow the file."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(root: str, stamps: tuple[int, ...]) -> CohortSummary | str:
    # stamps (the files' modification times) are part of the key: a new split is read at once.
    try:
        return cohort_summary(Workspace(Path(root)))
    except CrcInputError as exc:
        return str(exc)


def summary_of(workspace: Workspace) -> CohortSummary | None:
    """Patients and split of a usable workspace, or None; cached until one of its files changes."""
    files = (workspace.clinical_csv, workspace.pathology_csv, workspace.split_csv, workspace.split_json)
    found = _summary(str(workspace.root), tuple(stamp(p) for p in files))
    return found if isinstance(found, CohortSummary) else None


def require_workspace() -> Workspace:
    """Return the usable active workspace, or show what is wrong and how to fix it, and stop."""
    workspace = active_workspace()
    found = workspace.problems()
    if found:
        st.error("The workspace cannot be used:\n\n" + "\n\n".join(f"- {p}" for p in found))
        if not workspace.holds_cohort() or workspace.is_sample:
            st.info(
                "To build the built-in sample cohort there, run in a terminal from the project folder:\n\n"
                f"```\n.venv/bin/crc-time --workspace {workspace.root} sample\n```\n\n"
                "or use the button below, import your own tables on the Cohort page, or choose another "
                "workspace folder in the sidebar."
            )
            offer_sample_build(workspace)
        st.stop()
    return workspace


def offer_sample_build(workspace: Workspace) -> None:
    """A button that builds the sample in a worker, where it would overwrite no one's tables."""
    if workspace.root.is_dir():
        _, running = show_job(workspace, "sample", "Building the sample cohort")
        if running:
            return
    if workspace.holds_cohort() and not workspace.is_sample:
        return  # never overwrite a user's tables from a button
    if st.button("Build the sample cohort in this folder", type="primary"):
        start_step(workspace, "sample")


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


def show_job(workspace: Workspace, step: str, what: str) -> tuple[JobStatus | None, bool]:
    """Follow the step's running worker, or say how the last one ended if it did not finish well.
    Returns the last job (or None) and whether it is still running."""
    job = latest_job(workspace, step)
    if job is not None and not job.finished:
        follow_job(str(workspace.root), job.job_id, what)
        return job, True
    if job is not None and job.state == "stopped":
        st.info(f"{what} was stopped: {job.message}")
    elif job is not None and job.state != "done":
        st.error(f"{what} {job.state}: {job.message}")
    return job, False


@st.fragment(run_every=1.0)
def follow_job(root: str, job_id: str, what: str) -> None:
    """A progress bar with a Stop button that follows a worker and reruns the page when it ends."""
    workspace = Workspace(Path(root))
    status = read_job(workspace, job_id)
    if status is None or status.finished:
        st.rerun(scope="app")
    left, right = st.columns([5, 1])
    text = f"{what}: {status.done}/{status.total}" if status.total else f"{what}: starting"
    left.progress(status.fraction, text=text)
    if right.button("Stop", key=f"stop_{job_id}", help="The worker finishes the patient at hand and stops."):
        request_stop(workspace, job_id)
        st.toast("Stopping…")


def show_input_error(exc: CrcInputError) -> None:
    st.error(str(exc))


def flash(kind: str, message: str) -> None:
    """Keep a message to show after the next rerun (``kind``: success, warning, info)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop(FLASH_KEY, []):
        getattr(st, kind)(message)


def draw_sidebar() -> None:
    """Active workspace (editable) and its cohort size; keeps the workspace in the URL."""
    workspace = active_workspace()
    if st.query_params.get(WORKSPACE_PARAM) != str(workspace.root):
        st.query_params[WORKSPACE_PARAM] = str(workspace.root)
    if st.session_state.get("workspace_input") != str(workspace.root):
        # The workspace changed elsewhere (an import, the URL): the field must follow, and may only
        # be set before the widget is drawn in this run.
        st.session_state["workspace_input"] = str(workspace.root)
    with st.sidebar:
        st.text_input(
            "Workspace folder", key="workspace_input", on_change=_choose_workspace,
            help="The folder that holds this project's tables, labels, crops, runs and exports.",
        )
        summary = summary_of(workspace)
        if summary is None:
            st.warning("No usable cohort in this workspace.")
        else:
            st.caption(f"**{summary.patients} patients** · {summary.split.describe() if summary.split else 'no split yet'}")


def _choose_workspace() -> None:
    chosen = st.session_state["workspace_input"].strip()
    if chosen:
        switch_workspace(chosen)


def placeholder(title: str, intro: str, will_hold: list[str], issue_hint: str) -> None:
    """An honest placeholder: what this room will hold, and that it is not built yet."""
    st.title(title)
    st.write(intro)
    st.info("This room is not built yet. " + issue_hint)
    st.markdown("**It will hold:**\n" + "\n".join(f"- {item}" for item in will_hold))
