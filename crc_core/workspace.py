"""The workspace: one folder per project holding its tables, labels, crops, runs and exports.

Every page and CLI step reads what the step before it wrote here, so each can run on its own. All
writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crash or a
refused input never leaves half a file behind.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crc_core.errors import CrcInputError

#: Environment variable that points the dashboard and the CLI at another workspace.
WORKSPACE_ENV = "CRC_TIME_WORKSPACE"
#: The default workspace, relative to the directory the dashboard or CLI was started from.
DEFAULT_WORKSPACE = Path("workspace")

CLINICAL_CSV = "clinical.csv"
PATHOLOGY_CSV = "pathology.csv"
MANIFEST_CSV = "manifest.csv"
LABELS_CSV = "labels.csv"

REBUILD_HINT = "Rebuild the sample with `crc-time --workspace {root} sample` (or `make run`)."


def default_workspace_path() -> Path:
    """The workspace named by ``$CRC_TIME_WORKSPACE``, else ``./workspace``."""
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


@dataclass(frozen=True)
class Workspace:
    """Paths of one project's files. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def clinical_csv(self) -> Path:
        return self.root / CLINICAL_CSV

    @property
    def pathology_csv(self) -> Path:
        return self.root / PATHOLOGY_CSV

    @property
    def manifest_csv(self) -> Path:
        return self.root / MANIFEST_CSV

    @property
    def labels_csv(self) -> Path:
        return self.root / LABELS_CSV

    @property
    def crops_dir(self) -> Path:
        return self.root / "crops"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def problems(self) -> list[str]:
        """What is missing or damaged, in words a user can act on; empty when usable."""
        hint = REBUILD_HINT.format(root=self.root)
        if not self.root.exists():
            return [f"The workspace folder {self.root} does not exist. {hint}"]
        if not self.root.is_dir():
            return [f"The workspace {self.root} is a file, not a folder. {hint}"]
        found: list[str] = []
        for path in (self.clinical_csv, self.pathology_csv):
            if not path.exists():
                found.append(f"{path} is missing. {hint}")
                continue
            try:
                table = pd.read_csv(path)
            except Exception as exc:  # any parse failure means the file is damaged
                found.append(f"{path} cannot be read as a CSV table ({exc}). {hint}")
                continue
            if "patient_id" not in table.columns:
                found.append(f"{path} has no `patient_id` column. {hint}")
        return found

    def require_usable(self) -> None:
        """Raise :class:`CrcInputError` naming every problem, if there is any."""
        found = self.problems()
        if found:
            raise CrcInputError(" ".join(found))

    def read_clinical(self) -> pd.DataFrame:
        return read_table(self.clinical_csv, self.root)

    def read_pathology(self) -> pd.DataFrame:
        return read_table(self.pathology_csv, self.root)


def read_table(path: Path, root: Path) -> pd.DataFrame:
    """Read a workspace CSV, turning a missing or damaged file into a :class:`CrcInputError`."""
    hint = REBUILD_HINT.format(root=root)
    if not path.exists():
        raise CrcInputError(f"{path} is missing. {hint}")
    try:
        return pd.read_csv(path)
    except Exception as exc:
        raise CrcInputError(f"{path} cannot be read as a CSV table ({exc}). {hint}") from exc


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and prove it can be written; refuse with a clear message."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CrcInputError(
            f"Cannot write to the folder {path} ({exc.strerror or exc}). "
            "Choose a folder you can write to."
        ) from exc
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: Path, table: pd.DataFrame) -> Path:
    """Write a table as UTF-8 CSV with ``\\n`` line ends, so equal tables give equal bytes."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return atomic_write_text(path, buffer.getvalue())


@dataclass(frozen=True)
class StepStatus:
    """Whether one workflow step has written its output into the workspace."""

    step: str
    done: bool
    detail: str


def workflow_status(workspace: Workspace) -> list[StepStatus]:
    """One row per workflow room, in order, saying what the workspace already holds."""
    root = workspace.root
    tables = [p.name for p in (workspace.clinical_csv, workspace.pathology_csv) if p.exists()]
    images = workspace.manifest_csv.exists()
    crops = sorted(workspace.crops_dir.glob("*/")) if workspace.crops_dir.exists() else []
    runs = sorted(workspace.runs_dir.glob("*/")) if workspace.runs_dir.exists() else []
    return [
        StepStatus("Cohort", len(tables) == 2, ", ".join(tables) or f"no tables in {root}"),
        StepStatus(
            "Labels",
            workspace.labels_csv.exists(),
            "labels.csv saved" if workspace.labels_csv.exists() else "labels not built yet",
        ),
        StepStatus(
            "CT & ROI",
            bool(crops),
            f"{len(crops)} crop set(s)" if crops else ("images listed in manifest.csv, not cropped yet" if images else "no images"),
        ),
        StepStatus("Train", bool(runs), f"{len(runs)} run(s)" if runs else "no runs yet"),
        StepStatus("Evaluate", bool(runs), "reads the runs' predictions" if runs else "needs a run"),
    ]
