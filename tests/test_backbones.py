"""The paper's seven backbones: 2-class heads, weights from a file the test saves itself (never a
download), refusals that name both architectures, and random initialisation said out loud."""

from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from crc_core.networks import backbones  # noqa: E402
from crc_core.errors import CrcInputError  # noqa: E402


class NotWeights:
    """An object a pickle would rebuild by running code: weights_only loading must refuse it."""


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    """An empty models/ and torchvision cache: what a hospital machine has before anyone copies weights."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setattr(backbones, "REPO_MODELS_DIR", models)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return models


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_every_backbone_has_a_two_class_head_and_its_documented_feature_size(name):
    model, info = backbones.classifier(name, weights="random")
    assert not info.pretrained
    with torch.inference_mode():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 2)
        features = backbones.feature_extractor(model, name)(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, backbones.backbone(name).feature_dim)
    assert backbones.guess_architecture(model.state_dict()) == name


def test_imagenet_weights_from_the_models_folder(offline_weights):
    torch.manual_seed(1)
    saved, _ = backbones.imagenet_model("resnet34", weights="random")
    torch.save(saved.state_dict(), offline_weights / "resnet34-b627a593.pth")
    model, info = backbones.classifier("resnet34")
    assert info.pretrained and info.source == "models/" and info.path.endswith("resnet34-b627a593.pth")
    assert torch.equal(model.conv1.weight, saved.conv1.weight)
    assert model.fc.out_features == 2  # the ImageNet head replaced after loading


def test_torchvision_densenet_files_with_old_key_names_load(offline_weights, tmp_path):
    # torchvision's DenseNet checkpoints say "denselayer1.norm.1.weight"; the model wants "norm1".
    saved, _ = backbones.imagenet_model("densenet121", weights="random")
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)", r"\1.\2", k): v for k, v in saved.state_dict().items()}
    assert any(".norm.1." in k for k in old)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(old, cache / "densenet121-a639ec97.pth")
    model, info = backbones.classifier("densenet121")
    assert info.source == "torchvision cache"
    assert torch.equal(model.features.conv0.weight, saved.features.conv0.weight)


def test_a_weights_file_of_another_architecture_names_both(offline_weights):
    other, _ = backbones.imagenet_model("resnet50", weights="random")
    torch.save(other.state_dict(), offline_weights / "densenet121-a639ec97.pth")
    with pytest.raises(CrcInputError, match=r"densenet121-a639ec97\.pth holds ResNet-50 weights, not DenseNet-121"):
        backbones.classifier("densenet121")


def test_no_weights_found_means_random_initialisation_said_plainly_or_an_error(offline_weights):
    model, info = backbones.classifier("resnet50")
    assert not info.pretrained and "resnet50-11ad3fa6.pth is neither in" in info.note
    assert info.describe().startswith("random initialisation")
    with pytest.raises(CrcInputError, match=r"No ImageNet weights for ResNet-50: .* Copy resnet50-11ad3fa6\.pth into"):
        backbones.classifier("resnet50", require_pretrained=True)


def test_a_runs_own_checkpoint_loads_whole_and_checkpoints_are_read_weights_only(tmp_path):
    trained, _ = backbones.classifier("resnet34", weights="random")
    torch.save({"model": trained.state_dict(), "epoch": 3}, tmp_path / "best.pt")
    model, info = backbones.classifier("resnet34", weights=tmp_path / "best.pt")
    assert info.source == "file" and torch.equal(model.fc.weight, trained.fc.weight)

    torch.save({"model": NotWeights()}, tmp_path / "code.pt")  # unpickling this would run code
    with pytest.raises(CrcInputError, match=r"code\.pt cannot be read as PyTorch weights"):
        backbones.read_state_dict(tmp_path / "code.pt")
    with pytest.raises(CrcInputError, match="Unknown backbone 'vgg16'"):
        backbones.backbone("vgg16")


def test_the_weights_file_names_are_torchvisions_own():
    import torchvision.models as models

    for spec in backbones.BACKBONES.values():
        enum = getattr(models, spec.weights_enum)
        urls = [enum.DEFAULT.url] + [member.url for member in enum]
        assert spec.weights_files == tuple(dict.fromkeys(u.rsplit("/", 1)[-1] for u in urls)), spec.name
