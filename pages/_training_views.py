"""The Train page's views of the run store: the run being trained, live, and the runs so far, with
Resume for a run that was stopped or interrupted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from crc_core import figures

from crc_core.runs import views as run_views

from crc_core.training import grid as training
from crc_core.errors import CrcInputError
from crc_core.runs.store import RunMode, RunStore
from crc_core.workspace import Workspace
from pages import _jobs

LIVE_KEY = "live_metrics"


def _new_metrics(store: RunStore, run_id: str) -> pd.DataFrame:
    """The run's metrics, reading only the rows written since the last look (a poll every 2 s
    must not read a long run's every step again); a row written again (a resumed epoch) replaces
    the old one."""
    cache = st.session_state.setdefault(LIVE_KEY, {})
    known, since = cache.get(run_id, (None, None))
    fresh = store.metrics([run_id], since=since)
    if known is not None and len(fresh):
        fresh = pd.concat([known, fresh]).drop_duplicates(["fold", "scope", "epoch", "step", "name"], keep="last")
    elif known is not None:
        fresh = known
    if len(fresh):
        cache[run_id] = (fresh, float(fresh["at"].max()))
    return fresh


def epoch_in_progress(status: run_views.LiveStatus) -> str:
    """``1 of 2`` while the first of two epochs trains (found in use: "0/2" while the bar moved)."""
    if not status.epochs_total:
        return status.epoch_text
    return f"{min(status.epochs_done + 1, status.epochs_total)} of {status.epochs_total}"


@st.fragment(run_every=2.0)
def live(root: str, followed: bool = False) -> None:
    """The run being trained: the epoch in progress of all its folds' epochs, device, weights, its
    curves, and the runs table as each run starts and ends, every 2 s. ``followed``: the job's
    progress bar above already says the time left and the speed, so they are not said twice (a run
    resumed from a terminal has no bar: then they are here)."""
    store = RunStore(Workspace(Path(root)))
    try:
        current = store.runs(status="running")
    except CrcInputError as exc:
        st.error(str(exc))
        return
    if current:
        status = run_views.live_status(store, current[0].run_id)
        run = status.run
        st.markdown(f"**Now training: {run.target.upper()} × {run_views.model_name(run)} "
                    f"({run_views.MODE_NAMES[run.mode]})** · run `{run.run_id}`")
        finetune = run.mode is RunMode.FINETUNE
        columns = st.columns(4)
        if finetune:
            columns[0].metric("Epoch (all folds)" if int(run.info.get("n_partitions", 1)) > 1 else "Epoch",
                              epoch_in_progress(status))
            if not followed:
                columns[1].metric("Time left", status.eta_text)
                columns[2].metric("Images/s", f"{status.images_per_s:.1f}" if status.images_per_s else "—")
        # A fast or radiomics run has no epochs: its progress is the line in words above.
        columns[(1 if followed else 3) if finetune else 0].metric("Device", status.device or "choosing…")
        if run.random_init:
            st.warning("Random initialisation: this backbone starts without ImageNet weights "
                       f"({status.weights.get('note') or 'none found'}); its results are not the paper's models.")
        metrics = _new_metrics(store, run.run_id)
        if run.mode is RunMode.FINETUNE and len(metrics):
            st.plotly_chart(figures.training_curves(metrics, f"{run.target.upper()} × {run_views.model_name(run)}"
                                                    + (" (random initialisation)" if run.random_init else "")),
                            config=figures.EXPORT_CONFIG, key=f"live_{run.run_id}")
    runs_table(store)


def runs_table(store: RunStore) -> pd.DataFrame:
    overview = run_views.runs_overview(store)
    st.subheader("Runs")
    if overview.empty:
        st.info("No runs yet: choose targets and backbones above and start training.")
        return overview
    if (overview["Weights"] == "random init").any():
        st.caption("“random init”: trained without ImageNet weights; its results are not the paper's models.")
    st.dataframe(overview, hide_index=True, column_config={
        "Run": st.column_config.TextColumn(width="large", help="The run's id, as `crc-time` commands take it"),
        "Last epoch": st.column_config.TextColumn(width="medium")})
    return overview


def resume(workspace: Workspace) -> None:
    """A training job with work left offers Resume: its stopped or interrupted run goes on (or,
    where its checkpoint is lost, starts again), then the runs the job asked for that never started."""
    left = training.unfinished(RunStore(workspace))
    if not left:
        return
    job = left[0]
    columns = st.columns([4, 1, 1] if job.stopped is not None else [5, 1], vertical_alignment="center")
    columns[0].info(job.describe())
    if columns[1].button("Resume", key=f"resume_{job.run_id}", type="primary",
                         help="Goes on from the last finished epoch of each unfinished fold, then trains the runs of the "
                              "job that never started."):
        _jobs.start_step(workspace, "train", args=("--resume", job.run_id))
    if job.stopped is not None and columns[2].button(
            "Start again", key=f"restart_{job.run_id}",
            help="Trains the unfinished folds again from epoch 0, forgetting their epochs, then the runs that never started."):
        _jobs.start_step(workspace, "train", args=("--resume", job.run_id, "--restart"))


def compare(workspace: Workspace) -> None:
    """Chosen runs compared: normalised loss curves (or the penalty path of the fast modes) and
    the AUC of every fold or repeat."""
    store = RunStore(workspace)
    finished = store.runs(status="done")
    if not finished:
        return
    labels = {r.run_id: f"{r.target.upper()} × {run_views.model_name(r)} ({run_views.MODE_NAMES[r.mode]}"
                        f"{', random init' if r.random_init else ''})" for r in finished}
    chosen = st.multiselect("Compare runs", list(labels), default=list(labels)[:4], format_func=lambda r: f"{labels[r]} · {r[-4:]}")
    if not chosen:
        return
    short = {r: f"{r_.target.upper()} × {run_views.model_name(r_)} · {run_views.MODE_NAMES[r_.mode]}"
                f"{', random init' if r_.random_init else ''} · {r[-4:]}" for r in chosen for r_ in [store.run(r)]}
    from crc_core.networks.linear_models import C_GRID

    charts = {}
    steps = store.metrics(chosen, "step")
    curves = {short[r]: rows for r, rows in steps[steps["name"] == "train_loss"].groupby("run_id", sort=False)}
    if curves:  # fine-tuned runs
        charts["compare_losses"] = figures.normalised_losses(curves)
    penalty = {short[r]: rows for r, rows in store.metrics(chosen, "penalty").groupby("run_id", sort=False)}
    if penalty:  # fast-mode runs, beside the fine-tuned ones when both are chosen
        charts["compare_penalty"] = figures.penalty_curves(penalty, C_GRID)
    aucs = run_views.fold_aucs(store, chosen)
    held_out = aucs[aucs["cohort"].isin(run_views.HELD_OUT)]
    if len(held_out):
        charts["compare_aucs"] = figures.auc_by_fold(held_out, short)
    keys = list(charts)
    for pair in (keys[i:i + 2] for i in range(0, len(keys), 2)):
        for column, key in zip(st.columns(2), pair):
            column.plotly_chart(charts[key], config=figures.EXPORT_CONFIG, key=key)
