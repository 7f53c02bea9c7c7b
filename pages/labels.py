"""Labels: the pathologists' readings to TSR, TIL, Immune Score and TIME labels."""

import plotly.express as px
import streamlit as st

from crc_core import labels as core
from crc_core.errors import CrcInputError
from crc_core.labels import LabelConfig
from pages import _ui

st.title("Labels")
st.caption(
    "How the pathology readings become the four labels the models learn. The paper's rules are "
    "the defaults; every cut-off can be changed, and nothing is saved until you press Save."
)

workspace = _ui.require_workspace()
try:
    pathology = workspace.read_pathology()
    split = core.workspace_split(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

saved = core.read_label_config(workspace) if workspace.labels_csv.exists() else None
start = saved or LabelConfig()

with st.form("label_rules"):
    st.markdown("**Rules** (defaults: the paper)")
    tsr_col, til_col, is_col = st.columns(3)
    tsr_cutoff = tsr_col.number_input("TSR high: stroma above (%)", 0.0, 100.0, float(start.tsr_cutoff_percent), 10.0,
                                      help=core.PAPER_TSR_RULE)
    til_grade = til_col.selectbox("TIL high: grade from", [1, 2, 3], index=[1, 2, 3].index(start.til_high_min_grade),
                                  help=core.PAPER_TIL_RULE)
    is_above = is_col.selectbox("Immune Score high: above", [0, 1, 2, 3], index=start.is_high_above,
                                help=core.PAPER_IS_RULE)
    source = st.radio(
        "Marker cut-offs for the Immune Score", core.IS_CUTOFF_SOURCES, horizontal=True,
        index=core.IS_CUTOFF_SOURCES.index(start.is_cutoff_source),
        format_func={
            "train_median": "median of the training cohort",
            "given": "values I give",
            "is_column": "an is_score column in the table",
        }.get,
        help="The training median never looks at the validation cohort.",
    )
    given = dict(start.marker_cutoffs) if start.marker_cutoffs else {}
    marker_columns = st.columns(len(core.MARKERS))
    cutoffs = {
        marker: column.number_input(f"{marker} cut-off", 0.0, value=float(given.get(marker, pathology[marker].median()
                                    if marker in pathology else 0.0)))
        for marker, column in zip(core.MARKERS, marker_columns)
    }
    st.markdown("**TIME score**: one point per component at the level chosen below.")
    st.caption(f"The paper: “{core.PAPER_TIME_RULE}” Our default reading: {core.TIME_READING}")
    tsr_point_col, til_point_col, is_point_col, min_col = st.columns(4)
    points = {
        name: column.radio(f"{label} point for", ["high", "low"], horizontal=True,
                           index=["high", "low"].index(getattr(start, f"time_{name}_point")))
        for name, label, column in (("tsr", "TSR", tsr_point_col), ("til", "TIL", til_point_col), ("is", "IS", is_point_col))
    }
    time_min = min_col.selectbox("TIME high: score from", [1, 2, 3], index=[1, 2, 3].index(start.time_high_min_score))
    resolution = st.radio(
        "Two pathologists disagree: use", core.RESOLUTIONS, horizontal=True,
        index=core.RESOLUTIONS.index(start.resolution),
        format_func={"max": "the higher reading (paper, for TSR)", "mean": "their mean",
                     "first": "reader 1 only", "consensus": "a *_consensus column"}.get,
        help=core.PAPER_TSR_MAX_RULE,
    )
    st.form_submit_button("Apply rules", type="primary")

try:
    config = LabelConfig(
        tsr_cutoff_percent=tsr_cutoff, til_high_min_grade=til_grade, is_high_above=is_above,
        is_cutoff_source=source, marker_cutoffs=cutoffs if source == "given" else (),
        time_tsr_point=points["tsr"], time_til_point=points["til"], time_is_point=points["is"],
        time_high_min_score=time_min, resolution=resolution,
    )
    result = core.build_labels(pathology, split, config)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

for warning in result.warnings:
    st.warning(warning)
st.success(core.describe_labels(result))
if st.button("Save labels.csv to the workspace", key="save_labels"):
    try:
        paths = core.save_labels(workspace, result, config)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
    else:
        st.success(f"Saved {paths[0]}; the later rooms read the labels from there.")

labels = result.labels
st.subheader("Prevalence by split")
st.dataframe(core.label_prevalence(labels, split), hide_index=True)
if result.cutoffs:
    st.caption(
        "Immune Score marker cut-offs: "
        + "; ".join(f"{m} > {c['value']:g} ({c['source']})" for m, c in result.cutoffs.items())
    )

st.subheader("Distributions")
plot_frame = labels.merge(split, on="patient_id", how="left") if split is not None else labels.assign(split="all")
left, right = st.columns(2)
for column, name, title in (
    (left, "tsr_percent", "TSR (%)"), (right, "til_grade", "TIL grade"),
    (left, "is_score", "Immune Score (0-4)"), (right, "time_score", "TIME score (0-3)"),
):
    if name in plot_frame.columns:
        counts = plot_frame.groupby([name, "split"]).size().reset_index(name="patients")
        figure = px.bar(counts, x=name, y="patients", color="split", barmode="group", title=title, height=300)
        column.plotly_chart(figure, key=f"dist_{name}")

st.subheader("Cross-tabulation")
first, second = st.columns(2)
a = first.selectbox("Rows", core.BINARY_LABELS, index=0)
b = second.selectbox("Columns", core.BINARY_LABELS, index=1)
st.dataframe(core.label_crosstab(labels, a, b).rename(columns=str, index=str))

st.subheader("Two pathologists")
agreement = core.agreement_summary(pathology, config)
if agreement.empty:
    st.info("No second reading in pathology.csv (columns tsr_percent_r2, til_grade_r2).")
else:
    st.caption(
        "Cohen's kappa with 95% CI; for the ordinal grades the linearly and quadratically weighted "
        "kappa too."
    )
    st.dataframe(agreement, hide_index=True)

with st.expander("The labels table"):
    st.dataframe(labels, hide_index=True)
