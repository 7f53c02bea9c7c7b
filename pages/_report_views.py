"""The Evaluate page's "Report & exports" tab: one click builds a run's self-contained HTML report,
another its figures as PNG and SVG; both in a worker (``crc-time report`` / ``crc-time figures``),
kept in the workspace's exports folder and offered as downloads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import streamlit as st

from crc_core.report import FIGURE_HEIGHT, FIGURE_WIDTH, ReportConfig
from crc_core.runs import RunRecord
from crc_core.workspace import Workspace
from pages import _jobs


def _output(workspace: Workspace, run: RunRecord, kind: str, pseudonymise: bool) -> Path:
    suffix = "-pseudonymised" if pseudonymise else ""
    return workspace.exports_dir / f"{run.run_id}-{kind}{suffix}.{'html' if kind == 'report' else 'zip'}"


def _offer(path: Path, label: str, mime: str, key: str) -> None:
    if not path.exists():
        return
    built = dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    st.download_button(f"{label} ({path.stat().st_size / 1e6:.1f} MB, built {built})", path.read_bytes(), path.name,
                       mime=mime, key=key)


def _config(result, cohorts: list[str], pseudonymise: bool, out: Path) -> ReportConfig:
    """What the page shows now — its run, threshold rule, CI method and cohorts — for the worker."""
    every = list(result.metrics)
    return ReportConfig(run_id=result.run.run_id, threshold_rule=result.threshold_rule, ci_method=result.ci_method,
                        cohorts=tuple(c for c in cohorts if c in every) if set(cohorts) != set(every) else (),
                        pseudonymise=pseudonymise, out=str(out))


def draw(workspace: Workspace, result, cohorts: list[str]) -> None:
    run: RunRecord = result.run
    st.caption("The report holds the cohort, Table 1, the labels, every model of this target, Table 2, the ROC, violin, "
               "decision and calibration figures, Grad-CAM panels (compute them first in the Grad-CAM tab), the reader "
               "check and other centres where they were run, the sample size for an external validation, the TRIPOD+AI "
               "checklist, the methods with each setting's source (the paper's or ours), the run's configuration and the "
               "software versions — in one HTML file that opens offline, without a network. No path of this machine "
               "appears in it. Both use the threshold, CI method and cohorts chosen above.")
    pseudonymise = st.checkbox("Replace patient IDs by pseudonyms (Patient 017, …, in a random order)", value=True,
                               key="report_pseudonymise",
                               help="In the report and in the figures; the same patient gets the same pseudonym in both. "
                                    "The key that would undo them stays in this workspace.")
    report = _output(workspace, run, "report", pseudonymise)
    images = _output(workspace, run, "figures", pseudonymise)
    left, right = st.columns(2)
    with left:
        _, running = _jobs.show_job(workspace, "report", "Report")
        if not running:
            if st.button("Build the report" if not report.exists() else "Build the report again", key="build_report",
                         type="primary"):
                _jobs.start_step(workspace, "report", _config(result, cohorts, pseudonymise, report))
            _offer(report, "Download the report", "text/html", "download_report")
    with right:
        _, running = _jobs.show_job(workspace, "figures", "Figures")
        if not running:
            if st.button("Export every figure as PNG and SVG" if not images.exists() else "Export the figures again",
                         key="build_figures"):
                _jobs.start_step(workspace, "figures", _config(result, cohorts, pseudonymise, images))
            _offer(images, "Download the figures (zip)", "application/zip", "download_figures")
        st.caption(f"Publication size: {FIGURE_WIDTH} × {FIGURE_HEIGHT} px; PNG at twice that resolution. Rendered by this "
                   "machine's Chromium.")
    _checklist(workspace, result)


def _checklist(workspace: Workspace, result) -> None:
    from crc_core import tripod

    table = tripod.checklist(workspace, result)
    done = int((table["Status"] == tripod.DOCUMENTED).sum())
    st.markdown(f"**TRIPOD+AI checklist**: {done} of {len(table)} items filled in from this workspace, the rest to write.")
    left, right = st.columns(2)
    left.download_button("Checklist (Markdown)", tripod.to_markdown(table), f"{result.run.run_id}-tripod-ai.md",
                         mime="text/markdown", key="tripod_md")
    right.download_button("Checklist (Word)", tripod.to_docx(table), f"{result.run.run_id}-tripod-ai.docx",
                          mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document", key="tripod_docx")
