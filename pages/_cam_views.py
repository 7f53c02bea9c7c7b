"""The Evaluate page's Grad-CAM tab: a run's maps over the crops, the trust checks, and the same
patient across backbones (the paper's Figure 5). Maps are computed by a worker and cached per run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from crc_core import figures

from crc_core.evaluate import cam
from crc_core.evaluate import run_evaluation as me
from crc_core.errors import CrcInputError
from crc_core.runs.store import RunRecord, RunStore
from crc_core.workspace import Workspace
from pages import _jobs


def _panel(workspace: Workspace, run: RunRecord, maps: cam.CohortMaps, patient: str, caption: str, cohort: str):
    """The overlay of one patient, or None when the patient's crop is gone from the crop set."""
    images = cam.overlay_images(workspace, run, maps, [patient], cohort)
    return (caption, *images[patient]) if patient in images else None


def _compute(workspace: Workspace, run: RunRecord, cohort: str, method: str, *, again: bool) -> None:
    """The layer choice and the button that starts ``crc-time cam`` in a worker."""
    layers = cam.layer_choices(run)
    left, right = st.columns([2, 1], vertical_alignment="bottom")
    layer = left.selectbox("Layer", layers, key="cam_layer", persist_state="page", help="Deepest first: the last convolutional block is Grad-CAM's "
                           "usual choice; an earlier stage gives a finer map (and is needed on small crops).")
    label = f"Compute {cam.METHOD_NAMES[method]} {'again ' if again else ''}for the {cohort} cohort"
    if right.button(label, type="secondary" if again else "primary", key="cam_compute"):
        _jobs.start_step(workspace, "cam", cam.CamConfig(run_id=run.run_id, cohort=cohort, method=method, layer=layer))


def draw(workspace: Workspace, store: RunStore, result: me.RunEvaluation, finished: list[RunRecord]) -> None:
    run = result.run
    if cam.why_not_explainable(run):
        st.info(cam.why_not_explainable(run))
        return
    cohorts = list(result.metrics) or me.cohorts_of(result.predictions)
    left, right = st.columns(2)
    from crc_core.runs.views import cohort_name

    cohort = left.radio("Cohort", cohorts, index=cohorts.index("validation") if "validation" in cohorts else 0,
                        horizontal=True, key="cam_cohort", format_func=cohort_name, persist_state="page")
    method = right.radio("Method", cam.METHODS, horizontal=True, key="cam_method",
                         format_func=cam.METHOD_NAMES.get, persist_state="page")
    _, running = _jobs.show_job(workspace, "cam", "Grad-CAM")
    if running:
        return
    try:
        maps = cam.cached_maps(workspace, run, cohort, method)
    except CrcInputError as exc:
        st.error(str(exc))
        maps = None
    if maps is None:
        st.info(f"No maps yet for this run's {cohort} cohort: they are computed once, in the background, and kept.")
        _compute(workspace, run, cohort, method, again=False)
        return
    random_note = " · random initialisation" if run.random_init else ""
    columns = st.columns(3)
    columns[0].metric("Map inside the ROI (median)", f"{cam.median(maps.roi_share):.2f}",
                      help=f"An evenly spread map would put {np.median(maps.roi_area):.2f} there (the ROI's area share).")
    columns[1].metric("Randomisation check ρ (median)", f"{cam.median(maps.sanity):.2f}",
                      help=f"Rank correlation of each map with the map of the same network with "
                           f"{maps.meta.get('randomised', 'its learned top')} drawn at random. Near 1: the map does not "
                           "depend on what the model learned (Adebayo et al. 2018).")
    columns[2].metric("Class explained", maps.explained)
    st.caption(f"Layer {maps.meta['layer']}" + (f" — {maps.meta['note']}" if maps.meta.get("note") else "")
               + (f". No crop for: {', '.join(maps.meta['missing'])}." if maps.meta.get("missing") else "."))
    if maps.meta.get("cascade"):
        st.caption("Cascading randomisation from the top (median ρ with the trained network's maps): "
                   + "; ".join(f"{step['randomised']}: {step['median_rho']:.2f}" for step in maps.meta["cascade"]))
    predictions = store.predictions(run.run_id, cohort).set_index("patient_id")
    threshold = result.metrics.get(cohort, {}).get("threshold", 0.5)
    cases = cam.confident_cases(predictions.reset_index(), maps, threshold=threshold)
    show = st.radio("Patients", ["all", "right", "wrong"], horizontal=True, key="cam_filter", persist_state="page", format_func={
        "all": "all", "right": "most confident right calls", "wrong": "most confident wrong calls"}.get,
        help=f"Called high when p(high) ≥ {threshold:.3f}, the threshold of Table 2; confidence is the distance from it.")
    choices = maps.patient_ids if show == "all" else cases[show]
    if not choices:
        st.info("No such patient in this cohort.")
        return
    patient = st.selectbox("Patient", choices, key="cam_patient", persist_state="page", format_func=lambda p: (
        f"{p} · true {cam.CLASS_NAMES.get(predictions.loc[p, 'y_true'], '?')}"
        f" · p(high) {predictions.loc[p, 'prob']:.2f}"))
    try:
        first = _panel(workspace, run, maps, patient, f"{me.model_label(run)}", cohort)
    except CrcInputError as exc:
        st.warning(f"The maps are kept, but the crops under them cannot be drawn: {exc}")
        return
    if first is None:
        st.warning(f"{patient}'s crop is no longer in the run's crop set: run preprocessing with the run's settings "
                   "again to draw its map.")
        return
    panels = [first]
    shares = [{"Model": me.model_label(run), "ROI share (median)": f"{cam.median(maps.roi_share):.3f}",
               "Randomisation ρ (median)": f"{cam.median(maps.sanity):.3f}", "Run": run.run_id}]
    for other in finished:
        if len(panels) >= 6:  # Figure 5's width; before any other run's maps are read
            break
        if other.run_id == run.run_id or other.target != run.target or cam.why_not_explainable(other):
            continue
        try:
            other_maps = cam.cached_maps(workspace, other, cohort, method)
        except CrcInputError:
            continue
        if other_maps is not None and patient in other_maps.patient_ids:
            try:
                panel = _panel(workspace, other, other_maps, patient, me.model_label(other), cohort)
            except CrcInputError:
                panel = None
            if panel is None:
                continue
            panels.append(panel)
            shares.append({"Model": me.model_label(other), "ROI share (median)": f"{cam.median(other_maps.roi_share):.3f}",
                           "Randomisation ρ (median)": f"{cam.median(other_maps.sanity):.3f}", "Run": other.run_id})
    title = f"{patient}: {cam.METHOD_NAMES[method]} of the {maps.explained} class{random_note}"
    st.plotly_chart(figures.cam_overlays(panels, title), config=figures.EXPORT_CONFIG, key="cam_overlay")
    st.dataframe(pd.DataFrame(shares), hide_index=True)
    with st.expander("Compute the maps again at another layer"):
        _compute(workspace, run, cohort, method, again=True)
