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
    from crc_core.training.grid import TrainConfig, train_grid

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


def test_the_target_and_backbone_boxes_show_every_chip(training_workspace, use_workspace):
    # Found in use: directly in a column, Streamlit keeps chips on one scrolling row, so the
    # Targets box showed only the last one chosen.
    use_workspace(training_workspace)
    app = run_train_page()
    boxes = {m.label: m for m in app.multiselect}
    assert boxes["Targets"].proto.wrap and boxes["Backbones"].proto.wrap
    assert boxes["Targets"].options == ["TSR", "TIL", "IS", "TIME"]  # short chips; their meaning in the help
    assert "tumour-stroma ratio" in boxes["Targets"].help


def _running_finetune(workspace) -> str:
    """A fine-tune run as its worker writes it while training epoch 1 of 2 (this process beats for it)."""
    from crc_core.runs.store import RunStore
    from crc_core.training.grid import TrainConfig

    config = TrainConfig(mode="finetune", backbones=("resnet34",), **QUICK)
    store = RunStore(workspace)
    run_id = store.create_run(target="tsr", backbone="resnet34", mode="finetune", config=config.to_dict(),
                              info={"n_partitions": 1, "batches_per_epoch": 5, "batch_size": 8,
                                    "device": {"device": "cpu", "precision": "fp32"}})
    store.add_metrics(run_id, [("step", 1, 0, "train_loss", 0.7), ("step", 2, 0, "train_loss", 0.69)])
    return run_id


def metric(app, label):
    found = [m.value for m in app.metric if m.label == label]
    return found[0] if found else None


def test_the_live_view_counts_epochs_from_one_and_says_the_pace_once(training_workspace, use_workspace):
    import json
    import os
    import socket
    import time

    from crc_core.training.finetune import FinetuneConfig  # noqa: F401  (the fine-tune config the run carries)
    from crc_core.jobs import job_dir
    from crc_core.runs.store import RunStore

    use_workspace(training_workspace)
    run_id = _running_finetune(training_workspace)
    app = run_train_page()
    assert not app.exception, app.exception
    assert metric(app, "Epoch") == "1 of 100"  # the first epoch is in progress, not "0/100"
    # No job bar (a run resumed from a terminal): the time left and the speed are here.
    assert metric(app, "Time left") is not None and metric(app, "Images/s") is not None

    RunStore(training_workspace).add_metrics(run_id, [("epoch", 5, 0, "val_loss", 0.6), ("epoch", 5, 0, "seconds", 3.0),
                                                      ("epoch", 5, 0, "images_per_s", 9.5)])
    job_id = time.strftime("%Y%m%d-%H%M%S") + "-train-abc123"
    folder = job_dir(training_workspace, job_id)
    folder.mkdir(parents=True)
    now = time.time()
    (folder / "status.json").write_text(json.dumps({
        "job_id": job_id, "step": "train", "state": "running", "done": 10, "total": 1000, "started_at": now,
        "pid": os.getpid(), "host": socket.gethostname(), "heartbeat_at": now, "phase": "fine-tuning", "eta_s": 290.0,
        "message": "starting · fine-tuning · epoch 2 of 100 · batch 1 of 5 · 9.1 images/s · ETA 00:04:50"}))
    app = run_train_page()
    assert not app.exception, app.exception
    assert metric(app, "Epoch") == "2 of 100"
    # The job's bar says the time left and the speed: the view does not say them again.
    assert metric(app, "Time left") is None and metric(app, "Images/s") is None
    bars = app.get("progress")
    assert len(bars) == 1 and bars[0].proto.text.count("ETA") == 1 and bars[0].proto.text.count("images/s") == 1


def test_a_fine_tune_says_what_it_does_before_its_first_batch(training_workspace):
    pytest.importorskip("torch")
    from crc_core.training.finetune import FinetuneConfig
    from crc_core.jobs import JobStopped
    from crc_core.training.grid import TrainConfig, train_run

    said = []

    def listen(done, total, message=""):
        said.append(message)
        if "batch 1 of" in message:
            raise JobStopped("stopped by the user")  # one batch is enough to see

    with pytest.raises(JobStopped):
        train_run(training_workspace, TrainConfig(mode="finetune", backbones=("resnet34",),
                                                  finetune=FinetuneConfig(epochs=2, batch_size=8), **QUICK), progress=listen)
    assert said[:4] == ["starting · reading the labels, the split and the crops", "step 1 of 2 · starting · choosing the device",
                        "step 1 of 2 · starting · loading 48 crops into memory",
                        "step 2 of 2 · fine-tuning · building ResNet-34 and loading its weights"]
    batch = said[-1]
    assert batch.startswith("step 2 of 2 · fine-tuning · epoch 1 of 2 · batch 1 of ")
    assert batch.count("images/s") == 1 and batch.count("ETA") == 1 and batch.eta_s is not None
