"""The combined model the paper's discussion proposes: a multivariable logistic regression of the
label on the deep-learning score and chosen clinical variables, fitted on the training cohort only.

The DL score enters as the logit of the run's predicted probability, standardised on the training
cohort, so its odds ratio is per standard deviation. Per unit of log-odds would be meaningless for a
strongly regularised model whose scores span a few hundredths (an odds ratio of 1e42). The mean and
SD are kept with the run, and the nomogram reads the DL score as the DL model's probability.

A training patient's DL score must come from a model that did not see that patient: the score of
a model fitted on the patient itself is optimistic (an odds ratio per SD of 17.7 on training
against 7.1 on validation in the sample), and the clinical odds ratios adjusted for it are biased.
A features or radiomics run keeps the out-of-fold scores of its inner cross-validation for this;
a fine-tuned run has none (that would take k more fine-tunes), so its training scores are the
network's own, and the model says so in its notes.

Categorical variables enter as indicators against a reference level: the largest in the training
cohort unless the user picks one; a small reference level is warned about, since every odds ratio
of the variable is relative to it. Odds ratios with 95% Wald CIs and p values are statsmodels'
``Logit`` (as R ``glm(family = binomial)`` with ``exp(confint.default())``). The fitted model's predictions are stored as a run of their own
(mode ``combined``), so the Evaluate room shows its ROC, decision and calibration curves beside the
DL model's and compares the two with DeLong's test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import crc_core.metrics as ev
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.runs.store import OUT_OF_FOLD, RunStore
from crc_core.workspace import Workspace

DL_SCORE = "DL score (per SD)"
#: A reference level with fewer training patients than this gives unstable odds ratios: warned about.
SMALL_REFERENCE = 10


@dataclass(frozen=True)
class CombinedConfig(JsonConfig):
    """A combined model: the DL run, the clinical variables, and for a categorical variable the
    level its odds ratios are relative to (default: its largest level in the training cohort)."""

    run_id: str = ""
    variables: tuple[str, ...] = ()
    reference_levels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.run_id:
            raise CrcInputError("Name the DL run whose score the combined model uses.")
        object.__setattr__(self, "variables", tuple(dict.fromkeys(self.variables)))
        if not self.variables:
            # Found in use: a click with nothing chosen stored a "combined" run that is the DL score
            # recalibrated, and the page then opened on it.
            raise CrcInputError("Choose at least one clinical variable: the combined model adds clinical variables to "
                                f"run {self.run_id}'s DL score, which alone is that run itself.")
        object.__setattr__(self, "reference_levels", {str(k): str(v) for k, v in dict(self.reference_levels or {}).items()})


@dataclass
class CombinedResult:
    run_id: str  # the combined model's own run
    odds_ratios: pd.DataFrame  # term, odds_ratio, low, high, p
    coefficients: pd.Series
    design_ranges: dict[str, tuple[float, float]]
    notes: list[str] = field(default_factory=list)
    dl_scaling: tuple[float, float] = (0.0, 1.0)  # training mean and SD of the DL score's logit
    references: dict[str, str] = field(default_factory=dict)  # each categorical variable's reference level


def reference_level(values: pd.Series, chosen: str | None = None) -> str:
    """The level a categorical variable's odds ratios are relative to: ``chosen`` when it is one of
    the levels, else the largest (ties: the first in sorted order)."""
    counts = values.dropna().astype(str).value_counts()
    if chosen is not None and str(chosen) in counts.index:
        return str(chosen)
    largest = counts[counts == counts.max()].index
    return sorted(largest)[0]


def reference_choices(workspace: Workspace, variables: tuple[str, ...]) -> dict[str, list[tuple[str, int]]]:
    """For each categorical variable of ``variables``: its levels in the training cohort with their
    patient counts, largest first (the default reference first)."""
    from crc_core.cohort.join import load_workspace_cohort
    from crc_core.variables import CONTINUOUS, detect_variable_type

    cohort = load_workspace_cohort(workspace)
    training = cohort[cohort["split"].astype(str).str.lower() == "train"] if "split" in cohort.columns else cohort
    out = {}
    for name in variables:
        if name in cohort.columns and detect_variable_type(cohort[name], name) != CONTINUOUS:
            counts = training[name].dropna().astype(str).value_counts()
            default = reference_level(training[name])
            levels = [default] + [level for level in counts.index if level != default]
            out[name] = [(level, int(counts[level])) for level in levels]
    return out


def _design(cohort: pd.DataFrame, variables: tuple[str, ...], training: pd.Series,
            references: dict[str, str] | None = None) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    from crc_core.variables import CONTINUOUS, detect_variable_type

    references = references or {}
    used: dict[str, str] = {}
    notes: list[str] = []
    columns = {DL_SCORE: cohort[DL_SCORE]}
    for name in variables:
        if name not in cohort.columns:
            raise CrcInputError(f"There is no clinical variable {name!r}; choose from the Cohort page's table.")
        values = cohort[name]
        known = values[training].dropna()
        if known.empty:
            raise CrcInputError(f"{name!r} is missing for every training patient: it cannot enter the model. Leave it out.")
        if known.nunique() < 2:
            raise CrcInputError(f"{name!r} is constant in the training cohort ({known.iloc[0]!r} for all): it cannot enter "
                                "the model. Leave it out.")
        if detect_variable_type(values, name) == CONTINUOUS:
            columns[name] = pd.to_numeric(values, errors="coerce")
        else:
            reference = reference_level(known, references.get(name))
            used[name] = reference
            size = int((known.astype(str) == reference).sum())
            for level in sorted(known.astype(str).unique()):
                if level != reference:  # indicators against the reference level
                    columns[f"{name} = {level}"] = (values.astype(str) == level).astype(float).where(values.notna())
            notes.append(f"{name}: odds ratios relative to {name} = {reference} ({size} training patients).")
            if size < SMALL_REFERENCE:
                notes.append(f"Warning: the reference level {name} = {reference} holds only {size} training patients, so every "
                             f"{name} odds ratio is relative to those {size} and unstable (wide CIs). Choose a larger reference level.")
    return pd.DataFrame(columns), notes, used


def _separating_term(design: pd.DataFrame, y: pd.Series) -> str | None:
    """The first term that alone separates the outcome perfectly, if any."""
    for term in design.columns:
        x = design[term]
        low, high = x[y == 0], x[y == 1]
        if len(low) and len(high) and (low.max() < high.min() or high.max() < low.min()):
            return term
    return None


def logistic_fit(design: pd.DataFrame, y: pd.Series, *, separating: str | None = None):
    """A logistic regression with an intercept by maximum likelihood, as R ``glm(y ~ ., family =
    binomial)``: the statsmodels fit, and its odds ratios with Wald 95% CIs (R's
    ``exp(confint.default(fit))``, not the profile-likelihood ``confint``) and Wald p values
    (``term``, ``odds_ratio``, ``low``, ``high``, ``p``; the intercept left out). Perfect
    separation is refused, naming ``separating`` where known."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError, PerfectSeparationWarning

    x = sm.add_constant(design, has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            fit = sm.Logit(y, x).fit(disp=0, maxiter=200)
        except (PerfectSeparationError, PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
            term = separating or "the combination of the chosen variables"
            raise CrcInputError(f"The model cannot be fitted: {term} separates high from low perfectly in the training "
                                f"cohort ({type(exc).__name__}). Leave a variable out.") from exc
    ci = np.exp(fit.conf_int())
    odds = pd.DataFrame({"term": fit.params.index, "odds_ratio": np.exp(fit.params.to_numpy()),
                         "low": ci[0].to_numpy(), "high": ci[1].to_numpy(), "p": fit.pvalues.to_numpy()})
    return fit, odds[odds["term"] != "const"].reset_index(drop=True)


def _with_clinical(workspace: Workspace, run, predictions: pd.DataFrame) -> pd.DataFrame:
    """Each cohort's predictions with its patients' clinical variables, from the workspace they came
    from: another centre's from its own tables (where ``predict --from`` found them), never from
    this workspace's patients of the same ID. A centre whose workspace is gone has its variables
    missing, and its patients are left out of its numbers."""
    from crc_core.cohort.join import load_workspace_cohort
    from crc_core.evaluate.predict import EXTERNAL_PREFIX, cohort_workspace

    home = load_workspace_cohort(workspace)
    parts = []
    for name, rows in predictions.groupby("cohort", sort=False):
        clinical = home
        if str(name).startswith(EXTERNAL_PREFIX):
            try:
                clinical = load_workspace_cohort(cohort_workspace(workspace, run, str(name)))
            except CrcInputError:
                clinical = home.iloc[0:0]
        clinical = clinical.set_index("patient_id")
        parts.append(rows.merge(clinical.drop(columns=[c for c in ("cohort", "fold", "prob", "y_true") if c in clinical.columns]),
                                left_on="patient_id", right_index=True, how="left", suffixes=("", "_clinical")))
    return pd.concat(parts, ignore_index=True)


def fit_combined(workspace: Workspace, config: CombinedConfig) -> CombinedResult:
    """Fit the combined model on the DL run's training patients and store its predictions for
    every cohort as a run of mode ``combined``. Refuses, naming the variable: a constant or
    all-missing one, and perfect separation."""
    import statsmodels.api as sm

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(config.run_id)
    if run.mode == "combined":
        raise CrcInputError("Choose a deep-learning (or radiomics) run: this one is already a combined model.")
    predictions = store.predictions(config.run_id)
    if "train" not in set(predictions["cohort"]):
        raise CrcInputError(f"Run {config.run_id} has no training-cohort predictions (a cross-validated run?): the combined "
                            "model is fitted on the training cohort of a run trained on the saved split.")
    predictions = predictions[predictions["fold"] == -1]
    source_notes = []
    if run.mode == "finetune":
        source_notes.append("The DL score of a training patient is the fine-tuned network's own score for that patient "
                            "(no network was trained without it), so the DL odds ratio on training is optimistic and the "
                            "clinical odds ratios are adjusted for an over-confident score; validation numbers are unaffected.")
    else:
        cross_fitted = predictions[predictions["cohort"] == OUT_OF_FOLD]
        if cross_fitted.empty:
            raise CrcInputError(f"Run {config.run_id} keeps no out-of-fold scores of its training patients (it was trained "
                                "before they were kept): train it again to fit a combined model on scores that never saw "
                                "the patient.")
        # A training patient's DL score: the inner cross-validation's model that did not see it.
        predictions = pd.concat([predictions[~predictions["cohort"].isin(["train", OUT_OF_FOLD])],
                                 cross_fitted.assign(cohort="train")])
        source_notes.append("The DL score of a training patient is its out-of-fold score from the run's inner "
                            "cross-validation (a model that never saw that patient).")
    table = _with_clinical(workspace, run, predictions)
    training = table["cohort"] == "train"
    # A fine-tuned float32 network can print exactly 0 or 1: clipped at 1e-6, such a patient is not
    # an outlier 28 logits away that drags the fit.
    logit = ev.logit(table["prob"], eps=1e-6)
    scaling = (float(logit[training].mean()), float(logit[training].std(ddof=1)))
    if not np.isfinite(scaling[1]) or scaling[1] == 0:
        raise CrcInputError(f"Run {config.run_id} gives every training patient the same score: it cannot enter the "
                            "combined model.")
    table[DL_SCORE] = (logit - scaling[0]) / scaling[1]
    design, notes, references = _design(table, config.variables, training, config.reference_levels)
    notes = source_notes + notes
    train_rows = training & design.notna().all(axis=1) & table["y_true"].notna()
    dropped = int(training.sum() - train_rows.sum())
    if dropped:
        notes.append(f"{dropped} training patient(s) with a missing value were left out of the fit.")
    y = table.loc[train_rows, "y_true"].astype(int)
    separating = _separating_term(design[train_rows], y)
    if separating is not None and separating != DL_SCORE:
        raise CrcInputError(f"{separating!r} separates high from low perfectly in the training cohort: its odds ratio is "
                            "infinite. Leave it out or merge its levels.")
    fit, odds = logistic_fit(design[train_rows], y, separating=separating)
    ranges = {term: (float(design.loc[train_rows, term].min()), float(design.loc[train_rows, term].max())) for term in design}
    # The odds ratios and the training ranges are kept with the run, so its table and nomogram can be
    # shown (and reported) again without refitting.
    combined_id = store.create_run(target=run.target, backbone=run.backbone, mode="combined",
                                   config={**config.to_dict(), "evaluation": "holdout", "parent": run.config},
                                   info={"weights": run.info.get("weights", {}), "parent_run": run.run_id,
                                         "crop_key": run.info.get("crop_key"), "coefficients": fit.params.to_dict(),
                                         "odds_ratios": odds.to_dict("records"), "design_ranges": ranges,
                                         "references": references,
                                         "dl_scaling": list(scaling)})
    complete = design.notna().all(axis=1)
    probability = fit.predict(sm.add_constant(design[complete], has_constant="add"))
    scored = table[complete].assign(combined=probability)
    for name, rows in scored.groupby("cohort", sort=False):
        store.set_predictions(combined_id, name, rows[["patient_id", "y_true"]].assign(prob=rows["combined"].to_numpy()))
    for name, rows in table[~complete].groupby("cohort"):
        notes.append(f"{len(rows)} patient(s) of the {name} cohort have a missing value and get no combined prediction.")
    store.update(combined_id, info={"added_value": added_value(design[train_rows], y, scored)})
    store.finish(combined_id, "done", " ".join(notes))
    return CombinedResult(combined_id, odds, fit.params, ranges, notes, scaling, references)


def added_value(design: pd.DataFrame, y: pd.Series, scored: pd.DataFrame) -> dict:
    """What the clinical variables add to the DL score: the likelihood-ratio test of the combined
    model against the DL score alone on the training cohort (R ``anova(glm_dl, glm_combined, test =
    "LRT")``), and on each other labelled cohort the category-free NRI and the IDI of the combined
    model's probabilities over the DL model's, with bootstrap 95% CIs (:mod:`crc_core.metrics.reclassification`)."""
    from crc_core.metrics.reclassification import likelihood_ratio_test, reclassification

    out: dict = {"lr_test": None, "reclassification": {}}
    if design.shape[1] > 1:
        out["lr_test"] = {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
                          for k, v in likelihood_ratio_test(y, design[[DL_SCORE]], design).items()}
    for name, rows in scored[scored["cohort"] != "train"].groupby("cohort", sort=False):
        rows = rows[rows["y_true"].notna()].set_index("patient_id")
        if rows["y_true"].nunique() == 2 and len(rows) >= 10:
            table = reclassification(rows["y_true"].astype(int), rows["prob"], rows["combined"])
            out["reclassification"][name] = table.to_dict("records")
    return out


#: Why the NRI and IDI are shown without p values, wherever they are shown.
NRI_CAVEAT = ("The category-free NRI and the IDI are shown without p values: tests of them are invalid and can be "
              "\"significant\" when the added variables add nothing (Pepe et al., J Natl Cancer Inst 2014;106:dju041; "
              "Kerr et al., Epidemiology 2014;25:114), and the category-free NRI counts any change, however small, as a "
              "reclassification. Their CIs describe the sampling of patients only. Whether the clinical variables add to "
              "the DL score is the likelihood-ratio test's question, and how much they add to discrimination the AUC "
              "difference's.")


def added_value_table(run) -> pd.DataFrame:
    """A combined run's category-free NRI and IDI per cohort in words: Cohort, Measure, Estimate
    (95% CI), CI method — no p value (:data:`NRI_CAVEAT`: Pepe et al. 2014)."""
    from crc_core.runs.views import cohort_name

    rows = []
    for cohort, records in (run.info.get("added_value") or {}).get("reclassification", {}).items():
        for r in records:
            rows.append({"Cohort": cohort_name(cohort), "Measure": r["measure"],
                         "Estimate (95% CI)": f"{r['estimate']:.3f} ({r['low']:.3f} to {r['high']:.3f})",
                         "CI": r.get("ci", "")})
    return pd.DataFrame(rows, columns=["Cohort", "Measure", "Estimate (95% CI)", "CI"])


def auc_difference(workspace: Workspace, run) -> pd.DataFrame:
    """A combined run's AUC against its DL run's alone on each labelled held-out cohort, on the
    patients both predicted: ``cohort``, ``n``, ``auc_combined``, ``auc_dl``, ``difference``
    (combined − DL), ``low``, ``high`` (DeLong's 95% CI) and ``p`` (DeLong's paired test, as
    ``pROC::roc.test``). Empty where the DL run is gone."""
    from crc_core.evaluate.run_evaluation import labelled

    columns = ["cohort", "n", "auc_combined", "auc_dl", "difference", "low", "high", "p"]
    store = RunStore(Workspace.of(workspace))
    parent = run.info.get("parent_run")
    try:
        dl = store.predictions(parent) if parent else pd.DataFrame()
    except CrcInputError:
        dl = pd.DataFrame()
    if dl.empty:
        return pd.DataFrame(columns=columns)
    combined = store.predictions(run.run_id)
    rows = []
    for cohort in dict.fromkeys(combined["cohort"]):
        if cohort in ("train", OUT_OF_FOLD):
            continue
        new = labelled(combined[combined["fold"] == -1], cohort).drop_duplicates("patient_id").set_index("patient_id")
        old = labelled(dl[dl["fold"] == -1], cohort).drop_duplicates("patient_id").set_index("patient_id")
        shared = new.index.intersection(old.index)
        y = new.loc[shared, "y_true"].astype(int)
        if len(shared) < 2 or y.nunique() < 2:
            continue
        _, p, difference, (low, high) = ev.delong_difference(y, new.loc[shared, "prob"], old.loc[shared, "prob"])
        rows.append({"cohort": cohort, "n": len(shared), "auc_combined": ev.auc_ci(y, new.loc[shared, "prob"])[0],
                     "auc_dl": ev.auc_ci(y, old.loc[shared, "prob"])[0], "difference": difference, "low": low,
                     "high": high, "p": p})
    return pd.DataFrame(rows, columns=columns)


def auc_difference_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`auc_difference` in words: Cohort, Patients, AUC combined, AUC DL alone, the
    difference with its 95% CI, DeLong's p, and what it shows ("no evidence of a difference")."""
    from crc_core.runs.views import cohort_name
    from crc_core.cohort.table1 import difference_text, difference_verdict, p_words

    return pd.DataFrame({
        "Cohort": [cohort_name(c) for c in table["cohort"]], "Patients": table["n"].astype(int),
        "AUC combined": [f"{v:.3f}" for v in table["auc_combined"]], "AUC DL alone": [f"{v:.3f}" for v in table["auc_dl"]],
        "AUC difference (95% CI)": [difference_text(d, lo, hi) for d, lo, hi in zip(table["difference"], table["low"],
                                                                                   table["high"])],
        "DeLong p": [p_words(p) for p in table["p"]],
        "What it shows": [difference_verdict(p, lo, hi) for p, lo, hi in zip(table["p"], table["low"], table["high"])]})


def lr_test_words(run) -> str:
    """The likelihood-ratio test of the added variables in a sentence, with what it shows, or ""."""
    from crc_core.cohort.table1 import p_words

    test = (run.info.get("added_value") or {}).get("lr_test")
    if not test:
        return ""
    added = ", ".join(test.get("added") or []) or "the clinical variables"
    shows = ("evidence that they add to the DL score" if test["p"] < 0.05 else
             "no evidence that they add to the DL score")
    return (f"Likelihood-ratio test of {added} over the DL score alone (training cohort): χ² {test['lr_statistic']:.2f}, "
            f"df {int(test['df'])}, {p_words(test['p'])}: {shows}.")


def stored_combined(run) -> CombinedResult:
    """A combined run's fit as it was stored (odds ratios, coefficients, training ranges)."""
    if run.mode != "combined" or "odds_ratios" not in run.info:
        raise CrcInputError(f"Run {run.run_id} is not a combined model fitted by this version; fit it again.")
    return CombinedResult(run.run_id, pd.DataFrame(run.info["odds_ratios"]), pd.Series(run.info["coefficients"]),
                          {term: tuple(bounds) for term, bounds in run.info["design_ranges"].items()},
                          [run.message] if run.message else [], tuple(run.info.get("dl_scaling", (0.0, 1.0))),
                          dict(run.info.get("references", {})))


def odds_ratio_table(odds: pd.DataFrame) -> pd.DataFrame:
    """Odds ratios as a manuscript prints them: OR (95% CI) to three significant figures and P in
    the paper's style."""
    from crc_core.cohort.table1 import format_p

    def number(value: float) -> str:
        return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"

    return pd.DataFrame({"Variable": odds["term"],
                         "OR (95% CI)": [f"{number(o)} ({number(lo)}–{number(hi)})"
                                         for o, lo, hi in zip(odds["odds_ratio"], odds["low"], odds["high"])],
                         "P": [format_p(p) for p in odds["p"]]})


def nomogram_figure(result: CombinedResult, target: str, variables: tuple[str, ...]):
    """The nomogram of a fitted combined model."""
    from crc_core import figures

    axes, outcome = nomogram_axes(result.coefficients, result.design_ranges, result.dl_scaling, result.references)
    return figures.nomogram(axes, outcome, f"Nomogram: {target.upper()}, DL score + {', '.join(variables) or 'nothing else'}")


def _nice_ticks(low: float, high: float, count: int = 6) -> np.ndarray:
    """Round numbers from ``low`` to ``high`` (multiples of 1, 2, 2.5 or 5 × 10^k), about ``count``
    of them (R's ``pretty``, as ``rms::nomogram`` labels its axes)."""
    span = max(high - low, 1e-12)
    raw = span / max(count - 1, 1)
    magnitude = 10 ** np.floor(np.log10(raw))

    def ticks(step: float) -> np.ndarray:
        return np.arange(np.ceil(low / step - 1e-9) * step, high + step * 1e-9, step) + 0.0  # no "-0"

    # The step whose ticks come nearest ``count`` (of two as near, the rounder: the larger).
    steps = [m * magnitude for m in (1, 2, 2.5, 5, 10)]
    step = min(reversed(steps), key=lambda candidate: abs(len(ticks(candidate)) - count))
    return ticks(step)


def _round_label(value: float) -> str:
    """A round tick value as printed: 40, 2.5, 0.465 — never 37.2 nor 0.46500000001."""
    return f"{round(float(value), 10):g}"


def nomogram_axes(coefficients: pd.Series, ranges: dict[str, tuple[float, float]],
                  dl_scaling: tuple[float, float] | None = None,
                  references: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A nomogram's scales (as R ``rms::nomogram`` draws them): each variable's contribution over
    its training range in points, the widest 100 points; a categorical variable on one axis with a
    tick per level (its reference level at its own place); and how total points read as the
    probability of the high class, at round probabilities (0.1 … 0.9 where reachable). With
    ``dl_scaling`` (the training mean and SD of the DL logit) the DL score's ticks read as the DL
    model's probability, which is what a reader knows. ``references``: each categorical variable's
    reference level, for its tick's label."""
    references = references or {}
    variables: dict[str, list[tuple[str, float, str | None]]] = {}
    for term in ranges:
        name, _, level = term.partition(" = ")
        variables.setdefault(name, []).append((term, float(coefficients[term]), level or None))
    contributions: dict[str, list[tuple[float, str, float]]] = {}  # variable → (log-odds, label, value)
    for name, terms in variables.items():
        if terms[0][2] is None:  # continuous (or the DL score): its training range, labelled at round values
            term, beta, _ = terms[0]
            low, high = ranges[term]
            marks = [(beta * low, "", float(low)), (beta * high, "", float(high))]  # the ends: the scale's extent
            if term == DL_SCORE and dl_scaling is not None:
                # Round probabilities of the DL model, each at its standardised logit.
                mean, sd = dl_scaling
                ends = sorted(1 / (1 + np.exp(-(mean + sd * v))) for v in (low, high))
                for probability in _nice_ticks(*ends, count=5):
                    if 0 < probability < 1:
                        value = (np.log(probability / (1 - probability)) - mean) / sd
                        marks.append((beta * value, _round_label(probability), float(value)))
            else:
                marks += [(beta * value, _round_label(value), float(value)) for value in _nice_ticks(low, high, count=6)]
            contributions[name] = sorted(marks, key=lambda mark: mark[2])
        else:  # categorical: the reference level at 0, each other level at its coefficient
            marks = [(0.0, references.get(name, "reference"), 0.0)]
            marks += [(beta, level, 1.0) for _, beta, level in terms]
            contributions[name] = marks
    effects = {name: max(m[0] for m in marks) - min(m[0] for m in marks) for name, marks in contributions.items()}
    scale = 100.0 / (max(effects.values()) or 1.0)
    rows = []
    for name, marks in contributions.items():
        lowest = min(m[0] for m in marks)
        axis = "DL model's probability" if name == DL_SCORE and dl_scaling is not None else name
        for log_odds, label, value in marks:
            rows.append({"term": name, "value": value, "points": (log_odds - lowest) * scale, "label": label, "scale": axis})
    axes = pd.DataFrame(rows)
    base = float(coefficients.get("const", 0.0)) + sum(min(m[0] for m in marks) for marks in contributions.values())
    most = float(axes.groupby("term")["points"].max().sum())
    total = _nice_ticks(0.0, most)
    lowest_p, highest_p = (1 / (1 + np.exp(-(base + t / scale))) for t in (0.0, most))
    wanted = [p for p in (0.01, 0.05, *np.round(np.arange(0.1, 0.95, 0.1), 1), 0.95, 0.99) if lowest_p <= p <= highest_p]
    at = [(np.log(p / (1 - p)) - base) * scale for p in wanted]
    return axes, {"total_points": total.tolist(), "most_points": most, "probability": list(wanted), "probability_at": at}
