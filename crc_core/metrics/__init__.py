"""Metrics: arrays in, numbers out, like ``sklearn.metrics``: ROC/DeLong, thresholds, decision
curves, calibration, kappa, recalibration, reclassification, meta-analysis and sample size.

Not handed on (a module of the same name, or two modules share the name): reclassification.reclassification; import those from their module.
"""

from crc_core._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "calibration": [
        "HL_CAVEAT", "r_lowess", "calibration_curve", "calibration_band",
        "calibration_in_the_large", "hosmer_lemeshow", "calibration_stats",
    ],
    "decision_curves": [
        "decision_curve", "decision_curve_band",
    ],
    "inputs": [
        "FEW_CASES", "check_binary", "few_cases", "logit",
    ],
    "kappa": [
        "Weighting", "WEIGHTINGS", "KappaResult", "agreement_weights", "kappa_from_table",
        "cohen_kappa", "KAPPA_CI_METHOD", "pathologist_agreement", "READING_NAMES",
        "WEIGHTING_NAMES", "agreement_for_people",
    ],
    "meta_analysis": [
        "POOLED", "HKSJ_BELOW", "TESTS", "cohort_aucs", "chosen_test", "pool_logit",
        "pooled_auc", "method_words", "pooling_warnings", "forest_table",
    ],
    "recalibration": [
        "INTERCEPT", "LOGISTIC", "recalibrate", "apply_recalibration",
    ],
    "reclassification": [
        "Z_95", "MEASURES", "CI_METHODS", "bootstrap_reclassification",
        "reclassification_counts", "likelihood_ratio_test",
    ],
    "roc": [
        "roc_curve", "grouped_auc", "auc_variance", "bootstrap_aucs", "auc_ci", "delong_test",
        "delong_difference",
    ],
    "sample_size": [
        "Z", "SE_STEP", "SIMULATED_PATIENTS", "SEED", "OE", "SLOPE", "CSTATISTIC",
        "NET_BENEFIT", "LARGEST", "validation_sample_size", "linear_predictor_summary",
    ],
    "threshold": [
        "youden_threshold", "wilson_ci", "threshold_metrics",
    ],
})
