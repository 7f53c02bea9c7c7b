"""The ``crc-time`` command: one subcommand per pipeline step, on any workspace.

Every subcommand runs the same library code as the dashboard's pages. Bad input prints one line,
``crc-time: error: ...``, and exits with status 2 without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace, default_workspace_path

EXIT_BAD_INPUT = 2


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


Progress = Callable[[int, int], None]


def _cmd_sample(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.sample import SampleConfig, build_sample_workspace

    root = Path(args.out) if args.out else args.workspace
    config = SampleConfig(n_patients=args.n, seed=args.seed, with_images=not args.no_images)
    workspace = build_sample_workspace(root, config, progress=progress)
    clinical = workspace.read_clinical()
    counts = clinical["split"].value_counts()
    return (
        f"sample cohort written to {workspace.root}: {len(clinical)} patients "
        f"({counts.get('train', 0)} train / {counts.get('validation', 0)} validation)"
    )


def _cmd_info(args: argparse.Namespace, progress: Progress | None) -> str:
    workspace = Workspace(args.workspace)
    workspace.require_usable()
    clinical = workspace.read_clinical()
    lines = [f"workspace: {workspace.root.resolve()}", f"patients: {len(clinical)}"]
    if "split" in clinical.columns:
        for split, count in clinical["split"].value_counts().sort_index().items():
            lines.append(f"  {split}: {count}")
    return "\n".join(lines)


def _cmd_split(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.splits import config_from_cli, describe_split, split_workspace

    config = config_from_cli(fraction=args.fraction, seed=args.seed, stratify=args.stratify, kfold=args.kfold)
    split = split_workspace(Workspace(args.workspace), config)
    return f"split written to {Path(args.workspace) / 'split.csv'}: {describe_split(split)}"


def _cmd_table1(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.cohort import load_workspace_cohort
    from crc_core.stats import TableOneOptions, table_one
    from crc_core.table_export import export_table_one

    workspace = Workspace(args.workspace)
    cohort = load_workspace_cohort(workspace)
    variables = args.variables.split(",") if args.variables else clinical_variables(workspace, args.group)
    options = TableOneOptions(normality=args.normality, smd=args.smd)
    table = table_one(cohort, args.group, variables, options=options)
    path = export_table_one(table, args.out)
    tests = table.loc[table["test"].ne("") & table["test"].ne("none"), "test"].value_counts()
    used = ", ".join(f"{count} {test}" for test, count in tests.items())
    return f"Table 1 by {args.group} ({len(variables)} variables; {used}) written to {path}"


def clinical_variables(workspace: Workspace, group: str) -> list[str]:
    """Table 1's default rows: the clinical table's columns, without the ID and the group."""
    columns = workspace.read_clinical().columns
    return [c for c in columns if c not in ("patient_id", "split", "fold", group)]


def _cmd_labels(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.labels import LabelConfig, describe_labels, label_workspace

    settings: dict = {
        "tsr_cutoff_percent": args.tsr_cutoff,
        "til_high_min_grade": args.til_min_grade,
        "is_high_above": args.is_above,
        "time_high_min_score": args.time_min_score,
        "resolution": args.resolution,
        "is_cutoff_source": args.is_source,
        "time_tsr_point": args.time_tsr_point,
    }
    if args.marker_cutoff:
        settings["marker_cutoffs"] = dict(_marker_cutoff(text) for text in args.marker_cutoff)
        settings["is_cutoff_source"] = "given"
    result = label_workspace(Workspace(args.workspace), LabelConfig(**settings))
    warnings = "".join(f"\nwarning: {w}" for w in result.warnings)
    return f"labels written to {Path(args.workspace) / 'labels.csv'}: {describe_labels(result)}{warnings}"


def _cmd_preprocess(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.imaging import PreprocessConfig
    from crc_core.preprocess import preprocess_cohort

    window_width, window_level = (args.window or (400.0, 40.0))
    config = PreprocessConfig(
        intensity="custom" if args.window else args.intensity,
        window_width=window_width,
        window_level=window_level,
        in_plane_mm=args.in_plane_mm,
        margin_px=args.margin,
        context=args.context,
        mask_outside=args.mask_outside,
        size=args.size,
        label=args.label,
        resample_mask=args.resample_mask,
    )
    result = preprocess_cohort(Workspace(args.workspace), config, workers=args.workers, progress=progress)
    failures = "".join(f"\nfailed: {row.patient_id}: {row.message}" for row in result.failures.itertuples())
    return f"crops in {result.folder} ({config.describe()}): {result.summary()}{failures}"


def _cmd_agreement(args: argparse.Namespace, progress: Progress | None) -> str:
    from crc_core.reader_study import reader_agreement

    result = reader_agreement(Workspace(args.workspace), with_features=not args.no_features,
                              workers=args.workers, label=args.label, progress=progress)
    failures = "".join(f"\nfailed: {r.patient_id}: {r.message}" for r in result.masks.itertuples() if r.status != "ok")
    return f"agreement in {Path(args.workspace) / 'agreement'}: {result.summary()}{failures}"


def preprocess_arguments(config) -> list[str]:
    """The ``preprocess`` step's arguments for a :class:`~crc_core.imaging.PreprocessConfig`: how a
    page hands its form to the worker (the inverse of :func:`_cmd_preprocess`)."""
    arguments = ["--margin", str(config.margin_px), "--context", config.context, "--size", str(config.size)]
    if config.intensity == "custom":
        arguments += ["--window", f"{config.window_width:g}/{config.window_level:g}"]
    else:
        arguments += ["--intensity", config.intensity]
    if config.in_plane_mm:
        arguments += ["--in-plane-mm", f"{config.in_plane_mm:g}"]
    if config.mask_outside:
        arguments.append("--mask-outside")
    if config.label is not None:
        arguments += ["--label", str(config.label)]
    if config.resample_mask:
        arguments.append("--resample-mask")
    return arguments


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


def _print_progress(done: int, total: int) -> None:
    print(f"  {done}/{total}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crc-time",
        description="CRC-TIME pipeline steps, headless, on a workspace folder.",
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        default=default_workspace_path(),
        help="workspace folder (default: $CRC_TIME_WORKSPACE or ./workspace)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress")
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)  # set by crc_core.jobs
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    sample = steps.add_parser("sample", help="build the built-in sample cohort")
    sample.add_argument("--n", type=positive_int, default=315, help="patients (default 315)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    sample.add_argument("--out", type=Path, help="write here instead of --workspace")
    sample.add_argument("--no-images", action="store_true", help="tables only, no CT volumes")
    sample.set_defaults(run=_cmd_sample)

    split = steps.add_parser("split", help="assign patients to training/validation (or k folds)")
    split.add_argument("--fraction", type=float, default=0.7, help="training share (default 0.7)")
    split.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    split.add_argument("--stratify", metavar="COLUMN", help="keep this label's prevalence in both cohorts")
    split.add_argument("--kfold", type=int, choices=(5, 10), help="k-fold assignments instead of 7:3")
    split.set_defaults(run=_cmd_split)

    table1 = steps.add_parser("table1", help="Table 1 (baseline characteristics) to CSV, XLSX, MD or DOCX")
    table1.add_argument("--group", default="split", help="column with the two groups (default split)")
    table1.add_argument("--out", type=Path, required=True, help="output file; the format follows its suffix")
    table1.add_argument("--variables", help="comma-separated columns (default: the clinical table's)")
    table1.add_argument("--normality", choices=("ks", "shapiro"), default="ks", help="normality test (default ks)")
    table1.add_argument("--smd", action="store_true", help="add standardised mean differences")
    table1.set_defaults(run=_cmd_table1)

    labels = steps.add_parser("labels", help="build TSR, TIL, Immune Score and TIME labels into labels.csv")
    labels.add_argument("--tsr-cutoff", type=float, default=50.0, help="TSR high above this %% (default 50)")
    labels.add_argument("--til-min-grade", type=int, default=2, help="TIL high from this grade (default 2)")
    labels.add_argument("--is-above", type=int, default=2, help="Immune Score high above this (default 2)")
    labels.add_argument("--time-min-score", type=int, default=2, help="TIME high from this score (default 2)")
    labels.add_argument("--resolution", choices=("max", "mean", "first", "consensus"), default="max",
                        help="two pathologists' readings: max (paper), mean, first, consensus")
    labels.add_argument("--is-source", choices=("train_median", "given", "is_column"), default="train_median",
                        help="marker cut-offs: training median (paper), given, or an is_score column")
    labels.add_argument("--marker-cutoff", action="append", metavar="MARKER=VALUE",
                        help="fixed cut-off for one marker, e.g. cd3_ca=450 (repeat for each)")
    labels.add_argument("--time-tsr-point", choices=("high", "low"), default="high",
                        help="which TSR level scores a TIME point (default high, the paper's reading)")
    labels.set_defaults(run=_cmd_labels)

    prep = steps.add_parser("preprocess", help="crop every patient's largest ROI cross-section (PNG + array)")
    prep.add_argument("--intensity", choices=("abdomen", "soft_tissue", "zscore"), default="abdomen",
                      help="HU window preset W400/L40 or W350/L50, or z-score in the ROI (default abdomen)")
    prep.add_argument("--window", type=_window, metavar="WIDTH/LEVEL", help="a custom HU window, e.g. 300/30")
    prep.add_argument("--in-plane-mm", type=float, help="resample the slice to this pixel size first")
    prep.add_argument("--margin", type=int, choices=(0, 10, 20), default=0, help="pixels around the ROI box")
    prep.add_argument("--context", choices=("2d", "2.5d"), default="2d", help="2.5d: neighbouring slices as channels")
    prep.add_argument("--mask-outside", action="store_true", help="set pixels outside the ROI to 0")
    prep.add_argument("--size", type=positive_int, default=224, help="model input size in pixels (default 224)")
    prep.add_argument("--label", type=int, help="the tumour's label value in the masks")
    prep.add_argument("--resample-mask", action="store_true", help="resample masks of another grid onto the image")
    prep.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    prep.set_defaults(run=_cmd_preprocess)

    agree = steps.add_parser("agreement", help="two readers' ROIs: Dice, HD95, PyRadiomics features with ICC(2,1)")
    agree.add_argument("--no-features", action="store_true", help="Dice and HD95 only, no PyRadiomics")
    agree.add_argument("--label", type=int, help="the tumour's label value in the masks")
    agree.add_argument("--workers", type=positive_int, help="processes (default: all cores)")
    agree.set_defaults(run=_cmd_agreement)

    info = steps.add_parser("info", help="show the workspace and its cohort size")
    info.set_defaults(run=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = None
    progress: Progress | None = _print_progress if args.verbose else None
    if args.job:
        from crc_core.jobs import JobReporter

        reporter = JobReporter(args.job, args.step)
        progress = reporter.progress
    try:
        summary = args.run(args, progress)
    except CrcInputError as exc:
        if reporter:
            reporter.finish("failed", str(exc))
        print(f"crc-time: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException as exc:
        if reporter:
            reporter.finish("failed", f"unexpected error: {exc!r}")
        raise
    if reporter:
        reporter.finish("done", summary)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
