"""Training runs end to end on a small sample (48 patients, 32-px crops): the fast mode, the
evaluations, a real short fine-tune, kill -9 and resume, DDP with gloo, and every refusal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from crc_core.cli import main as cli_main  # noqa: E402
from crc_core.training.datasets import labelled_crops  # noqa: E402
from crc_core.errors import CrcInputError  # noqa: E402
from crc_core.training.finetune import FinetuneConfig  # noqa: E402
from crc_core.runs.store import NO_FOLD, OUT_OF_FOLD, RunStore  # noqa: E402
from crc_core.training.grid import TrainConfig, train_grid, train_run  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(weights="random", device="cpu", precision="fp32")
FINETUNE = dict(mode="finetune", backbones=("resnet34",), finetune=FinetuneConfig(epochs=2, batch_size=8), **QUICK)


def test_features_mode_grid_makes_a_run_per_cell_with_predictions_for_both_cohorts(training_workspace):
    config = TrainConfig(targets=("tsr", "til"), backbones=("resnet34",), **QUICK)
    run_ids = train_grid(training_workspace, config)
    store = RunStore(training_workspace)
    assert [store.run(r).target for r in run_ids] == ["tsr", "til"]
    split = pd.read_csv(training_workspace / "clinical.csv").set_index("patient_id")["split"]
    for run_id in run_ids:
        run = store.run(run_id)
        assert run.status == "done" and run.random_init and "Random initialisation" in run.message
        assert run.info["crop_key"] and run.info["labels_hash"] and run.info["split_hash"] and run.info["code_version"]
        predictions = store.predictions(run_id)
        for cohort, split_name in (("train", "train"), ("validation", "validation"), (OUT_OF_FOLD, "train")):
            patients = predictions.loc[predictions["cohort"] == cohort, "patient_id"]
            assert set(split[patients]) == {split_name}
        assert predictions["prob"].between(0, 1).all()
        assert (training_workspace / "runs" / run_id / "model.json").exists()
    # Features are computed once per backbone × crop set: the second target came from the cache.
    assert [store.run(r).info["features_cached"] for r in run_ids] == [False, True]


def test_the_same_seed_gives_the_same_predictions(training_workspace):
    config = TrainConfig(targets=("is",), backbones=("densenet121",), **QUICK)
    first, second = (train_run(training_workspace, config) for _ in range(2))
    store = RunStore(training_workspace)
    a, b = store.predictions(first), store.predictions(second)
    np.testing.assert_array_equal(a["prob"].to_numpy(), b["prob"].to_numpy())
    other = train_run(training_workspace, TrainConfig(targets=("is",), backbones=("densenet121",), seed=5, **QUICK))
    assert not np.array_equal(store.predictions(other)["prob"].to_numpy(), a["prob"].to_numpy())


def test_cross_validation_predicts_every_patient_once_and_records_its_folds_first(training_workspace):
    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), evaluation="kfold", n_folds=5, **QUICK))
    store = RunStore(training_workspace)
    predictions = store.predictions(run_id, "cv")
    assert sorted(predictions["fold"].unique()) == [0, 1, 2, 3, 4]
    assert not predictions["patient_id"].duplicated().any() and len(predictions) == 48
    recorded = json.loads((training_workspace / "runs" / run_id / "partitions.json").read_text())
    for part in recorded["partitions"]:
        assert not set(part["train"]) & set(part["cv"])
        assert set(predictions.loc[predictions["fold"] == part["fold"], "patient_id"]) == set(part["cv"])
    from crc_core.runs.views import summary

    assert summary(store, run_id)["cv"]["n"] == 5


def test_repeated_splits_are_seeded_and_fixed(training_workspace):
    config = TrainConfig(backbones=("resnet34",), evaluation="repeated", n_repeats=3, **QUICK)
    first = train_run(training_workspace, config)
    second = train_run(training_workspace, config)
    parts = [json.loads((training_workspace / "runs" / r / "partitions.json").read_text())["partitions"] for r in (first, second)]
    assert parts[0] == parts[1] and len(parts[0]) == 3
    assert parts[0][0]["repeat"] != parts[0][1]["repeat"]  # each repeat its own split
    assert len(parts[0][0]["repeat"]) == 15  # scikit-learn: 33 = floor(0.7 × 48) to training, 15 held out


def test_a_short_real_finetune_keeps_the_best_epoch_and_logs_every_step(training_workspace):
    run_id = train_run(training_workspace, TrainConfig(**FINETUNE))
    store = RunStore(training_workspace)
    run = store.run(run_id)
    assert run.status == "done" and run.info["device"]["device"] == "cpu"
    folder = training_workspace / "runs" / run_id
    assert (folder / "best.pt").exists() and (folder / "last.pt").exists()
    metrics = store.metrics([run_id])
    epochs = metrics[metrics["scope"] == "epoch"]
    assert sorted(epochs.loc[epochs["name"] == "val_loss", "epoch"]) == [0, 1]
    assert (metrics["scope"] == "step").sum() == 2 * int(np.ceil(len(store.predictions(run_id, "train")) / 8))
    assert set(store.predictions(run_id)["cohort"]) == {"train", "validation"}
    assert "validation cohort" in run.info["selection_note"]
    again = train_run(training_workspace, TrainConfig(**FINETUNE))
    np.testing.assert_allclose(store.predictions(again)["prob"], store.predictions(run_id)["prob"], atol=1e-6)


def _start_and_kill(workspace: Path, epochs: int = 6) -> str:
    """A fine-tune started by the CLI and killed with -9 in the middle of an epoch after its first
    checkpoint: its run id."""
    command = [sys.executable, "-m", "crc_core.cli", "--workspace", str(workspace), "train", "--mode", "finetune",
               "--backbone", "resnet34", "--weights", "random", "--epochs", str(epochs), "--batch-size", "8", "--device", "cpu",
               "--precision", "fp32"]
    worker = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    store = RunStore(workspace)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = store.runs()
        # After the first checkpoint, and within the next epoch (some of its steps stored).
        if runs and (workspace / "runs" / runs[0].run_id / "last.pt").exists():
            steps = store.metrics([runs[0].run_id], "step")
            if len(steps) and steps["epoch"].max() >= 1:
                break
        time.sleep(0.05)
    else:
        worker.kill()
        pytest.fail(f"no checkpoint appeared: {worker.stdout.read()}")
    os.kill(worker.pid, signal.SIGKILL)
    output = worker.communicate()[0].decode()
    assert "epoch 1/" in output and "selection AUC" in output and "ETA" in output  # the terminal hears every epoch
    return runs[0].run_id


def test_kill_minus_nine_then_resume_from_the_last_checkpoint(training_workspace):
    run_id = _start_and_kill(training_workspace)
    store = RunStore(training_workspace)
    assert store.run(run_id).status == "interrupted"
    assert f"--resume {run_id}" in store.run(run_id).message
    resumed_at = time.time()
    assert cli_main(["--workspace", str(training_workspace), "train", "--resume", run_id]) == 0
    run = store.run(run_id)
    assert run.status == "done"
    epochs = store.metrics([run_id], "epoch")
    assert sorted(epochs.loc[epochs["name"] == "val_loss", "epoch"]) == [0, 1, 2, 3, 4, 5]  # none twice, none lost
    steps = store.metrics([run_id], "step")
    per_epoch = steps.groupby("epoch")["step"].agg(["size", "min", "max"])
    batches = int(per_epoch["size"].iloc[0])
    # Every step once, numbered on from epoch to epoch: the interrupted epoch's rows were replaced.
    assert per_epoch["size"].tolist() == [batches] * 6
    assert sorted(steps["step"]) == list(range(1, 6 * batches + 1)) and (steps["fold"] == NO_FOLD).all()
    checkpoint_epoch = int(epochs.loc[epochs["at"] < resumed_at, "epoch"].max())
    assert (steps.loc[steps["epoch"] > checkpoint_epoch, "at"] > resumed_at).all()


def test_a_lost_or_damaged_checkpoint_is_said_and_a_fresh_start_is_asked_for(training_workspace):
    run_id = _start_and_kill(training_workspace)
    store = RunStore(training_workspace)
    last = training_workspace / "runs" / run_id / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # cut off, as a full disk leaves it
    with pytest.raises(CrcInputError, match=r"The checkpoint .*last\.pt is damaged .* Start the run again from epoch 0"):
        train_run(training_workspace, None, resume=run_id)
    assert store.run(run_id).status == "interrupted"  # refused, not marked failed
    last.unlink()
    with pytest.raises(CrcInputError, match=r"The checkpoint last\.pt of run .* is gone, so its \d epoch\(s\) cannot be gone on"):
        train_run(training_workspace, None, resume=run_id)
    assert train_run(training_workspace, None, resume=run_id, restart=True) == run_id
    epochs = store.metrics([run_id], "epoch")
    assert sorted(epochs.loc[epochs["name"] == "val_loss", "epoch"]) == [0, 1, 2, 3, 4, 5]
    assert not store.metrics([run_id], "step")[["epoch", "step"]].duplicated().any()


def test_ddp_with_gloo_on_two_cpu_processes(training_workspace):
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "crc_core.cli", "--workspace", str(training_workspace), "train",
         "--mode", "finetune", "--backbone", "resnet34", "--weights", "random", "--epochs", "1", "--batch-size", "8",
         "--device", "cpu", "--precision", "fp32"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    runs = RunStore(training_workspace).runs()
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].info["world_size"] == 2
    assert result.stdout.strip().splitlines()[-1] == runs[0].run_id


def test_the_cli_prints_the_run_id_last(training_workspace, capsys):
    assert cli_main(["--workspace", str(training_workspace), "train", "--backbone", "resnet34", "--weights", "random"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == RunStore(training_workspace).runs()[0].run_id
    assert "validation AUC" in out[0] and "[random initialisation]" in out[0]


# ---------------------------------------------------------------------------------------------
# Bad input: a clear message, the run marked, nothing else lost


def test_bad_input_is_refused_before_a_run_is_written(training_workspace, tmp_path):
    """No labels, no crops, one class, an unknown crop set, a weights file that is not one: each
    refused by name, and neither a run row nor a run folder is left behind."""
    runs = training_workspace / "runs"

    def refused(match: str, config: TrainConfig) -> None:
        with pytest.raises(CrcInputError, match=match):
            train_run(training_workspace, config)
        assert RunStore(training_workspace).runs() == [] and not any(p.is_dir() for p in runs.glob("*"))

    refused(r"There is no crop set 'nope'", TrainConfig(crop_key="nope", **QUICK))
    (tmp_path / "weights.pt").write_bytes(b"not weights")
    refused(r"weights\.pt cannot be read as PyTorch weights", TrainConfig(**{**QUICK, "weights": str(tmp_path / "weights.pt")}))
    import torch

    from crc_core.networks.backbones import classifier

    torch.save(classifier("resnet50", weights="random")[0].state_dict(), tmp_path / "resnet50.pt")
    refused(r"holds ResNet-50 weights, not ResNet-34",
            TrainConfig(**{**QUICK, "backbones": ("resnet34",), "weights": str(tmp_path / "resnet50.pt")}))
    labels = pd.read_csv(training_workspace / "labels.csv")
    labels["tsr_high"] = 1
    labels.to_csv(training_workspace / "labels.csv", index=False)
    refused(r"one class only for tsr_high \(0 low, \d+ high\)", TrainConfig(**QUICK))
    (training_workspace / "labels.csv").unlink()
    refused(r"No labels yet", TrainConfig(**QUICK))


def test_few_patients_in_a_class_is_a_warning(training_workspace):
    labels = pd.read_csv(training_workspace / "labels.csv")
    high = labels.index[labels["til_high"] == 1]
    labels.loc[high[6:], "til_high"] = 0
    labels.to_csv(training_workspace / "labels.csv", index=False)
    data = labelled_crops(training_workspace, "til")
    assert any("unreliable" in w for w in data.warnings)


def test_labelled_patients_without_crops_are_listed_and_trained_around_only_when_asked(training_workspace):
    from crc_core.imaging.preprocess import latest_crops

    index_path = latest_crops(training_workspace).folder / "index.csv"
    index = pd.read_csv(index_path, dtype=str, keep_default_na=False)
    index.loc[:1, "status"] = "failed"
    index.loc[:1, "reason"] = "the mask is empty (all zero)"
    index.to_csv(index_path, index=False)
    with pytest.raises(CrcInputError, match=r"2 labelled patient\(s\) have no crop: CRC001 \(the mask is empty.*train on the 46 others"):
        train_run(training_workspace, TrainConfig(**QUICK))
    run_id = train_run(training_workspace, TrainConfig(allow_missing_crops=True, **QUICK))
    run = RunStore(training_workspace).run(run_id)
    assert run.status == "done" and run.info["n_patients"] == 46 and "without 2 labelled patient(s)" in run.message


def test_no_labels_no_crops_no_split_say_which_step_to_run(training_workspace):
    (training_workspace / "crops" / "latest.json").unlink()
    with pytest.raises(CrcInputError, match=r"No crops yet: run preprocessing on the CT & ROI page"):
        labelled_crops(training_workspace, "tsr")
    (training_workspace / "labels.csv").unlink()
    with pytest.raises(CrcInputError, match=r"No labels yet: build and save them on the Labels page"):
        train_run(training_workspace, TrainConfig(**QUICK))


def test_a_nan_loss_stops_the_run_marks_it_failed_and_keeps_the_log(training_workspace, monkeypatch):
    from crc_core.training import datasets

    original = datasets.LabelledCrops.images

    def with_nan(self):
        images = original(self).copy()
        images[:] = np.nan
        return images

    monkeypatch.setattr(datasets.LabelledCrops, "images", with_nan)
    with pytest.raises(CrcInputError, match=r"The training loss became nan at epoch 1, step 1: training stopped\. Lower the learning rate"):
        train_run(training_workspace, TrainConfig(**FINETUNE))
    run = RunStore(training_workspace).runs()[0]
    assert run.status == "failed" and "loss became nan" in run.message


def test_out_of_memory_suggests_a_smaller_batch(training_workspace, monkeypatch):
    import torch

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.optim.SGD, "step", out_of_memory)
    with pytest.raises(CrcInputError, match=r"Out of memory with batches of 8 at epoch 1: choose a smaller batch \(e\.g\. 4\)"):
        train_run(training_workspace, TrainConfig(**FINETUNE))
    assert RunStore(training_workspace).runs()[0].status == "failed"


def test_config_refusals_and_round_trip():
    with pytest.raises(CrcInputError, match="Targets must be some of tsr, til, is, time"):
        TrainConfig(targets=("stroma",))
    with pytest.raises(CrcInputError, match="Unknown backbone 'vgg16'"):
        TrainConfig(backbones=("vgg16",))
    config = TrainConfig(targets=("tsr", "time"), backbones=("densenet-169", "ResNet50"), mode="finetune",
                         finetune=FinetuneConfig(epochs=3))
    assert config.backbones == ("densenet169", "resnet50")
    assert [(c.target, c.backbone) for c in config.cells()] == [
        ("tsr", "densenet169"), ("tsr", "resnet50"), ("time", "densenet169"), ("time", "resnet50")]
    assert TrainConfig.from_json(config.to_json()) == config
    assert TrainConfig(mode="radiomics", backbones=("densenet121",)).backbones == ("radiomics",)
    # A features run's config carries no fine-tuning settings; a stored run of the flat layout still reads.
    assert "finetune" not in TrainConfig().to_dict() and TrainConfig(finetune=FinetuneConfig(epochs=3)).finetune is None
    flat = TrainConfig.from_dict({"mode": "finetune", "epochs": 7, "batch_size": 16, "lr": 0.001})
    assert (flat.finetune.epochs, flat.finetune.batch_size, flat.finetune.lr, flat.finetune.momentum) == (7, 16, 0.001, 0.9)
    with pytest.raises(CrcInputError, match="The batch size must be 2-1024"):
        TrainConfig(mode="finetune", finetune={"batch_size": 1})


def test_the_radiomics_baseline_is_stored_like_a_deep_run(training_workspace):
    pytest.importorskip("radiomics")
    labels = pd.read_csv(training_workspace / "labels.csv")
    labels.head(24).to_csv(training_workspace / "labels.csv", index=False)  # PyRadiomics is slow: 24 patients
    run_id = train_run(training_workspace, TrainConfig(mode="radiomics", targets=("til",), evaluation="repeated", n_repeats=2))
    store = RunStore(training_workspace)
    run = store.run(run_id)
    assert run.status == "done" and run.backbone == "radiomics" and run.info["feature_dim"] > 50
    assert set(store.predictions(run_id)["cohort"]) == {"repeat"}
    cached = train_run(training_workspace, TrainConfig(mode="radiomics", targets=("tsr",), evaluation="repeated", n_repeats=2))
    assert store.run(cached).info["features_cached"]  # the features are the ROI's, whatever the target


def test_stop_ends_a_training_job_and_marks_its_run_stopped(training_workspace):
    from crc_core.jobs import latest_job, read_job, request_stop, start_job

    job = start_job(training_workspace, "train", config=TrainConfig(**{**FINETUNE, "finetune": FinetuneConfig(epochs=200, batch_size=8)}))
    try:
        store = RunStore(training_workspace)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (store.runs() and len(store.metrics([store.runs()[0].run_id], "epoch"))):
            time.sleep(0.3)
        while time.monotonic() < deadline and "batch" not in read_job(training_workspace, job.job_id).message:
            time.sleep(0.05)  # the batches of the next epoch, after the epoch's own line
        running = read_job(training_workspace, job.job_id).message
        in_progress = re.search(r"epoch (\d+) of 200 · batch (\d+) of (\d+) · [\d.]+ images/s · ETA", running)
        assert in_progress, running
        request_stop(training_workspace, job.job_id)
        while time.monotonic() < deadline and not read_job(training_workspace, job.job_id).finished:
            time.sleep(0.1)
        # Within the batch at hand, not at the end of the epoch (counted, never timed: a busy
        # machine is slow, not wrong): the epoch in progress ends only if its last batch was at hand.
        epoch, batch, batches = (int(n) for n in in_progress.groups())
        finished_epochs = store.metrics([store.runs()[0].run_id], "epoch")["epoch"].nunique()
        assert finished_epochs <= (epoch if batch == batches else epoch - 1), (finished_epochs, running)
        assert latest_job(training_workspace, "train").state == "stopped"
        run = store.runs()[0]
        assert run.status == "stopped" and f"--resume {run.run_id}" in run.message
        from crc_core.runs.views import runs_overview

        assert "selection AUC" in runs_overview(store).set_index("Run").loc[run.run_id, "Last epoch"]
    finally:
        request_stop(training_workspace, job.job_id)  # never a worker left training after a failed test


def test_the_rooms_that_do_not_train_never_import_torch():
    # The rooms' faces too: reading a config through crc_core.training must not load a trainer's torch.
    code = ("import sys\nimport crc_core.training.grid, crc_core.runs.store, crc_core.training.datasets, crc_core.networks.backbones, crc_core.figures\n"
            "import crc_core.training, crc_core.runs, crc_core.networks, crc_core.evaluate\n"
            "crc_core.training.TrainConfig, crc_core.runs.RunStore, crc_core.networks.BACKBONES\n"
            "from crc_core.networks.backbones import weights_on_disk\nweights_on_disk('densenet121')\nprint('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "False", result.stderr


def test_predict_applies_a_run_to_an_external_cohort_cropped_like_its_own(training_workspace, tmp_path, capsys):
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    external = build_sample_workspace(tmp_path / "lanzhou", SampleConfig(n_patients=12, seed=9, workers=1)).root
    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), **QUICK))
    assert cli_main(["--workspace", str(training_workspace), "predict", "--run", run_id, "--from", str(external),
                     "--cohort", "Lanzhou"]) == 0
    assert "external:Lanzhou: 12 patients predicted (0 with a label)" in capsys.readouterr().out
    predictions = RunStore(training_workspace).predictions(run_id, "external:Lanzhou")
    assert len(predictions) == 12 and predictions["y_true"].isna().all() and predictions["prob"].between(0, 1).all()
    assert not (external / "crops" / "latest.json").exists()  # the other workspace's crop choice untouched
    # With labels there, they come along; predicting again replaces, never duplicates.
    from crc_core.labels.rules import label_workspace

    label_workspace(external)
    assert cli_main(["--workspace", str(training_workspace), "predict", "--run", run_id, "--from", str(external),
                     "--cohort", "Lanzhou"]) == 0
    again = RunStore(training_workspace).predictions(run_id, "external:Lanzhou")
    assert len(again) == 12 and again["y_true"].notna().all()
    np.testing.assert_allclose(again["prob"], predictions["prob"])


def test_the_immune_score_cut_offs_are_learned_inside_each_training_part(training_workspace):
    """Multiplying the markers of fold 0's held-out patients by 10 changes their own counts, but
    must not change a single label of fold 0's training patients: the medians come from the
    training part alone."""
    config = TrainConfig(targets=("is",), backbones=("resnet34",), evaluation="kfold", **QUICK)

    def fold_zero(run_id: str) -> dict:
        parts = json.loads((training_workspace / "runs" / run_id / "partitions.json").read_text())["partitions"]
        return next(p for p in parts if p["fold"] == 0)

    first = fold_zero(train_run(training_workspace, config))
    assert set(first["cutoffs"]) == {"cd3_ca", "cd3_im", "cd8_ca", "cd8_im"}
    pathology = pd.read_csv(training_workspace / "pathology.csv")
    held_out = pathology["patient_id"].isin(first["cv"])
    for marker in ("cd3_ca", "cd3_im", "cd8_ca", "cd8_im"):
        pathology.loc[held_out, marker] *= 10
    pathology.to_csv(training_workspace / "pathology.csv", index=False)
    second = fold_zero(train_run(training_workspace, config))
    assert second["cutoffs"] == first["cutoffs"]
    assert {p: second["labels"][p] for p in second["train"]} == {p: first["labels"][p] for p in first["train"]}
    # The held-out patients' own labels follow their new counts, judged by the training part's cut-offs.
    assert any(second["labels"][p] != first["labels"][p] for p in second["cv"])


def test_a_features_run_keeps_out_of_fold_scores_each_from_a_model_that_never_saw_the_patient(training_workspace):
    from crc_core.training.features import cached_deep_features
    from crc_core.networks.linear_models import inner_folds, fit_penalised_logistic

    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), **QUICK))
    store = RunStore(training_workspace)
    oof = store.predictions(run_id, OUT_OF_FOLD).set_index("patient_id")
    train = store.predictions(run_id, "train").set_index("patient_id")
    assert list(oof.index) == list(train.index)
    data = labelled_crops(training_workspace, "tsr")
    features = cached_deep_features(training_workspace, "resnet34", data.crops.key, list(train.index), data.images,
                                    __import__("crc_core.networks.devices", fromlist=["plan_device"]).plan_device("cpu", "fp32"),
                                    weights="random")[0]
    y = train["y_true"].astype(int).to_numpy()
    c = fit_penalised_logistic(features, y).c
    held, fitted = next(iter([(h, f) for f, h in inner_folds(y).split(features, y)]))
    # An independent scikit-learn fit on the other folds predicts the held-out fold's patients alike.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kept = features[fitted].std(axis=0) > 0
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(features[fitted][:, kept], y[fitted])
    np.testing.assert_allclose(oof["prob"].to_numpy()[held], model.predict_proba(features[held][:, kept])[:, 1], atol=1e-4)
    assert not np.allclose(oof["prob"], train["prob"])


def test_a_run_whose_weights_came_through_torchvision_s_download_is_rebuilt_for_predict_and_grad_cam(
        training_workspace, tmp_path, monkeypatch):
    """torchvision's weights API saves the checkpoint into $TORCH_HOME/hub/checkpoints; the run must
    record that file (not the URL) and rebuild its model from it."""
    import torch

    from crc_core.networks import backbones

    from crc_core.evaluate import cam
    from crc_core.networks.backbones import classifier
    from crc_core.runs.store import load_run_model

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(7)
    imagenet_like = __import__("torchvision").models.resnet34(weights=None).state_dict()
    torch.save(imagenet_like, cache / "resnet34-b627a593.pth")  # the name torchvision's URL ends in
    real_candidates = backbones.candidate_weight_files
    # Nothing in models/ or the cache is looked at first, so the weights API is what loads them.
    monkeypatch.setattr(backbones, "candidate_weight_files", lambda spec: [])
    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), weights="imagenet", download_weights=True,
                                                       device="cpu", precision="fp32"))
    monkeypatch.setattr(backbones, "candidate_weight_files", real_candidates)
    run = RunStore(training_workspace).run(run_id)
    assert run.weights["source"] == "download" and run.weights["path"] == str(cache / "resnet34-b627a593.pth")
    assert not run.random_init
    model = load_run_model(training_workspace, run)
    expected = classifier("resnet34", weights=str(cache / "resnet34-b627a593.pth"))[0].state_dict()
    for key, value in model.network.backbone.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    # A run stored by the version before this one recorded the URL itself: it loads all the same.
    legacy = RunStore(training_workspace)
    legacy.update(run_id, info={"weights": {**run.weights, "path": "https://download.pytorch.org/models/resnet34-b627a593.pth"}})
    assert load_run_model(training_workspace, legacy.run(run_id)).weights_path == str(cache / "resnet34-b627a593.pth")
    cam.cohort_maps(training_workspace, run_id, "validation", layer="backbone.layer2")
    predictions = RunStore(training_workspace).predictions(run_id, "validation")
    from crc_core.evaluate.predict import _images, score_images
    from crc_core.imaging.preprocess import read_crop_set

    # Scored again through the downloaded weights, as predict scores a centre (a workspace may not
    # predict its own patients as an external cohort).
    ids, pixels = _images(read_crop_set(training_workspace / "crops" / run.info["crop_key"]))
    again = pd.Series(score_images(training_workspace, legacy.run(run_id), pixels), index=ids)
    np.testing.assert_allclose(again.loc[predictions["patient_id"]], predictions["prob"], atol=1e-4)


def test_progress_says_what_the_fast_mode_is_doing(training_workspace):
    said = []
    train_run(training_workspace, TrainConfig(backbones=("resnet34",), **QUICK),
              progress=lambda done, total, message="": said.append(message))
    assert said[0] == "starting · reading the labels, the split and the crops"
    assert any(m.startswith("step 2 of 3 · features of 48 crops: 48 of 48 crops · ") for m in said)
    assert any(m.startswith("step 3 of 3 · fitting TSR: ") and " fits · ETA " in m for m in said)
    assert said[-1].endswith("done")


def test_combat_harmonises_the_features_across_centres_learned_on_training_patients(training_workspace):
    """ComBat as an option of the features mode: learned on the training patients of each
    partition and kept beside the model; the transductive fit named as such; one centre, no centre
    column and fine-tuning refused by name."""
    from crc_core.training.harmonisation import ComBatModel

    clinical = pd.read_csv(training_workspace / "clinical.csv")
    with pytest.raises(CrcInputError, match=r"ComBat needs each patient's centre: the clinical table has no 'centre' column"):
        train_run(training_workspace, TrainConfig(harmonise="training", **QUICK))
    clinical["centre"] = "Lanzhou"
    clinical.to_csv(training_workspace / "clinical.csv", index=False)
    with pytest.raises(CrcInputError, match=r"ComBat needs at least two centres"):
        train_run(training_workspace, TrainConfig(harmonise="training", **QUICK))
    clinical["centre"] = np.where(np.arange(len(clinical)) % 2 == 0, "Lanzhou", "Xi'an")
    clinical.to_csv(training_workspace / "clinical.csv", index=False)
    plain = train_run(training_workspace, TrainConfig(**QUICK))
    learned = train_run(training_workspace, TrainConfig(harmonise="training", **QUICK))
    transductive = train_run(training_workspace, TrainConfig(harmonise="transductive", **QUICK))
    store = RunStore(training_workspace)
    folder = training_workspace / "runs" / learned
    model = ComBatModel.load(folder / "combat.json")
    assert set(model.batches) == {"Lanzhou", "Xi'an"} and not model.transductive
    assert ComBatModel.load(training_workspace / "runs" / transductive / "combat.json").transductive
    # Learned on the training patients only: their count, not the validation patients'.
    assert sum(model.n_per_batch) == (clinical["split"] == "train").sum()
    validation = [store.predictions(r, "validation").set_index("patient_id")["prob"] for r in (plain, learned)]
    assert not np.allclose(validation[0], validation[1].loc[validation[0].index])
    from crc_core.evaluate.run_evaluation import model_label

    assert "ComBat training" in model_label(store.run(learned)) and "ComBat transductive" in model_label(store.run(transductive))
    with pytest.raises(CrcInputError, match="choose the features or radiomics mode"):
        TrainConfig(harmonise="training", mode="finetune")
    # A centre the harmonisation never saw is named when the run predicts it.
    from crc_core.evaluate.predict import harmonised

    with pytest.raises(CrcInputError, match=r"Centre\(s\) 'Wuhan' had no training patients"):
        harmonised(training_workspace, store.run(learned), None, np.zeros((1, len(model.features))), ["Wuhan"])


# ---------------------------------------------------------------------------------------------
# A job of several runs: Stop, then Resume goes on with the job


def test_a_stopped_grid_names_the_runs_that_never_started_and_resume_trains_them(training_workspace):
    from crc_core.jobs import JobStopped
    from crc_core.training.grid import queued_cells, resume_job, unfinished

    def stop_in_the_first_run(done, total, message=""):
        if "(1 of 2)" in message and "fitting" in message:
            raise JobStopped("stopped by the user")

    config = TrainConfig(targets=("tsr", "til"), backbones=("resnet34",), **QUICK)
    with pytest.raises(JobStopped):
        train_grid(training_workspace, config, progress=stop_in_the_first_run)
    store = RunStore(training_workspace)
    (first,) = store.runs()
    assert first.status == "stopped" and first.target == "tsr"
    assert [c.describe() for c in queued_cells(store, first.group_id)] == ["TIL × ResNet-34 (frozen features)"]
    (left,) = unfinished(store)
    assert left.run_id == first.run_id
    assert "then trains the 1 run of this job that never started: TIL × ResNet-34 (frozen features)" in left.describe()

    heard = []
    ids = resume_job(training_workspace, first.run_id, progress=lambda d, t, m="": heard.append((d, t, m)))
    assert ids[0] == first.run_id and len(ids) == 2
    runs = {r.target: r for r in store.runs()}
    assert set(runs) == {"tsr", "til"} and all(r.status == "done" for r in runs.values())
    assert runs["til"].group_id == first.group_id
    assert queued_cells(store, first.group_id) == [] and unfinished(store) == []
    # One counter for the job, forward only: the resumed run is 1 of 2, the one that never started 2 of 2.
    assert [d for d, _, _ in heard] == sorted(d for d, _, _ in heard) and {t for _, t, _ in heard} == {2000}
    assert "(1 of 2)" in heard[0][2] and "(2 of 2)" in heard[-1][2]


def test_a_job_stopped_between_its_runs_offers_to_train_the_rest(training_workspace):
    from crc_core.jobs import JobStopped
    from crc_core.training.grid import resume_job, unfinished

    def stop_when_the_second_starts(done, total, message=""):
        if "(2 of 3)" in message:
            raise JobStopped("stopped by the user")

    config = TrainConfig(targets=("tsr", "til", "is"), backbones=("resnet34",), **QUICK)
    with pytest.raises(JobStopped):
        train_grid(training_workspace, config, progress=stop_when_the_second_starts)
    store = RunStore(training_workspace)
    # The Stop came as the second run began reading its data, before it was written: it never started.
    assert [r.target for r in store.runs()] == ["tsr"]
    (left,) = unfinished(store)
    assert left.stopped is None and store.run(left.run_id).target == "tsr"
    assert left.describe() == ("The training job stopped before the 2 runs of this job that never started: "
                               "TIL × ResNet-34 (frozen features), IS × ResNet-34 (frozen features). Resume trains them.")
    assert len(resume_job(training_workspace, left.run_id)) == 2
    assert sorted(r.target for r in store.runs() if r.done) == ["is", "til", "tsr"]
    with pytest.raises(CrcInputError, match="has finished already; there is nothing to resume"):
        resume_job(training_workspace, left.run_id)


def test_stop_then_resume_of_a_two_run_job_trains_both(training_workspace):
    """Found in use: DenseNet-121 and ResNet-34 asked; after Stop and Resume ResNet-34 never trained."""
    from crc_core.jobs import read_job, request_stop, start_job

    def wait(job, until):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not until(read_job(training_workspace, job.job_id)):
            time.sleep(0.05)
        return read_job(training_workspace, job.job_id)

    config = TrainConfig(targets=("tsr", "til"), backbones=("resnet34",), **QUICK)
    job = start_job(training_workspace, "train", config=config)
    try:
        # Stop as soon as the first run reports: the second has not started.
        status = wait(job, lambda s: s.finished or "(1 of 2)" in s.message)
        assert "(1 of 2)" in status.message, status.message
        request_stop(training_workspace, job.job_id)
        assert wait(job, lambda s: s.finished).state == "stopped"
    finally:
        request_stop(training_workspace, job.job_id)
    store = RunStore(training_workspace)
    (first,) = store.runs()
    assert first.status == "stopped" and first.target == "tsr"
    resumed = start_job(training_workspace, "train", args=("--resume", first.run_id))  # the Train page's Resume
    try:
        status = wait(resumed, lambda s: s.finished)
    finally:
        request_stop(training_workspace, resumed.job_id)
    assert status.state == "done", status.message
    runs = store.runs()
    assert sorted(r.target for r in runs) == ["til", "tsr"] and all(r.status == "done" for r in runs)
    assert status.result["run_ids"] == [first.run_id, next(r.run_id for r in runs if r.target == "til")]
