"""How far a workspace has come: the cohort's size and split, and what each room has written.

Home, the sidebar and ``crc-time info`` all count here, from the same files, so they never
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from crc_core.errors import CrcInputError
from crc_core.imaging.preprocess import latest_crops
from crc_core.cohort.splits import SavedSplit, read_split
from crc_core.workspace import Workspace


@dataclass(frozen=True)
class CohortSummary:
    """Patients in the clinical table and the split every step uses (None: no split yet)."""

    patients: int
    split: SavedSplit | None

    @property
    def counts(self) -> dict[str, int]:
        return self.split.counts if self.split is not None else {}

    def describe(self) -> str:
        """``315 patients · 220 train / 95 validation``."""
        split = self.split.describe() if self.split is not None else "no split yet"
        return f"{self.patients} patients · {split}"


def cohort_summary(workspace: Workspace) -> CohortSummary:
    """The one count of a workspace; raises :class:`CrcInputError` when its tables are unusable."""
    workspace = Workspace.of(workspace)
    workspace.require_usable()
    return CohortSummary(len(workspace.read_clinical()), read_split(workspace))


@dataclass(frozen=True)
class StepStatus:
    """Whether one workflow step has written its output into the workspace."""

    step: str
    done: bool
    detail: str
    problem: str = ""  # a file that cannot be read, in words to show as an error


def _crop_status(workspace: Workspace) -> StepStatus:
    images = workspace.manifest_csv.exists()
    try:
        crops = latest_crops(workspace)
    except CrcInputError as exc:
        return StepStatus("CT & ROI", False, "the crop set in use is damaged", str(exc))
    if crops is None or crops.ok.empty:
        detail = "images listed in manifest.csv, not cropped yet" if images else "no images"
        return StepStatus("CT & ROI", False, detail)
    failed = len(crops.failed)
    detail = f"{len(crops.ok)} patients cropped ({crops.config.describe()})" + (f"; {failed} failed" if failed else "")
    return StepStatus("CT & ROI", True, detail)


def _run_status(workspace: Workspace) -> tuple[StepStatus, StepStatus]:
    """Train counts finished runs only (a run still training is not a result yet); a store that
    cannot be read is said, not counted."""
    from crc_core.runs.store import RunStore

    try:
        runs = RunStore(workspace).runs()
    except CrcInputError as exc:
        return (StepStatus("Train", False, "the run store cannot be read", str(exc)),
                StepStatus("Evaluate", False, "needs a readable run store"))
    done = [r for r in runs if r.done]
    running = sum(r.status == "running" for r in runs)
    detail = f"{len(done)} finished run(s)" if done else "no finished runs yet"
    if running:
        detail += f"; {running} training now"
    return (StepStatus("Train", bool(done), detail),
            StepStatus("Evaluate", bool(done), "reads the finished runs' predictions" if done else "needs a finished run"))


def workflow_status(workspace: Workspace) -> list[StepStatus]:
    """One row per workflow room, in order, saying what the workspace already holds."""
    workspace = Workspace.of(workspace)
    tables = [p.name for p in (workspace.clinical_csv, workspace.pathology_csv) if p.exists()]
    train, evaluate = _run_status(workspace)
    return [
        StepStatus("Cohort", len(tables) == 2, ", ".join(tables) or f"no tables in {workspace.root}"),
        StepStatus(
            "Labels",
            workspace.labels_csv.exists(),
            "labels.csv saved" if workspace.labels_csv.exists() else "labels not built yet",
        ),
        _crop_status(workspace),
        train,
        evaluate,
    ]
