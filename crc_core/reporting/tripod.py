"""The TRIPOD+AI checklist of a run (Collins et al. 2024, BMJ 385:e078378): every item of the
reporting guideline for prediction models built with machine learning, filled in from what the
workspace documents — the data, the label rules, the preprocessing, the model and its settings with
their sources, performance with CIs, calibration, robustness and external results where they exist
— and the rest listed as "to write". Item wording here is ours, a short paraphrase; the guideline's
own text is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from crc_core.workspace import Workspace

TO_WRITE = "to write"
DOCUMENTED = "from the workspace"

#: (section, item, topic) of TRIPOD+AI, in the guideline's order.
ITEMS: tuple[tuple[str, str, str], ...] = (
    ("Title", "1", "Identify the study as developing or evaluating a prediction model, its target population and outcome"),
    ("Abstract", "2", "Structured summary (see TRIPOD+AI for Abstracts)"),
    ("Introduction", "3a", "Healthcare context and the rationale for the model"),
    ("Introduction", "3b", "Target population and intended use of the model in the care pathway"),
    ("Introduction", "3c", "Known health inequalities between groups"),
    ("Introduction", "4", "Objectives: development, evaluation, or both"),
    ("Methods", "5a", "Sources of data and why they are representative"),
    ("Methods", "5b", "Dates of the data: start and end of accrual and follow-up"),
    ("Methods", "6a", "Study setting: centres, care level"),
    ("Methods", "6b", "Eligibility criteria of participants"),
    ("Methods", "6c", "Treatments received, where relevant"),
    ("Methods", "7", "Data preparation: pre-processing and quality checks"),
    ("Methods", "8a", "Outcome: definition, how and when assessed"),
    ("Methods", "8b", "Qualifications and demographics of outcome assessors, where subjective"),
    ("Methods", "8c", "Blinding of outcome assessment"),
    ("Methods", "9a", "Choice of initial predictors and their pre-selection"),
    ("Methods", "9b", "Definition and measurement of predictors"),
    ("Methods", "9c", "Qualifications of predictor assessors, where subjective"),
    ("Methods", "10", "How the study size was arrived at"),
    ("Methods", "11", "How missing data were handled"),
    ("Methods", "12a", "How the data were used: development and evaluation, resampling"),
    ("Methods", "12b", "How predictors were handled in the analyses"),
    ("Methods", "12c", "Type of model, how it was built, hyperparameters, internal validation"),
    ("Methods", "12d", "How heterogeneity across clusters (centres) was handled"),
    ("Methods", "12e", "Performance measures: discrimination, calibration, clinical utility; model comparison"),
    ("Methods", "12f", "Model updating (e.g. recalibration) arising from the evaluation"),
    ("Methods", "12g", "How predictions were calculated for the evaluation"),
    ("Methods", "13", "How class imbalance was handled"),
    ("Methods", "14", "Approaches to assess fairness across groups"),
    ("Methods", "15", "Model output (probability or class) and thresholds"),
    ("Methods", "16", "Differences between development and evaluation data"),
    ("Methods", "17", "Ethical approval and consent"),
    ("Open science", "18a", "Funding"),
    ("Open science", "18b", "Conflicts of interest"),
    ("Open science", "18c", "Protocol"),
    ("Open science", "18d", "Registration"),
    ("Open science", "18e", "Data sharing"),
    ("Open science", "18f", "Code sharing"),
    ("Patient and public involvement", "19", "Patient and public involvement"),
    ("Results", "20a", "Flow of participants and numbers excluded"),
    ("Results", "20b", "Characteristics of participants"),
    ("Results", "20c", "Comparison of development and evaluation data"),
    ("Results", "21", "Participants and outcome events in each analysis"),
    ("Results", "22", "The full model, or how to access it"),
    ("Results", "23a", "Performance with confidence intervals"),
    ("Results", "23b", "Heterogeneity of performance across clusters"),
    ("Results", "24", "Results of model updating"),
    ("Discussion", "25", "Interpretation of the main results, including fairness"),
    ("Discussion", "26", "Limitations: non-representative data, sample size, overfitting, missing data"),
    ("Discussion", "27a", "How poor-quality or unavailable input data are handled in use"),
    ("Discussion", "27b", "User interaction and expertise needed"),
    ("Discussion", "27c", "Future research steps"),
)


@dataclass
class _Context:
    workspace: Workspace
    run: Any
    result: Any  # the run's RunEvaluation


def _source(ctx: _Context) -> str | None:
    from crc_core.workflow import cohort_summary

    summary = cohort_summary(ctx.workspace)
    what = ("the built-in synthetic sample cohort of CRC-TIME (no real patients; data/sample/README.md)"
            if ctx.workspace.is_sample else "the clinical and pathology tables of this workspace")
    return f"{summary.patients} patients from {what}; split: {summary.split.describe() if summary.split else 'none'}."


def _preparation(ctx: _Context) -> str | None:
    crop = ctx.run.info.get("crop_set")
    if not crop:
        return None
    return (f"CT volumes and ROI masks reoriented to LPS; the axial slice with the largest ROI cut square around it and "
            f"resized ({crop}), as the paper; geometry of every mask checked against its CT; patients whose crop failed "
            "are listed with the reason on the CT & ROI page.")


def _outcome(ctx: _Context) -> str | None:
    from crc_core import paper
    from crc_core.labels.rules import read_label_config

    config = read_label_config(ctx.workspace)
    if config is None:
        return None
    rules = {"tsr": f"TSR > {config.tsr_cutoff_percent:g}% stroma ({paper.TSR_RULE})",
             "til": f"TIL grade ≥ {config.til_high_min_grade} ({paper.TIL_RULE})",
             "is": f"Immune Score > {config.is_high_above} from CD3+/CD8+ densities at core and margin, each marker "
                   f"high above its {'training median' if config.is_cutoff_source == 'train_median' else 'given cut-off'}",
             "time": f"TIME score ≥ {config.time_high_min_score} of 3 points (TSR, TIL, IS)"}
    return (f"{ctx.run.target.upper()} high: {rules.get(ctx.run.target, ctx.run.target)}; two pathologists' readings "
            f"resolved by '{config.resolution}'.")


def _predictors(ctx: _Context) -> str | None:
    from crc_core.runs.views import model_name

    variables = ctx.run.config.get("variables", ())
    base = f"The largest-ROI CT crop as {model_name(ctx.run)}'s input"
    return base + (f", its DL score with {', '.join(variables)} (combined model)" if variables else "") + "."


def _sample_size(ctx: _Context) -> str | None:
    counts = _counts(ctx)
    return ("No formal sample size calculation; the cohort sizes and events are: " + counts) if counts else None


def _counts(ctx: _Context) -> str:
    from crc_core.runs.views import cohort_name

    return "; ".join(f"{cohort_name(c)} {m['n']} patients, {m['n_positive']} with the high class"
                     for c, m in ctx.result.metrics.items())


def _missing(ctx: _Context) -> str | None:
    warnings = ctx.run.info.get("warnings") or []
    return ("Complete cases: " + " ".join(warnings)) if warnings else \
        "Complete cases: every labelled patient with a crop entered; none was left out."


def _methods(ctx: _Context) -> list[tuple[str, str]]:
    from crc_core.reporting.methods import methods_text

    return methods_text(ctx.run, ctx.result.threshold_rule, ctx.result.ci_method)


def _data_use(ctx: _Context) -> str | None:
    return dict(_methods(ctx)).get("Evaluation")


def _model(ctx: _Context) -> str | None:
    return " ".join(f"{topic}: {text}." for topic, text in _methods(ctx)
                    if topic not in ("Evaluation", "Labels", "Threshold", "AUC 95% CI"))


def _measures(ctx: _Context) -> str | None:
    method = "DeLong (pROC)" if ctx.result.ci_method == "delong" else "stratified bootstrap (pROC)"
    return (f"AUC with its 95% CI by {method}; accuracy, sensitivity, specificity, PPV, NPV and F1 with Wilson CIs at "
            "the threshold below; calibration-in-the-large (glm with offset), calibration slope (rms::val.prob), "
            "Hosmer-Lemeshow, Brier score; "
            "decision curves (dcurves); models compared by DeLong's paired test.")


def _patients(n: Any) -> str:
    return f"{int(n)} patient{'s' if int(n) != 1 else ''}"


def prediction_sources(run: Any, result: Any) -> str | None:
    """Item 12g: what is true of each cohort's probabilities in this run. A training patient's
    probability from the model fitted on it is apparent (resubstituted, optimistic); only its
    out-of-fold score, from an inner-fold model that left it out, and the held-out cohorts come
    from a model that never saw the patient."""
    from crc_core.runs.views import cohort_name

    harmonise = run.config.get("harmonise", "none")
    transductive = ", after ComBat fitted with their features too (transductive, labels not used)" \
        if harmonise == "transductive" else ""
    tune = run.config.get("finetune") or {}
    chosen_on_validation = run.mode == "finetune" and tune.get("selection", "validation_loss") == "validation_loss"
    model = "the combined model" if run.mode == "combined" else "the model"
    parts = []
    for cohort, m in result.metrics.items():
        who = f"{cohort_name(cohort)} ({_patients(m['n'])})"
        if cohort == "train":
            parts.append(f"{who}: apparent, each probability from {model} fitted on these same patients "
                         "(resubstituted, so optimistic)" + (
                             ", with each patient's out-of-fold DL score as its input" if run.mode == "combined" else ""))
        elif cohort == "validation":
            parts.append(f"{who}: held out, from {model} fitted on the training cohort alone"
                         + (", but the epoch was chosen on this cohort's loss, so it took part in selecting the model"
                            if chosen_on_validation else "") + transductive)
        elif cohort == "cv":
            parts.append(f"{who}: held out, each patient from the model of the fold that left it out" + transductive)
        elif cohort.startswith("external:"):
            parts.append(f"{who}: another centre, from {model} developed without its patients, unchanged" + transductive)
        else:
            parts.append(f"{who}: held out")
    if getattr(result, "out_of_fold", None) is not None:
        parts.insert(1 if "train" in result.metrics else 0,
                     f"training out-of-fold ({_patients(result.out_of_fold['n'])}): each from the inner "
                     "cross-validation's model that left the patient out (the penalty was chosen on these same folds)")
    if run.evaluation == "repeated":
        parts.append("repeated splits: each repeat's held-out patients from that repeat's model (a patient is held out "
                     "in several repeats)")
    return ("; ".join(parts) + ".") if parts else None


def _imbalance(ctx: _Context) -> str | None:
    tune = ctx.run.config.get("finetune")
    if tune:
        return "Class-weighted cross-entropy (n / 2 n_class per class)." if tune.get("class_weights", True) else "None."
    return "None: a penalised logistic regression on the features; the threshold is chosen by Youden's index."


def _output(ctx: _Context) -> str | None:
    threshold = next(iter(ctx.result.metrics.values()), {}).get("threshold")
    rule = ctx.result.threshold_words.rstrip(".")
    return f"The probability of the high class; a patient is called high at ≥ {threshold:.3f} ({rule})." if threshold else None


def _external(ctx: _Context) -> list[str]:
    return [c for c in ctx.result.metrics if c.startswith("external:")]


def _heterogeneity(ctx: _Context) -> str | None:
    """Item 12d, the method: how cohorts and centres were kept apart and pooled."""
    external = _external(ctx)
    if not external:
        return None
    harmonise = ctx.run.config.get("harmonise", "none")
    combat = (" Features harmonised across centres by ComBat (sva::ComBat) before the model." if harmonise not in
              ("none", None) else "")
    return (f"Each held-out cohort evaluated on its own (validation and {', '.join(external)}); the external centres' "
            "AUCs pooled by DerSimonian-Laird random effects on the logit AUC (Hartung-Knapp-Sidik-Jonkman CI with fewer "
            "than five centres), with I², Cochran's Q and τ² for heterogeneity; the internal validation, a random split "
            "of the development data, kept out of the pooling." + combat)


def _heterogeneity_results(ctx: _Context) -> str | None:
    """Item 23b, the results: each cohort's AUC and the pooled one with its heterogeneity."""
    from crc_core.evaluate import external as ex

    if not _external(ctx):
        return None
    comparison = ex.compare_centres(ctx.result)
    parts = [f"{row['label']} AUC {row['value']:.3f} ({row['low']:.3f}-{row['high']:.3f})"
             for _, row in comparison.cohorts.iterrows()]
    pooled = comparison.pooled
    if pooled is not None:
        parts.append(f"pooled {pooled['auc']:.3f} ({pooled['auc_low']:.3f}-{pooled['auc_high']:.3f}), "
                     f"I² {pooled['i2_percent']:.0f}%, τ² {pooled['tau2']:.3f}")
    elif len(_external(ctx)) == 1:
        parts.append("one external centre, so nothing to pool")
    return "; ".join(parts) + "."


def _updating(ctx: _Context) -> str | None:
    """Item 12f: recalibration to each labelled external cohort, or none."""
    from crc_core.evaluate.external import recalibrations

    cohorts = list(recalibrations(ctx.result))
    if not cohorts:
        return "None: the model is evaluated as trained, without updating to any cohort."
    return (f"Recalibration to {', '.join(cohorts)} by calibration-in-the-large (R glm(y ~ offset(logit(p)), binomial)), "
            "fitted on that cohort's outcomes; every other number is the unchanged model's.")


def _updating_results(ctx: _Context) -> str | None:
    """Item 24: what the recalibration changed."""
    from crc_core.evaluate.external import recalibration_words, recalibrations

    updated = recalibrations(ctx.result)
    if not updated:
        return "No model updating was done."
    return " ".join(recalibration_words(r) for r in updated.values())


def _comparison(ctx: _Context) -> str | None:
    """Item 20c: Table 1 compares the cohorts."""
    from crc_core.cohort.splits import read_split

    if read_split(ctx.workspace) is None:
        return None
    external = _external(ctx)
    return ("Table 1 of this report compares the training and validation cohorts with the paper's tests"
            + (f"; the external cohorts ({', '.join(external)}) are described by their centres' own tables." if external
               else "."))


def _code(ctx: _Context) -> str | None:
    """Item 18f: the software that computed every number."""
    from crc_core.reporting.software import software_versions

    versions = software_versions()
    return (f"CRC-TIME {versions['CRC-TIME']} (Python {versions['Python']}); every package's version is in the "
            "report's Software section.")


def _characteristics(ctx: _Context) -> str | None:
    return "Table 1 of this report: baseline characteristics by cohort with the paper's tests."


def _full_model(ctx: _Context) -> str | None:
    if ctx.run.mode in ("features", "radiomics"):
        return ("The logistic regression's coefficients, standardisation and penalty are kept as JSON in the run's folder "
                f"(runs/{ctx.run.run_id}/model*.json), with the backbone's weights named in the run's configuration.")
    if ctx.run.mode == "finetune":
        return f"The network's weights are kept in the run's folder (runs/{ctx.run.run_id}/best*.pt)."
    return "The combined model's coefficients are in the Figures section (odds ratios) and the run's configuration."


def _performance(ctx: _Context) -> str | None:
    from crc_core.runs.views import cohort_name

    parts = [f"{cohort_name(c)} AUC {m['auc']:.3f} (95% CI {m['auc_low']:.3f}-{m['auc_high']:.3f})"
             for c, m in ctx.result.metrics.items()]
    return ("; ".join(parts) + "; Table 2 gives the rest with CIs.") if parts else None


def _limitations(ctx: _Context) -> str | None:
    from crc_core.evaluate.robustness import kept_checks

    notes = []
    if ctx.run.random_init:
        notes.append("the backbone started from random weights, not ImageNet's")
    if ctx.run.info.get("selection_note") and "validation" in str(ctx.run.info.get("selection_note")):
        notes.append("the epoch was chosen on the validation cohort, so its AUC is optimistic")
    if not _external(ctx):
        notes.append("no external validation")
    from crc_core.runs.views import cohort_name

    agreement = []
    for kept in kept_checks(ctx.workspace, ctx.run, ctx.result.metrics):
        row = kept.summary.set_index("variant")
        if "reader2" in row.index and row.loc["reader2", "icc"] == row.loc["reader2", "icc"]:
            agreement.append(f"ICC {row.loc['reader2', 'icc']:.2f} ({cohort_name(kept.cohort)} cohort)")
    if agreement:
        notes.append("probabilities from a second reader's ROI agree with " + ", ".join(agreement))
    return ("Found in the workspace: " + "; ".join(notes) + ".") if notes else None


FILLERS: dict[str, Callable[[_Context], str | None]] = {
    "5a": _source, "7": _preparation, "8a": _outcome, "9a": _predictors, "9b": _predictors, "10": _sample_size,
    "11": _missing, "12a": _data_use, "12b": lambda ctx: "Pixel intensities by the crop set's window; features "
    "standardised with their mean and SD learned inside each training part.", "12c": _model, "12d": _heterogeneity,
    "12e": _measures, "12f": _updating, "12g": lambda ctx: prediction_sources(ctx.run, ctx.result), "13": _imbalance, "15": _output, "18f": _code, "20b": _characteristics, "20c": _comparison,
    "21": _counts, "22": _full_model, "23a": _performance, "23b": _heterogeneity_results, "24": _updating_results,
    "26": _limitations,
}


def checklist(workspace: Workspace, result) -> pd.DataFrame:
    """The TRIPOD+AI checklist of a run's evaluation: ``Section``, ``Item``, ``Topic``, ``Status``
    (from the workspace, or to write) and ``In this work``."""
    ctx = _Context(Workspace.of(workspace), result.run, result)
    rows = []
    for section, item, topic in ITEMS:
        filler = FILLERS.get(item)
        try:
            text = filler(ctx) if filler else None
        except Exception:  # an item the workspace cannot fill is left to write, never a failed report
            text = None
        rows.append({"Section": section, "Item": item, "Topic": topic, "Status": DOCUMENTED if text else TO_WRITE,
                     "In this work": text or ""})
    return pd.DataFrame(rows)


TITLE = "TRIPOD+AI checklist (Collins et al. 2024, BMJ 385:e078378)"
NOTE = ("Items marked 'to write' are not documented in the workspace; the guideline's own wording is the reference "
        "for every item.")


def to_markdown(table: pd.DataFrame) -> str:
    from crc_core.cohort.table_export import frame_to_markdown

    return frame_to_markdown(table, TITLE, [NOTE])


def to_docx(table: pd.DataFrame) -> bytes:
    from crc_core.cohort.table_export import frame_to_docx

    return frame_to_docx(table, TITLE, [NOTE], centre_from=99)
