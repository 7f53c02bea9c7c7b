"""The ``crc-time`` command: one subcommand per pipeline step, on any workspace.

Every subcommand runs the same library code as the dashboard's pages. A step's settings come from
``--config FILE`` (the JSON of its config, as the dashboard writes it into a job folder), and any
flag given on the command line overrides the file; what neither names keeps the paper's default,
which lives in the config class alone. Bad input prints one line, ``crc-time: error: ...``, and
exits with status 2 without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace, default_workspace_path

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
#: Steps that may start in a folder that does not exist yet.
STEPS_THAT_MAKE_A_WORKSPACE = ("sample",)

Progress = Callable[[int, int], None]


class StepOutcome(str):
    """A step's one-line summary, with the structured result a job records (e.g. a crop set key)
    and further lines printed after it (e.g. each failed patient)."""

    def __new__(cls, summary: str, result: dict | None = None, details: Sequence[str] = ()):
        outcome = super().__new__(cls, summary)
        outcome.result = dict(result or {})
        outcome.details = list(details)
        return outcome


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def centre_name(text: str) -> str:
    """argparse type: a centre's name, never blank (a blank one would build the development sample)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("name the centre, e.g. --centre Lanzhou (without --centre the development "
                                         "sample is built)")
    return text


def _window(text: str) -> tuple[float, float]:
    """argparse type: WIDTH/LEVEL in HU, e.g. 400/40."""
    width, _, level = text.partition("/")
    try:
        return float(width), float(level)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTH/LEVEL, e.g. 400/40") from None


def _marker_cutoff(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise CrcInputError(f"--marker-cutoff wants MARKER=NUMBER, e.g. cd3_ca=450 (got {text!r}).") from None


def build_config(config_class, args: argparse.Namespace, flags: dict[str, Any]):
    """The step's config: ``--config FILE`` if given, then every flag the user typed (not None)."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        values = config_class.load(args.config).to_dict()
    values.update({k: v for k, v in flags.items() if v is not None})
    return config_class.from_dict(values, source=str(args.config) if getattr(args, "config", None) else None)


# ---------------------------------------------------------------------------------------------
# Steps


def _cmd_sample(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace, check_outside_program_folder, default_centre_folder
    from crc_core.workflow import cohort_summary

    config = build_config(SampleConfig, args, {
        "n_patients": args.n, "seed": args.seed, "with_images": False if args.no_images else None, "centre": args.centre,
    })
    root = Path(args.out) if args.out else args.workspace
    if config.centre:
        beside = default_centre_folder(args.workspace, config.centre)
        if not args.out and not getattr(args, "workspace_given", True):
            root = beside  # a centre never replaces the default workspace, nor lands in the program folder
        check_outside_program_folder(root, beside)
    workspace = build_sample_workspace(root, config, progress=progress, replace=args.replace)
    summary = cohort_summary(workspace)
    return StepOutcome(f"sample cohort written to {workspace.root}: {summary.patients} patients ({summary.split.describe()})")


def _cmd_info(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.workflow import cohort_summary, workflow_status

    workspace = Workspace(args.workspace)
    summary = cohort_summary(workspace)
    lines = [f"workspace: {workspace.root.resolve()}", f"patients: {summary.patients}"]
    if summary.split is None:
        lines.append("split: none yet")
    else:
        lines.append(f"split ({summary.split.source}): {summary.split.describe()}")
        lines += [f"  {name}: {count}" for name, count in summary.counts.items()]
    lines += [f"{s.step}: {'done' if s.done else 'to do'} ({s.detail})" for s in workflow_status(workspace)]
    return StepOutcome("\n".join(lines))


def split_config_from_flags(args: argparse.Namespace):
    from crc_core.cohort.splits import SplitConfig

    flags = {"train_fraction": args.fraction, "seed": args.seed, "stratify_by": args.stratify}
    if args.kfold:
        flags.update(method="kfold", n_folds=args.kfold)
    if args.column:
        flags.update(method="column", column=args.column)
    return build_config(SplitConfig, args, flags)


def _cmd_split(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.cohort.join import split_workspace
    from crc_core.cohort.splits import describe_split

    workspace = Workspace(args.workspace)
    split = split_workspace(workspace, split_config_from_flags(args))
    return StepOutcome(f"split written to {workspace.split_csv}: {describe_split(split)}")


def clinical_variables(workspace: Workspace, group: str) -> list[str]:
    """Table 1's default rows: the clinical table's columns, without the ID, split and group."""
    columns = workspace.read_clinical().columns
    return [c for c in columns if c not in ("patient_id", "split", "fold", group)]


def _cmd_table1(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.cohort.join import load_workspace_cohort, read_column_mapping
    from crc_core.cohort.table1 import TableOneOptions, table_one
    from crc_core.cohort.table_export import export_table_one

    workspace = Workspace(args.workspace)
    cohort = load_workspace_cohort(workspace)
    variables = args.variables.split(",") if args.variables else clinical_variables(workspace, args.group)
    options = build_config(TableOneOptions, args, {
        "normality": args.normality, "smd": True if args.smd else None,
        "unequal_variance": args.unequal_variance, "p_style": args.p_style,
    })
    types = read_column_mapping(workspace).type_overrides
    categorical = [v for v in variables if types.get(v) in ("categorical", "ordinal")]
    continuous = [v for v in variables if types.get(v) == "continuous"]
    table = table_one(cohort, args.group, variables, categorical, continuous=continuous, options=options)
    path = export_table_one(table, args.out)
    tests = table.loc[table["test"].ne("") & table["test"].ne("none"), "test"].value_counts()
    used = ", ".join(f"{count} {test}" for test, count in tests.items())
    return StepOutcome(f"Table 1 by {args.group} ({len(variables)} variables; {used}) written to {path}")


def _cmd_labels(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.labels.rules import LabelConfig, describe_labels, label_workspace

    flags: dict[str, Any] = {
        "tsr_cutoff_percent": args.tsr_cutoff,
        "til_high_min_grade": args.til_min_grade,
        "is_high_above": args.is_above,
        "time_high_min_score": args.time_min_score,
        "resolution": args.resolution,
        "is_cutoff_source": args.is_source,
        "time_tsr_point": args.time_tsr_point,
    }
    if args.marker_cutoff:
        flags["marker_cutoffs"] = dict(_marker_cutoff(text) for text in args.marker_cutoff)
        flags["is_cutoff_source"] = "given"
    workspace = Workspace(args.workspace)
    result = label_workspace(workspace, build_config(LabelConfig, args, flags))
    return StepOutcome(f"labels written to {workspace.labels_csv}: {describe_labels(result)}",
                       details=[f"warning: {w}" for w in result.warnings])


def preprocess_config_from_flags(args: argparse.Namespace):
    from crc_core.imaging.volumes import PreprocessConfig

    flags = {
        "intensity": "custom" if args.window else args.intensity,
        "window_width": args.window[0] if args.window else None,
        "window_level": args.window[1] if args.window else None,
        "in_plane_mm": args.in_plane_mm, "margin_px": args.margin, "context": args.context,
        "mask_outside": True if args.mask_outside else None, "size": args.size, "label": args.label,
        "resample_mask": True if args.resample_mask else None,
    }
    return build_config(PreprocessConfig, args, flags)


def _cmd_preprocess(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.imaging.preprocess import config_key, preprocess_cohort

    config = preprocess_config_from_flags(args)
    result = preprocess_cohort(Workspace(args.workspace), config, workers=args.workers, progress=progress)
    failures = [f"failed: {row.patient_id}: {row.message}" for row in result.failures.itertuples()]
    return StepOutcome(
        f"crops in {result.folder} ({config.describe()}): {result.summary()}",
        result={"key": config_key(config), "ok": result.n_ok, "failed": len(failures)},
        details=failures,
    )


def _cmd_agreement(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.imaging.reader_study import AgreementConfig, reader_agreement

    workspace = Workspace(args.workspace)
    config = build_config(AgreementConfig, args, {
        "with_features": False if args.no_features else None, "label": args.label,
    })
    result = reader_agreement(workspace, config, workers=args.workers, progress=progress)
    failures = [f"failed: {r.patient_id}: {r.message}" for r in result.masks.itertuples() if r.status != "ok"]
    return StepOutcome(f"agreement in {workspace.agreement_dir}: {result.summary()}",
                       result={"failed": len(failures)}, details=failures)


def _split_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def train_config_from_flags(args: argparse.Namespace):
    from crc_core.training.grid import TrainConfig

    flags = {
        "targets": _split_list(args.target), "backbones": _split_list(args.backbone), "mode": args.mode,
        "evaluation": args.evaluation, "n_folds": args.folds, "n_repeats": args.repeats, "seed": args.seed,
        "weights": args.weights, "download_weights": True if args.download_weights else None,
        "require_pretrained": True if args.require_pretrained else None, "crop_key": args.crop_key,
        "allow_missing_crops": True if args.allow_missing_crops else None, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "schedule": args.schedule, "selection": args.selection,
        "early_stopping": args.early_stopping, "device": args.device, "precision": args.precision,
        "harmonise": args.harmonise, "centre_column": args.centre_column,
    }
    return build_config(TrainConfig, args, flags)


def _say(line: str) -> None:
    """A line of a long step's progress (an epoch's numbers) on the terminal, or the job's log."""
    print(line, file=sys.stderr, flush=True)


def _cmd_train(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.runs.views import COHORT_NAMES, summary
    from crc_core.runs.store import OUT_OF_FOLD, RunStore
    from crc_core.training.grid import resume_job, train_grid

    workspace = Workspace(args.workspace)
    job_id = args.job.name if args.job else None
    if args.restart and not args.resume:
        raise CrcInputError("--restart starts an interrupted run again from epoch 0: name it with --resume RUN_ID.")
    if args.resume:
        run_ids = resume_job(workspace, args.resume, restart=args.restart, progress=progress, say=_say, job_id=job_id)
    else:
        run_ids = train_grid(workspace, train_config_from_flags(args), progress=progress, say=_say, job_id=job_id)
    store = RunStore(workspace)
    lines = []
    for run_id in run_ids:
        run = store.run(run_id)
        aucs = ", ".join(f"{COHORT_NAMES.get(cohort, cohort)} AUC {v['auc']:.3f}"
                         + (f" ± {v['sd']:.3f} ({v['n']} folds)" if v["n"] > 1 else "")
                         for cohort, v in summary(store, run_id).items() if cohort != OUT_OF_FOLD)
        weights = " [random initialisation]" if run.random_init else ""
        lines.append(f"{run.target} × {run.backbone} ({run.mode}): {aucs or 'no AUC'}{weights}")
    return StepOutcome(f"{len(run_ids)} run(s) done: " + "; ".join(lines), result={"run_ids": run_ids},
                       details=run_ids[-1:])


def _cmd_predict(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.evaluate.predict import PredictConfig, predict_cohort

    if args.config:
        configs = [build_config(PredictConfig, args, {"run_id": args.run_id})]
    else:
        if not args.run_id or not args.source:
            raise CrcInputError("Name the run (--run RUN_ID) and the other workspace (--from DIR), or give --config FILE.")
        names = args.cohort or [Path(s).name for s in args.source]
        if len(names) != len(args.source):
            raise CrcInputError(f"Give one --cohort per --from ({len(args.source)} folders, {len(names)} names).")
        configs = [PredictConfig(run_id=args.run_id, source=str(s), cohort=n) for s, n in zip(args.source, names)]
    lines = []
    for config in configs:
        table = predict_cohort(Workspace(args.workspace), config.run_id, Path(config.source), config.cohort, progress=progress)
        labelled = int(table["y_true"].notna().sum()) if "y_true" in table else 0
        lines.append(f"external:{config.cohort}: {len(table)} patients predicted ({labelled} with a label)")
    return StepOutcome(f"run {configs[0].run_id}: " + "; ".join(lines))


def _cmd_validation_size(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.evaluate import run_evaluation as me
    from crc_core.evaluate.external import events_needed, validation_size
    from crc_core.runs.store import RunStore
    from crc_core.workspace import atomic_write_csv

    if args.out.suffix.lower() != ".csv":
        raise CrcInputError(f"{args.out} should end in .csv.")
    from crc_core.reporting.report import check_output_folder

    check_output_folder(args.out.parent if str(args.out.parent) else Path("."))
    result = me.evaluate_run(RunStore(Workspace(args.workspace)), args.run_id)
    table = validation_size(result, cohort=args.cohort, threshold=args.threshold)
    atomic_write_csv(args.out, table)
    largest = table[table["criterion"] == "largest"].iloc[0]
    return StepOutcome(f"run {args.run_id}: an external validation needs {int(largest['n'])} patients "
                       f"({events_needed(largest['events'])} of the high class), from its {table['source_cohort'].iloc[0]} cohort; "
                       f"{len(table) - 1} criteria in {args.out}")


def _cmd_evaluate(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.evaluate.run_evaluation import evaluate_run, export_evaluation
    from crc_core.runs.store import RunStore

    result = evaluate_run(RunStore(Workspace(args.workspace)), args.run_id, threshold_rule=args.threshold,
                          ci_method=args.ci)
    written = export_evaluation(result, args.out)
    aucs = "; ".join(f"{c} AUC {m['auc']:.3f} ({m['auc_low']:.3f}-{m['auc_high']:.3f})" for c, m in result.metrics.items())
    return StepOutcome(f"{result.label}: {aucs or 'nothing to evaluate'}; {len(written)} files in {args.out}",
                       details=[f"note: {n}" for n in result.notes])


def _cmd_cam(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.evaluate.cam import CamConfig, cohort_maps, median, read_cohort_maps

    config = build_config(CamConfig, args, {"run_id": args.run_id, "cohort": args.cohort, "method": args.method,
                                             "target_class": args.target_class, "layer": args.layer})
    path = cohort_maps(Workspace(args.workspace), config.run_id, config.cohort, method=config.method,
                       target_class=config.target_class, layer=config.layer or None, progress=progress)
    maps = read_cohort_maps(path)
    import numpy as np

    return StepOutcome(
        f"{len(maps.patient_ids)} maps of the {config.cohort} cohort in {path}: median share inside the ROI "
        f"{median(maps.roi_share):.2f} (the ROI covers {np.median(maps.roi_area):.2f} of the crop); rank correlation "
        f"with {maps.meta.get('randomised', 'the learned top')} drawn at random {median(maps.sanity):.2f} (near 1: the "
        "maps do not depend on what the model learned)", result={"path": str(path)})


def _cmd_robustness(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.evaluate.robustness import (RobustnessConfig, comparison_sentence, keep_robustness, robustness, threshold_note,
                                     write_robustness)
    from crc_core.cohort.table1 import difference_text, p_words

    config = build_config(RobustnessConfig, args, {"run_id": args.run_id, "cohort": args.cohort,
                                                   "out": str(args.out) if args.out else None})
    if config.out:
        from crc_core.reporting.report import check_output_folder

        check_output_folder(Path(config.out))  # before minutes of cropping and scoring
    workspace = Workspace(args.workspace)
    result = robustness(workspace, config.run_id, config.cohort, progress=progress)
    keep_robustness(workspace, result)
    written = write_robustness(result, Path(config.out)) if config.out else []
    reader2 = result.summary.set_index("variant")
    # As the page says it: the difference from reader 1 with its CI first, p Holm-adjusted across
    # the ROIs, and the class changes only beside the note that may make them meaningless.
    lines = [f"{v}: AUC {r.auc:.3f}, difference from reader 1 {difference_text(r.auc_difference, r.difference_low, r.difference_high)}"
             f", Holm-adjusted {p_words(r.p_holm)}, ICC with reader 1 {r.icc:.3f}, {int(r.flips)} change class"
             for v, r in reader2.iterrows() if v != "reader1" and r.auc == r.auc]
    where = f"; {len(written)} files in {config.out}" if written else ""
    said = [sentence for sentence in (comparison_sentence(result), threshold_note(result)) if sentence]
    return StepOutcome(f"reader check of run {config.run_id}, {config.cohort} cohort: " + "; ".join(lines) + where,
                       details=[f"note: {n}" for n in [*said, *result.notes]])


def report_config_from_flags(args: argparse.Namespace):
    from crc_core.reporting.report import ReportConfig

    return build_config(ReportConfig, args, {
        "run_id": args.run_id, "out": str(args.out) if args.out else None, "threshold_rule": args.threshold,
        "ci_method": args.ci, "cohorts": _split_list(args.cohorts), "pseudonymise": True if args.pseudonymise else None,
    })


def _cmd_report(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.reporting.report import write_report

    config = report_config_from_flags(args)
    path = write_report(Workspace(args.workspace), config, progress=progress)
    size = path.stat().st_size / 1e6
    return StepOutcome(f"report of run {config.run_id} in {path} ({size:.1f} MB, opens offline)"
                       + ("; patient IDs pseudonymised" if config.pseudonymise else ""), result={"path": str(path)})


def _cmd_figures(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.reporting.report import write_figures

    config = report_config_from_flags(args)
    written = write_figures(Workspace(args.workspace), config, progress=progress)
    what = f"{config.out}" if len(written) == 1 else f"{len(written)} files in {config.out}"
    return StepOutcome(f"figures of run {config.run_id} as PNG and SVG: {what}"
                       + ("; patient IDs pseudonymised" if config.pseudonymise else ""), result={"path": str(config.out)})


def _cmd_runs(args: argparse.Namespace, progress: Progress | None) -> StepOutcome:
    from crc_core.runs.store import RunStore

    table = RunStore(Workspace(args.workspace)).table()
    if table.empty:
        return StepOutcome(f"no runs yet in {args.workspace}")
    return StepOutcome(table.drop(columns=["message"]).to_string(index=False))


# ---------------------------------------------------------------------------------------------
# Parser


def _print_progress(done: int, total: int, message: str = "") -> None:
    print(f"  {message or f'{done}/{total}'}", file=sys.stderr)


def _config_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help=f"JSON file of {what} settings (flags given as well override it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crc-time", description="CRC-TIME pipeline steps, headless, on a workspace folder.")
    parser.add_argument("--workspace", type=Path,
                        help="workspace folder (default: $CRC_TIME_WORKSPACE or ./workspace)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress")
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # set by crc_core.jobs
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    sample = steps.add_parser("sample", help="build the built-in sample cohort")
    sample.add_argument("--n", type=positive_int, help="patients (default 315; 120 for a --centre)")
    sample.add_argument("--centre", metavar="NAME", type=centre_name,
                        help="a second hospital's cohort instead: another scanner and case mix, all patients external "
                             "(without --workspace or --out: beside the default workspace, outside the program folder)")
    sample.add_argument("--seed", type=non_negative_int, help="random seed (default 0)")
    sample.add_argument("--out", type=Path, help="write here instead of --workspace")
    sample.add_argument("--no-images", action="store_true", help="tables only, no CT volumes")
    sample.add_argument("--replace", action="store_true", help="replace a cohort that is not the sample")
    _config_option(sample, "sample")
    sample.set_defaults(run=_cmd_sample)

    split = steps.add_parser("split", help="assign patients to training/validation (or k folds)")
    split.add_argument("--fraction", type=float, help="training share (default 0.7)")
    split.add_argument("--seed", type=non_negative_int, help="random seed (default 0)")
    split.add_argument("--stratify", metavar="COLUMN", help="keep this label's prevalence in both cohorts")
    split.add_argument("--kfold", type=int, choices=(5, 10), help="k-fold assignments instead of 7:3")
    split.add_argument("--column", help="take train/validation from this column of the tables as imported")
    _config_option(split, "split")
    split.set_defaults(run=_cmd_split)

    table1 = steps.add_parser("table1", help="Table 1 (baseline characteristics) to CSV, XLSX, MD or DOCX")
    table1.add_argument("--group", default="split", help="column with the two groups (default split)")
    table1.add_argument("--out", type=Path, required=True, help="output file; the format follows its suffix")
    table1.add_argument("--variables", help="comma-separated columns (default: the clinical table's)")
    table1.add_argument("--normality", choices=("ks", "shapiro"), help="normality test (default ks)")
    table1.add_argument("--unequal-variance", choices=("mann-whitney", "welch"),
                        help="normal data with unequal variances: Mann-Whitney (the paper, default) or Welch's t")
    table1.add_argument("--p-style", choices=("paper", "spss"), help="P values as 0.166 / < 0.001 (default) or .166 / .000")
    table1.add_argument("--smd", action="store_true", help="add standardised mean differences")
    _config_option(table1, "Table 1")
    table1.set_defaults(run=_cmd_table1)

    labels = steps.add_parser("labels", help="build TSR, TIL, Immune Score and TIME labels into labels.csv")
    labels.add_argument("--tsr-cutoff", type=float, help="TSR high above this %% (default 50)")
    labels.add_argument("--til-min-grade", type=int, help="TIL high from this grade (default 2)")
    labels.add_argument("--is-above", type=int, help="Immune Score high above this (default 2)")
    labels.add_argument("--time-min-score", type=int, help="TIME high from this score (default 2)")
    labels.add_argument("--resolution", choices=("max", "mean", "first", "consensus"),
                        help="two pathologists' readings: max (paper, default), mean, first, consensus")
    labels.add_argument("--is-source", choices=("train_median", "given", "is_column"),
                        help="marker cut-offs: training median (paper, default), given, or an is_score column")
    labels.add_argument("--marker-cutoff", action="append", metavar="MARKER=VALUE",
                        help="fixed cut-off for one marker, e.g. cd3_ca=450 (repeat for each)")
    labels.add_argument("--time-tsr-point", choices=("high", "low"),
                        help="which TSR level scores a TIME point (default high, the paper's reading)")
    _config_option(labels, "label")
    labels.set_defaults(run=_cmd_labels)

    prep = steps.add_parser("preprocess", help="crop every patient's largest ROI cross-section (PNG + array)")
    prep.add_argument("--intensity", choices=("abdomen", "soft_tissue", "zscore"),
                      help="HU window preset W400/L40 or W350/L50, or z-score in the ROI (default abdomen)")
    prep.add_argument("--window", type=_window, metavar="WIDTH/LEVEL", help="a custom HU window, e.g. 300/30")
    prep.add_argument("--in-plane-mm", type=float, help="resample the slice to this pixel size first")
    prep.add_argument("--margin", type=int, choices=(0, 10, 20), help="pixels around the ROI box (default 0)")
    prep.add_argument("--context", choices=("2d", "2.5d"), help="2.5d: neighbouring slices as channels")
    prep.add_argument("--mask-outside", action="store_true", help="set pixels outside the ROI to 0")
    prep.add_argument("--size", type=positive_int, help="model input size in pixels (default 224)")
    prep.add_argument("--label", type=int, help="the tumour's label value in the masks")
    prep.add_argument("--resample-mask", action="store_true", help="resample masks of another grid onto the image")
    prep.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    _config_option(prep, "preprocessing")
    prep.set_defaults(run=_cmd_preprocess)

    agree = steps.add_parser("agreement", help="two readers' ROIs: Dice, HD95, PyRadiomics features with ICC(2,1)")
    agree.add_argument("--no-features", action="store_true", help="Dice and HD95 only, no PyRadiomics")
    agree.add_argument("--label", type=int, help="the tumour's label value in the masks")
    agree.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    _config_option(agree, "reader agreement")
    agree.set_defaults(run=_cmd_agreement)

    train = steps.add_parser("train", help="train models (one run per target × backbone); prints the run id last")
    train.add_argument("--target", help="tsr, til, is or time; several separated by commas (default tsr)")
    train.add_argument("--backbone", help="resnet34/50/101/152, densenet121/169/201; several separated by commas")
    train.add_argument("--mode", choices=("features", "finetune", "radiomics"), help="default features (fast, CPU)")
    train.add_argument("--evaluation", choices=("holdout", "kfold", "repeated"), help="default holdout (the saved split)")
    train.add_argument("--folds", type=int, choices=(5, 10), help="k for kfold when the split has no folds (default 5)")
    train.add_argument("--repeats", type=positive_int, help="seeded random splits for repeated (default 20)")
    train.add_argument("--seed", type=non_negative_int, help="random seed (default 0)")
    train.add_argument("--weights", help="imagenet (default), random, or a checkpoint file")
    train.add_argument("--download-weights", action="store_true", help="download ImageNet weights when none are on disk")
    train.add_argument("--require-pretrained", action="store_true", help="refuse random initialisation")
    train.add_argument("--crop-key", help="the crop set to train on (default: the one in use)")
    train.add_argument("--allow-missing-crops", action="store_true", help="train on the labelled patients that have crops")
    train.add_argument("--epochs", type=positive_int, help="fine-tuning epochs (default 100, the paper)")
    train.add_argument("--batch-size", type=positive_int, help="default 32 (the paper)")
    train.add_argument("--lr", type=float, help="SGD learning rate (default 0.01, the paper)")
    train.add_argument("--schedule", choices=("cosine", "step", "constant"), help="learning-rate schedule (default cosine)")
    train.add_argument("--selection", choices=("validation_loss", "inner_split"),
                       help="choose the epoch on the validation cohort (the paper) or an inner split of training")
    train.add_argument("--early-stopping", type=non_negative_int, help="patience in epochs (default 0: off)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default auto")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default auto (measured on CPUs)")
    train.add_argument("--harmonise", choices=("none", "training", "transductive"),
                       help="ComBat across centres (features, radiomics): learned on the training patients, or transductive")
    train.add_argument("--centre-column", help="the clinical column naming each patient's centre (default centre)")
    train.add_argument("--resume", metavar="RUN_ID",
                       help="go on with a stopped or interrupted run from its last checkpoint, then train the runs of its "
                            "job that never started")
    train.add_argument("--restart", action="store_true",
                       help="with --resume: start the run's unfinished folds again from epoch 0 (when a checkpoint is lost)")
    _config_option(train, "training")
    train.set_defaults(run=_cmd_train)

    predict = steps.add_parser("predict", help="apply a finished run to other cohorts (their workspaces)")
    predict.add_argument("--run", dest="run_id", metavar="RUN_ID", help="the run to apply")
    predict.add_argument("--from", dest="source", action="append", metavar="DIR",
                         help="a workspace with the new patients' CT and masks (labels optional); repeat for several")
    predict.add_argument("--cohort", action="append", metavar="NAME",
                         help="the cohort's name in the run store (default: the folder's name); one per --from")
    _config_option(predict, "prediction")
    predict.set_defaults(run=_cmd_predict)

    size = steps.add_parser("validation-size", help="patients an external validation of a run's model needs (Riley 2021), CSV")
    size.add_argument("--run", dest="run_id", required=True, metavar="RUN_ID", help="the run")
    size.add_argument("--threshold", type=float, help="also the net benefit criterion at this threshold probability")
    size.add_argument("--cohort", help="the held-out cohort to start from: validation (default), cv or external:NAME")
    size.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    size.set_defaults(run=_cmd_validation_size)

    evaluate = steps.add_parser("evaluate", help="Table 2, calibration and figures of a run into a folder")
    evaluate.add_argument("--run", dest="run_id", required=True, metavar="RUN_ID", help="the run to evaluate")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.csv, predictions.csv and figures")
    evaluate.add_argument("--threshold", choices=("out_of_fold", "training", "per_cohort"), default="out_of_fold",
                          help="Youden on the training patients' out-of-fold scores applied to all (default; the fitted "
                               "training scores where a run keeps none), on the fitted training scores, or each cohort's "
                               "own (the paper's table)")
    evaluate.add_argument("--ci", choices=("delong", "bootstrap"), default="delong", help="AUC CI (default DeLong)")
    evaluate.set_defaults(run=_cmd_evaluate)

    cam = steps.add_parser("cam", help="Grad-CAM maps of a run's cohort, with ROI shares and the randomisation check")
    cam.add_argument("--run", dest="run_id", metavar="RUN_ID", help="the run to explain")
    cam.add_argument("--cohort", help="train, validation (default), cv or external:NAME")
    cam.add_argument("--method", choices=("gradcam", "gradcam++"), help="default gradcam")
    cam.add_argument("--target-class", type=int, choices=(0, 1), help="the class explained (default 1, high)")
    cam.add_argument("--layer", help="a layer's dotted name (default: the backbone's last convolutional block)")
    _config_option(cam, "Grad-CAM")
    cam.set_defaults(run=_cmd_cam)

    robust = steps.add_parser("robustness", help="the run's AUC and probabilities with reader 2's ROI and reader 1's "
                                                 "eroded or dilated by 1-2 px (CSV)")
    robust.add_argument("--run", dest="run_id", metavar="RUN_ID", help="the run to check")
    robust.add_argument("--cohort", help="validation (default), cv or external:NAME")
    robust.add_argument("--out", type=Path, help="folder for robustness.csv and robustness_summary.csv")
    _config_option(robust, "reader check")
    robust.set_defaults(run=_cmd_robustness)

    for name, text, out_help in (
        ("report", "one self-contained HTML report of a run, for a lab meeting (opens offline)", "the HTML file to write"),
        ("figures", "every figure of a run as PNG and SVG at publication size (a folder or .zip)",
         "a folder, or a file ending in .zip"),
    ):
        export = steps.add_parser(name, help=text)
        export.add_argument("--run", dest="run_id", metavar="RUN_ID", help="the run")
        export.add_argument("--out", type=Path, help=out_help)
        export.add_argument("--threshold", choices=("out_of_fold", "training", "per_cohort"),
                            help="Youden on the training patients' out-of-fold scores applied to all (default), on the "
                                 "fitted training scores, or each cohort's own (the paper's table)")
        export.add_argument("--ci", choices=("delong", "bootstrap"), help="AUC CI (default DeLong)")
        export.add_argument("--cohorts", help="the cohorts to show, separated by commas (default: every one)")
        export.add_argument("--pseudonymise", action="store_true", help="replace patient IDs by pseudonyms (Patient 017, …)")
        _config_option(export, f"{name}")
        export.set_defaults(run=_cmd_report if name == "report" else _cmd_figures)

    runs = steps.add_parser("runs", help="list the workspace's training runs")
    runs.set_defaults(run=_cmd_runs)

    info = steps.add_parser("info", help="show the workspace, its cohort size and split, and how far it has come")
    info.set_defaults(run=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.workspace_given = args.workspace is not None
    args.workspace = args.workspace if args.workspace_given else default_workspace_path()
    if args.step not in STEPS_THAT_MAKE_A_WORKSPACE and not Path(args.workspace).is_dir():
        print(f"crc-time: error: the workspace folder {args.workspace} does not exist; name an existing one with --workspace, "
              f"or build the sample there with `crc-time --workspace {args.workspace} sample`.", file=sys.stderr)
        return EXIT_BAD_INPUT
    reporter = None
    progress: Progress | None = _print_progress if args.verbose else None
    if args.job:
        from crc_core.jobs import JobReporter

        reporter = JobReporter(args.job, args.step)
        progress = reporter.progress
    try:
        outcome = args.run(args, progress)
    except CrcInputError as exc:
        if reporter:
            reporter.finish("failed", str(exc), getattr(exc, "result", None))
        print(f"crc-time: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException as exc:
        from crc_core.jobs import JobStopped

        stopped = isinstance(exc, JobStopped) or (isinstance(exc, KeyboardInterrupt) and reporter and reporter.stop_requested())
        if stopped:
            if reporter:
                reporter.finish("stopped", "stopped by the user; what was finished is kept")
            print("crc-time: stopped by the user", file=sys.stderr)
            return EXIT_STOPPED
        if reporter:
            reporter.finish("failed", f"unexpected error: {exc!r}")
        raise
    if reporter:
        reporter.finish("done", str(outcome), getattr(outcome, "result", None))
    print(outcome)
    for line in getattr(outcome, "details", ()):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
