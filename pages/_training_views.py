"""The Train page's views of the run store: the run being trained, live, and the runs so far."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from crc_core import figures, training
from crc_core.runs import RunStore
from crc_core.workspace import Workspace


@st.fragment(run_every=2.0)
def live(root: str, job_id: str) -> None:
    """The job's current run: epoch, ETA, speed, device, weights, and its curves, every 2 s."""
    store = RunStore(Workspace(Path(root)))
    current = [r for r in store.runs() if r.job_id == job_id and r.status == "running"]
    if not current:
        return
    status = training.live_status(store, current[0].run_id)
    run = status["run"]
    st.markdown(f"**Now training: {run.target.upper()} × {run.backbone} ({run.mode})** · run `{run.run_id}`")
    columns = st.columns(4)
    columns[0].metric("Epoch", f"{status['epoch']}/{status['epochs']}" if status["epochs"] else run.mode)
    columns[1].metric("ETA", time.strftime("%H:%M:%S", time.gmtime(status["eta_s"])) if status["eta_s"] else "—")
    columns[2].metric("Images/s", f"{status['images_per_s']:.1f}" if status["images_per_s"] else "—")
    columns[3].metric("Device", status["device"] or "choosing…")
    if status["weights"] and not status["weights"].get("pretrained", True):
        st.warning("Random initialisation: no ImageNet weights were found for this backbone.")
    metrics = store.metrics([run.run_id])
    if len(metrics):
        random = "" if run.pretrained or run.mode == "radiomics" else " (random initialisation)"
        st.plotly_chart(figures.training_curves(metrics, f"{run.target.upper()} × {run.backbone}{random}"),
                        config=figures.EXPORT_CONFIG, key=f"live_{run.run_id}")


def runs(workspace: Workspace) -> None:
    """Every run with its AUCs, and chosen runs compared: normalised loss curves, AUC per fold."""
    store = RunStore(workspace)
    overview = training.runs_overview(store)
    st.subheader("Runs")
    if overview.empty:
        st.info("No runs yet: choose targets and backbones above and start training.")
        return
    if (overview["weights"] == "random init").any():
        st.caption("“random init”: trained without ImageNet weights; its results are not the paper's models.")
    st.dataframe(overview, hide_index=True)
    labels = {r: f"{t.upper()} × {b} ({m}{', random init' if w == 'random init' else ''})"
              for r, t, b, m, w in overview[["run_id", "target", "backbone", "mode", "weights"]].itertuples(index=False)}
    chosen = st.multiselect("Compare runs", list(overview["run_id"]), default=list(overview["run_id"][:4]),
                            format_func=lambda r: f"{labels[r]} · {r}")
    if not chosen:
        return
    steps = store.metrics(chosen, "step")
    curves = {labels[r]: rows for r, rows in steps[steps["name"] == "train_loss"].groupby("run_id", sort=False)}
    left, right = st.columns(2)
    if curves:
        left.plotly_chart(figures.normalised_losses(curves), config=figures.EXPORT_CONFIG, key="compare_losses")
    else:
        from crc_core.linear_models import C_GRID

        path = store.metrics(chosen, "penalty")
        penalty = {labels[r]: rows for r, rows in path.groupby("run_id", sort=False)}
        if penalty:
            left.plotly_chart(figures.penalty_curves(penalty, C_GRID), config=figures.EXPORT_CONFIG, key="compare_penalty")
    aucs = training.fold_aucs(store, chosen)
    held_out = aucs[aucs["cohort"].isin(["validation", "cv", "repeat"])]
    if len(held_out):
        right.plotly_chart(figures.auc_by_fold(held_out, labels), config=figures.EXPORT_CONFIG, key="compare_aucs")
