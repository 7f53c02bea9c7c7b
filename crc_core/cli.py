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
