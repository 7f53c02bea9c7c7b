"""A run's methods in words, each setting named by its source — the paper's, or ours and why — for
the report's Methods section and the TRIPOD+AI checklist."""

from __future__ import annotations


def methods_text(run, threshold_rule: str = "out_of_fold", ci_method: str = "delong") -> list[tuple[str, str]]:
    """The run's methods as (topic, sentence) pairs, each setting named by its source: the paper's,
    or ours and why."""
    from crc_core.training.finetune import FinetuneConfig
    from crc_core.runs.views import EVALUATION_NAMES, MODE_NAMES, model_name

    evaluation = {"holdout": "the saved training/validation split (the paper's design)",
                  "kfold": f"{run.config.get('n_folds', 5)}-fold cross-validation (ours: the paper used one split)",
                  "repeated": f"{run.config.get('n_repeats', 20)} repeated random splits (ours: the paper used one split)"}
    items = [("Model", f"{model_name(run)}, {MODE_NAMES[run.mode]}"
              + (", started from random initialisation (no ImageNet weights on the machine; the paper started from "
                 "ImageNet)" if run.random_init else ", from ImageNet weights (the paper's)" if run.has_network else "")),
             ("Evaluation", evaluation.get(run.evaluation, EVALUATION_NAMES.get(run.evaluation, run.evaluation)))]
    harmonise = run.config.get("harmonise", "none")
    if harmonise not in ("none", None):
        items.append(("Harmonisation", "ComBat across centres (sva::ComBat's parametric empirical Bayes, ours: the paper had one "
                      "centre), " + ("learned on each partition's training patients and applied to the others"
                                     if harmonise == "training" else "fitted transductively on every patient's features, "
                                     "held-out ones included (their labels not)")))
    if run.mode == "features":
        items.append(("Classifier", "frozen backbone features of each crop, standardised, with an L2-penalised logistic "
                                    "regression whose penalty is chosen by 5-fold cross-validation on the training patients "
                                    "(ours: the fast mode; the paper fine-tuned)"))
    elif run.mode == "radiomics":
        items.append(("Classifier", "PyRadiomics features of reader 1's ROI with the same penalised logistic regression "
                                    "(ours: a handcrafted comparator the paper did not report)"))
    elif run.mode == "finetune":
        sources = run.info.get("setting_sources") or FinetuneConfig.from_dict(run.config.get("finetune", {})).sources()
        items += [(f"Fine-tuning: {name.replace('_', ' ')}", text) for name, text in sources.items()]
    elif run.mode == "combined":
        items.append(("Combined model", "a logistic regression of the label on the DL score and "
                      f"{', '.join(run.config.get('variables', ())) or 'no clinical variable'}, fitted on the training cohort "
                      "(the paper's multivariate logistic regression); " + (run.message or "")))
    items += [("Labels", "TSR > 50%, TIL grade 2-3, Immune Score > 2 from CD3/CD8 at core and margin, TIME 2-3 (the paper's "
                         "cut-offs); marker cut-offs are medians of each training part's patients (ours: the paper does not "
                         "state them)"),
              ("Threshold", {"out_of_fold": "Youden's optimum on the training patients' out-of-fold scores of the inner "
                                            "cross-validation, applied unchanged to every cohort (ours: a fixed rule, as a "
                                            "deployed model would use, from scores of patients each model never saw; the "
                                            "fitted model's own training predictions are resubstituted, so optimistic)",
                             "training": "Youden's optimum on the training cohort, applied unchanged to the others (ours: a "
                                         "fixed rule, as a deployed model would use; from the fitted model's resubstituted "
                                         "training predictions, so optimistic)"}.get(
                  threshold_rule, "each cohort's own Youden optimum (the paper's Table 2; optimistic)")),
              ("AUC 95% CI", "DeLong (pROC::ci.auc, as the paper's R)" if ci_method == "delong" else
                             "2000 stratified bootstrap resamples, percentile interval (pROC::ci.auc)")]
    return items
