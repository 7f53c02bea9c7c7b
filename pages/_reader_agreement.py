"""The CT & ROI page's reader-agreement tab: start the study in a worker, show its tables and figures."""

from __future__ import annotations

import streamlit as st

from crc_core import figures

from crc_core.imaging import agreement

from crc_core.imaging import reader_study
from crc_core.errors import CrcInputError
from crc_core.imaging.reader_study import AgreementConfig
from crc_core.cohort.table1 import format_p
from crc_core.workspace import Workspace
from pages import _jobs, _ui


def draw(workspace: Workspace, has_reader2: bool, settled=None) -> None:
    """The tab; ``settled(job)`` says when the last job's outcome no longer concerns the images
    listed now (an import since), so its failure is not shown as if it did."""
    if not has_reader2:
        st.info("manifest.csv lists no second reader's masks (column mask_r2): there is nothing to compare.")
        return
    st.caption(
        "Per patient: Dice and the 95th-percentile Hausdorff distance between the readers' ROIs. Per "
        "PyRadiomics feature (first order, shape, GLCM, GLRLM, GLSZM): ICC(2,1) with its 95% CI, as "
        f"`psych::ICC(lmer = FALSE)`, and a paired Wilcoxon test; ICC ≥ {agreement.RELIABLE_ICC} counts as reliable."
    )
    available = reader_study.radiomics_available()
    with_features = st.checkbox("PyRadiomics features", value=available, disabled=not available,
                                help="Needs PyRadiomics, which `make run` installs where a C compiler exists.")
    if st.button("Compute reader agreement"):
        _jobs.start_step(workspace, "agreement", AgreementConfig(with_features=with_features))
    _, running = _jobs.show_job(workspace, "agreement", "Reader agreement", settled=settled)
    if running:
        return
    try:
        saved = reader_study.read_reader_study(workspace)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return
    if saved is None:
        return
    masks, features, summary = saved
    st.success(summary)
    failed = masks[masks["status"] != "ok"]
    if len(failed):
        st.warning(f"{len(failed)} patients could not be compared.")
        st.dataframe(failed[["patient_id", "message"]], hide_index=True)
    ok = masks[masks["status"] == "ok"]
    if len(ok):
        left, right = st.columns(2)
        left.plotly_chart(figures.mask_agreement_distribution(ok), config=figures.EXPORT_CONFIG, key="agreement_masks")
        if len(ok) >= 2:
            right.plotly_chart(figures.bland_altman(ok["volume_r1_ml"], ok["volume_r2_ml"], ok["patient_id"]),
                               config=figures.EXPORT_CONFIG, key="agreement_volumes")
    st.dataframe(ok.drop(columns=["status", "message"]).round(3), hide_index=True)
    st.download_button("Per-patient agreement (CSV)", masks.to_csv(index=False), "reader_agreement_masks.csv")
    if features is not None:
        st.plotly_chart(figures.icc_by_feature_class(features, agreement.RELIABLE_ICC), config=figures.EXPORT_CONFIG,
                        key="agreement_icc")
        shown = features.sort_values("icc")
        # Three decimals would print a p of 0.00002 as 0: a p value reads "< 0.001", never 0.
        st.dataframe(shown.round(3).assign(wilcoxon_p=shown["wilcoxon_p"].map(format_p)), hide_index=True)
        st.download_button("Per-feature ICC (CSV)", features.to_csv(index=False), "reader_agreement_features.csv")
