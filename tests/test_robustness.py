"""The reader check: the run's model on crops cut with reader 2's ROI and reader 1's eroded or
dilated in-plane (Zwanenburg et al. 2019), its statistics against their own definitions, who is
left out and why, and the refusals."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import crc_core.metrics as ev
from crc_core.evaluate import robustness as rb
from crc_core.imaging.agreement import icc
from crc_core.cli import main
from crc_core.errors import CrcInputError
from crc_core.imaging.volumes import perturbed_mask
from crc_core.runs.store import RunStore

torch = pytest.importorskip("torch")
QUICK = dict(weights="random", backbones=("resnet34",), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def checked(small_training_workspace, tmp_path_factory):
    """A features run of the small workspace, checked once (tests that change files copy it)."""
    import shutil

    from crc_core.training.grid import TrainConfig, train_run

    root = tmp_path_factory.mktemp("robustness") / "workspace"
    shutil.copytree(small_training_workspace, root, ignore=shutil.ignore_patterns("images", "masks", "runs", "features", "jobs"))
    for folder in ("images", "masks"):
        (root / folder).symlink_to(small_training_workspace / folder, target_is_directory=True)
    run_id = train_run(root, TrainConfig(**QUICK))
    return root, run_id, rb.robustness(root, run_id)


def test_every_variant_is_scored_and_summarised_by_its_definitions(checked):
    root, run_id, result = checked
    summary = result.summary.set_index("variant")
    assert list(summary.index) == ["reader1", "reader2", "erode1", "erode2", "dilate1", "dilate2"]
    stored = RunStore(root).predictions(run_id, "validation")
    # Reader 1 is the run's own validation prediction, so its AUC is Table 2's.
    assert summary.loc["reader1", "auc"] == pytest.approx(ev.auc_ci(stored["y_true"].astype(int), stored["prob"])[0])
    scores = result.scores.pivot(index="patient_id", columns="variant", values="prob")
    for variant in ("reader2", "dilate2"):
        pair = scores[["reader1", variant]].dropna()
        assert summary.loc[variant, "icc"] == pytest.approx(icc(pair.to_numpy())[0])
        flips = ((pair["reader1"] >= result.threshold) != (pair[variant] >= result.threshold)).sum()
        assert summary.loc[variant, "flips"] == flips
        y = stored.set_index("patient_id").loc[pair.index, "y_true"].astype(int)
        assert summary.loc[variant, "p_vs_reader1"] == pytest.approx(ev.delong_test(y, pair["reader1"], pair[variant])[1])
    # Another ROI gives another crop: the probabilities move, but not all the same way.
    assert not np.allclose(scores["reader1"], scores["dilate2"])
    assert result.threshold == pytest.approx(
        __import__("crc_core.evaluate.run_evaluation", fromlist=["evaluate_run"]).evaluate_run(RunStore(root), run_id)
        .metrics["validation"]["threshold"])


def test_the_cli_writes_the_two_csvs_and_the_run_keeps_the_check(checked, tmp_path, capsys):
    root, run_id, _ = checked
    assert main(["--workspace", str(root), "robustness", "--run", run_id, "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out
    assert "reader2: AUC" in said
    # The terminal says what the page says: the difference first, p Holm-adjusted, no "robust".
    kept = rb.kept_robustness(root, RunStore(root).run(run_id), "validation")
    reader2 = kept.summary.set_index("variant").loc["reader2"]
    from crc_core.cohort.table1 import difference_text, p_words

    assert (f"reader2: AUC {reader2.auc:.3f}, difference from reader 1 "
            f"{difference_text(reader2.auc_difference, reader2.difference_low, reader2.difference_high)}, "
            f"Holm-adjusted {p_words(reader2.p_holm)}") in said
    assert rb.comparison_sentence(kept) in said
    scores = pd.read_csv(tmp_path / "out" / "robustness.csv")
    summary = pd.read_csv(tmp_path / "out" / "robustness_summary.csv")
    assert list(scores.columns) == ["patient_id", "variant", "prob"]
    assert list(summary.columns)[:8] == ["variant", "auc", "auc_low", "auc_high", "icc", "icc_low", "icc_high", "flips"]
    kept = rb.kept_robustness(root, RunStore(root).run(run_id), "validation")
    pd.testing.assert_frame_equal(kept.summary, summary.reindex(columns=rb.SUMMARY_COLUMNS), check_dtype=False)
    people = rb.summary_for_people(kept)
    assert people["ROI"].iloc[1] == "reader 2" and people["AUC (95% CI)"].str.fullmatch(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)").all()
    from crc_core.reporting import report

    document = report.build_report(root, run_id)
    assert "Robustness to the reader" in document and "reader 1 eroded 2 px" in document


def test_patients_without_a_second_mask_are_named_and_left_out(checked, tmp_path):
    import shutil

    root, run_id, _ = checked
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    manifest = pd.read_csv(copy / "manifest.csv", dtype=str, keep_default_na=False)
    validation = RunStore(copy).predictions(run_id, "validation")["patient_id"].tolist()[:2]
    manifest.loc[manifest["patient_id"].isin(validation), "mask_r2"] = ""
    manifest.to_csv(copy / "manifest.csv", index=False)
    result = rb.robustness(copy, run_id)
    assert set(result.left_out["reader2"]) == set(validation)
    assert any(validation[0] in note and "no second reader's mask" in note for note in result.notes)
    counts = result.summary.set_index("variant")["n"]
    assert counts["reader2"] == counts["reader1"] - 2 and counts["erode1"] == counts["reader1"]


def test_refusals_name_the_run_and_the_missing_files(checked, tmp_path):
    import shutil

    root, run_id, _ = checked
    store = RunStore(root)
    baseline = store.create_run(target="tsr", backbone="radiomics", mode="radiomics", config={}, status="done")
    with pytest.raises(CrcInputError, match=r"radiomics model without a network of its own"):
        rb.robustness(root, baseline)
    with pytest.raises(CrcInputError, match=r"has no predictions for the external:nowhere cohort"):
        rb.robustness(root, run_id, "external:nowhere")
    one_reader = tmp_path / "one-reader"
    shutil.copytree(root, one_reader, symlinks=True, ignore=shutil.ignore_patterns("robustness"))
    manifest = pd.read_csv(one_reader / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.drop(columns=["mask_r2"]).to_csv(one_reader / "manifest.csv", index=False)
    with pytest.raises(CrcInputError, match=r"No patient of the validation cohort has a second reader's mask"):
        rb.robustness(one_reader, run_id)
    assert not (one_reader / "runs" / run_id / "robustness").exists()
    copy = tmp_path / "no-volumes"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("images", "masks", "robustness"))
    with pytest.raises(CrcInputError, match=r"crops cannot be cut again: these patients' volumes or masks are not here \(CRC"):
        rb.robustness(copy, run_id)
    assert not (copy / "runs" / run_id / "robustness").exists()  # refused before anything was written


def test_a_mask_is_eroded_and_dilated_in_plane_only():
    roi = np.zeros((3, 20, 20), np.uint8)
    roi[1, 5:15, 5:15] = 1  # a 10 × 10 square on the middle slice only
    roi[2, 9:11, 9:11] = 1  # a 2 × 2 square on the slice above
    mask = sitk.GetImageFromArray(roi)
    eroded = sitk.GetArrayFromImage(perturbed_mask(mask, "erode", 1))
    dilated = sitk.GetArrayFromImage(perturbed_mask(mask, "dilate", 2))
    assert eroded[1].sum() == 8 * 8 and eroded[0].sum() == 0 and eroded[2].sum() == 0  # nothing grows across slices
    # A 3 × 3 cross twice: the square grows by 2 pixels on each side, its corners rounded off.
    assert dilated[1].sum() == 14 * 14 - 4 * 3 and dilated[0].sum() == 0
    with pytest.raises(CrcInputError, match="the ROI vanishes when eroded by 5 pixel"):
        perturbed_mask(mask, "erode", 5)
    with pytest.raises(CrcInputError, match="erode or dilate by 1 pixel or more"):
        perturbed_mask(mask, "shrink", 1)


def test_an_external_cohort_is_checked_and_explained_on_its_own_centres_volumes(checked, tmp_path):
    # Found in use: the check of an external cohort looked for LAN001… in the development cohort's
    # manifest and refused with "volumes or masks are not here"; Grad-CAM looked for its crops there.
    import shutil

    from crc_core.evaluate.predict import predict_cohort
    from crc_core.sample.cohort import SampleConfig, build_sample_workspace

    root, run_id, _ = checked
    copy = tmp_path / "home"
    shutil.copytree(root, copy, symlinks=True)
    centre = tmp_path / "lanzhou"
    build_sample_workspace(centre, SampleConfig(centre="Lanzhou", n_patients=24, workers=1))
    predicted = predict_cohort(copy, run_id, centre, "Lanzhou")
    result = rb.robustness(copy, run_id, "external:Lanzhou")
    summary = result.summary.set_index("variant")
    assert summary.loc["reader1", "n"] == len(predicted) == 24 and summary.loc["reader2", "n"] == 24
    assert result.scores["patient_id"].str.startswith("LAN").all()
    assert list((centre / "crops").glob("*-reader2"))  # the centre's crops are cut in its own workspace
    assert not list((copy / "crops").glob("*-reader2")) or not any(
        (folder / "index.csv").read_text().count("LAN") for folder in (copy / "crops").glob("*-reader2"))
    # The report carries the check of every cohort checked, each named.
    from crc_core.reporting import report
    from crc_core.workspace import Workspace

    rb.keep_robustness(Workspace(copy), result)
    rb.keep_robustness(Workspace(copy), rb.robustness(copy, run_id))
    document = html.unescape(report.build_report(copy, run_id))
    assert "Validation cohort: the run's model on crops" in document
    assert "External: Lanzhou cohort: the run's model on crops" in document
    assert "(validation cohort), ICC" in document and "(external: Lanzhou cohort)" in document  # TRIPOD+AI item 26
    assert str(centre) not in document and "external_sources" not in document  # the centre's folder stays here
    from crc_core.evaluate import cam

    maps = cam.read_cohort_maps(cam.cohort_maps(copy, run_id, "external:Lanzhou", layer="backbone.layer2"))
    assert sorted(maps.patient_ids) == sorted(predicted["patient_id"]) and maps.meta["missing"] == []
    assert len(cam.overlay_images(copy, RunStore(copy).run(run_id), maps, maps.patient_ids[:2])) == 2
    # A centre whose workspace has gone, or one predicted before its folder was kept, says what to do.
    moved = tmp_path / "lanzhou-moved"
    centre.rename(moved)
    with pytest.raises(CrcInputError, match=r"came from .*lanzhou, which is not on this machine now"):
        rb.robustness(copy, run_id, "external:Lanzhou")
    with pytest.raises(CrcInputError, match=r"which is not on this machine now"):
        cam.overlay_images(copy, RunStore(copy).run(run_id), maps, maps.patient_ids[:1])
    assert "Robustness to the reader" in report.build_report(copy, run_id)  # its Grad-CAM panels left out, no error
    store = RunStore(copy)
    store.update(run_id, info={"external_sources": {}})
    with pytest.raises(CrcInputError, match=r"predict it again \(the Evaluate page's Other centres tab, or crc-time predict --run .* --from DIR --cohort Lanzhou\)"):
        rb.robustness(copy, run_id, "external:Lanzhou")
