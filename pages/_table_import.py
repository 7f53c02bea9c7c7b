"""The Cohort page's import of a user's clinical and pathology tables: widgets only; reading,
mapping, checking and writing are ``crc_core.tables`` and ``crc_core.cohort.importing``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from crc_core.cohort.join import detect_group_column, detect_id_column
from crc_core.cohort.importing import (
    ROLES,
    PreparedTable,
    WorkspaceOccupied,
    cohort_description,
    import_prepared,
    import_sample_tables,
    prepare_table,
)
from crc_core.errors import CrcInputError
from crc_core.cohort.pathology import PATHOLOGY_FIELDS, detect_pathology_columns
from crc_core.tables import MAX_UPLOAD_MB, list_sheets, read_table
from crc_core.variables import TYPE_RULE, VARIABLE_TYPES, detect_variable_types
from crc_core.workspace import Workspace
from pages import _ui


def _choose(label: str, options: list, preferred, key: str, **kwargs):
    index = options.index(preferred) if preferred in options else 0
    return st.selectbox(label, options, index=index, key=key, **kwargs)


def _upload(role: str) -> PreparedTable | None:
    upload = st.file_uploader(f"{role.title()} table", type=["csv", "tsv", "txt", "xlsx"], key=f"upload_{role}",
                              max_upload_size=MAX_UPLOAD_MB)
    if upload is None:
        return None
    try:
        sheet = None
        if upload.name.lower().endswith(".xlsx"):
            sheet = st.selectbox(f"Sheet of {upload.name}", list_sheets(upload), key=f"sheet_{role}")
        read = read_table(upload, name=upload.name, sheet=sheet)
        for note in read.notes:
            st.caption(note)
        # The choices below belong to this file and sheet: another sheet (or file) starts from what
        # is detected in it, never from the last sheet's choices.
        of = hashlib.sha1(f"{upload.name}\0{upload.size}\0{sheet}".encode()).hexdigest()[:8]
        columns = list(read.table.columns)
        id_column = _choose(f"Patient ID column of {upload.name}", columns, detect_id_column(read.table), f"id_{role}_{of}")
        others = [c for c in columns if c != id_column]
        group_column, fields = None, None
        if role == "clinical":
            group_column = _choose(
                f"Group or split column of {upload.name} (optional)", [None, *others],
                detect_group_column(read.table, (id_column,)), f"group_{role}_{of}",
                format_func=lambda c: c or "none",
                help="Saved as the split when it holds train/validation (or test); Table 1 compares by it first.",
            )
        else:
            st.markdown(f"**Which column of {upload.name} holds what the labels need**")
            found = detect_pathology_columns(others)
            grid, fields = st.columns(3), {}
            for i, (field, (text, _)) in enumerate(PATHOLOGY_FIELDS.items()):
                with grid[i % 3]:
                    fields[field] = _choose(text, [None, *others], found.get(field), f"field_{field}_{of}",
                                            format_func=lambda c: c or "—")
        detected = detect_variable_types(read.table, exclude=[id_column, group_column])
        with st.expander(f"Variable types of {upload.name} (detected; change any)"):
            st.caption(TYPE_RULE)
            edited = st.data_editor(
                pd.DataFrame({"column": list(detected), "type": list(detected.values())}),
                column_config={
                    "column": st.column_config.TextColumn(disabled=True),
                    "type": st.column_config.SelectboxColumn(options=list(VARIABLE_TYPES), required=True),
                },
                hide_index=True, key=f"types_{role}_{of}",
            )
        prepared = prepare_table(read, role, id_column=id_column, group_column=group_column,
                                 variable_types=dict(zip(edited["column"], edited["type"])), pathology_columns=fields)
        for note in prepared.missing_notes:
            st.caption(note)
        return prepared
    except CrcInputError as exc:
        _ui.show_input_error(exc)
        return None


def draw_import() -> None:
    with st.expander("Use your own tables (CSV, TSV or XLSX)", expanded=False):
        st.write(
            "The tables are read on this machine and written into a workspace folder of your choice; "
            f"nothing leaves the computer. Each table may be up to {MAX_UPLOAD_MB} MB."
        )
        prepared = {role: table for role in ROLES if (table := _upload(role)) is not None}
        target = Workspace(Path(st.text_input("Workspace folder for these tables", value="workspace-own").strip()))
        replace = False
        if target.holds_cohort() and target.root.resolve() == _ui.active_workspace().root.resolve():
            st.info(f"`{target.root}` is the active workspace ({cohort_description(target)}). To import "
                    "into it again, confirm that its tables are to be replaced.")
            replace = st.checkbox("Replace its tables: its split, labels and crop choice are removed", key="replace_cohort")
        elif target.holds_cohort():
            st.warning(f"`{target.root}` already holds a cohort ({cohort_description(target)}). Open it, or "
                       "confirm that its tables are to be replaced.")
            replace = st.checkbox("Replace that cohort: its tables, split, labels and crop choice are removed",
                                  key="replace_cohort")
            if st.button("Open this workspace instead", key="open_target"):
                _ui.switch_workspace(target.root)
                st.rerun()
        blocked = target.holds_cohort() and not replace
        left, right = st.columns(2)
        use_uploads = left.button("Import into this workspace", disabled=len(prepared) < 2 or blocked)
        # The same import path on the built-in sample's tables: to try the step without files.
        use_sample = right.button("Import the sample tables instead", key="import_sample", disabled=blocked)
        if not (use_uploads or use_sample):
            return
        try:
            if use_sample:
                result = import_sample_tables(target.root, replace=replace)
            else:
                result = import_prepared(target.root, prepared["clinical"], prepared["pathology"], replace=replace)
        except WorkspaceOccupied as exc:  # filled by another tab since this one was drawn
            st.error(str(exc))
            return
        except CrcInputError as exc:
            _ui.show_input_error(exc)
            return
        _ui.switch_workspace(target.root)
        split = f"; split {result.split.describe()}" if result.split else "; no split yet"
        _ui.flash("success", f"Imported {len(result.join.table)} patients into {target.root}{split}. "
                             "It is now the active workspace.")
        for note in result.notes:
            _ui.flash("warning", note)
        st.rerun()  # so that the sidebar shows the new workspace and its counts
