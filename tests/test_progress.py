"""Progress of the long steps, all through one meter (crc_core.jobs.StepMeter): named phases one
after another on one counter that never goes back, each tick with an ETA field. Found in use:
reader agreement for 7.5 min, features in blocks of 32 every 35 s, "fitting TSR" still for 30 s,
the reader check's 100 s phases not moving, predict going back from 120/120 to 32/120."""

from __future__ import annotations

import pytest

from crc_core.jobs import METER_SCALE, JobReporter, ProgressNote, StepMeter, job_dir, read_job


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def listen():
    heard: list[tuple[int, int, str]] = []
    return heard, lambda done, total, message="": heard.append((done, total, message))


def check_ticks(heard, phases_in_order=None) -> list[str]:
    """One counter, forward only, every tick a note with a phase and an ETA field; the phases one
    after another (none comes back once left); returns the phases in the order they came."""
    assert heard, "no progress at all"
    counters = [d for d, _, _ in heard]
    assert counters == sorted(counters), counters
    assert len({t for _, t, _ in heard}) == 1
    notes = [m for _, _, m in heard]
    assert all(isinstance(n, ProgressNote) and hasattr(n, "eta_s") and n.phase for n in notes), notes
    order = list(dict.fromkeys(n.phase for n in notes))
    runs = [n.phase for i, n in enumerate(notes) if i == 0 or notes[i - 1].phase != n.phase]
    assert runs == order, f"a phase came back: {runs}"
    if phases_in_order is not None:
        assert [p for p in order if p in phases_in_order] == phases_in_order
    assert heard[-1][0] == heard[-1][1]  # it ends at its end
    return order


def test_the_meter_counts_forward_through_named_phases_with_an_eta():
    clock = Clock()
    heard, progress = listen()
    meter = StepMeter(progress, {"cutting": 1.0, "cached step": 1.0, "scoring": 2.0}, clock=clock)
    first = meter.tell("cutting", 0, 40, "patients")
    assert first.eta_s is None and "ETA" not in first  # no pace yet
    clock.now += 10
    half = meter.tell("cutting", 20, 40, "patients")
    # Half the first phase in 10 s: 10 s more for it, then 3 units of weight at 20 s each.
    assert half.eta_s == pytest.approx(10 + 3 * 20)
    assert half == "step 1 of 3 · cutting: 20 of 40 patients · ETA 00:01:10"
    assert heard[-1][:2] == (METER_SCALE // 8, METER_SCALE)
    clock.now += 10
    meter.tell("scoring", 0, 10, "crops")  # the cached step is skipped over
    clock.now += 5
    quarter = meter.tell("scoring", 5, 10, "crops", rate=True)
    assert quarter.eta_s == pytest.approx(5) and "1.0 crops/s" in quarter
    meter.tell("cutting", 40, 40)  # a stray late tick of an earlier phase moves nothing back
    meter.finish()
    counters = [d for d, _, _ in heard]
    assert counters == sorted(counters) and counters[-1] == METER_SCALE
    assert heard[-1][2].eta_s == 0


def test_a_job_s_status_carries_the_phase_and_the_eta(tmp_path):
    folder = job_dir(tmp_path, "20260101-120000-robustness-abc123")
    folder.mkdir(parents=True)
    reporter = JobReporter(folder, "robustness")
    try:
        meter = StepMeter(reporter.progress, ["reader 2: cutting the crops", "reader 2: scoring"])
        meter.tell("reader 2: cutting the crops", 0, 10, "patients")
        meter.tell("reader 2: cutting the crops", 5, 10, "patients")
        status = read_job(tmp_path, folder.name)
        assert status.phase == "reader 2: cutting the crops" and status.eta_s is not None and status.eta_s >= 0
        assert status.done == METER_SCALE // 4 and status.total == METER_SCALE
        assert "5 of 10 patients" in status.message and "ETA" in status.message
        assert "reader 2: cutting the crops, 25%" in status.describe()
    finally:
        reporter.finish("done", "done")


def test_reader_agreement_reports_per_patient_with_an_eta(imaging_workspace):
    from crc_core.imaging.reader_study import AgreementConfig, reader_agreement

    heard, progress = listen()
    reader_agreement(imaging_workspace, AgreementConfig(with_features=False), patients=["CRC001", "CRC002", "CRC003"],
                     workers=1, progress=progress)
    phases = check_ticks(heard)
    assert phases[0] == "Dice, HD95 of both readers' ROIs"
    patients = [m for _, _, m in heard if m.phase == phases[0]]
    assert [m.done for m in patients] == [0, 1, 2, 3] and all(m.unit == "patients" for m in patients)
    assert all(m.eta_s is not None for m in patients[1:])


pytest.importorskip("torch")


def test_training_reports_features_per_batch_and_the_fit_per_fit(training_workspace):
    from crc_core.training.grid import TrainConfig, train_grid

    heard, progress = listen()
    train_grid(training_workspace, TrainConfig(targets=("tsr", "til"), backbones=("resnet34",), weights="random",
                                               device="cpu", precision="fp32"), progress=progress)
    phases = check_ticks(heard)
    first, second = "TSR × ResNet-34 (frozen features) (1 of 2)", "TIL × ResNet-34 (frozen features) (2 of 2)"
    # The second run finds the backbone's features in the cache.
    assert phases == [f"{first}: starting", f"{first}: features of 48 crops", f"{first}: fitting TSR", f"{first}: done",
                      f"{second}: starting", f"{second}: fitting TIL", f"{second}: done"]
    features = [m for _, _, m in heard if m.phase == phases[1]]
    # A first small batch, so the first pace (and ETA) comes within seconds, not after 32 crops.
    assert features[0].done < 32 and features[-1].done == 48 and features[-1].eta_s is not None
    assert "crops/s" in features[-1]
    fits = [m for _, _, m in heard if m.phase == phases[2]]
    assert len(fits) > 10 and fits[-1].done == fits[-1].total and all(m.unit == "fits" for m in fits)
    assert all(m.eta_s is not None for m in fits)
    assert "TSR × ResNet-34 (frozen features) (1 of 2): step 3 of 3 · fitting TSR:" in fits[1]


def test_the_reader_check_moves_through_every_roi_with_an_eta(training_workspace):
    from crc_core.evaluate.robustness import robustness
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), weights="random", device="cpu", precision="fp32"))
    heard, progress = listen()
    robustness(training_workspace, run_id, progress=progress)
    phases = check_ticks(heard)
    assert phases[:4] == ["reader 2: cutting the crops", "reader 2: scoring", "reader 1 eroded 1 px: cutting the crops",
                          "reader 1 eroded 1 px: scoring"]
    assert phases[-1] == "AUC, ICC and DeLong's test per ROI" and len(phases) == 11
    cutting = [m for _, _, m in heard if m.phase == "reader 2: cutting the crops"]
    assert len(cutting) > 2 and cutting[-1].done == cutting[-1].total  # it moves patient by patient
    scoring = [m for _, _, m in heard if m.phase == "reader 2: scoring"]
    assert scoring[-1].done == scoring[-1].total > 0 and scoring[-1].unit == "crops"
    assert all(m.eta_s is not None for _, _, m in heard[len(cutting):])


def test_predict_counts_crops_then_scores_on_one_counter(training_workspace, tmp_path):
    from crc_core.evaluate.predict import predict_cohort
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace
    from crc_core.training.grid import TrainConfig, train_run

    external = build_sample_workspace(tmp_path / "lanzhou", SampleConfig(n_patients=12, seed=9, workers=1)).root
    run_id = train_run(training_workspace, TrainConfig(backbones=("resnet34",), weights="random", device="cpu", precision="fp32"))
    heard, progress = listen()
    predict_cohort(training_workspace, run_id, external, "Lanzhou", progress=progress)
    phases = check_ticks(heard, ["cutting the crops like the run's", "reading the crops", "scoring the crops"])
    assert phases[-1] == "scoring the crops"
    cutting = [m for _, _, m in heard if m.phase == "cutting the crops like the run's"]
    assert cutting[-1].done == cutting[-1].total == 12
    scoring = [m for _, _, m in heard if m.phase == "scoring the crops"]
    assert scoring[-1].done == scoring[-1].total == 12 and scoring[-1].eta_s is not None
