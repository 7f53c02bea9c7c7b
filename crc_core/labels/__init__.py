"""Labels: the TSR, TIL, Immune Score and TIME rules over the pathology readings.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "rules": [
        "BINARY_LABELS", "LABEL_COLUMNS", "DEFAULT_TIME_POINTS", "TIME_READING",
        "IS_CUTOFF_SOURCES", "RESOLUTIONS", "TIME_POINT_LEVELS", "IsCutoffSource", "Resolution",
        "TimePoint", "LabelConfig", "LabelResult", "required_columns", "pathology_readings",
        "resolved_reading", "training_rows", "marker_cutoffs", "immune_score", "high_flags",
        "time_score", "build_labels", "one_class_warnings", "labels_metadata", "save_labels",
        "read_label_config", "CohortPathology", "cohort_pathology", "build_cohort_labels",
        "workspace_split_table", "label_workspace", "labels_for_training_part",
        "describe_labels", "label_prevalence", "LABEL_NAMES", "SPLIT_NAMES",
        "prevalence_for_people", "crosstab_for_people", "label_crosstab",
    ],
})
