"""Streamlit helpers shared by the pages: the active workspace, its sidebar, jobs, errors.

Everything that calls ``st.*`` and is used by more than one page lives here, never in ``crc_core``.
The active workspace lives in the URL (``?workspace=``), so a reload or a link keeps it; a new tab
opens the last workspace chosen. Each page calls :func:`require_workspace` itself, so a page works
opened by URL, after a restart, or alone under AppTest.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from crc_core.errors import CrcInputError
from crc_core.workflow import CohortSummary, cohort_summary
from crc_core.workspace import Workspace, remember_workspace, start_workspace_path
from pages import _jobs

WORKSPACE_PARAM = "workspace"
FLASH_KEY = "flash_messages"


def absolute(path: Path | str) -> Path:
    """``path`` from the root, ``~`` and ``..`` spelled out (symbolic links kept): a workspace in a
    URL or remembered for a new tab must mean the same folder after a restart elsewhere."""
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def active_workspace() -> Workspace:
    """The workspace in the URL, else ``$CRC_TIME_WORKSPACE``, else the last one chosen, else
    ``./workspace`` — as an absolute path."""
    chosen = st.query_params.get(WORKSPACE_PARAM)
    return Workspace(absolute(chosen if chosen else start_workspace_path()))


def switch_workspace(path: Path | str) -> None:
    """Make ``path`` the active workspace of this tab (the URL) and the one a new tab opens."""
    path = absolute(path)
    remember_workspace(path)  # first, so a tab opened as soon as the URL changes finds it
    st.query_params[WORKSPACE_PARAM] = str(path)


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
        _, running = _jobs.show_job(workspace, "sample", "Building the sample cohort")
        if running:
            return
    if workspace.holds_cohort() and not workspace.is_sample:
        return  # never overwrite a user's tables from a button
    if st.button("Build the sample cohort in this folder", type="primary"):
        _jobs.start_step(workspace, "sample")


def show_input_error(exc: CrcInputError) -> None:
    st.error(str(exc))


def flash(kind: str, message: str) -> None:
    """Keep a message to show after the next rerun (``kind``: success, warning, info)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop(FLASH_KEY, []):
        getattr(st, kind)(message)


def draw_sidebar(pages: list) -> None:
    """Links to the pages (carrying the workspace), the active workspace (editable) and its cohort
    size; keeps the workspace in the URL."""
    workspace = active_workspace()
    if st.query_params.get(WORKSPACE_PARAM) != str(workspace.root):
        st.query_params[WORKSPACE_PARAM] = str(workspace.root)
    if st.session_state.get("workspace_input") != str(workspace.root):
        # The workspace changed elsewhere (an import, the URL): the field must follow, and may only
        # be set before the widget is drawn in this run.
        st.session_state["workspace_input"] = str(workspace.root)
    with st.sidebar:
        for page in pages:
            st.page_link(page, query_params={WORKSPACE_PARAM: str(workspace.root)})
        st.divider()
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
