"""The Evaluate page's "Report & exports" tab: one click builds a run's self-contained HTML report,
another its figures as PNG and SVG; both in a worker (``crc-time report`` / ``crc-time figures``),
kept in the workspace's exports folder and offered as downloads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from crc_core.reporting.report import FIGURE_HEIGHT, FIGURE_WIDTH, ReportConfig
from crc_core.runs.store import RunRecord
from crc_core.workspace import Workspace
from pages import _jobs


def _output(workspace: Workspace, run: RunRecord, kind: str, pseudonymise: bool) -> Path:
    suffix = "-pseudonymised" if pseudonymise else ""
    return workspace.exports_dir / f"{run.run_id}-{kind}{suffix}.{'html' if kind == 'report' else 'zip'}"


#: The choices a download is built with, in the words of the page's header.
CHOICE_WORDS = {"threshold_rule": ("threshold", {"out_of_fold": "Youden on training out-of-fold", "training": "Youden on training",
                                                 "per_cohort": "each cohort's own"}),
                "ci_method": ("AUC 95% CI", {"delong": "DeLong", "bootstrap": "bootstrap"})}


def built_with(workspace: Workspace, step: str, path: Path) -> ReportConfig | None:
    """The choices the file at ``path`` was built with: the config of the last job of ``step`` that
    finished writing it (matched by the file's name, so a moved workspace still finds it), or None
    when no such job is known (built by ``crc-time`` in a terminal, or by an earlier version)."""
    from crc_core.jobs import job_config, list_jobs

    for job in list_jobs(workspace, step):
        if job.state != "done":
            continue
        config = job_config(workspace, job.job_id, ReportConfig)
        if config is not None and Path(config.out).name == path.name:
            return config
    return None


def differences(built: ReportConfig, wanted: ReportConfig, evaluated: list[str]) -> list[str]:
    """How ``built`` differs from the choices above, in words (empty: the same). Cohorts left empty
    by an earlier version meant every cohort evaluated."""
    from crc_core.runs.views import cohort_name

    def names(cohorts: set[str]) -> str:
        return ", ".join(cohort_name(c) for c in sorted(cohorts)) or "none"

    said = []
    for field, (name, words) in CHOICE_WORDS.items():
        then, now = getattr(built, field), getattr(wanted, field)
        if then != now:
            said.append(f"{name}: {words.get(then, then)} (now {words.get(now, now)})")
    then, now = set(built.cohorts or evaluated), set(wanted.cohorts or evaluated)
    if then != now:
        said.append(f"cohorts: {names(then)} (now {names(now)})")
    return said


def _offer(workspace: Workspace, step: str, path: Path, wanted: ReportConfig, evaluated: list[str], what: str,
           mime: str, key: str) -> bool:
    """Offer a built file for download, saying whether it was built with the choices above; a file
    built with other choices (or unknown ones) is marked out of date, never offered as current.
    Returns whether it is current."""
    if not path.exists():
        return False
    info = path.stat()
    built = dt.datetime.fromtimestamp(info.st_mtime).strftime("%Y-%m-%d %H:%M")
    size = f"{info.st_size / 1e6:.1f} MB, built {built}"
    config = built_with(workspace, step, path)
    changed = differences(config, wanted, evaluated) if config is not None else None
    if changed == []:
        label = f"Download the {what} ({size})"
    else:
        st.warning(f"Out of date: this {what} was built with other choices than the ones above — "
                   + ("; ".join(changed) if changed else "which ones is not known (it was built outside this page)")
                   + ". Rebuild it to show what the page shows now.")
        label = f"Download the out-of-date {what} ({size})"
    # The file is read only when the download is asked for, never on every click of the page.
    st.download_button(label, path.read_bytes, path.name, mime=mime, key=key, on_click="ignore")
    return changed == []


def _config(result, cohorts: list[str], pseudonymise: bool, out: Path) -> ReportConfig:
    """What the page shows now — its run, threshold rule, CI method and cohorts — for the worker.
    The cohorts are named even when every one is shown, so a cohort predicted later makes the
    file out of date."""
    every = list(result.metrics)
    return ReportConfig(run_id=result.run.run_id, threshold_rule=result.threshold_rule, ci_method=result.ci_method,
                        cohorts=tuple(c for c in every if c in cohorts) or tuple(every), pseudonymise=pseudonymise,
                        out=str(out))


def _build(workspace: Workspace, step: str, config: ReportConfig, path: Path, what: str, evaluated: list[str],
           mime: str, *, first: str, again: str) -> None:
    """The job's progress, or the button that builds the file and the file built."""
    _, running = _jobs.show_job(workspace, step, {"report": "Report", "figures": "Figures"}[step])
    if running:
        return
    slot = st.container()  # the button above the download, decided after the download is judged
    current = _offer(workspace, step, path, config, evaluated, what, mime, f"download_{step}")
    label = first if not path.exists() else again if current else f"Rebuild the {what} with the choices above"
    if slot.button(label, key=f"build_{step}", type="primary" if step == "report" or not current else "secondary"):
        _jobs.start_step(workspace, step, config)


def draw(workspace: Workspace, result, cohorts: list[str]) -> None:
    run: RunRecord = result.run
    st.caption("The report holds the cohort, Table 1, the labels, every model of this target, Table 2, the ROC, violin, "
               "decision and calibration figures, Grad-CAM panels (compute them first in the Grad-CAM tab), the reader "
               "check and other centres where they were run, the sample size for an external validation, the TRIPOD+AI "
               "checklist, the methods with each setting's source (the paper's or ours), the run's configuration and the "
               "software versions — in one HTML file that opens offline, without a network. No path of this machine "
               "appears in it. Each is built with the threshold, CI method and cohorts chosen above; one built with "
               "other choices is marked out of date.")
    pseudonymise = st.checkbox("Replace patient IDs by pseudonyms (Patient 017, …, in a random order)", value=True,
                               key="report_pseudonymise", persist_state="page",
                               help="In the report and in the figures; the same patient gets the same pseudonym in both. "
                                    "The key that would undo them stays in this workspace.")
    evaluated = list(result.metrics)
    report = _output(workspace, run, "report", pseudonymise)
    images = _output(workspace, run, "figures", pseudonymise)
    left, right = st.columns(2)
    with left:
        _build(workspace, "report", _config(result, cohorts, pseudonymise, report), report, "report", evaluated,
               "text/html", first="Build the report", again="Build the report again")
    with right:
        _build(workspace, "figures", _config(result, cohorts, pseudonymise, images), images, "figures zip", evaluated,
               "application/zip", first="Export every figure as PNG and SVG", again="Export the figures again")
        st.caption(f"Publication size: {FIGURE_WIDTH} × {FIGURE_HEIGHT} px; PNG at twice that resolution. Rendered by this "
                   "machine's Chromium.")
    _checklist(workspace, result)


def _checklist(workspace: Workspace, result) -> None:
    from crc_core.reporting import tripod

    def filled():
        return tripod.checklist(workspace, result)

    st.markdown("**TRIPOD+AI checklist** (Collins et al. 2024): each item filled in from this workspace where it knows "
                "the answer, the rest left to write.")
    left, right = st.columns(2)
    # Filled in when downloaded (a few seconds: it reads the whole workspace), never on every click of the page.
    left.download_button("Checklist (Markdown)", lambda: tripod.to_markdown(filled()), f"{result.run.run_id}-tripod-ai.md",
                         mime="text/markdown", key="tripod_md", on_click="ignore")
    right.download_button("Checklist (Word)", lambda: tripod.to_docx(filled()), f"{result.run.run_id}-tripod-ai.docx",
                          mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document", key="tripod_docx",
                          on_click="ignore")
    if st.toggle("Show the checklist here", key="tripod_show", persist_state="page"):
        table = filled()
        done = int((table["Status"] == tripod.DOCUMENTED).sum())
        st.caption(f"{done} of {len(table)} items filled in from this workspace, the rest to write.")
        st.dataframe(table, hide_index=True)
