"""Grad-CAM against pytorch-grad-cam and a case computed by hand; the ROI share on a constructed map;
the randomisation check; a cohort's maps cached for a run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crc_core import cam  # noqa: E402
from crc_core.backbones import classifier  # noqa: E402
from crc_core.errors import CrcInputError  # noqa: E402


@pytest.mark.parametrize(("name", "layer"), [("densenet121", "features.norm5"), ("resnet50", "layer4")])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_equal_to_pytorch_grad_cam(name, layer, method):
    reference = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = classifier(name, weights="random")[0].eval()
    x = torch.rand(3, 128, 128)
    ours = cam.grad_cam(model, x, 1, layer, method=method)
    implementation = reference.GradCAM if method == "gradcam" else reference.GradCAMPlusPlus
    theirs = implementation(model=model, target_layers=[cam.find_layer(model, layer)[1]])(
        input_tensor=x[None], targets=[ClassifierOutputTarget(1)])[0]
    # Equal up to the resizing: OpenCV's bilinear uses fixed-point weights, torch's floats.
    assert np.abs(ours - theirs).max() < 0.01
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9999
    assert ours.shape == (128, 128) and ours.min() >= 0 and ours.max() <= 1


def test_a_case_computed_by_hand():
    # score_1 = linear weights w1 · GAP(A): every position of channel c has gradient w1[c] / 16,
    # so the map is relu(sum_c w1[c] / 16 * A_c), min-max scaled.
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 2, 1, bias=False)
    model = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 2))
    x = torch.rand(3, 4, 4)
    with torch.no_grad():
        activations = conv(x[None])[0].numpy()
    w = model[3].weight.detach().numpy()
    expected = np.maximum((w[1][:, None, None] / 16 * activations).sum(axis=0), 0)
    expected = (expected - expected.min()) / (expected.max() - expected.min() + 1e-7)
    np.testing.assert_allclose(cam.grad_cam(model, x, 1, "0"), expected, atol=1e-6)
    other = np.maximum((w[0][:, None, None] / 16 * activations).sum(axis=0), 0)
    other = (other - other.min()) / (other.max() - other.min() + 1e-7)
    np.testing.assert_allclose(cam.grad_cam(model, x, 0, "0"), other, atol=1e-6)  # the target class is explicit


def test_a_layer_that_does_not_exist_lists_the_valid_ones():
    model = classifier("resnet34", weights="random")[0]
    with pytest.raises(CrcInputError, match=r"The model has no layer 'layer5'\. Its convolutional blocks include: .*layer4"):
        cam.grad_cam(model, torch.rand(3, 32, 32), 1, "layer5")
    with pytest.raises(CrcInputError, match="one normalised image"):
        cam.grad_cam(model, torch.rand(2, 3, 32, 32), 1, "layer4")


def test_roi_share_on_a_constructed_map():
    heat = np.zeros((10, 10))
    heat[2:4, 2:4] = 1.0  # 4 pixels of mass 1
    heat[8, 8] = 4.0  # and mass 4 elsewhere
    roi = np.zeros((10, 10), bool)
    roi[1:5, 1:5] = True
    assert cam.roi_share(heat, roi) == pytest.approx(4 / 8)
    assert cam.roi_area_share(roi) == pytest.approx(0.16)
    with pytest.raises(CrcInputError, match="differ in size"):
        cam.roi_share(heat, roi[:5])


def test_the_randomisation_check_tells_a_learned_map_from_a_random_one():
    torch.manual_seed(0)
    x = torch.rand(3, 64, 64)
    trained = classifier("resnet34", weights="random")[0]
    same = cam.grad_cam(trained, x, 1, "layer4")
    assert cam.rank_correlation(same, same) == pytest.approx(1.0)
    torch.manual_seed(99)
    reinitialised = classifier("resnet34", weights="random")[0]
    assert cam.rank_correlation(same, cam.grad_cam(reinitialised, x, 1, "layer4")) < 0.9


def test_a_cohorts_maps_for_a_features_run_are_cached_with_their_checks(training_workspace):
    from crc_core.runs import RunStore
    from crc_core.training import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    with pytest.raises(CrcInputError, match=r"'backbone\.layer4' sees a 1 × 1 map at this input size \(32 × 32 px\)"):
        cam.cohort_maps(training_workspace, run_id, "validation", sanity_patients=3)  # 32-px crops end in 1 × 1 at layer4
    from crc_core.preprocess import read_crop_set

    store = RunStore(training_workspace)
    validation = store.predictions(run_id, "validation")
    crops = read_crop_set(training_workspace / "crops" / store.run(run_id).info["crop_key"])
    lost = validation["patient_id"].iloc[0]  # a patient whose crop went missing since training
    (crops.folder / crops.index.set_index("patient_id").loc[lost, "npz"]).unlink()
    path = cam.cohort_maps(training_workspace, run_id, "validation", layer="backbone.layer2", sanity_patients=3)
    maps = cam.read_cohort_maps(path)
    assert maps.patient_ids == validation["patient_id"].tolist()[1:] and maps.meta["missing"] == [lost]
    assert maps.maps.shape == (len(validation) - 1, 32, 32)
    empty = maps.maps.reshape(len(maps.maps), -1).max(axis=1) == 0  # no positive evidence for the class at all
    assert np.isnan(maps.roi_share[empty]).all() and ((maps.roi_share[~empty] >= 0) & (maps.roi_share[~empty] <= 1)).all()
    assert (~empty).any() and len(maps.sanity) == 3
    assert maps.meta["layer"] == "backbone.layer2" and "logistic regression" in maps.meta["note"]


def test_runs_without_a_network_or_a_checkpoint_are_said_plainly(training_workspace):
    from crc_core.runs import RunStore
    from crc_core.training import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), mode="finetune", epochs=1,
                                                       batch_size=8, lr=0.001, device="cpu", precision="fp32"))
    checkpoint = training_workspace / "runs" / run_id / "best.pt"
    checkpoint.unlink()
    run = RunStore(training_workspace).run(run_id)
    with pytest.raises(CrcInputError, match=r"has no checkpoint \(best\.pt\)"):
        cam.run_model(training_workspace, run)
    torch.save(classifier("densenet121", weights="random")[0].state_dict(), checkpoint)  # another network's weights
    with pytest.raises(CrcInputError, match=r"best\.pt holds DenseNet-121 weights, not ResNet-34"):
        cam.run_model(training_workspace, run)
    from dataclasses import replace

    with pytest.raises(CrcInputError, match="A radiomics run has no network to explain"):
        cam.run_model(training_workspace, replace(run, mode="radiomics"))


@pytest.mark.parametrize("name", ["resnet34", "densenet121"])
def test_every_offered_layer_exists_in_the_network(name):
    from types import SimpleNamespace

    from crc_core.backbones import backbone, feature_extractor
    from crc_core.linear_models import LinearModel

    model = classifier(name, weights="random")[0]
    finetuned = cam.layer_choices(SimpleNamespace(mode="finetune", backbone=name))
    assert finetuned[0] == backbone(name).cam_layer  # the default first
    for layer in finetuned:
        assert cam.find_layer(model, layer)[0] == layer
    width = backbone(name).feature_dim
    head = LinearModel(mean=np.zeros(width), scale=np.ones(width), coef=np.zeros(width), intercept=0.0, c=1.0,
                       kept=np.arange(width))
    features = cam.features_mode_model(feature_extractor(model, name), head)
    for layer in cam.layer_choices(SimpleNamespace(mode="features", backbone=name)):
        assert cam.find_layer(features, layer)[0] == layer
    assert cam.layer_choices(SimpleNamespace(mode="radiomics", backbone=name)) == []


def test_right_and_wrong_are_judged_at_the_threshold_given():
    import pandas as pd

    maps = cam.CohortMaps(["a", "b", "c", "d"], np.zeros((4, 2, 2)), np.zeros(4), np.zeros(4), np.zeros(0), {})
    predictions = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "y_true": [1, 1, 0, 0], "prob": [0.46, 0.40, 0.47, 0.30]})
    # At 0.5 every patient is called low: both highs are wrong, both lows right.
    assert cam.confident_cases(predictions, maps, k=4) == {"right": ["d", "c"], "wrong": ["b", "a"]}
    # At Table 2's threshold of 0.45, "a" (0.46) becomes a right call and "c" (0.47) a wrong one.
    assert cam.confident_cases(predictions, maps, k=4, threshold=0.45) == {"right": ["d", "a"], "wrong": ["b", "c"]}


def test_a_combined_run_points_to_its_dl_run_instead_of_failing_in_the_worker(tmp_path):
    from types import SimpleNamespace

    combined = SimpleNamespace(run_id="c", mode="combined", backbone="resnet34", info={"parent_run": "20261125-tsr-dl"})
    assert cam.layer_choices(combined) == []
    with pytest.raises(CrcInputError, match=r"combined model has no network of its own.*run 20261125-tsr-dl; choose that run"):
        cam.run_model(tmp_path, combined)


def test_a_cross_validated_run_says_which_folds_model_its_maps_explain(tmp_path):
    from types import SimpleNamespace

    from crc_core.linear_models import LinearModel
    from crc_core.workspace import Workspace

    width = 512  # ResNet-34's pooled features
    folder = Workspace(tmp_path).runs_dir / "kfold"
    folder.mkdir(parents=True)
    for fold in range(3):
        LinearModel(mean=np.zeros(width), scale=np.ones(width), coef=np.zeros(width), intercept=0.0, c=1.0,
                    kept=np.arange(width)).save(folder / f"model-fold{fold}.json")
    run = SimpleNamespace(run_id="kfold", mode="features", backbone="resnet34", info={}, config={})
    explained = cam.run_model(tmp_path, run)
    assert "model-fold0.json, the first of 3 (one per fold)" in explained.note
