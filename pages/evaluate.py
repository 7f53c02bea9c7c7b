"""Evaluate: ROC/AUC with CI, Table 2, DCA, calibration, Grad-CAM and reports (planned)."""

from pages import _ui

_ui.require_workspace()
_ui.placeholder(
    "Evaluate",
    "Judge and explain the trained models with the statistics and figures the paper reports.",
    [
        "ROC curves with AUC and its 95% CI (DeLong, as pROC), per cohort.",
        "The paper's Table 2: accuracy, sensitivity, specificity, PPV, NPV, F1 at the chosen threshold.",
        "Violin plots of predicted probabilities, decision curves and calibration curves.",
        "Model comparison (DeLong test), a combined clinical + deep-learning model.",
        "Grad-CAM overlays with trust checks; figure exports and an offline report for lab meetings.",
    ],
    "It reads predictions from the run store that **Train** writes.",
)
