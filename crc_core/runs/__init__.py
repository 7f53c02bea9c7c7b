"""Runs: the run store (one run's folder, metrics, predictions, model) and its read models.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "store": [
        "STORE_FILE", "RUN_STATES", "FINISHED_STATES", "SCHEMA_VERSION", "NO_FOLD",
        "OUT_OF_FOLD", "RunMode", "fold_tag", "RunFolder", "RunRecord", "new_run_id",
        "METRIC_COLUMNS", "RunStore", "resume_hint", "RunModel", "starting_weights",
        "load_run_model",
    ],
    "views": [
        "COHORT_NAMES", "HELD_OUT", "MODE_NAMES", "EVALUATION_NAMES", "AUXILIARY_COHORTS",
        "OVERVIEW_COHORTS", "labelled", "cohort_name", "model_name", "fold_aucs", "summaries",
        "out_of_fold_aucs", "summary", "auc_text", "runs_overview", "LiveStatus", "live_status",
        "comparison_labels", "comparison_figures", "SELECTION_COHORTS", "DEFAULT_SELECTION",
        "selection_name", "Selection", "select_best", "selection_summary",
        "delong_pairs_in_words",
    ],
})
