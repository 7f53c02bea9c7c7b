"""What the pages, the CLI and the report read about runs, beside the store (:mod:`crc_core.runs.store`):
each run's AUCs per cohort and fold — from its stored predictions only, so a cohort predicted
later has them too — the overview of every run in words a reader knows, and where a running run
is. Nothing here trains or writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd

from crc_core.metrics.roc import grouped_auc
from crc_core.runs.store import NO_FOLD, OUT_OF_FOLD, RunMode, RunRecord, RunStore

#: Cohorts of the run store in words, in reading order; ``external:NAME`` reads "external: NAME".
COHORT_NAMES = {"train": "training", "validation": "validation", "cv": "cross-validation", "repeat": "repeated splits"}
#: Cohorts whose patients a model never saw, first the one a reader looks at.
HELD_OUT = ("validation", "cv", "repeat")
MODE_NAMES = {RunMode.FEATURES: "frozen features", RunMode.FINETUNE: "fine-tuned", RunMode.RADIOMICS: "radiomics",
              RunMode.COMBINED: "combined"}
EVALUATION_NAMES = {"holdout": "saved split", "kfold": "k-fold", "repeated": "repeated splits"}
#: Cohorts stored for other models to use, not evaluated as cohorts (a features run's out-of-fold
#: training scores).
AUXILIARY_COHORTS = (OUT_OF_FOLD,)
#: The overview's names of the two training AUCs: the fitted model's own training patients give
#: its apparent (resubstituted, so optimistic) AUC; their out-of-fold scores, an honest one.
OVERVIEW_COHORTS = {"train": "training (apparent: resubstituted)", OUT_OF_FOLD: "training (out-of-fold)"}


def labelled(predictions: pd.DataFrame, cohort: str) -> pd.DataFrame:
    """The rows of ``cohort`` in a run's stored predictions whose outcome is known."""
    rows = predictions[predictions["cohort"] == cohort]
    return rows[rows["y_true"].notna()]


def cohort_name(cohort: str) -> str:
    if cohort.startswith("external:"):
        return "external: " + cohort.split(":", 1)[1]
    return COHORT_NAMES.get(cohort, cohort)


def model_name(run: RunRecord) -> str:
    """``DenseNet-121``, ``PyRadiomics``, or a combined model named with its variables."""
    from crc_core.networks.backbones import BACKBONES

    if run.mode is RunMode.RADIOMICS:
        return "PyRadiomics"
    name = BACKBONES[run.backbone].title if run.backbone in BACKBONES else run.backbone
    if run.mode is RunMode.COMBINED:
        variables = tuple(run.config.get("variables", ()))
        return f"{name} score + {', '.join(variables)}" if variables else f"{name} score alone"
    return name


def fold_aucs(store: RunStore, run_ids: Sequence[str]) -> pd.DataFrame:
    """The AUC of every cohort and fold (or repeat) of the runs, from their predictions:
    ``run_id``, ``cohort``, ``fold`` (-1 for none), ``auc``, ``n``."""
    predictions = store.predictions(list(run_ids))
    predictions = predictions[~predictions["cohort"].isin(AUXILIARY_COHORTS)]
    aucs = grouped_auc(predictions, ["run_id", "cohort", "fold"])
    return aucs[["run_id", "cohort", "fold", "auc", "n"]]


def summaries(store: RunStore, run_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """run id → cohort → {auc, sd, n}: a holdout cohort's AUC (n = 1), or the mean and SD of the
    AUCs over folds or repeats (n folds)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    aucs = fold_aucs(store, run_ids)
    for (run_id, cohort), rows in aucs.groupby(["run_id", "cohort"], sort=False):
        values = rows["auc"].dropna().to_numpy()
        out.setdefault(run_id, {})[cohort] = {
            "auc": float(values.mean()) if len(values) else math.nan,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan, "n": int(len(values)),
        }
    return out


def out_of_fold_aucs(store: RunStore, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """run id → {auc, sd, n} of the training patients' out-of-fold scores, for the runs that keep them."""
    predictions = store.predictions(list(run_ids))
    predictions = predictions[predictions["cohort"] == OUT_OF_FOLD]
    aucs = grouped_auc(predictions, ["run_id"]) if len(predictions) else pd.DataFrame(columns=["run_id", "auc"])
    return {row["run_id"]: {"auc": float(row["auc"]), "sd": math.nan, "n": 1} for _, row in aucs.iterrows()
            if pd.notna(row["auc"])}


def summary(store: RunStore, run_id: str) -> dict[str, dict[str, Any]]:
    """AUCs of one run, per cohort (see :func:`summaries`)."""
    return summaries(store, [run_id]).get(run_id, {})


def auc_text(value: dict[str, Any]) -> str:
    """``0.850``, or ``0.812 ± 0.041 (5 folds)``: three decimals, trailing zeros kept."""
    if not value or not math.isfinite(value["auc"]):
        return "—"
    if value["n"] > 1:
        return f"{value['auc']:.3f} ± {value['sd']:.3f} ({value['n']} folds)"
    return f"{value['auc']:.3f}"


def _last_epochs(store: RunStore, run_ids: Sequence[str]) -> dict[str, str]:
    """Where each fine-tune's last epoch got to: what a stopped run has instead of final AUCs."""
    epochs = store.metrics(list(run_ids), "epoch")
    out = {}
    for run_id, rows in epochs.groupby("run_id", sort=False):
        auc = rows[rows["name"] == "val_auc"].sort_values(["fold", "epoch"])
        if len(auc):
            last = auc.iloc[-1]
            fold = "" if last["fold"] == NO_FOLD else f", fold {int(last['fold'])}"
            value = f"{last['value']:.3f}" if pd.notna(last["value"]) else "—"
            out[run_id] = f"epoch {int(last['epoch']) + 1}{fold}: selection AUC {value}"
    return out


def runs_overview(store: RunStore, *, status: str | None = None, target: str | None = None) -> pd.DataFrame:
    """One row per run for people: target, model, mode, evaluation, status, starting weights, the
    AUC of each cohort (or mean ± SD over folds) — the training cohort's labelled apparent
    (resubstituted), beside its out-of-fold one where a run keeps those scores —, a fine-tune's
    last epoch, and the run's id last. ``status``: only runs in it (the report lists finished runs
    alone)."""
    runs = store.runs(target=target, status=status)
    ids = [r.run_id for r in runs]
    aucs = summaries(store, ids)  # one query for every run
    for run_id, value in out_of_fold_aucs(store, ids).items():
        aucs.setdefault(run_id, {})[OUT_OF_FOLD] = value
    epochs = _last_epochs(store, [r.run_id for r in runs if r.mode is RunMode.FINETUNE])
    order = ["train", OUT_OF_FOLD, *[c for c in COHORT_NAMES if c != "train"]]
    cohorts = sorted({c for run in aucs.values() for c in run}, key=lambda c: (order.index(c) if c in order else 9, c))
    rows = []
    for run in runs:
        harmonised = run.config.get("harmonise", "none")
        mode = MODE_NAMES[run.mode] + (f" + ComBat ({harmonised})" if harmonised not in ("none", None) else "")
        row = {"Target": run.target.upper(), "Model": model_name(run), "Mode": mode,
               "Evaluation": EVALUATION_NAMES.get(run.evaluation, run.evaluation), "Status": run.status,
               "Weights": run.starting_weights}
        for cohort in cohorts:
            row[f"AUC {OVERVIEW_COHORTS.get(cohort, cohort_name(cohort))}"] = auc_text(aucs.get(run.run_id, {}).get(cohort, {}))
        if epochs:
            row["Last epoch"] = epochs.get(run.run_id, "")
        row["Run"] = run.run_id
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["Target", "Model", "Mode", "Evaluation", "Status", "Weights", "Run"])


@dataclass(frozen=True)
class LiveStatus:
    """Where a run is: epochs done of all its folds' epochs, the time left, images per second,
    the device, and where its weights came from."""

    run: RunRecord
    epochs_done: int
    epochs_total: int
    eta_s: float | None
    images_per_s: float | None
    device: str
    weights: dict[str, Any]

    @property
    def epoch_text(self) -> str:
        return f"{self.epochs_done}/{self.epochs_total}" if self.epochs_total else MODE_NAMES[self.run.mode]

    @property
    def eta_text(self) -> str:
        if self.eta_s is None:
            return "—"
        return time.strftime("%H:%M:%S", time.gmtime(self.eta_s)) if self.eta_s < 86400 else f"{self.eta_s / 86400:.1f} days"


def live_status(store: RunStore, run_id: str) -> LiveStatus:
    """Where a running (or finished) run is. For k-fold and repeated fine-tunes the epochs of every
    fold count: 5 folds of 100 epochs are 500."""
    run = store.run(run_id)
    epochs = store.metrics([run_id], "epoch")
    finished = epochs[epochs["name"] == "val_loss"]
    seconds = epochs.loc[epochs["name"] == "seconds", "value"].dropna()
    speed = epochs[epochs["name"] == "images_per_s"].sort_values("at")["value"].dropna()
    per_fold = int(run.config.get("finetune", {}).get("epochs", run.config.get("epochs", 0))) if run.mode is RunMode.FINETUNE else 0
    total = per_fold * int(run.info.get("n_partitions", 1))
    done = int(finished[["fold", "epoch"]].drop_duplicates().shape[0])
    eta = float(seconds.mean()) * max(total - done, 0) if total and len(seconds) else None
    images_per_s = float(speed.iloc[-1]) if len(speed) else None
    if not len(seconds) and total:
        # Before the first epoch ends: from its batches so far (their write times).
        steps = store.metrics([run_id], "step").sort_values("at")
        batches, batch_size = int(run.info.get("batches_per_epoch", 0)), int(run.info.get("batch_size", 0))
        if len(steps) >= 2 and batches:
            per_batch = (steps["at"].iloc[-1] - steps["at"].iloc[0]) / (len(steps) - 1)
            eta = per_batch * max(total * batches - len(steps), 0)
            images_per_s = batch_size / per_batch if per_batch > 0 and batch_size else None
    device = run.info.get("device", {})
    return LiveStatus(run, done, total, eta, images_per_s,
                      f"{device.get('device', '')} {device.get('precision', '')}".strip(), run.weights)


def comparison_labels(store: RunStore, run_ids: Sequence[str]) -> dict[str, str]:
    """Each run's short name for a chart of several: target × model · mode, random init, and the
    end of its id (two runs of one model stay apart)."""
    out = {}
    for run_id in run_ids:
        run = store.run(run_id)
        out[run_id] = (f"{run.target.upper()} × {model_name(run)} · {MODE_NAMES[run.mode]}"
                       f"{', random init' if run.random_init else ''} · {run_id[-4:]}")
    return out


def comparison_figures(store: RunStore, run_ids: Sequence[str]) -> dict[str, Any]:
    """The Compare-runs figures of several runs, by file stem: their loss curves normalised as the
    paper's Figure 4 (fine-tuned runs), the fast modes' penalty paths, and the AUC of every fold
    or repeat of their held-out cohorts. Empty for fewer than two runs."""
    from crc_core import figures
    from crc_core.networks.linear_models import C_GRID

    run_ids = list(run_ids)
    if len(run_ids) < 2:
        return {}
    short = comparison_labels(store, run_ids)
    charts: dict[str, Any] = {}
    steps = store.metrics(run_ids, "step")
    curves = {short[r]: rows for r, rows in steps[steps["name"] == "train_loss"].groupby("run_id", sort=False)}
    if curves:
        charts["compare_losses"] = figures.normalised_losses(curves)
    penalty = {short[r]: rows for r, rows in store.metrics(run_ids, "penalty").groupby("run_id", sort=False)}
    if penalty:
        charts["compare_penalty"] = figures.penalty_curves(penalty, C_GRID)
    aucs = fold_aucs(store, run_ids)
    held_out = aucs[aucs["cohort"].isin(HELD_OUT)]
    if len(held_out):
        charts["compare_aucs"] = figures.auc_by_fold(held_out, short)
    return charts


# ---------------------------------------------------------------------------------------------
# Picking the best of several runs, and on which cohort

#: Cohorts a comparison can pick the best run on, in words. The training out-of-fold AUC leaves
#: every cohort that is reported as performance out of the pick.
SELECTION_COHORTS = {OUT_OF_FOLD: "training out-of-fold", "validation": "validation", "cv": "cross-validated"}
DEFAULT_SELECTION = OUT_OF_FOLD


def selection_name(cohort: str) -> str:
    return SELECTION_COHORTS.get(cohort, cohort_name(cohort))


@dataclass(frozen=True)
class Selection:
    """The best of several runs by their AUC on one cohort (``by``), and the cohort whose AUC the
    comparison then reports (``reported``). ``aucs``: run id → AUC on ``by``, for the runs that
    have labelled scores of both classes there; ``skipped``: the others, in the order given."""

    by: str
    reported: str
    aucs: dict[str, float]
    skipped: tuple[str, ...]
    names: dict[str, str]

    @property
    def best(self) -> str | None:
        """The run with the highest AUC on ``by`` (of tied ones, the first given); None if none has one."""
        return max(self.aucs, key=lambda r: self.aucs[r]) if self.aucs else None

    @property
    def optimistic(self) -> bool:
        """The pick was made on the cohort whose AUC is reported: that AUC is the maximum of several
        noisy estimates, so it overstates what the chosen model does on new patients."""
        return self.by == self.reported and self.best is not None and len(self.aucs) > 1

    @property
    def warning(self) -> str:
        if not self.optimistic:
            return ""
        where = selection_name(self.reported)
        return (f"The best model was picked on the {where} cohort, and the {where} AUC is what is reported for it: "
                f"picked as the highest of {len(self.aucs)} runs, that AUC is optimistic (selection makes the winner "
                "look better than it will on new patients). Pick on the training out-of-fold AUC, or report a cohort "
                "the pick did not see (an external centre).")

    def describe(self) -> str:
        """On which cohort the pick was made, the pick and its AUC there, and what was left out."""
        if self.best is None:
            text = (f"No run has {selection_name(self.by)} scores to pick on"
                    + (" (only features and radiomics runs of the saved split keep their training patients' "
                       "out-of-fold scores)." if self.by == OUT_OF_FOLD else "."))
            return text
        best = self.best
        text = (f"Picked on the {selection_name(self.by)} AUC: {self.names.get(best, best)} "
                f"({self.aucs[best]:.3f}), the highest of {len(self.aucs)} run{'s' if len(self.aucs) > 1 else ''}.")
        if self.by != self.reported:
            text += f" The {selection_name(self.reported)} AUC reported for it took no part in the pick."
        if self.skipped:
            why = (" keep no out-of-fold training scores (fine-tuned and k-fold runs, and runs trained before they were kept)"
                   if self.by == OUT_OF_FOLD else f" have no {selection_name(self.by)} scores of both classes")
            text += f" Not in the pick: {', '.join(self.names.get(r, r) for r in self.skipped)}, which{why}."
        return text


def select_best(store: RunStore, run_ids: Sequence[str], *, by: str = DEFAULT_SELECTION,
                reported: str = "validation") -> Selection:
    """The best of ``run_ids`` by AUC on the cohort ``by`` — the training patients' out-of-fold
    scores (default; features and radiomics runs of the saved split keep them), the validation
    cohort, or the pooled cross-validated scores — with the cohort whose AUC is reported, so the
    pick can say when the two are one (:attr:`Selection.warning`). AUCs as ``pROC::auc`` /
    scikit-learn's ``roc_auc_score`` (:func:`crc_core.metrics.roc.grouped_auc`), folds pooled."""
    run_ids = list(dict.fromkeys(run_ids))
    predictions = store.predictions(run_ids) if run_ids else pd.DataFrame(columns=["run_id", "cohort", "prob", "y_true"])
    rows = predictions[predictions["cohort"] == by]
    aucs = grouped_auc(rows, ["run_id"]) if len(rows) else pd.DataFrame(columns=["run_id", "auc"])
    found = {row["run_id"]: float(row["auc"]) for _, row in aucs.iterrows() if pd.notna(row["auc"])}
    ordered = {r: found[r] for r in run_ids if r in found}
    names = {}
    for run_id in run_ids:
        run = store.run(run_id)
        names[run_id] = f"{model_name(run)} ({MODE_NAMES[run.mode]}) · {run_id[-4:]}"
    return Selection(by, reported, ordered, tuple(r for r in run_ids if r not in ordered), names)


def selection_summary(store: RunStore, run_ids: Sequence[str], run_id: str, *, reported: str = "validation") -> list[str]:
    """What the report says of picking among ``run_ids`` (two or more): the pick on the training
    out-of-fold AUC, the pick on the reported cohort with its warning, and which of them the
    reported run ``run_id`` is. Empty for fewer than two runs."""
    run_ids = list(dict.fromkeys(run_ids))
    if len(run_ids) < 2:
        return []
    picks = [select_best(store, run_ids, by=by, reported=reported) for by in (DEFAULT_SELECTION, reported)]
    lines = [" ".join(filter(None, [p.describe(), p.warning])) for p in picks]
    oof_pick, reported_pick = picks
    name = oof_pick.names.get(run_id, run_id)
    if reported_pick.best == run_id and oof_pick.best == run_id:
        lines.append(f"This report's run, {name}, is the pick on both: the training out-of-fold AUC, which left the "
                     f"{selection_name(reported)} cohort out, chooses it too.")
    elif reported_pick.best == run_id:
        lines.append(f"This report's run, {name}, is the pick on the {selection_name(reported)} AUC: if it was chosen "
                     f"for it, its {selection_name(reported)} AUC in Table 2 is optimistic.")
    elif oof_pick.best == run_id:
        lines.append(f"This report's run, {name}, is the pick on the training out-of-fold AUC.")
    else:
        lines.append(f"This report's run, {name}, is neither pick.")
    return lines


def delong_pairs_in_words(pairs: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """DeLong's tests between runs (:func:`crc_core.evaluate.run_evaluation.compare_runs`' pairs) as one row
    per pair: first model, second model, patients, then the AUC difference (first − second) with its
    95% CI first — what the comparison rules out —, p Holm-adjusted across every pair compared (one
    family: R ``p.adjust(method = "holm")``), what it shows ("no evidence of a difference", never
    "the same"), and DeLong's unadjusted p (pROC::roc.test) last."""
    from crc_core.cohort.table1 import difference_text, difference_verdict, holm_adjusted, p_words

    adjusted = holm_adjusted(pairs["p"].to_numpy(dtype=float)) if len(pairs) else []
    return pd.DataFrame({
        "First model": [labels.get(a, a) for a in pairs["run_a"]], "Second model": [labels.get(b, b) for b in pairs["run_b"]],
        "Patients": pairs["n"].astype(int),
        "AUC difference (95% CI)": [difference_text(d, lo, hi) for d, lo, hi in zip(pairs["difference"], pairs["low"], pairs["high"])],
        "Holm-adjusted p": [p_words(p) for p in adjusted],
        "What it shows": [difference_verdict(p, lo, hi) for p, lo, hi in zip(adjusted, pairs["low"], pairs["high"])],
        "p, unadjusted": [p_words(p) for p in pairs["p"]]})
