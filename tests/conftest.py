"""Shared fixtures: one sample workspace per test session, built by the real generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crc_core.workspace import WORKSPACE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def sample_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 315-patient sample cohort with images, built once; tests must not modify it."""
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    root = tmp_path_factory.mktemp("sample") / "workspace"
    build_sample_workspace(root, SampleConfig())
    return root


@pytest.fixture
def writable_workspace(sample_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the sample workspace's tables for tests that write into it."""
    root = tmp_path / "workspace"
    shutil.copytree(sample_workspace, root, ignore=shutil.ignore_patterns("images", "masks"))
    return root


@pytest.fixture
def use_workspace(monkeypatch: pytest.MonkeyPatch):
    """Point pages and the CLI at a workspace the way a user does: through the environment."""

    def _use(root: Path) -> Path:
        monkeypatch.setenv(WORKSPACE_ENV, str(root))
        return root

    return _use


@pytest.fixture
def imaging_workspace(sample_workspace: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample's tables whose images and masks link to the sample's (read
    only), for tests that write crops."""
    root = tmp_path / "imaging-workspace"
    shutil.copytree(sample_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "crops", "jobs"))
    for folder in ("images", "masks"):
        (root / folder).symlink_to(sample_workspace / folder, target_is_directory=True)
    return root


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dashboard's remembered workspace goes to a folder of the test's own, never ~/.local."""
    from crc_core.workspace import STATE_DIR_ENV

    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv(STATE_DIR_ENV, str(folder))
    return folder


@pytest.fixture(scope="session")
def small_training_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 sample patients with labels, the paper's 7:3 split and 32-px crops: enough to train on
    in seconds. Tests that write copy it (:func:`training_workspace`)."""
    from crc_core.imaging.volumes import PreprocessConfig
    from crc_core.labels.rules import label_workspace
    from crc_core.imaging.preprocess import preprocess_cohort
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    root = tmp_path_factory.mktemp("training") / "workspace"
    build_sample_workspace(root, SampleConfig(n_patients=48, workers=1))
    label_workspace(root)
    preprocess_cohort(root, PreprocessConfig(size=32), workers=1)
    return root


@pytest.fixture
def training_workspace(small_training_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the small training workspace (its volumes linked, read only)."""
    root = tmp_path / "training"
    shutil.copytree(small_training_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "runs", "features", "jobs"))
    for folder in ("images", "masks"):
        (root / folder).symlink_to(small_training_workspace / folder, target_is_directory=True)
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The browser walk is slow by nature: `make test-fast` (-m "not slow") leaves it out with
    # the other slow tests, without each browser test having to say so.
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
