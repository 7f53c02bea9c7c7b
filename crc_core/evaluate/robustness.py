"""Is a run's prediction robust to the reader who drew the ROI? The run's model applied to crops cut
with the second reader's masks and with reader 1's masks eroded or dilated by 1 and 2 pixels
(Zwanenburg et al. 2019, Sci Rep 9:614), each preprocessed exactly as the run's own crops: per
variant the AUC, the agreement of the probabilities with reader 1's (ICC(2,1)), the AUC difference
from reader 1's with its DeLong 95% CI and paired test (pROC::roc.test), the p values Holm-adjusted
across the variants (one family of up to five tests: R ``p.adjust(method = "holm")``), and how many
patients change class at Table 2's threshold. A large p is "no evidence of a difference", never
proof of robustness: the CI of the difference says what it rules out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

import crc_core.metrics as ev
from crc_core.configs import JsonConfig
from crc_core.errors import CrcInputError
from crc_core.jobs import StepMeter
from crc_core.evaluate.predict import cohort_workspace
from crc_core.imaging.preprocess import MASK_VARIANTS
from crc_core.workspace import Workspace, atomic_write_csv

VARIANT_NAMES = {"reader1": "reader 1 (the run's own)", "reader2": "reader 2", "erode1": "reader 1 eroded 1 px",
                 "erode2": "reader 1 eroded 2 px", "dilate1": "reader 1 dilated 1 px", "dilate2": "reader 1 dilated 2 px"}
SUMMARISING = "AUC, ICC and DeLong's test per ROI"
SUMMARY_COLUMNS = ["variant", "auc", "auc_low", "auc_high", "icc", "icc_low", "icc_high", "flips", "n", "p_vs_reader1",
                   "auc_difference", "difference_low", "difference_high", "p_holm"]
#: The comparison with reader 1: AUC(variant) − AUC(reader 1), its DeLong 95% CI, and p Holm-adjusted.
COMPARISON_COLUMNS = ["auc_difference", "difference_low", "difference_high", "p_holm"]
Progress = Callable[..., None]


@dataclass(frozen=True)
class RobustnessConfig(JsonConfig):
    """Which run and cohort ``crc-time robustness`` checks, and where it writes its two CSVs."""

    run_id: str = ""
    cohort: str = "validation"
    out: str = ""

    def __post_init__(self) -> None:
        if not self.run_id:
            raise CrcInputError("Name the run whose robustness to check.")


@dataclass
class RobustnessResult:
    """``scores``: patient_id, variant, prob (and y_true, fold); ``summary``: one row per variant
    (:data:`SUMMARY_COLUMNS`); ``left_out``: variant → patients without a crop, with why."""

    run_id: str
    cohort: str
    threshold: float
    scores: pd.DataFrame
    summary: pd.DataFrame
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def logits(self, variant: str) -> pd.Series:
        rows = self.scores[self.scores["variant"] == variant].set_index("patient_id")["prob"]
        return pd.Series(ev.logit(rows.to_numpy(), eps=1e-6), index=rows.index)


def _cohort_files(workspace: Workspace, patients: list[str]) -> pd.DataFrame:
    """The cohort's manifest rows; refuses, naming them, when the volumes or masks a crop needs are gone."""
    from crc_core.imaging.preprocess import read_manifest

    try:
        manifest = read_manifest(workspace).set_index("patient_id")
    except CrcInputError as exc:
        raise CrcInputError(f"The run's crops cannot be cut again: {exc}") from exc
    absent = [p for p in patients if p not in manifest.index]
    rows = manifest.loc[[p for p in patients if p in manifest.index]]
    gone = [f for column in ("image", "mask") for f in rows[column] if not f or not Path(f).exists()]
    if absent or gone:
        named = ", ".join([*absent[:5], *[Path(f).name for f in gone[:5]]])
        raise CrcInputError(f"The run's crops cannot be cut again: these patients' volumes or masks are not here ({named}"
                            f"{' …' if len(absent) + len(gone) > 10 else ''}). Bring back the files listed in "
                            f"{workspace.manifest_csv}.")
    return rows


def _variant_crops(workspace: Workspace, config, variant: str, patients: list[str], progress: Progress | None):
    from crc_core.imaging.preprocess import NothingCropped, crops_folder, load_crop, preprocess_cohort, read_crop_set

    folder = crops_folder(workspace, config, variant)
    have = read_crop_set(folder).ok["patient_id"].tolist() if (folder / "index.csv").exists() else []
    if set(patients) - set(have):
        try:
            preprocess_cohort(workspace, config, patients=patients, variant=variant, set_in_use=False, workers=None,
                              progress=progress)
        except NothingCropped:
            pass  # every patient failed: each one is named below
    crops = read_crop_set(folder)
    rows = crops.index.set_index("patient_id")
    found, failed = {}, {}
    for patient in patients:
        row = rows.loc[patient].to_dict() if patient in rows.index else None
        crop = load_crop(crops.folder, row) if row is not None else None
        if crop is None:
            failed[patient] = (row or {}).get("message") or "no crop"
        else:
            found[patient] = crop.pixels
    return found, failed


def _phases(variant: str) -> tuple[str, str]:
    """The two phases of one ROI variant: its crops cut, then scored by the run's model."""
    return f"{VARIANT_NAMES[variant]}: cutting the crops", f"{VARIANT_NAMES[variant]}: scoring"


def robustness(workspace: Workspace | Path, run_id: str, cohort: str = "validation", *,
               progress: Progress | None = None) -> RobustnessResult:
    """The robustness check of a finished run with a network on one of its cohorts (see the
    module docstring). Reader 1's probabilities are the run's stored ones; every other variant's
    crops are cut with the run's own preprocessing (cached per variant) and scored by the model
    of the fold that held each patient out. A patient without a second reader's mask, or whose ROI
    erodes away, is named and left out of that variant."""
    from crc_core.evaluate import run_evaluation as me
    from crc_core.imaging.agreement import icc
    from crc_core.evaluate.predict import score_images
    from crc_core.imaging.preprocess import read_crop_set
    from crc_core.runs.store import RunStore

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(run_id)
    if not run.done:
        raise CrcInputError(f"Run {run_id} is {run.status}; only a finished run can be checked.")
    if not run.has_network:
        raise CrcInputError(f"Run {run_id} is a {run.mode} model without a network of its own: the reader check applies "
                            "a network to crops cut with other masks. Choose a features or fine-tuned run.")
    stored = store.predictions(run_id, cohort).drop_duplicates("patient_id")
    if stored.empty:
        raise CrcInputError(f"Run {run_id} has no predictions for the {cohort} cohort.")
    patients = stored["patient_id"].tolist()
    source = cohort_workspace(workspace, run, cohort)
    rows = _cohort_files(source, patients)
    config = read_crop_set(workspace.crops_dir / str(run.info.get("crop_key"))).config
    evaluation = me.evaluate_run(store, run_id)
    threshold = float(evaluation.metrics.get(cohort, {}).get("threshold", 0.5))
    fold_of = stored.set_index("patient_id")["fold"]
    frames = [stored.assign(variant="reader1")[["patient_id", "variant", "prob", "y_true", "fold"]]]
    left_out: dict[str, dict[str, str]] = {}
    with_second = [p for p in patients if "mask_r2" in rows.columns and rows.loc[p, "mask_r2"]]
    if not with_second:
        raise CrcInputError(f"No patient of the {cohort} cohort has a second reader's mask (mask_r2 in {source.manifest_csv}): the "
                            "reader check compares two readers' ROIs. Add the second reader's masks on the CT & ROI page.")
    # One counter through every ROI's two phases, each named (found in use: ~100 s phases that did not move).
    variants = MASK_VARIANTS[1:]
    meter = StepMeter(progress, {**{name: 1.0 for v in variants for name in _phases(v)}, SUMMARISING: 0.1})
    for variant in variants:
        cutting, scoring = _phases(variant)
        chosen = with_second if variant == "reader2" else patients
        skipped = {p: "no second reader's mask in manifest.csv" for p in patients if p not in chosen}
        meter.tell(cutting, 0, len(chosen), "patients")
        pixels, failed = _variant_crops(source, config, variant, chosen, meter.part(cutting, "patients")) if chosen else ({}, {})
        left_out[variant] = {**skipped, **failed}
        if not pixels:
            continue
        ids = list(pixels)
        meter.tell(scoring, 0, len(ids), "crops")
        from crc_core.evaluate.predict import centres_of

        probs = score_images(workspace, run, np.stack([pixels[p] for p in ids]).astype(np.float32),
                             folds=[fold_of[p] for p in ids], centres=centres_of(source, run, ids),
                             progress=meter.part(scoring, "crops"))
        frames.append(pd.DataFrame({"patient_id": ids, "variant": variant, "prob": probs,
                                    "y_true": stored.set_index("patient_id").loc[ids, "y_true"].to_numpy(),
                                    "fold": [fold_of[p] for p in ids]}))
    meter.tell(SUMMARISING, 0, 1)
    scores = pd.concat(frames, ignore_index=True)
    reference = scores[scores["variant"] == "reader1"].set_index("patient_id")
    summary = []
    for variant, part in scores.groupby("variant", sort=False):
        part = part.set_index("patient_id")
        row = {"variant": variant, "n": len(part), "flips": 0, "p_vs_reader1": np.nan}
        labelled = part[part["y_true"].notna()]
        if labelled["y_true"].nunique() == 2:
            row["auc"], row["auc_low"], row["auc_high"] = ev.auc_ci(labelled["y_true"].astype(int), labelled["prob"])
        shared = part.index.intersection(reference.index)
        pairs = np.column_stack([reference.loc[shared, "prob"], part.loc[shared, "prob"]])
        if variant != "reader1" and len(shared) >= 2:
            row["icc"], row["icc_low"], row["icc_high"] = icc(pairs)
            row["flips"] = int(((pairs[:, 0] >= threshold) != (pairs[:, 1] >= threshold)).sum())
            both = reference.loc[shared, "y_true"].notna()
            y = reference.loc[shared, "y_true"][both].astype(int)
            if y.nunique() == 2:
                row["p_vs_reader1"] = ev.delong_test(y, pairs[both.to_numpy(), 0], pairs[both.to_numpy(), 1])[1]
        elif variant == "reader1":
            row["icc"] = row["icc_low"] = row["icc_high"] = 1.0
        summary.append(row)
    meter.finish()
    summary = with_reader1_comparisons(scores, pd.DataFrame(summary).reindex(columns=SUMMARY_COLUMNS))
    notes = [f"{len(skipped)} patient(s) left out of {VARIANT_NAMES[v]}: " + "; ".join(f"{p} ({why})" for p, why in
             list(skipped.items())[:5]) + (" …" if len(skipped) > 5 else "") for v, skipped in left_out.items() if skipped]
    return RobustnessResult(run_id, cohort, threshold, scores, summary, left_out, notes)


def with_reader1_comparisons(scores: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with each variant's AUC difference from reader 1 on their shared labelled
    patients (AUC(variant) − AUC(reader 1), DeLong's 95% CI and p, as ``pROC::roc.test``) and the
    p values Holm-adjusted across the variants tested (:func:`crc_core.cohort.table1.holm_adjusted`)."""
    from crc_core.cohort.table1 import holm_adjusted

    summary = summary.reindex(columns=SUMMARY_COLUMNS).copy()
    reference = scores[scores["variant"] == "reader1"].drop_duplicates("patient_id").set_index("patient_id")
    for i, variant in summary["variant"].items():
        if variant == "reader1":
            continue
        part = scores[scores["variant"] == variant].drop_duplicates("patient_id").set_index("patient_id")
        shared = part.index.intersection(reference.index[reference["y_true"].notna()])
        y = reference.loc[shared, "y_true"].astype(int)
        if len(shared) < 2 or y.nunique() < 2:
            continue
        _, p, difference, (low, high) = ev.delong_difference(y, part.loc[shared, "prob"], reference.loc[shared, "prob"])
        summary.loc[i, ["p_vs_reader1", "auc_difference", "difference_low", "difference_high"]] = [p, difference, low, high]
    summary["p_holm"] = holm_adjusted(summary["p_vs_reader1"].to_numpy(dtype=float))
    return summary


def keep_robustness(workspace: Workspace, result: RobustnessResult) -> None:
    """Keep the check in the run's folder, for the Evaluate page and the report."""
    import json

    from crc_core.runs.store import RunStore
    from crc_core.workspace import atomic_write_text

    folder = RunStore(workspace).folder(result.run_id)
    atomic_write_csv(folder.robustness(result.cohort, "scores"), result.scores)
    atomic_write_csv(folder.robustness(result.cohort, "summary"), result.summary)
    atomic_write_text(folder.robustness(result.cohort, "about"), json.dumps(
        {"threshold": result.threshold, "left_out": result.left_out, "notes": result.notes}))


def kept_robustness(workspace: Workspace, run, cohort: str) -> RobustnessResult | None:
    """The check kept for a run's cohort, or None when it was never run; a damaged file is named."""
    import json

    folder = run.folder(workspace)
    about = folder.robustness(cohort, "about")
    if not about.exists():
        return None
    try:
        meta = json.loads(about.read_text(encoding="utf-8"))
        scores = pd.read_csv(folder.robustness(cohort, "scores"), dtype={"patient_id": str})
        summary = pd.read_csv(folder.robustness(cohort, "summary"))
        threshold = float(meta["threshold"])
        if not set(COMPARISON_COLUMNS) <= set(summary.columns):  # kept before the differences were
            summary = with_reader1_comparisons(scores, summary)
        summary = summary.reindex(columns=SUMMARY_COLUMNS)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CrcInputError(f"The kept reader check of run {run.run_id} ({about.parent}) is damaged ({exc}); run it again.") from exc
    return RobustnessResult(run.run_id, cohort, threshold, scores, summary, meta.get("left_out", {}), meta.get("notes", []))


def kept_checks(workspace: Workspace, run, cohorts) -> list[RobustnessResult]:
    """Every kept check of a run among ``cohorts``' held-out ones, validation first: what the report
    and the TRIPOD+AI checklist cite. A damaged one is left out here (its own tab names it)."""
    if not run.has_network:
        return []
    checks = []
    for cohort in ["validation", *[c for c in cohorts if c not in ("validation", "train")]]:
        try:
            kept = kept_robustness(workspace, run, cohort)
        except CrcInputError:
            continue
        if kept is not None:
            checks.append(kept)
    return checks


def write_robustness(result: RobustnessResult, folder: Path) -> list[Path]:
    """``robustness.csv`` (patient_id, variant, prob) and ``robustness_summary.csv`` (variant, auc,
    auc_low, auc_high, icc, icc_low, icc_high, flips, then n and DeLong's p against reader 1)."""
    from crc_core.workspace import ensure_writable_dir

    folder = ensure_writable_dir(Path(folder))
    return [atomic_write_csv(folder / "robustness.csv", result.scores[["patient_id", "variant", "prob"]]),
            atomic_write_csv(folder / "robustness_summary.csv", result.summary)]


def one_sided_reference(result: RobustnessResult):
    """Reader 1's patients all on one side of the check's threshold
    (:class:`crc_core.evaluate.threshold_side.OneSided`), or None when the threshold splits them."""
    from crc_core.evaluate.threshold_side import one_sided

    reference = result.scores.loc[result.scores["variant"] == "reader1", "prob"].to_numpy()
    return one_sided(result.cohort, reference, result.threshold)


def threshold_note(result: RobustnessResult) -> str | None:
    """Why the class changes say nothing, where reader 1's patients all lie on one side of the
    threshold (a miscalibrated cohort, not a robust model); None otherwise."""
    from crc_core.runs.views import cohort_name
    from crc_core.evaluate.threshold_side import class_change_words

    found = one_sided_reference(result)
    return class_change_words(found, cohort_name(result.cohort)) if found is not None else None


def summary_for_people(result: RobustnessResult) -> pd.DataFrame:
    """The summary in words, three decimals: ROI, patients, AUC (95% CI), then the comparison with
    reader 1 — the AUC difference with its 95% CI first (what it rules out), the Holm-adjusted p
    and what it shows ("no evidence of a difference", never "robust") —, ICC with reader 1 (95%
    CI), patients changing class, and DeLong's unadjusted p last."""
    from crc_core.cohort.table1 import difference_text, difference_verdict, p_words

    def interval(value, low, high) -> str:
        return "—" if pd.isna(value) else f"{value:.3f} ({low:.3f}-{high:.3f})"

    table = result.summary.reindex(columns=SUMMARY_COLUMNS)
    differences = table[["auc_difference", "difference_low", "difference_high"]].itertuples(index=False)
    return pd.DataFrame({
        "ROI": table["variant"].map(VARIANT_NAMES), "Patients": table["n"],
        "AUC (95% CI)": [interval(*r) for r in table[["auc", "auc_low", "auc_high"]].itertuples(index=False)],
        "AUC difference from reader 1 (95% CI)": [difference_text(*r) for r in differences],
        "Holm-adjusted p": ["—" if pd.isna(p) else p_words(p) for p in table["p_holm"]],
        "What it shows": [difference_verdict(p, low, high) for p, low, high in
                          table[["p_holm", "difference_low", "difference_high"]].itertuples(index=False)],
        "ICC with reader 1 (95% CI)": [interval(*r) for r in table[["icc", "icc_low", "icc_high"]].itertuples(index=False)],
        f"Change class at {result.threshold:.3f}" + ("" if one_sided_reference(result) is None else
                                                      " (every patient on one side of it: see the note)"): table["flips"],
        "DeLong p, unadjusted": ["—" if pd.isna(p) else p_words(p) for p in table["p_vs_reader1"]]})


def comparison_sentence(result: RobustnessResult) -> str | None:
    """The comparison with reader 1 in one sentence, for the caption of the page and the report:
    how many ROIs were tested, Holm's correction across them, and the widest differences the CIs
    still allow; None when no ROI could be compared."""
    from crc_core.cohort.table1 import NO_EVIDENCE

    table = result.summary.reindex(columns=SUMMARY_COLUMNS)
    tested = table[table["p_holm"].notna()]
    if tested.empty:
        return None
    found = tested[tested["p_holm"] < 0.05]
    if found.empty:
        head = (f"None of the {len(tested)} ROIs compared with reader 1 shows evidence of a difference in AUC after Holm's "
                f"correction for {len(tested)} tests ({NO_EVIDENCE}: not proof that the AUCs are equal)")
    else:
        named = ", ".join(VARIANT_NAMES.get(v, v) for v in found["variant"])
        head = (f"{len(found)} of the {len(tested)} ROIs compared with reader 1 differ in AUC after Holm's correction for "
                f"{len(tested)} tests ({named})")
    return (f"{head}; the 95% CIs of the differences allow from {tested['difference_low'].min():+.3f} to "
            f"{tested['difference_high'].max():+.3f}.")


def robustness_figures(result: RobustnessResult, target: str) -> dict:
    """The check's figures by file stem, for the page, the export and the report: the AUC of every
    ROI as a forest plot, and the Bland-Altman plot of the two readers' logits."""
    from crc_core import figures
    from crc_core.runs.views import cohort_name

    out = {}
    summary = result.summary.dropna(subset=["auc"])
    if len(summary):
        rows = summary.assign(label=summary["variant"].map(VARIANT_NAMES), value=summary["auc"], low=summary["auc_low"],
                              high=summary["auc_high"])
        out["robustness_auc"] = figures.forest_plot(rows, f"{target.upper()}: AUC by ROI, {cohort_name(result.cohort)} cohort")
    if (result.scores["variant"] == "reader2").any():
        first, second = result.logits("reader1"), result.logits("reader2")
        shared = first.index.intersection(second.index)
        if len(shared) >= 2:
            out["robustness_bland_altman"] = figures.bland_altman(first[shared], second[shared], shared.to_series(),
                                                                  what="logit p(high)",
                                                                  subject=f"{cohort_name(result.cohort)} cohort")
    return out
