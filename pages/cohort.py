"""Cohort: bring the tables in, split the cohort, and check baseline balance with Table 1."""

from pathlib import Path

import pandas as pd
import streamlit as st

from crc_core import paper
from crc_core.cohort.join import load_workspace_cohort, read_column_mapping, split_workspace
from crc_core.errors import CrcInputError
from crc_core.cohort.splits import SplitConfig, describe_split, read_split, replaces_table_split
from crc_core.cohort.table1 import (TableOneOptions, chance_note, group_order, journal_view, split_was_random, table_one,
                            used_footnotes)
from crc_core.cohort.table_export import FORMATS, all_exports
from crc_core.variables import TYPE_RULE, chosen_types
from crc_core.workspace import Workspace
from pages import _table_import, _ui

st.title("Cohort")
st.caption("Clinical and pathology tables, the training/validation split, and Table 1 with the paper's tests.")

_table_import.draw_import()
_ui.show_flashes()
workspace = _ui.require_workspace()


@st.cache_data(show_spinner=False, max_entries=8)
def cohort_tables(root: str, stamps: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The cohort with the split in use, as imported (what a new split is made from), and the
    clinical table's variables (Table 1's default rows)."""
    here = Workspace(Path(root))
    clinical = [c for c in here.read_clinical().columns if c not in ("patient_id", "split", "fold")]
    return load_workspace_cohort(here), load_workspace_cohort(here, with_saved_split=False), clinical


@st.cache_data(show_spinner=False, max_entries=16)
def table_one_with_exports(cohort: pd.DataFrame, group: str, variables: tuple, categorical: tuple,
                           continuous: tuple, order: tuple, options: str) -> tuple[pd.DataFrame, dict]:
    table = table_one(cohort, group, list(variables), list(categorical), continuous=list(continuous),
                      groups=list(order), options=TableOneOptions.from_json(options))
    return table, all_exports(table)


files = (workspace.clinical_csv, workspace.pathology_csv, workspace.labels_csv, workspace.split_csv, workspace.split_json)
try:
    cohort, imported, clinical_columns = cohort_tables(str(workspace.root), tuple(_ui.stamp(p) for p in files))
    mapping = read_column_mapping(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

st.subheader(f"Clinical and pathology table ({len(cohort)} patients)")
st.dataframe(cohort, hide_index=True, height=240)

st.subheader("Split")
st.caption(f"The paper: “{paper.SPLIT_RULE}”")
with st.form("split"):
    method = st.radio("Method", ["random", "column", "kfold", "external"], horizontal=True,
                      format_func={"random": "seeded random", "column": "from a column", "kfold": "k-fold",
                                   "external": "external cohort by centre"}.get)
    left, middle, right = st.columns(3)
    fraction = left.number_input("Training share", 0.05, 0.95, 0.7, 0.05)
    seed = middle.number_input("Seed", 0, 2**31 - 1, 0, key="split_seed")
    n_folds = right.selectbox("Folds (k-fold)", [5, 10])
    binary = [c for c in imported.columns if c not in ("patient_id", "split") and imported[c].nunique() == 2]
    stratify = left.selectbox("Stratify by", [None, *binary], format_func=lambda c: c or "nothing")
    column = middle.selectbox("Split column (the tables as imported)", [c for c in imported.columns if c != "patient_id"])
    few_valued = [c for c in imported.columns if c != "patient_id" and 2 <= imported[c].nunique() <= 20]
    centre_column = right.selectbox("Centre column (external)", [None, *few_valued], format_func=lambda c: c or "none")
    centres = st.text_input("External centres (comma-separated values of the centre column)",
                            help="Patients of these centres become the external cohort; the others are split at random.")
    in_use = read_split(workspace)
    confirmed = in_use is not None and in_use.table_column is not None and st.checkbox(
        "Replace the table's own split", key="replace_table_split",
        help=f"The split in use comes from the column {in_use.table_column!r} of your table.")
    if st.form_submit_button("Apply and save the split"):
        try:
            config = SplitConfig(method=method, train_fraction=fraction, seed=int(seed), stratify_by=stratify,
                                 column=column, n_folds=n_folds, centre_column=centre_column,
                                 external_centres=tuple(c.strip() for c in centres.split(",") if c.strip()))
            question = replaces_table_split(in_use, config)
            if question and not confirmed:
                raise CrcInputError(question)
            split = split_workspace(workspace, config)
        except CrcInputError as exc:
            _ui.show_input_error(exc)
        else:
            _ui.flash("success", f"Saved split.csv: {describe_split(split)}")
            st.rerun()  # the sidebar, Home and this page count the new split at once
summary = _ui.summary_of(workspace)
st.caption(f"Split in use: {summary.split.describe()} (from {summary.split.source})." if summary and summary.split
           else "No split yet: save one above.")

st.subheader("Table 1")
st.caption(f"The paper: “{paper.NORMALITY_RULE} … {paper.TABLE_ONE_TEST_RULE}” Numbers as SPSS and R print them.")
two_valued = [c for c in cohort.columns if c != "patient_id" and cohort[c].dropna().nunique() == 2]
group_choices = list(dict.fromkeys([*(["split"] if "split" in two_valued else []), *two_valued]))
if not group_choices:
    st.warning("No column with two groups to compare: save a split above, or build labels on the Labels page.")
    st.stop()
types = mapping.type_overrides
with st.form("table_one"):
    left, middle, right = st.columns([1, 1, 2])
    group = left.selectbox("Compare by", group_choices, index=group_choices.index(mapping.group_column)
                           if mapping.group_column in group_choices else 0,
                           help="The split, or any column with two values such as a label (tsr_high).")
    chosen = right.multiselect("Variables", [c for c in cohort.columns if c != "patient_id"],
                               default=[c for c in clinical_columns if c in cohort.columns])
    swap = middle.checkbox("Swap the two groups", help="Training comes first by default.")
    left, middle, right = st.columns(3)
    normality = left.radio("Normality test", ["ks", "shapiro"], horizontal=True,
                           format_func={"ks": "Kolmogorov-Smirnov", "shapiro": "Shapiro-Wilk"}.get)
    unequal = middle.radio("Normal but unequal variances", ["mann-whitney", "welch"], horizontal=True,
                           format_func={"mann-whitney": "Mann-Whitney U (the paper)", "welch": "Welch's t"}.get)
    p_style = right.radio("P values", ["paper", "spss"], horizontal=True,
                          format_func={"paper": "0.166, < 0.001 (paper)", "spss": ".166, .000 (SPSS)"}.get)
    show_smd = left.checkbox("Standardised mean differences", value=True,
                             help="Beside p, how large each difference is: pooled SD for continuous variables, Yang & "
                                  "Dalton 2012 for categorical ones (as R tableone).")
    decimals = middle.number_input("Decimals", 0, 4, 2)
    with st.expander("Variable types and forced tests"):
        st.caption(TYPE_RULE + " The types chosen at import are the defaults here.")
        st.caption("Both lists offer every variable: one named in both goes where you moved it.")
        as_categorical = st.multiselect("Treat as categorical", chosen,
                                        default=[c for c in chosen if types.get(c) in ("categorical", "ordinal")])
        # Every variable, not only those off the categorical list when the form was drawn: a form
        # does not redraw while it is being filled, so a column categorical at import could never
        # be turned continuous.
        as_continuous = st.multiselect("Treat as continuous", chosen,
                                       default=[c for c in chosen if types.get(c) == "continuous" and c not in as_categorical])
        forced = {}
        for test, label in (("student", "Student's t"), ("welch", "Welch's t"), ("mann-whitney", "Mann-Whitney U"),
                            ("chi2", "χ²"), ("fisher", "Fisher's exact")):
            for variable in st.multiselect(f"Use {label} for", chosen, key=f"force_{test}"):
                forced[variable] = test
    st.form_submit_button("Compute Table 1", type="primary")

as_categorical, as_continuous = chosen_types(as_categorical, as_continuous, types)
try:
    options = TableOneOptions(normality=normality, decimals=int(decimals), smd=show_smd, force_test=forced,
                              unequal_variance=unequal, p_style=p_style)
    order = group_order(cohort[group])
    table, exports = table_one_with_exports(
        cohort, group, tuple(c for c in chosen if c != group), tuple(as_categorical), tuple(as_continuous),
        tuple(str(g) for g in (order[::-1] if swap else order)), options.to_json())
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

view = journal_view(table)
# Leading spaces would turn a level into a Markdown code block; em spaces indent it instead.
view["Variable"] = view["Variable"].str.replace(r"^ {4}", "\u2003\u2003", regex=True)
st.table(view.set_index("Variable"))
for note in used_footnotes(table):
    st.caption(note)
chance = chance_note(table, group == "split" and split_was_random(read_split(workspace), workspace))
if chance:
    st.info(chance)
with st.expander("Why each test was chosen, and missing values"):
    st.dataframe(table.loc[table["test"] != "", ["variable", "test", "statistic", "p_value", "missing", "reason"]],
                 hide_index=True)
for column, (suffix, name) in zip(st.columns(len(FORMATS)), FORMATS.items()):
    column.download_button(f"{name} ({suffix})", exports[suffix], file_name=f"table1_by_{group}{suffix}",
                           key=f"download_{suffix}")
