"""The Train page's own views, in AppTest on the page file: Resume of a job of several runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(weights="random", device="cpu", precision="fp32")


def run_train_page() -> AppTest:
    return AppTest.from_file(str(REPO_ROOT / "pages" / "train.py"), default_timeout=60).run()


def test_resume_names_the_runs_of_a_stopped_job_that_never_started(training_workspace, use_workspace):
    pytest.importorskip("torch")
    from crc_core.jobs import JobStopped
    from crc_core.training import TrainConfig, train_grid

    def stop_in_the_first_run(done, total, message=""):
        if "(1 of 2)" in message and "fitting" in message:
            raise JobStopped("stopped by the user")

    with pytest.raises(JobStopped):
        train_grid(training_workspace, TrainConfig(targets=("tsr", "til"), backbones=("resnet34",), **QUICK),
                   progress=stop_in_the_first_run)
    use_workspace(training_workspace)
    app = run_train_page()
    assert not app.exception, app.exception
    said = [i.value for i in app.info]
    assert any("is stopped" in s and "then trains the 1 run of this job that never started: TIL × ResNet-34" in s
               for s in said), said
    assert [b for b in app.button if b.label == "Resume"]
