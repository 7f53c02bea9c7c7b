"""The paper's seven backbones (ResNet-34/50/101/152, DenseNet-121/169/201) with a 2-class head,
their ImageNet weights, and the pooled-feature extractor the fast mode uses.

Weights come, in this order, from a file the user names, from ``models/`` beside the project, from
torchvision's cache (``$TORCH_HOME/hub/checkpoints/``), and — only when asked — from torchvision's
download URL. Hospital machines are often offline, so nothing is downloaded unless asked; where no
weights are found the model starts from random initialisation, and says so (``WeightsInfo``) on
every result. Every checkpoint is read with ``torch.load(..., weights_only=True)``.

Torch is imported inside the functions, so importing this module costs nothing to the rooms that
never train.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from crc_core.errors import CrcInputError

REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_CLASSES = 2


@dataclass(frozen=True)
class Backbone:
    """One torchvision architecture: its builder, weights enum, pooled feature size, the layer
    Grad-CAM reads, and the blocks per stage that tell its checkpoints apart."""

    name: str
    title: str
    builder: str  # torchvision.models function
    weights_enum: str  # torchvision.models weights class
    feature_dim: int
    cam_layer: str
    blocks: tuple[int, ...]
    #: torchvision's file names of its ImageNet checkpoints, the default first (a test keeps them
    #: equal to torchvision's own; named here so that listing them needs no torch import).
    weights_files: tuple[str, ...]

    @property
    def family(self) -> str:
        return "densenet" if self.name.startswith("densenet") else "resnet"

    def weights(self):
        """torchvision's default ImageNet weights of this architecture."""
        import torchvision.models as models

        return getattr(models, self.weights_enum).DEFAULT

    @property
    def weights_file(self) -> str:
        return self.weights_files[0]


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("resnet34", "ResNet-34", "resnet34", "ResNet34_Weights", 512, "layer4", (3, 4, 6, 3),
                 ("resnet34-b627a593.pth",)),
        Backbone("resnet50", "ResNet-50", "resnet50", "ResNet50_Weights", 2048, "layer4", (3, 4, 6, 3),
                 ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")),
        Backbone("resnet101", "ResNet-101", "resnet101", "ResNet101_Weights", 2048, "layer4", (3, 4, 23, 3),
                 ("resnet101-cd907fc2.pth", "resnet101-63fe2227.pth")),
        Backbone("resnet152", "ResNet-152", "resnet152", "ResNet152_Weights", 2048, "layer4", (3, 8, 36, 3),
                 ("resnet152-f82ba261.pth", "resnet152-394f9c45.pth")),
        Backbone("densenet121", "DenseNet-121", "densenet121", "DenseNet121_Weights", 1024, "features.norm5",
                 (6, 12, 24, 16), ("densenet121-a639ec97.pth",)),
        Backbone("densenet169", "DenseNet-169", "densenet169", "DenseNet169_Weights", 1664, "features.norm5",
                 (6, 12, 32, 32), ("densenet169-b2777c0a.pth",)),
        Backbone("densenet201", "DenseNet-201", "densenet201", "DenseNet201_Weights", 1920, "features.norm5",
                 (6, 12, 48, 32), ("densenet201-c1103571.pth",)),
    )
}


def backbone(name: str) -> Backbone:
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in BACKBONES:
        raise CrcInputError(f"Unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[key]


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's starting weights came from. ``pretrained`` is False for random
    initialisation, which every result, figure and export must say."""

    pretrained: bool
    source: str  # "random", "file", "models/", "torchvision cache", "download"
    path: str = ""
    note: str = ""

    def describe(self) -> str:
        if not self.pretrained:
            return "random initialisation (no ImageNet weights found)" + (f": {self.note}" if self.note else "")
        return f"ImageNet weights ({self.source}{': ' + self.path if self.path else ''})"

    def to_dict(self) -> dict[str, Any]:
        return {"pretrained": self.pretrained, "source": self.source, "path": self.path, "note": self.note}


def weights_on_disk(name: str) -> Path | None:
    """The first ImageNet checkpoint of ``name`` found on this machine, or None (no torch import)."""
    return next((path for _, path in candidate_weight_files(backbone(name)) if path.is_file()), None)


def torch_home() -> Path:
    return Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")


def candidate_weight_files(spec: Backbone) -> list[tuple[str, Path]]:
    """Where the ImageNet checkpoint may lie on this machine, in the order they are tried."""
    folders = [("models/", REPO_MODELS_DIR), ("torchvision cache", torch_home() / "hub" / "checkpoints")]
    return [(source, folder / name) for source, folder in folders for name in spec.weights_files]


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


def _blocks(keys: list[str], pattern: str) -> tuple[int, ...]:
    found: dict[int, int] = {}
    for key in keys:
        match = re.match(pattern, key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            found[stage] = max(found.get(stage, 0), block)
    return tuple(found[s] for s in sorted(found))


def guess_architecture(state: Mapping[str, Any]) -> str | None:
    """Which of :data:`BACKBONES` a state dict belongs to, from its block counts (or None)."""
    keys = [k.removeprefix("module.") for k in state]
    densenet = _blocks(keys, r"features\.denseblock(\d)\.denselayer(\d+)\.")
    if densenet:
        return next((b.name for b in BACKBONES.values() if b.family == "densenet" and b.blocks == densenet), None)
    resnet = tuple(n + 1 for n in _blocks(keys, r"layer(\d)\.(\d+)\."))
    if resnet:
        bottleneck = any(".conv3." in k for k in keys)
        for b in BACKBONES.values():
            if b.family == "resnet" and b.blocks == resnet and (b.name != "resnet34") == bottleneck:
                return b.name
    return None


def read_state_dict(path: Path | str) -> dict[str, Any]:
    """A checkpoint's state dict, read with ``weights_only=True`` (never unpickling code). Our own
    checkpoints keep it under ``"model"``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CrcInputError(f"The weights file {path} does not exist. Check the path.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise CrcInputError(f"{path} cannot be read as PyTorch weights ({type(exc).__name__}: {exc}).") from exc
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not state:
        raise CrcInputError(f"{path} holds no state dict of model weights.")
    return {_modern_key(k.removeprefix("module.")): v for k, v in state.items()}


# torchvision's DenseNet checkpoints keep the names of old PyTorch ("denselayer1.norm.1.weight");
# its weights API renames them on loading ("denselayer1.norm1.weight"), and so must we.
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _modern_key(key: str) -> str:
    match = _OLD_DENSENET_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


def _load_into(model, state: Mapping[str, Any], spec: Backbone, path: Path) -> None:
    guessed = guess_architecture(state)
    if guessed is not None and guessed != spec.name:
        raise CrcInputError(
            f"{path} holds {BACKBONES[guessed].title} weights, not {spec.title}. Choose the {spec.title} "
            f"checkpoint ({spec.weights_file}) or train {BACKBONES[guessed].title} instead."
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CrcInputError(f"{path} does not fit {spec.title} ({first}).") from exc


# ---------------------------------------------------------------------------------------------
# Models


def _head(model, spec: Backbone, num_classes: int):
    import torch.nn as nn

    if spec.family == "densenet":
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    else:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def imagenet_model(name: str, *, weights: str | Path | None = "imagenet", download: bool = False,
                   require_pretrained: bool = False):
    """The backbone with its 1000-class ImageNet head and :class:`WeightsInfo`.

    ``weights``: ``"imagenet"`` (look in ``models/``, then torchvision's cache, then download if
    ``download``), ``"random"``, or the path of a checkpoint (ImageNet, or a run's own).
    """
    import torchvision.models as models

    spec = backbone(name)
    model = getattr(models, spec.builder)(weights=None)
    if weights in (None, "random"):
        if require_pretrained:
            raise CrcInputError(f"Random initialisation was chosen, but pretrained weights are required for {spec.title}.")
        return model, WeightsInfo(False, "random", note="chosen")
    if weights != "imagenet":
        path = Path(weights)
        state = read_state_dict(path)
        if not any(k.startswith(("fc.", "classifier.")) and v.shape[0] == 1000 for k, v in state.items()):
            _head(model, spec, NUM_CLASSES)  # a fine-tuned checkpoint of ours: 2-class head
        _load_into(model, state, spec, path)
        return model, WeightsInfo(True, "file", str(path))
    for source, path in candidate_weight_files(spec):
        if path.is_file():
            _load_into(model, read_state_dict(path), spec, path)
            return model, WeightsInfo(True, source, str(path))
    note = (f"{spec.weights_file} is neither in {REPO_MODELS_DIR} nor in {torch_home() / 'hub' / 'checkpoints'}")
    if download:
        try:
            # torchvision's weights API: downloads once into $TORCH_HOME/hub/checkpoints, checks the hash.
            state = spec.weights().get_state_dict(progress=False, check_hash=True)
            _load_into(model, {_modern_key(k): v for k, v in state.items()}, spec, Path(spec.weights().url))
            # Recorded as the file it was saved to, not its URL: a run's model is rebuilt from it.
            saved = torch_home() / "hub" / "checkpoints" / Path(spec.weights().url).name
            return model, WeightsInfo(True, "download", str(saved), note=f"downloaded from {spec.weights().url}")
        except (OSError, RuntimeError, ValueError) as exc:
            note += f", and the download failed ({type(exc).__name__})"
    if require_pretrained:
        raise CrcInputError(
            f"No ImageNet weights for {spec.title}: {note}. Copy {spec.weights_file} into {REPO_MODELS_DIR} "
            "(see models/README.md), or allow random initialisation."
        )
    return model, WeightsInfo(False, "random", note=note)


def check_weights_file(path: str | Path, name: str) -> None:
    """Refuse, naming the file, a weights file that cannot be read or belongs to another
    architecture than ``name``'s: before a run is started with it."""
    spec = backbone(name)
    path = Path(path)
    state = read_state_dict(path)
    guessed = guess_architecture(state)
    if guessed is None:
        raise CrcInputError(f"{path} holds no ResNet or DenseNet weights that CRC-TIME knows; choose {spec.title}'s "
                            f"checkpoint ({spec.weights_file}).")
    if guessed != spec.name:
        raise CrcInputError(f"{path} holds {BACKBONES[guessed].title} weights, not {spec.title}. Choose the {spec.title} "
                            f"checkpoint ({spec.weights_file}) or train {BACKBONES[guessed].title} instead.")


def classifier(name: str, *, weights: str | Path | None = "imagenet", download: bool = False,
               require_pretrained: bool = False, num_classes: int = NUM_CLASSES):
    """The backbone with a fresh ``num_classes`` head (what fine-tuning trains), and its weights' origin.
    A run's own 2-class checkpoint is loaded whole, head included."""
    spec = backbone(name)
    model, info = imagenet_model(name, weights=weights, download=download, require_pretrained=require_pretrained)
    head = model.classifier if spec.family == "densenet" else model.fc
    if head.out_features != num_classes:
        _head(model, spec, num_classes)
    return model, info


def feature_extractor(model, name: str):
    """The model up to its global average pooling: ``(N, 3, H, W) → (N, feature_dim)``."""
    import torch.nn as nn

    spec = backbone(name)
    if spec.family == "densenet":
        model.classifier = nn.Identity()
    else:
        model.fc = nn.Identity()
    return model.eval()
