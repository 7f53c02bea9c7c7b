"""The workspace: one folder per project holding its tables, labels, crops, runs and exports.

:class:`Workspace` names every file and folder of the layout, so no other module spells a file
name. Every page and CLI step reads what the step before it wrote here, so each can run on its own.
All writes are atomic (a temporary file in the same folder, then ``os.replace``), so a crash or a
refused input never leaves half a file behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crc_core.errors import CrcInputError

#: Environment variable that points the dashboard and the CLI at another workspace.
WORKSPACE_ENV = "CRC_TIME_WORKSPACE"
#: The default workspace, relative to the directory the dashboard or CLI was started from.
DEFAULT_WORKSPACE = Path("workspace")


#: Where the dashboard remembers the last workspace used (default ``~/.local/state/crc-time``).
STATE_DIR_ENV = "CRC_TIME_STATE_DIR"


def default_workspace_path() -> Path:
    """The workspace named by ``$CRC_TIME_WORKSPACE``, else ``./workspace``."""
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


def program_folder() -> Path | None:
    """The CRC-TIME checkout this code runs from (the folder holding ``crc_core/``, a git checkout
    or a source tree with ``pyproject.toml``), or None for an installed package. Data built for the
    user (a second centre) belongs outside it, where git and an update of the code never see it."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / ".git").exists() or (root / "pyproject.toml").exists() else None


def lies_within(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or inside it, after resolving links and ``..``."""
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents


def state_dir() -> Path:
    """The dashboard's own small memory on this machine (the last workspace, CPU measurements)."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".local" / "state" / "crc-time")


def _state_file() -> Path:
    return state_dir() / "last_workspace.json"


def remember_workspace(path: Path | str) -> None:
    """Note the workspace a user chose, so a new tab or a restart opens it again. Best effort:
    a read-only home folder must not break the dashboard."""
    try:
        atomic_write_text(_state_file(), json.dumps({"workspace": str(Path(path).resolve())}))
    except OSError:
        pass


def remembered_workspace() -> Path | None:
    """The last workspace chosen in the dashboard, if it still exists."""
    try:
        chosen = Path(json.loads(_state_file().read_text(encoding="utf-8"))["workspace"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return chosen if chosen.is_dir() else None


def start_workspace_path() -> Path:
    """Where the dashboard opens without ``?workspace=`` in the URL: ``$CRC_TIME_WORKSPACE`` when
    set (the user named it at start), else the last workspace chosen, else ``./workspace``."""
    if os.environ.get(WORKSPACE_ENV):
        return Path(os.environ[WORKSPACE_ENV])
    return remembered_workspace() or DEFAULT_WORKSPACE


@dataclass(frozen=True)
class Workspace:
    """Paths of one project's files. Creating the object touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, workspace: "Workspace | Path | str") -> "Workspace":
        return workspace if isinstance(workspace, Workspace) else cls(Path(workspace))

    # Tables: the cohort as imported, and what the Cohort and Labels steps derive from it.
    @property
    def clinical_csv(self) -> Path:
        return self.root / "clinical.csv"

    @property
    def pathology_csv(self) -> Path:
        return self.root / "pathology.csv"

    @property
    def column_mapping_json(self) -> Path:
        return self.root / "column_mapping.json"

    @property
    def split_csv(self) -> Path:
        return self.root / "split.csv"

    @property
    def split_json(self) -> Path:
        return self.root / "split.json"

    @property
    def labels_csv(self) -> Path:
        return self.root / "labels.csv"

    @property
    def labels_json(self) -> Path:
        return self.root / "labels.json"

    @property
    def sample_json(self) -> Path:
        """Present only in a workspace built by ``crc-time sample``."""
        return self.root / "sample.json"

    # Imaging: the manifest of volumes and masks, the crops and the reader study.
    @property
    def manifest_csv(self) -> Path:
        return self.root / "manifest.csv"

    @property
    def imaging_dir(self) -> Path:
        """Where uploaded imaging zips are unpacked."""
        return self.root / "imaging"

    @property
    def crops_dir(self) -> Path:
        return self.root / "crops"

    @property
    def crops_pointer(self) -> Path:
        """Names the crop set the later steps use."""
        return self.crops_dir / "latest.json"

    @property
    def agreement_dir(self) -> Path:
        return self.root / "agreement"

    # Long work and its results.
    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def features_dir(self) -> Path:
        """Cached deep and radiomics features, per backbone, weights and crop set."""
        return self.root / "features"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def folds_dir(self) -> Path:
        """k-fold assignments saved for the split (see :func:`crc_core.cohort.splits.kfold_assignment`)."""
        return self.root / "folds"

    @property
    def derived_from_tables(self) -> tuple[Path, ...]:
        """What the split, labels and crop choice made from the tables: removed when the tables
        are replaced, so that nothing of the old cohort is taken for the new one."""
        return (
            self.column_mapping_json, self.split_csv, self.split_json, self.labels_csv,
            self.labels_json, self.crops_pointer, self.sample_json, *self.saved_folds(),
        )

    def saved_folds(self) -> list[Path]:
        """The k-fold assignments saved for the old cohort's split (``folds/*.csv``): drawn on its
        patients, they would only be redrawn, with a list of every patient "added and removed"."""
        return sorted(self.folds_dir.glob("*.csv")) if self.folds_dir.is_dir() else []

    @property
    def is_sample(self) -> bool:
        return self.sample_json.exists()

    def holds_cohort(self) -> bool:
        return self.clinical_csv.exists() or self.pathology_csv.exists()

    # Problems, in words a user can act on.
    def sample_hint(self) -> str:
        return f"Rebuild the sample with `crc-time --workspace {self.root} sample` (or `make run`)."

    def fix_hint(self) -> str:
        """What to do about a missing or damaged table: the sample is rebuilt, a user's own
        tables are imported again."""
        if self.is_sample:
            return self.sample_hint()
        return "Fix the file, or import the tables again on the Cohort page."

    def problems(self) -> list[str]:
        """What is missing or damaged; empty when the tables can be used."""
        if not self.root.exists():
            return [
                f"The workspace folder {self.root} does not exist. Import your tables on the Cohort "
                f"page, or build the sample cohort there with `crc-time --workspace {self.root} sample`."
            ]
        if not self.root.is_dir():
            return [f"The workspace {self.root} is a file, not a folder. Choose a folder in the sidebar."]
        if not self.holds_cohort():
            return [
                f"The folder {self.root} holds no cohort yet (no clinical.csv or pathology.csv). Import "
                f"your tables on the Cohort page, or build the sample there with "
                f"`crc-time --workspace {self.root} sample`."
            ]
        found: list[str] = []
        for path in (self.clinical_csv, self.pathology_csv):
            try:
                self.read_table(path)
            except CrcInputError as exc:
                found.append(str(exc))
        return found

    def require_usable(self) -> None:
        """Raise :class:`CrcInputError` naming every problem, if there is any."""
        found = self.problems()
        if found:
            raise CrcInputError(" ".join(found))

    def read_table(self, path: Path) -> pd.DataFrame:
        """A workspace table (``patient_id`` first-class, numbers typed), read by the one table
        reader of :mod:`crc_core.tables`; a missing or damaged file is named with the fix."""
        from crc_core.tables import read_id_table

        if not path.exists():
            raise CrcInputError(f"{path} is missing. {self.fix_hint()}")
        try:
            return read_id_table(path)
        except CrcInputError as exc:
            raise CrcInputError(f"{exc} {self.fix_hint()}") from exc

    def read_clinical(self) -> pd.DataFrame:
        return self.read_table(self.clinical_csv)

    def read_pathology(self) -> pd.DataFrame:
        return self.read_table(self.pathology_csv)

    def remove_derived(self) -> list[Path]:
        """Delete what was derived from the tables (see :attr:`derived_from_tables`)."""
        removed = []
        for path in self.derived_from_tables:
            if path.exists():
                path.unlink()
                removed.append(path)
        return removed


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


def check_writable_dir(path: Path) -> Path:
    """Prove that ``path`` can be written into, or made and written, while making nothing: a step
    checks where it will write before its work, and a refusal later on (an unknown run, a bad
    setting) must not leave empty folders behind. The folder is made when the first file is
    written (the atomic writers make their parents)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CrcInputError(f"Cannot write to the folder {path}: {existing} is a file, not a folder. "
                            "Choose a folder you can write to.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CrcInputError(
            f"Cannot write to the folder {path} ({exc.strerror or exc}). Choose a folder you can write to."
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


def replace_folder(target: Path, build) -> Path:
    """Build a folder's new content in a scratch folder beside it (``build(scratch)``), then swap
    it in whole, so readers see the old content or the new, never a mix of both."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        build(scratch)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(scratch, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target
