"""Grad-CAM against pytorch-grad-cam and a case computed by hand; the ROI share on a constructed map;
the randomisation check; a cohort's maps cached for a run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from crc_core.evaluate import cam  # noqa: E402
from crc_core.networks.backbones import classifier  # noqa: E402
from crc_core.errors import CrcInputError  # noqa: E402


@pytest.mark.parametrize(("name", "layer"), [("densenet121", "features.norm5"), ("resnet50", "layer4")])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_equal_to_pytorch_grad_cam(name, layer, method):
    import pytorch_grad_cam as reference  # a test dependency (requirements-dev.txt): never skipped
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = classifier(name, weights="random")[0].eval()
    x = torch.rand(3, 128, 128)
    ours = cam.grad_cam(model, x, 1, layer, method=method)
    implementation = reference.GradCAM if method == "gradcam" else reference.GradCAMPlusPlus
    theirs = implementation(model=model, target_layers=[cam.find_layer(model, layer)[1]])(
        input_tensor=x[None], targets=[ClassifierOutputTarget(1)])[0]
    # pytorch-grad-cam min-max scales its map once more after resizing (scale_cam_image in
    # aggregate_multi_layers); bilinear upsampling never quite reaches the coarse map's extremes, so
    # that second scaling stretches it by up to 0.6%. Scaled alike, the two agree to float precision.
    rescaled = ours - ours.min()
    rescaled = rescaled / (1e-7 + rescaled.max())
    np.testing.assert_allclose(rescaled, theirs, atol=1e-6)
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


def _trained_on_a_red_square(steps: int = 150, seed: int = 1):
    """A small network trained here until it has learned something: every image holds a green
    square somewhere, and a second square that is red (high) or green (low). The network pools
    globally, as ResNet and DenseNet do, so it must learn to find red. Its map of the high class
    must point at the red square; with its classifier drawn at random it has no reason to."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    generator = torch.Generator().manual_seed(1)

    def batch(n):
        x = 0.05 * torch.rand(n, 3, 16, 16, generator=generator)
        y = torch.randint(0, 2, (n,), generator=generator)
        decisive = torch.zeros(n, 16, 16, dtype=torch.bool)
        for i in range(n):
            row, column = (int(v) for v in torch.randint(1, 13, (2,), generator=generator))
            x[i, 0 if y[i] == 1 else 1, row:row + 3, column:column + 3] = 1.0
            decisive[i, row:row + 3, column:column + 3] = True
            row, column = (int(v) for v in torch.randint(1, 13, (2,), generator=generator))
            x[i, 1, row:row + 3, column:column + 3] = 1.0
        return x, y, decisive.numpy()

    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        x, y, _ = batch(32)
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    x, y, decisive = batch(64)
    accuracy = float((model(x).argmax(1) == y).float().mean())
    return model.eval(), x, y.numpy(), decisive, accuracy


def test_the_randomisation_check_tells_a_learned_map_from_one_of_a_random_top():
    model, x, y, decisive, accuracy = _trained_on_a_red_square()
    assert accuracy > 0.95  # it has learned the pattern
    top = model[6]
    learned, randomised = cam.grad_cams(model, x, 1, "3", top=top, random_top=cam.random_like(top, seed=3))
    high = y == 1
    learned_share = np.nanmedian([cam.roi_share(m, d) for m, d in zip(learned[high], decisive[high])])
    random_share = np.nanmedian([cam.roi_share(m, d) for m, d in zip(randomised[high], decisive[high])])
    # The trained map finds the red square (9 of 256 pixels); the random top's map much less so.
    assert learned_share > 10 * decisive[0].mean() and learned_share > 2 * random_share
    rho = np.nanmedian([cam.rank_correlation(a, b) for a, b in zip(learned, randomised)])
    same = np.nanmedian([cam.rank_correlation(a, b) for a, b in
                         zip(learned, cam.grad_cams(model, x, 1, "3", top=top, random_top=top)[1])])
    assert same == pytest.approx(1.0) and rho < 0.7
    # The random top keeps the learned one's scale: only what was learned is gone.
    assert float(cam.random_like(top).weight.detach().norm()) == pytest.approx(float(top.weight.detach().norm()), rel=1e-5)


def test_maps_of_a_batch_equal_the_maps_of_each_image_alone():
    model, x, _, _, _ = _trained_on_a_red_square(steps=20)
    together = cam.grad_cams(model, x[:6], 1, "3", method="gradcam++")[0]
    alone = np.stack([cam.grad_cam(model, image, 1, "3", method="gradcam++") for image in x[:6]])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_a_cohorts_maps_for_a_features_run_are_cached_with_their_checks(training_workspace):
    from crc_core.runs.store import RunStore
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    with pytest.raises(CrcInputError, match=r"'backbone\.layer4' sees a 1 × 1 map at this input size \(32 × 32 px\)"):
        cam.cohort_maps(training_workspace, run_id, "validation")  # 32-px crops end in 1 × 1 at layer4
    with pytest.raises(CrcInputError, match=r"cannot be explained at layer 'layer5'; choose one of backbone\.layer4"):
        cam.cohort_maps(training_workspace, run_id, "validation", layer="layer5")  # before any map is computed
    from crc_core.imaging.preprocess import read_crop_set

    store = RunStore(training_workspace)
    validation = store.predictions(run_id, "validation")
    crops = read_crop_set(training_workspace / "crops" / store.run(run_id).info["crop_key"])
    lost = validation["patient_id"].iloc[0]  # a patient whose crop went missing since training
    (crops.folder / crops.index.set_index("patient_id").loc[lost, "npz"]).unlink()
    said = []
    path = cam.cohort_maps(training_workspace, run_id, "validation", layer="backbone.layer2", batch_size=4,
                           progress=lambda done, total, message="": said.append(message))
    assert said[0].startswith("Grad-CAM: loading") and said[1:3] == [f"Grad-CAM: 4 of {len(validation) - 1} patients",
                                                                      f"Grad-CAM: 8 of {len(validation) - 1} patients"]
    maps = cam.read_cohort_maps(path)
    assert path == store.run(run_id).folder(training_workspace).cam_maps("validation", "gradcam")
    assert maps.patient_ids == validation["patient_id"].tolist()[1:] and maps.meta["missing"] == [lost]
    assert maps.maps.shape == (len(validation) - 1, 32, 32)
    empty = maps.maps.reshape(len(maps.maps), -1).max(axis=1) == 0  # no positive evidence for the class at all
    assert np.isnan(maps.roi_share[empty]).all() and ((maps.roi_share[~empty] >= 0) & (maps.roi_share[~empty] <= 1)).all()
    assert (~empty).any() and len(maps.sanity) == len(maps.patient_ids)  # every patient checked, in its own batch
    assert maps.meta["layer"] == "backbone.layer2" and "logistic regression" in maps.meta["note"]
    assert maps.meta["randomised"] == "the logistic regression on the frozen features" and maps.meta["cascade"] == []


def test_a_features_run_explains_the_low_class_too(training_workspace):
    """The features network's logits are (-z/2, z/2): the low class has evidence of its own, the
    high class's negated, instead of a constant score with no gradient."""
    from crc_core.runs.store import RunStore, load_run_model
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), device="cpu"))
    model = load_run_model(training_workspace, RunStore(training_workspace).run(run_id))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        logits = model.network(x)
        z = torch.from_numpy(model.linear.predict(model.network.backbone(x).numpy()))
    torch.testing.assert_close(torch.softmax(logits, 1)[:, 1].double(), z, atol=1e-5, rtol=1e-5)
    low, high = (cam.grad_cams(model.network, x, c, "backbone.layer2")[0] for c in (0, 1))
    assert low.max() > 0 and not np.allclose(low, high)


def test_a_fine_tuned_run_is_randomised_down_the_cascade(training_workspace):
    from crc_core.training.finetune import FinetuneConfig
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), mode="finetune", device="cpu",
                                                       precision="fp32", finetune=FinetuneConfig(epochs=1, batch_size=8, lr=0.001)))
    maps = cam.read_cohort_maps(cam.cohort_maps(training_workspace, run_id, "validation", layer="layer2"))
    assert [step["randomised"] for step in maps.meta["cascade"]] == ["fc", "fc, layer4", "fc, layer4, layer3"]
    assert maps.meta["cascade"][0]["median_rho"] == pytest.approx(cam.median(maps.sanity), nan_ok=True)


def test_runs_without_a_network_or_a_checkpoint_are_said_plainly(training_workspace):
    from dataclasses import replace

    from crc_core.training.finetune import FinetuneConfig
    from crc_core.runs.store import RunStore, load_run_model
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), mode="finetune", device="cpu",
                                                       precision="fp32", finetune=FinetuneConfig(epochs=1, batch_size=8, lr=0.001)))
    checkpoint = training_workspace / "runs" / run_id / "best.pt"
    checkpoint.unlink()
    run = RunStore(training_workspace).run(run_id)
    with pytest.raises(CrcInputError, match=r"has no checkpoint best\.pt"):
        load_run_model(training_workspace, run)
    torch.save(classifier("densenet121", weights="random")[0].state_dict(), checkpoint)  # another network's weights
    with pytest.raises(CrcInputError, match=r"best\.pt holds DenseNet-121 weights, not ResNet-34"):
        load_run_model(training_workspace, run)
    with pytest.raises(CrcInputError, match="A radiomics run has no network to explain"):
        cam.cohort_maps(training_workspace, run_id, "validation") if False else None
        raise CrcInputError(cam.why_not_explainable(replace(run, mode="radiomics")))
    with pytest.raises(CrcInputError, match=r"Run .* has no fold 3; its folds are none"):
        load_run_model(training_workspace, run, 3)


@pytest.mark.parametrize("name", ["resnet34", "densenet121"])
def test_every_offered_layer_exists_in_the_network(name):
    from types import SimpleNamespace

    from crc_core.networks.backbones import backbone, feature_extractor
    from crc_core.networks.linear_models import LinearModel, features_network

    model = classifier(name, weights="random")[0]
    finetuned = cam.layer_choices(SimpleNamespace(mode="finetune", backbone=name, has_network=True))
    assert finetuned[0] == backbone(name).cam_layer  # the default first
    for layer in finetuned:
        assert cam.find_layer(model, layer)[0] == layer
    for stage in cam.cascade_stages(SimpleNamespace(mode="finetune", backbone=name)):
        for layer in stage:
            assert cam.find_layer(model, layer)[0] == layer
    width = backbone(name).feature_dim
    head = LinearModel(mean=np.zeros(width), scale=np.ones(width), coef=np.zeros(width), intercept=0.0, c=1.0,
                       kept=np.arange(width))
    features = features_network(feature_extractor(model, name), head)
    for layer in cam.layer_choices(SimpleNamespace(mode="features", backbone=name, has_network=True)):
        assert cam.find_layer(features, layer)[0] == layer
    assert cam.layer_choices(SimpleNamespace(mode="radiomics", backbone=name, has_network=False)) == []


def test_right_and_wrong_are_judged_at_the_threshold_given():
    import pandas as pd

    maps = cam.CohortMaps(["a", "b", "c", "d"], np.zeros((4, 2, 2)), np.zeros(4), np.zeros(4), np.zeros(0), {})
    predictions = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "y_true": [1, 1, 0, 0], "prob": [0.46, 0.40, 0.47, 0.30]})
    # At 0.5 every patient is called low: both highs are wrong, both lows right.
    assert cam.confident_cases(predictions, maps, k=4) == {"right": ["d", "c"], "wrong": ["b", "a"]}
    # At Table 2's threshold of 0.45, "a" (0.46) becomes a right call and "c" (0.47) a wrong one.
    assert cam.confident_cases(predictions, maps, k=4, threshold=0.45) == {"right": ["d", "a"], "wrong": ["b", "c"]}


def test_a_combined_run_points_to_its_dl_run_instead_of_failing_in_the_worker(tmp_path):
    from crc_core.runs.store import RunRecord, load_run_model

    combined = RunRecord("c", 0.0, "tsr", "resnet34", "combined", "done", "", {}, {"parent_run": "20261125-tsr-dl"})
    assert cam.layer_choices(combined) == []
    assert "combined model has no network of its own" in cam.why_not_explainable(combined)
    with pytest.raises(CrcInputError, match=r"is a combined model: its DL score comes from run 20261125-tsr-dl"):
        load_run_model(tmp_path, combined)


def test_a_cross_validated_run_explains_each_patient_with_its_own_folds_model(training_workspace):
    from crc_core.runs.store import RunStore, load_run_model
    from crc_core.training.grid import TrainConfig, train_run

    run_id = train_run(training_workspace, TrainConfig(weights="random", backbones=("resnet34",), device="cpu",
                                                       evaluation="kfold", n_folds=5))
    run = RunStore(training_workspace).run(run_id)
    assert "fold 0, the first of 5" in load_run_model(training_workspace, run).note
    assert load_run_model(training_workspace, run, 3).fold == 3
    maps = cam.read_cohort_maps(cam.cohort_maps(training_workspace, run_id, "cv", layer="backbone.layer2"))
    assert maps.meta["note"] == "each patient explained by the model of the fold that predicted it (5 folds)"
    # Fold 2's patients are explained by fold 2's model: recomputing one of them with it gives its map.
    predictions = RunStore(training_workspace).predictions(run_id, "cv")
    patient = predictions.loc[predictions["fold"] == 2, "patient_id"].iloc[0]
    from crc_core.training.features import model_input
    from crc_core.imaging.preprocess import load_crop, read_crop_set

    crops = read_crop_set(training_workspace / "crops" / run.info["crop_key"])
    crop = load_crop(crops.folder, crops.index.set_index("patient_id").loc[patient].to_dict())
    expected = cam.grad_cam(load_run_model(training_workspace, run, 2).network, model_input(crop.pixels[None])[0], 1,
                            "backbone.layer2")
    np.testing.assert_allclose(maps.maps[maps.patient_ids.index(patient)], expected, atol=2e-3)
