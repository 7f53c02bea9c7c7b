"""Evaluate: a run's evaluation (Table 2 and its figures), predictions for new patients,
Grad-CAM, robustness to the reader, the combined model and other centres.

Not handed on (a module of the same name, or two modules share the name): cam.Progress, predict.Progress, robustness.Progress, robustness.robustness; import those from their module.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "cam": [
        "METHODS", "METHOD_NAMES", "CLASS_NAMES", "CAM_BATCH", "FIRST_BATCH",
        "CASCADE_PATIENTS", "find_layer", "grad_cams", "grad_cam", "random_like", "roi_share",
        "roi_area_share", "median", "rank_correlation", "why_not_explainable", "layer_choices",
        "check_layer", "cascade_stages", "cohort_maps", "CohortMaps", "overlay_images",
        "cached_maps", "read_cohort_maps", "CamConfig", "confident_cases",
    ],
    "combined_model": [
        "DL_SCORE", "SMALL_REFERENCE", "CombinedConfig", "CombinedResult", "reference_level",
        "reference_choices", "logistic_fit", "fit_combined", "added_value", "NRI_CAVEAT",
        "added_value_table", "auc_difference", "auc_difference_for_people", "lr_test_words",
        "stored_combined", "odds_ratio_table", "nomogram_figure", "nomogram_axes",
    ],
    "external": [
        "HELD_OUT", "held_out_cohorts", "external_cohorts", "CI_WORDS", "CentreComparison",
        "compare_centres", "centre_table", "centre_figure", "Recalibrated",
        "recalibrate_cohort", "recalibration_figure", "validation_size", "events_needed",
        "validation_size_in_words", "recalibrations", "recalibration_words",
    ],
    "predict": [
        "EXTERNAL_PREFIX", "PredictConfig", "check_cohort_name", "check_other_patients",
        "score_images", "harmonised", "centres_of", "cohort_workspace", "predict_cohort",
    ],
    "robustness": [
        "VARIANT_NAMES", "SUMMARISING", "SUMMARY_COLUMNS", "COMPARISON_COLUMNS",
        "RobustnessConfig", "RobustnessResult", "with_reader1_comparisons", "keep_robustness",
        "kept_robustness", "kept_checks", "write_robustness", "one_sided_reference",
        "threshold_note", "summary_for_people", "comparison_sentence", "robustness_figures",
    ],
    "run_evaluation": [
        "THRESHOLD_RULES", "DEFAULT_THRESHOLD_RULE", "THRESHOLD_RULE_NAMES",
        "THRESHOLD_RULE_SENTENCES", "TABLE2_COLUMNS", "COHORT_ORDER", "model_label",
        "cohorts_of", "RunEvaluation", "table2_for_people", "evaluate_run", "compare_runs",
        "table2_xlsx", "mann_whitney_by_class", "figure_title", "roc_figure", "violin_figure",
        "decision_figure", "impact_figure", "calibration_figure", "calibration_words",
        "CALIBRATION_COLUMNS", "calibration_table", "evaluation_figures", "export_evaluation",
        "comparison_for_people", "delong_pairs_for_people", "delong_matrix", "cohort_curves",
    ],
    "threshold_side": [
        "OneSided", "one_sided", "where_recalibrated", "one_sided_words", "class_change_words",
        "table_two_notes",
    ],
})
