"""Cohort: the users' tables mapped to patients (pathology columns, the join, the import),
the training/validation splits, Table 1 and its exports.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "join": [
        "ID_COLUMN_NAMES", "ColumnMapping", "detect_id_column", "GROUP_COLUMN_NAMES",
        "detect_group_column", "CheckedTable", "check_table", "validate_table", "JoinResult",
        "id_spelling_key", "near_misses", "near_miss_text", "join_tables",
        "load_workspace_cohort", "split_workspace", "save_column_mapping", "read_column_mapping",
    ],
    "importing": [
        "ROLES", "SAMPLE_TABLES", "WorkspaceOccupied", "PreparedTable", "prepare_table",
        "combined_mapping", "cohort_description", "ImportResult", "import_cohort_tables",
        "import_prepared", "import_sample_tables",
    ],
    "pathology": [
        "TSR_COLUMN", "TIL_COLUMN", "IS_COLUMN", "MARKERS", "MARKER_NAMES", "MARKER_UNIT",
        "SECOND_READER_SUFFIX", "PATHOLOGY_FIELDS", "REQUIRED_FIELDS", "OPTIONAL_FIELDS",
        "field_key", "detect_pathology_columns", "missing_pathology_fields", "describe_fields",
        "where", "readings", "on_step", "check_ranges", "round_half_up", "resolve_readings",
        "renamed_to_fields",
    ],
    "splits": [
        "SPLIT_VALUES", "SPLIT_COLUMN", "FOLD_COLUMN", "METHODS", "ALLOWED_FOLDS",
        "SPLIT_ALIASES", "SplitConfig", "split_values", "make_split", "split_counts", "n_folds",
        "describe_counts", "describe_split", "save_split", "SavedSplit", "replaces_table_split",
        "read_split", "FOLDS_FOLDER", "LABEL_AT_DRAW", "folds_csv", "FoldAssignment",
        "kfold_assignment", "align_split",
    ],
    "table1": [
        "CATEGORICAL", "T_STUDENT", "T_WELCH", "MANN_WHITNEY", "CHI_SQUARE", "FISHER",
        "NO_TEST", "FOOTNOTE_MARKS", "SPARSE_MARK", "FOOTNOTES", "SUPERSCRIPTS",
        "FORCEABLE_TESTS", "KS_P_CAP", "UNEQUAL_VARIANCE_TESTS", "P_STYLES", "NormalityResult",
        "TestResult", "lilliefors_p", "ks_lilliefors", "shapiro_wilk", "levene_mean", "t_test",
        "mann_whitney_z", "chi_square_or_fisher", "expected_below_five", "spss_quartiles",
        "smd_continuous", "smd_categorical", "TableOneOptions", "detect_kind", "group_order",
        "format_p", "p_words", "holm_adjusted", "NO_EVIDENCE", "EVIDENCE", "difference_text",
        "difference_verdict", "table_one", "LEVEL_ROWS", "journal_view", "SMD_NEGLIGIBLE",
        "split_was_random", "chance_note", "used_footnotes",
    ],
    "table_export": [
        "FORMATS", "TITLE", "to_csv_bytes", "P_FORMATS", "xlsx_journal_view", "to_xlsx_bytes",
        "frame_to_markdown", "to_markdown", "frame_to_docx", "to_docx_bytes", "export_bytes",
        "export_table_one", "all_exports",
    ],
})
