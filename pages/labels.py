"""Labels: the pathologists' readings to TSR, TIL, Immune Score and TIME labels."""

import hashlib
from dataclasses import replace

import pandas as pd
import streamlit as st

from crc_core import figures, paper
from crc_core.labels import rules as core
from crc_core.errors import CrcInputError
from crc_core.metrics.kappa import KAPPA_CI_METHOD, agreement_for_people, pathologist_agreement
from crc_core.labels.rules import LabelConfig
from crc_core.cohort.pathology import MARKER_NAMES, MARKER_UNIT, MARKERS
from crc_core.cohort.splits import read_split
from pages import _ui

st.title("Labels")
st.caption("How the pathology readings become the four labels the models learn. The paper's rules are the "
           "defaults; every cut-off can be changed, and nothing is saved until you press Save.")

# Whose rules the widgets showed in the last run that drew them. Popped before anything can stop
# the page, so a run on another workspace, or one that stopped with an error, leaves none: the
# widgets then start again from the saved rules of the workspace shown. (Found in use: leaving for
# a workspace whose page stopped, the browser sent the widgets' bare defaults, TSR > 0% ..., which
# came back with the workspace and were saved over its rules.)
SHOWN_FOR = "labels_rules_shown_for"
shown_for = st.session_state.pop(SHOWN_FOR, None)
workspace = _ui.require_workspace()
try:
    cohort = core.cohort_pathology(workspace)  # the rows of the cohort's patients: a stray row stays out
    pathology = cohort.table
    saved_split = read_split(workspace)
    saved = core.read_label_config(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
split = saved_split.table if saved_split else None
_ui.show_flashes()

# Widget state per workspace, started from the saved rules (or the paper's).
NS = hashlib.sha1(str(workspace.root.resolve()).encode()).hexdigest()[:8]
FIELDS = ("tsr_cutoff_percent", "til_high_min_grade", "is_high_above", "is_cutoff_source", "time_tsr_point",
          "time_til_point", "time_is_point", "time_high_min_score", "resolution")


def key(name: str) -> str:
    return f"labels_{name}_{NS}"


try:  # the training medians: what the default rule applies, and where the boxes for own values start
    medians = {m: c["value"] for m, c in core.build_cohort_labels(cohort, split, LabelConfig()).cutoffs.items()}
except CrcInputError:
    medians = {m: float(pd.to_numeric(pathology[m], errors="coerce").median()) for m in MARKERS if m in pathology}
    medians = {m: v for m, v in medians.items() if v == v}  # a column with no number has no median


def set_rules(config: LabelConfig) -> None:
    """Every widget of the rules to ``config`` (own marker boxes start at the training medians)."""
    for name in FIELDS:
        st.session_state[key(name)] = getattr(config, name)
    given = config.marker_cutoff_map
    for marker in MARKERS:
        st.session_state[key(marker)] = given.get(marker, medians.get(marker, 0.0))


if shown_for != NS or any(key(name) not in st.session_state for name in (*FIELDS, *MARKERS)):
    set_rules(saved or LabelConfig())
st.session_state[SHOWN_FOR] = NS

st.button("Reset to the paper's rules", on_click=set_rules, args=(LabelConfig(),), key="reset_rules")
tsr_col, til_col, is_col = st.columns(3)
tsr_col.number_input("TSR high: stroma above (%)", step=10.0, key=key("tsr_cutoff_percent"), help=paper.TSR_RULE)
til_col.selectbox("TIL high: grade from", [1, 2, 3], key=key("til_high_min_grade"), help=paper.TIL_RULE)
is_col.selectbox("Immune Score high: above", [0, 1, 2, 3], key=key("is_high_above"), help=paper.IS_RULE)
try:  # a cut-off the rules refuse is said here, beside its box, not below the page
    replace(LabelConfig(), **{name: st.session_state[key(name)] for name in FIELDS[:3]})
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()
source = st.radio("Marker cut-offs for the Immune Score", core.IS_CUTOFF_SOURCES, horizontal=True,
                  key=key("is_cutoff_source"), help="The training median never looks at the validation cohort.",
                  format_func={"train_median": "median of the training cohort", "given": "values I give",
                               "is_column": "an is_score column in the table"}.get)
marker_columns = st.columns(len(MARKERS))
for marker, column in zip(MARKERS, marker_columns):
    if source == "given":
        column.number_input(f"{MARKER_NAMES[marker]} above ({MARKER_UNIT})", key=key(marker))
    elif source == "train_median" and marker in medians:
        # The unit in the label: beside a value like 209.5 it would be cut off in a quarter-width column.
        column.metric(f"{MARKER_NAMES[marker]} above ({MARKER_UNIT})", f"{medians[marker]:g}",
                      help=f"{marker}: the median of the training cohort, applied as is.")
st.markdown("**TIME score**: one point per component at the level chosen below.")
st.caption(f"The paper: “{paper.TIME_RULE}” Our default reading: {core.TIME_READING}")
point_columns = st.columns(4)
for name, label, column in (("tsr", "TSR", point_columns[0]), ("til", "TIL", point_columns[1]), ("is", "IS", point_columns[2])):
    column.radio(f"{label} point for", ["high", "low"], horizontal=True, key=key(f"time_{name}_point"))
point_columns[3].selectbox("TIME high: score from", [1, 2, 3], key=key("time_high_min_score"))
st.radio("Two pathologists disagree: use", core.RESOLUTIONS, horizontal=True, key=key("resolution"),
         format_func={"max": "the higher reading (paper, for TSR)", "mean": "their mean", "first": "reader 1 only",
                      "consensus": "a *_consensus column"}.get, help=paper.TSR_MAX_RULE)

try:
    chosen = {name: st.session_state[key(name)] for name in FIELDS}
    given = {m: st.session_state[key(m)] for m in MARKERS} if source == "given" else ()
    config = replace(LabelConfig(), **chosen, marker_cutoffs=given)
    result = core.build_cohort_labels(cohort, split, config)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

for warning in result.warnings:
    st.warning(warning)
st.info(core.describe_labels(result, words=True) + (" · these rules are saved" if config == saved else " · not saved yet"))
one_class = core.one_class_warnings(result.labels, config)
confirmed = not one_class or st.checkbox("Save them all the same (a label with one class)", key="save_one_class")
if st.button("Save labels.csv to the workspace", key="save_labels", type="primary", disabled=not confirmed):
    try:
        paths = core.save_labels(workspace, result, config)
    except CrcInputError as exc:
        _ui.show_input_error(exc)
    else:
        _ui.flash("success", f"Saved {paths[0]}; the later rooms read the labels from there.")
        st.rerun()

labels = result.labels
st.subheader("Prevalence by split")
st.dataframe(core.prevalence_for_people(core.label_prevalence(labels, split)), hide_index=True)
if result.cutoffs:
    st.caption("Immune Score marker cut-offs applied: "
               + "; ".join(f"{MARKER_NAMES[m]} > {c['value']:g} {MARKER_UNIT} ({c['source']})" for m, c in result.cutoffs.items()))

st.subheader("Distributions")
plot_frame = labels.merge(split, on="patient_id", how="left") if split is not None else labels.assign(split="all")
left, right = st.columns(2)
for column, name in ((left, "tsr_percent"), (right, "til_grade"), (left, "is_score"), (right, "time_score")):
    if name in plot_frame.columns:
        column.plotly_chart(figures.label_distribution(plot_frame, name), key=f"dist_{name}", config=figures.EXPORT_CONFIG)

st.subheader("Cross-tabulation")
first, second = st.columns(2)
a = first.selectbox("Rows", core.BINARY_LABELS, index=0, format_func=core.LABEL_NAMES.get)
b = second.selectbox("Columns", core.BINARY_LABELS, index=1, format_func=core.LABEL_NAMES.get)
try:
    st.dataframe(core.crosstab_for_people(core.label_crosstab(labels, a, b)))
except CrcInputError as exc:
    _ui.show_input_error(exc)

st.subheader("Two pathologists")
agreement = pathologist_agreement(pathology, config.tsr_step_percent)
if agreement.empty:
    st.info("No second reading in pathology.csv (columns tsr_percent_r2, til_grade_r2).")
else:
    st.caption("Cohen's kappa; for the ordinal grades the linearly and quadratically weighted kappa too. "
               + KAPPA_CI_METHOD + ".")
    st.dataframe(agreement_for_people(agreement), hide_index=True)

with st.expander("The labels table"):
    st.dataframe(labels, hide_index=True)
