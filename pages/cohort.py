"""Cohort: bring the tables in, split the cohort, and check baseline balance with Table 1."""

from pathlib import Path

import pandas as pd
import streamlit as st

from crc_core.cohort import (
    VARIABLE_TYPES,
    ColumnMapping,
    detect_id_column,
    detect_variable_types,
    import_cohort_tables,
    list_sheets,
    load_workspace_cohort,
    read_column_mapping,
    read_table,
    validate_table,
)
from crc_core.errors import CrcInputError
from crc_core.stats import TableOneOptions, journal_view, table_one, used_footnotes
from crc_core.table_export import FORMATS, export_bytes
from crc_core.splits import SplitConfig, describe_split, save_split, make_split
from pages import _ui

SAMPLE_TABLES = Path(__file__).resolve().parents[1] / "data" / "sample"

st.title("Cohort")
st.caption(
    "Clinical and pathology tables, the training/validation split, and Table 1 with the paper's "
    "tests, as SPSS reports them."
)

with st.expander("Use your own tables (CSV, TSV or XLSX)", expanded=False):
    st.write(
        "The tables are read on this machine and written into a workspace folder of your choice; "
        f"nothing leaves the computer. Each file may be up to 200 MB."
    )
    uploads, mappings = {}, {}
    for role in ("clinical", "pathology"):
        upload = st.file_uploader(f"{role.title()} table", type=["csv", "tsv", "txt", "xlsx"], key=f"upload_{role}")
        if upload is None:
            continue
        try:
            sheet = None
            if upload.name.lower().endswith(".xlsx"):
                sheet = st.selectbox(f"Sheet of {upload.name}", list_sheets(upload), key=f"sheet_{role}")
            read = read_table(upload, name=upload.name, sheet=sheet)
            for note in read.notes:
                st.caption(f"{upload.name}: {note}")
            columns = list(read.table.columns)
            detected = detect_id_column(read.table)
            id_column = st.selectbox(
                f"Patient ID column of {upload.name}", columns,
                index=columns.index(detected) if detected in columns else 0, key=f"id_{role}",
            )
            others = [c for c in columns if c != id_column]
            group_column = None
            if role == "clinical":
                group_column = st.selectbox(
                    f"Group or split column of {upload.name} (optional)", [None, *others],
                    index=1 + others.index("split") if "split" in others else 0,
                    format_func=lambda c: c or "none", key=f"group_{role}",
                    help="Table 1 compares by this column first; a split can also be made below.",
                )
            detected_types = detect_variable_types(read.table, exclude=[id_column, group_column])
            with st.expander(f"Variable types of {upload.name} (detected; change any)"):
                edited = st.data_editor(
                    pd.DataFrame({"column": list(detected_types), "type": list(detected_types.values())}),
                    column_config={
                        "column": st.column_config.TextColumn(disabled=True),
                        "type": st.column_config.SelectboxColumn(options=list(VARIABLE_TYPES), required=True),
                    },
                    hide_index=True, key=f"types_{role}",
                )
            overrides = {
                column: kind for column, kind in zip(edited["column"], edited["type"])
                if detected_types.get(column) != kind
            }
            mappings[role] = ColumnMapping(id_column=id_column, group_column=group_column, variable_types=overrides)
            uploads[role] = validate_table(read, mappings[role])
        except CrcInputError as exc:
            _ui.show_input_error(exc)
    target = st.text_input("Workspace folder for these tables", value="workspace-own")
    left, right = st.columns(2)
    use_uploads = left.button("Import into this workspace", disabled=len(uploads) < 2)
    # The same import path on the built-in sample's tables: to try the step without files.
    use_sample = right.button("Import the sample tables instead", key="import_sample")
    if use_uploads or use_sample:
        try:
            if use_sample:
                uploads = {
                    role: validate_table(read_table(SAMPLE_TABLES / f"{role}.csv"), ColumnMapping(id_column="patient_id"))
                    for role in ("clinical", "pathology")
                }
                mappings = {}
            # The clinical file names the group column; overrides of both files are kept.
            clinical_mapping = mappings.get("clinical", ColumnMapping())
            types = {**mappings.get("pathology", ColumnMapping()).type_overrides, **clinical_mapping.type_overrides}
            mapping = ColumnMapping(group_column=clinical_mapping.group_column, variable_types=types)
            joined = import_cohort_tables(Path(target), uploads["clinical"], uploads["pathology"], mapping)
        except CrcInputError as exc:
            _ui.show_input_error(exc)
        else:
            st.session_state[_ui.WORKSPACE_KEY] = target
            _ui.flash("success", f"Imported {len(joined.table)} patients into {target}; it is now the active workspace.")
            if not joined.complete:
                _ui.flash(
                    "warning",
                    f"Only in the clinical table: {', '.join(joined.only_in_clinical) or 'none'}. "
                    f"Only in the pathology table: {', '.join(joined.only_in_pathology) or 'none'}.",
                )
            st.rerun()  # so that the sidebar shows the new workspace and its counts
_ui.show_flashes()

workspace = _ui.require_workspace()
try:
    cohort = load_workspace_cohort(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

st.subheader(f"Clinical and pathology table ({len(cohort)} patients)")
st.dataframe(cohort, hide_index=True, height=240)

st.subheader("Split")
with st.form("split"):
    method = st.radio(
        "Method", ["random", "column", "kfold", "external"], horizontal=True,
        format_func={"random": "seeded random", "column": "from a column", "kfold": "k-fold",
                     "external": "external cohort by centre"}.get,
    )
    left, middle, right = st.columns(3)
    fraction = left.number_input("Training share", 0.05, 0.95, 0.7, 0.05)
    seed = middle.number_input("Seed", 0, 2**31 - 1, 0)
    n_folds = right.selectbox("Folds (k-fold)", [5, 10])
    binary = [c for c in cohort.columns if c not in ("patient_id", "split") and cohort[c].nunique() == 2]
    stratify = left.selectbox("Stratify by", [None, *binary], format_func=lambda c: c or "nothing")
    column = middle.selectbox("Split column", [c for c in cohort.columns if c != "patient_id"])
    few_valued = [c for c in cohort.columns if c != "patient_id" and 2 <= cohort[c].nunique() <= 20]
    centre_column = right.selectbox("Centre column (external)", [None, *few_valued], format_func=lambda c: c or "none")
    centres = st.text_input(
        "External centres (comma-separated values of the centre column)",
        help="Patients of these centres become the external cohort; the others are split at random as above.",
    )
    if st.form_submit_button("Apply and save the split"):
        try:
            config = SplitConfig(method=method, train_fraction=fraction, seed=int(seed),
                                 stratify_by=stratify, column=column, n_folds=n_folds,
                                 centre_column=centre_column,
                                 external_centres=tuple(c.strip() for c in centres.split(",") if c.strip()))
            split = make_split(cohort, config)
            save_split(workspace, split, config)
            st.success(f"Saved split.csv: {describe_split(split)}")
            cohort = load_workspace_cohort(workspace)
        except CrcInputError as exc:
            _ui.show_input_error(exc)
if "split" in cohort.columns:
    st.caption("Current split: " + describe_split(cohort[["patient_id", "split", *(["fold"] if "fold" in cohort else [])]]))

st.subheader("Table 1")
st.caption(
    "Continuous variables: Kolmogorov-Smirnov normality (Lilliefors) per group, then mean ± SD with "
    "the t-test (Student, or Welch when Levene p < 0.05), or median (Q1, Q3) with the Mann-Whitney "
    "U test as Z. Categorical: n (%) with Pearson's χ² (Fisher's exact test for a 2×2 table with an "
    "expected count below 5). Numbers as SPSS prints them."
)
clinical_columns = [c for c in workspace.read_clinical().columns if c not in ("patient_id", "split", "fold")]
two_valued = [c for c in cohort.columns if c != "patient_id" and cohort[c].dropna().nunique() == 2]
group_choices = (["split"] if "split" in cohort.columns else []) + [c for c in two_valued if c != "split"]
try:
    saved_mapping = read_column_mapping(workspace)
except CrcInputError as exc:
    _ui.show_input_error(exc)
    saved_mapping = ColumnMapping()
if not group_choices:
    st.warning("No column with two groups to compare: save a split above, or build labels on the Labels page.")
    st.stop()
with st.form("table_one"):
    left, right = st.columns([1, 2])
    group = left.selectbox(
        "Compare by", group_choices,
        index=group_choices.index(saved_mapping.group_column) if saved_mapping.group_column in group_choices else 0,
        help="The split, or any column with two values such as a label (tsr_high: high vs low TSR).",
    )
    chosen = right.multiselect(
        "Variables", [c for c in cohort.columns if c not in ("patient_id",)],
        default=[c for c in clinical_columns if c in cohort.columns],
    )
    left, middle, right = st.columns(3)
    normality = left.radio(
        "Normality test", ["ks", "shapiro"], horizontal=True,
        format_func={"ks": "Kolmogorov-Smirnov", "shapiro": "Shapiro-Wilk"}.get,
    )
    show_smd = middle.checkbox("Standardised mean differences", value=False)
    decimals = right.number_input("Decimals", 0, 4, 2)
    with st.expander("Force a variable's type or test"):
        saved_types = saved_mapping.type_overrides  # the types chosen at import
        as_categorical = st.multiselect(
            "Treat as categorical", chosen,
            default=[c for c in chosen if saved_types.get(c) in ("categorical", "ordinal")],
        )
        as_continuous = st.multiselect(
            "Treat as continuous", [c for c in chosen if c not in as_categorical],
            default=[c for c in chosen if saved_types.get(c) == "continuous" and c not in as_categorical],
        )
        forced = {}
        for test, label in (("t", "t-test"), ("mann-whitney", "Mann-Whitney U"), ("chi2", "χ²"), ("fisher", "Fisher's exact")):
            for variable in st.multiselect(f"Use {label} for", chosen, key=f"force_{test}"):
                forced[variable] = test
    st.form_submit_button("Compute Table 1", type="primary")

try:
    table = table_one(
        cohort, group, [c for c in chosen if c != group], as_categorical, continuous=as_continuous,
        options=TableOneOptions(normality=normality, decimals=int(decimals), smd=show_smd, force_test=forced),
    )
except CrcInputError as exc:
    _ui.show_input_error(exc)
    st.stop()

# A static table reads like the journal's and can be selected and copied as it stands.
view = journal_view(table)
# Leading spaces would turn a level into a Markdown code block; em spaces indent it instead.
view["Variable"] = view["Variable"].str.replace(r"^ {4}", "\u2003\u2003", regex=True)
st.table(view.set_index("Variable"))
for note in used_footnotes(table):
    st.caption(note)
with st.expander("Why each test was chosen"):
    st.dataframe(
        table.loc[table["test"] != "", ["variable", "test", "statistic", "p_value", "missing", "reason"]],
        hide_index=True,
    )
columns = st.columns(len(FORMATS))
for column, (suffix, name) in zip(columns, FORMATS.items()):
    column.download_button(
        f"{name} ({suffix})", export_bytes(table, suffix), file_name=f"table1_by_{group}{suffix}",
        key=f"download_{suffix}",
    )
