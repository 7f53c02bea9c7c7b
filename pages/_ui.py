"""Streamlit helpers shared by the pages: the active workspace, its sidebar, errors, placeholders.

Everything that calls ``st.*`` and is used by more than one page lives here, never in ``crc_core``.
Each page calls :func:`active_workspace` itself, so a page works opened by URL, after a restart,
or alone under AppTest.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from crc_core.errors import CrcInputError
from crc_core.jobs import JobStatus, latest_job, read_job, start_job
from crc_core.workspace import Workspace, default_workspace_path

WORKSPACE_KEY = "workspace_path"


def active_workspace() -> Workspace:
    """The workspace chosen in the sidebar, else ``$CRC_TIME_WORKSPACE``, else ``./workspace``."""
    chosen = st.session_state.get(WORKSPACE_KEY)
    return Workspace(Path(chosen) if chosen else default_workspace_path())


@st.cache_data(show_spinner=False, max_entries=8)
def _cohort_counts(clinical_csv: str, split_csv: str, modified_ns: tuple[int, int]) -> dict[str, int]:
    # modified_ns is part of the cache key so a rebuilt workspace or a new split is read again.
    clinical = pd.read_csv(clinical_csv)
    counts = {"patients": len(clinical)}
    # A split saved on the Cohort page overrides the split column of the clinical table.
    source = pd.read_csv(split_csv) if modified_ns[1] else clinical
    if "split" in source.columns:
        counts.update({str(k): int(v) for k, v in source["split"].value_counts().items()})
    return counts


def cohort_counts(workspace: Workspace) -> dict[str, int] | None:
    """Patients in total and per split, or None when the workspace is not usable."""
    if workspace.problems():
        return None
    clinical, split = workspace.clinical_csv, workspace.root / "split.csv"
    stamps = (clinical.stat().st_mtime_ns, split.stat().st_mtime_ns if split.exists() else 0)
    return _cohort_counts(str(clinical), str(split), stamps)


def require_workspace() -> Workspace:
    """Return the usable active workspace, or show what is wrong and how to fix it, and stop."""
    workspace = active_workspace()
    found = workspace.problems()
    if found:
        st.error("The workspace cannot be used:\n\n" + "\n\n".join(f"- {p}" for p in found))
        st.info(
            "To rebuild the built-in sample cohort, run in a terminal from the project folder:\n\n"
            f"```\n.venv/bin/crc-time --workspace {workspace.root} sample\n```\n\n"
            "or choose another workspace folder in the sidebar."
        )
        offer_sample_build(workspace)
        st.stop()
    return workspace


def offer_sample_build(workspace: Workspace) -> None:
    """A button that builds the sample in a worker process, where no tables would be overwritten."""
    if not workspace.root.is_dir():
        job, running = None, False
    else:
        job, running = show_job(workspace, "sample", "Building the sample cohort")
    if running:
        return
    if workspace.clinical_csv.exists() or workspace.pathology_csv.exists():
        return  # never overwrite a user's tables from a button
    if st.button("Build the sample cohort in this folder", type="primary"):
        start_job(workspace.root, workspace.root, "sample")
        st.rerun()


def show_job(workspace: Workspace, step: str, what: str) -> tuple[JobStatus | None, bool]:
    """Follow the step's running worker, or say how the last one ended if it did not finish well.
    Returns the last job (or None) and whether it is still running."""
    job = latest_job(workspace.root, step)
    if job is not None and not job.finished:
        follow_job(str(workspace.root), job.job_id)
        return job, True
    if job is not None and job.state != "done":
        st.error(f"{what} {job.state}: {job.message}")
    return job, False


@st.fragment(run_every=1.0)
def follow_job(jobs_root: str, job_id: str) -> None:
    """A progress bar that follows a worker's status and reruns the page when it ends."""
    status = read_job(Path(jobs_root), job_id)
    if status is None or status.finished:
        st.rerun(scope="app")
    st.progress(status.fraction, text=f"{status.step}: {status.done}/{status.total} {status.message}")


def show_input_error(exc: CrcInputError) -> None:
    st.error(str(exc))


FLASH_KEY = "flash_messages"


def flash(kind: str, message: str) -> None:
    """Keep a message to show after the next rerun (``kind``: success, warning, info)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop(FLASH_KEY, []):
        getattr(st, kind)(message)


def draw_sidebar() -> None:
    """Active workspace (editable) and its cohort size."""
    active = str(active_workspace().root)
    if st.session_state.get("workspace_input") != active:
        # A page switched the workspace (an import): the field must follow, and may only be set
        # before the widget is drawn in this run.
        st.session_state["workspace_input"] = active
    with st.sidebar:
        st.text_input(
            "Workspace folder",
            key="workspace_input",
            on_change=_choose_workspace,
            help="The folder that holds this project's tables, labels, crops, runs and exports.",
        )
        counts = cohort_counts(active_workspace())
        if counts is None:
            st.warning("No usable cohort in this workspace.")
        else:
            st.caption(f"**{counts['patients']} patients** · {split_summary(counts)}")


def _choose_workspace() -> None:
    chosen = st.session_state["workspace_input"].strip()
    if chosen:
        st.session_state[WORKSPACE_KEY] = chosen


def split_summary(counts: dict[str, int]) -> str:
    parts = [f"{counts[name]} {name}" for name in ("train", "validation", "external") if name in counts]
    return " / ".join(parts) if parts else "no split yet"


def placeholder(title: str, intro: str, will_hold: list[str], issue_hint: str) -> None:
    """An honest placeholder: what this room will hold, and that it is not built yet."""
    st.title(title)
    st.write(intro)
    st.info("This room is not built yet. " + issue_hint)
    st.markdown("**It will hold:**\n" + "\n".join(f"- {item}" for item in will_hold))
