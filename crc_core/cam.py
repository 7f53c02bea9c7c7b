"""Grad-CAM: where in the crop a model looked, with checks that the map can be trusted.

:func:`grad_cam` weights a convolutional layer's activations by the mean gradient of the chosen
class's score (Selvaraju et al. 2017), or by Grad-CAM++'s weights (Chattopadhay et al. 2018), as
``pytorch_grad_cam.GradCAM`` / ``GradCAMPlusPlus`` compute them (a test holds them equal): ReLU,
min-max scaling, then bilinear resizing to the input. The target class is always explicit.

A map is only worth showing if it depends on what the model learned and lands on the tumour:
:func:`roi_share` measures the map's mass inside the ROI, and :func:`randomisation_check`
(Adebayo et al. 2018) compares it with the map of the same architecture with re-initialised
weights. Maps of a cohort are computed by ``crc-time cam`` in a worker and cached in the run folder.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from crc_core.errors import CrcInputError
from crc_core.workspace import Workspace, atomic_write_bytes

METHODS = ("gradcam", "gradcam++")
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}  # as figures and captions print them
CLASS_NAMES = {0: "low", 1: "high"}
Progress = Callable[[int, int], None]


def find_layer(model, layer) -> tuple[str, object]:
    """``layer`` as (dotted name, module): a module of ``model`` or its dotted name. An unknown name
    is refused with the model's convolutional blocks listed."""
    modules = dict(model.named_modules())
    if not isinstance(layer, str):
        name = next((n for n, m in modules.items() if m is layer), None)
        if name is None:
            raise CrcInputError("The layer given is not a module of this model.")
        return name, layer
    if layer not in modules:
        import torch.nn as nn

        blocks = [n for n, m in modules.items() if n and isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Sequential)) and n.count(".") <= 2]
        raise CrcInputError(f"The model has no layer {layer!r}. Its convolutional blocks include: {', '.join(blocks[-12:])}.")
    return layer, modules[layer]


def _as_batch(image):
    import torch

    tensor = torch.as_tensor(image, dtype=torch.float32)
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[1] != 3:
        raise CrcInputError(f"Grad-CAM takes one normalised image, (3, H, W) or (1, 3, H, W); got shape {tuple(tensor.shape)}.")
    return tensor


def grad_cam(model, image, target_class: int = 1, layer=None, *, method: str = "gradcam") -> np.ndarray:
    """The class-activation map of ``target_class`` for one normalised image, (H, W) in [0, 1].

    ``layer``: a module of ``model`` or its dotted name (required: the run's default comes from
    :func:`crc_core.backbones.Backbone.cam_layer`). ``method``: ``gradcam`` or ``gradcam++``.
    """
    import torch
    import torch.nn.functional as F

    if method not in METHODS:
        raise CrcInputError(f"The CAM method must be one of {', '.join(METHODS)}; got {method!r}.")
    if layer is None:
        raise CrcInputError("Name the layer to explain (e.g. 'layer4' for a ResNet, 'features.norm5' for a DenseNet).")
    _, module = find_layer(model, layer)
    x = _as_batch(image)
    model.eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        # As pytorch_grad_cam: the output as the forward pass left it (DenseNet's in-place ReLU
        # after norm5 included), and its gradient from a hook on the tensor itself.
        captured["activation"] = output.detach()
        output.register_hook(lambda grad: captured.__setitem__("gradient", grad.detach()))

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            output = model(x)
            if not 0 <= target_class < output.shape[1]:
                raise CrcInputError(f"The model has {output.shape[1]} classes; class {target_class} does not exist.")
            model.zero_grad(set_to_none=True)
            output[0, target_class].backward()
    finally:
        handle.remove()
    activation = captured["activation"][0].float().numpy()
    gradient = captured["gradient"][0].float().numpy()
    if method == "gradcam":
        weights = gradient.mean(axis=(1, 2))
    else:
        squared, cubed = gradient ** 2, gradient ** 3
        alpha = squared / (2 * squared + activation.sum(axis=(1, 2))[:, None, None] * cubed + 1e-6)
        alpha = np.where(gradient != 0, alpha, 0)
        weights = (np.maximum(gradient, 0) * alpha).sum(axis=(1, 2))
    if activation.shape[1:] == (1, 1):
        raise CrcInputError(
            f"The layer {layer!r} sees a 1 × 1 map at this input size ({x.shape[-2]} × {x.shape[-1]} px): there is nowhere to point. "
            "Use larger crops (the paper's 224 px) or an earlier layer."
        )
    cam = np.maximum((weights[:, None, None] * activation).sum(axis=0), 0)
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    resized = F.interpolate(torch.from_numpy(cam)[None, None].float(), size=tuple(x.shape[-2:]), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Trust checks


def roi_share(cam: np.ndarray, roi: np.ndarray) -> float:
    """The share of the map's mass inside the ROI (0-1); the ROI's own area share is what a map
    spread evenly would give, so compare with :func:`roi_area_share`."""
    cam, roi = np.asarray(cam, dtype=float), np.asarray(roi, dtype=bool)
    if cam.shape != roi.shape:
        raise CrcInputError(f"The map ({cam.shape}) and the ROI ({roi.shape}) differ in size.")
    total = cam.sum()
    return float(cam[roi].sum() / total) if total > 0 else float("nan")


def roi_area_share(roi: np.ndarray) -> float:
    return float(np.asarray(roi, dtype=bool).mean())


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps' pixels (as R ``cor(method = "spearman")``)."""
    from scipy import stats

    a, b = np.ravel(a), np.ravel(b)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


# ---------------------------------------------------------------------------------------------
# A run's model, explainable


def features_mode_model(extractor, linear):
    """A features-mode run as one network: the frozen backbone, the standardisation, and the
    logistic regression as its last linear layer (logits [0, z], so class 1's score is z)."""
    import torch
    import torch.nn as nn

    class FeaturesModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = extractor
            self.register_buffer("kept", torch.as_tensor(linear.kept, dtype=torch.long))
            self.register_buffer("mean", torch.as_tensor(linear.mean, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(linear.scale, dtype=torch.float32))
            self.head = nn.Linear(len(linear.kept), 1)
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(linear.coef, dtype=torch.float32)[None])
                self.head.bias.fill_(float(linear.intercept))

        def forward(self, x):
            z = self.head((self.backbone(x)[:, self.kept] - self.mean) / self.scale)
            return torch.cat([torch.zeros_like(z), z], dim=1)

    return FeaturesModel().eval()


@dataclass
class ExplainableModel:
    model: object
    layer: str
    backbone: str
    pretrained: bool
    note: str


def run_model(workspace: Workspace, run, *, reinitialised: bool = False, seed: int = 12345) -> ExplainableModel:
    """The network of a finished run, with the layer its maps come from (the backbone's last
    convolutional block). ``reinitialised``: the same architecture with fresh random weights (and
    a features-mode run's head kept), for the randomisation check."""
    import torch

    from crc_core.backbones import backbone, classifier, feature_extractor
    from crc_core.linear_models import LinearModel

    if why_not_explainable(run):
        raise CrcInputError(why_not_explainable(run))
    spec = backbone(run.backbone)
    folder = Workspace.of(workspace).runs_dir / run.run_id
    weights = run.info.get("weights", {})
    if run.mode == "finetune":
        checkpoints = sorted(folder.glob("best*.pt"))
        if not checkpoints:
            raise CrcInputError(f"Run {run.run_id} has no checkpoint (best.pt) in {folder}: copy it with the run, or train again.")
        if reinitialised:
            torch.manual_seed(seed)
            model = classifier(spec.name, weights="random")[0]
        else:
            model = classifier(spec.name, weights=checkpoints[0])[0]
        return ExplainableModel(model.eval(), spec.cam_layer, spec.name, bool(weights.get("pretrained")),
                                _which_of(checkpoints))
    models = sorted(folder.glob("model*.json"))
    if not models:
        raise CrcInputError(f"Run {run.run_id} has no model file in {folder}: copy it with the run, or train again.")
    torch.manual_seed(seed if reinitialised else int(run.config.get("seed", 0)))
    source = "random" if reinitialised or not weights.get("pretrained") else weights.get("path") or "imagenet"
    extractor = feature_extractor(classifier(spec.name, weights=source)[0], spec.name)
    model = features_mode_model(extractor, LinearModel.load(models[0]))
    return ExplainableModel(model, f"backbone.{spec.cam_layer}", spec.name, bool(weights.get("pretrained")),
                            "; ".join(filter(None, ["the frozen backbone feeding the logistic regression", _which_of(models)])))


def _which_of(files: list[Path]) -> str:
    """A cross-validated run keeps a model per fold; its maps are of the first, and say so."""
    return f"the model in {files[0].name}, the first of {len(files)} (one per fold)" if len(files) > 1 else ""


def why_not_explainable(run) -> str | None:
    """Why a run has no network of its own to explain, or None when it has (fine-tuned and
    features runs)."""
    if run.mode == "radiomics":
        return "A radiomics run has no network to explain: its features are handcrafted, not learned from pixels."
    if run.mode == "combined":
        return (f"A combined model has no network of its own: its DL score comes from run {run.info.get('parent_run', '?')}; "
                "choose that run to see its maps.")
    return None


def layer_choices(run) -> list[str]:
    """The layers a user may explain a run at, deepest first: the backbone's last convolutional
    block (the default) and the stages before it, whose larger maps stay informative on small
    crops (a 32 px crop leaves ResNet's layer4 a 1 × 1 map). Named without building the network."""
    from crc_core.backbones import backbone

    if why_not_explainable(run):
        return []
    spec = backbone(run.backbone)
    stages = (["features.norm5", "features.denseblock3", "features.denseblock2"] if spec.family == "densenet"
              else ["layer4", "layer3", "layer2"])
    prefix = "backbone." if run.mode == "features" else ""
    return [prefix + stage for stage in stages]


# ---------------------------------------------------------------------------------------------
# A cohort's maps, cached


def cam_cache_path(workspace: Workspace, run_id: str, cohort: str, method: str) -> Path:
    safe = cohort.replace(":", "-")
    return Workspace.of(workspace).runs_dir / run_id / "cam" / f"{safe}-{method.replace('+', 'p')}.npz"


def cohort_maps(workspace: Workspace, run_id: str, cohort: str = "validation", *, method: str = "gradcam",
                target_class: int = 1, layer: str | None = None, sanity_patients: int = 12,
                progress: Progress | None = None) -> Path:
    """Maps of every patient of a run's cohort (crop set of the run), their ROI shares, and the
    randomisation check on the first ``sanity_patients``; written to the run folder. ``layer``
    defaults to the backbone's last convolutional block."""
    from crc_core.features import model_input
    from crc_core.preprocess import load_crop, read_crop_set
    from crc_core.runs import RunStore

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(run_id)
    predictions = store.predictions(run_id, cohort)
    if predictions.empty:
        raise CrcInputError(f"Run {run_id} has no predictions for the {cohort} cohort.")
    crops = read_crop_set(workspace.crops_dir / run.info["crop_key"])
    rows = crops.index.set_index("patient_id")
    explainable = run_model(workspace, run)
    randomised = run_model(workspace, run, reinitialised=True)
    if layer:
        find_layer(explainable.model, layer)
        explainable.layer = randomised.layer = layer
    ids, maps, shares, areas, sanity, missing = [], [], [], [], [], []
    total = len(predictions)
    for i, patient in enumerate(predictions["patient_id"]):
        crop = load_crop(crops.folder, rows.loc[patient].to_dict()) if patient in rows.index else None
        if crop is None:
            missing.append(patient)
            continue
        x = model_input(crop.pixels[None])[0]
        cam = grad_cam(explainable.model, x, target_class, explainable.layer, method=method)
        ids.append(patient)
        maps.append(cam.astype(np.float16))
        shares.append(roi_share(cam, crop.roi))
        areas.append(roi_area_share(crop.roi))
        if len(sanity) < sanity_patients:
            sanity.append(rank_correlation(cam, grad_cam(randomised.model, x, target_class, randomised.layer, method=method)))
        if progress:
            progress(i + 1, total)
    if not ids:
        raise CrcInputError(f"No patient of the {cohort} cohort has a crop in {crops.folder}; run preprocessing again.")
    path = cam_cache_path(workspace, run_id, cohort, method)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, patient_ids=np.asarray(ids), maps=np.stack(maps), roi_share=np.asarray(shares),
                        roi_area=np.asarray(areas), sanity=np.asarray(sanity),
                        meta=np.asarray(json.dumps({"layer": explainable.layer, "method": method, "target_class": target_class,
                                                    "missing": missing, "note": explainable.note})))
    atomic_write_bytes(path, buffer.getvalue())
    return path


@dataclass
class CohortMaps:
    patient_ids: list[str]
    maps: np.ndarray
    roi_share: np.ndarray
    roi_area: np.ndarray
    sanity: np.ndarray
    meta: dict

    @property
    def explained(self) -> str:
        """The class the maps explain, as figures name it."""
        return CLASS_NAMES[int(self.meta["target_class"])]


def overlay_images(workspace: Workspace, run, maps: CohortMaps, patients: list[str]) -> dict[str, tuple]:
    """(central slice of the crop, map, ROI) of each patient that still has a crop in the run's
    crop set: what an overlay draws, for the page and the report alike."""
    from crc_core.preprocess import load_crop, read_crop_set

    crops = read_crop_set(Workspace.of(workspace).crops_dir / run.info["crop_key"])
    rows = crops.index.set_index("patient_id")
    images = {}
    for patient in patients:
        if patient in rows.index:
            crop = load_crop(crops.folder, rows.loc[patient].to_dict())
            images[patient] = (crop.pixels[crop.pixels.shape[0] // 2], maps.maps[maps.patient_ids.index(patient)], crop.roi)
    return images


def read_cohort_maps(path: Path) -> CohortMaps | None:
    if not Path(path).exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return CohortMaps(data["patient_ids"].tolist(), data["maps"].astype(np.float32), data["roi_share"],
                              data["roi_area"], data["sanity"], json.loads(str(data["meta"])))
    except (OSError, ValueError, KeyError) as exc:
        raise CrcInputError(f"The cached maps {path} are damaged ({exc}); compute them again.") from exc


from crc_core.configs import JsonConfig  # noqa: E402  (after the functions it configures)


@dataclass(frozen=True)
class CamConfig(JsonConfig):
    """Which maps ``crc-time cam`` computes: a run's cohort, the method, the class explained and
    the layer (empty: the backbone's last convolutional block)."""

    run_id: str = ""
    cohort: str = "validation"
    method: str = "gradcam"
    target_class: int = 1
    layer: str = ""

    def __post_init__(self) -> None:
        if not self.run_id:
            raise CrcInputError("Name the run whose maps to compute.")
        if self.method not in METHODS:
            raise CrcInputError(f"The CAM method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if self.target_class not in (0, 1):
            raise CrcInputError(f"The class to explain is 0 (low) or 1 (high); got {self.target_class!r}.")


def confident_cases(predictions, maps: CohortMaps, k: int = 3, threshold: float = 0.5) -> dict[str, list[str]]:
    """The ``k`` most confident right and wrong calls, by the probability's distance from
    ``threshold``. Pass the threshold Table 2 applies (Youden on training): right and wrong then
    mean what they mean there, and a model whose scores cluster away from 0.5 is not judged at 0.5."""
    rows = predictions.set_index("patient_id").loc[[p for p in maps.patient_ids if p in set(predictions["patient_id"])]]
    rows = rows[rows["y_true"].notna()]
    called = (rows["prob"] >= threshold).astype(int)  # positive when >=, as pROC and Table 2
    confidence = (rows["prob"] - threshold).abs()
    right = confidence[called == rows["y_true"].astype(int)].sort_values(ascending=False)
    wrong = confidence[called != rows["y_true"].astype(int)].sort_values(ascending=False)
    return {"right": right.index[:k].tolist(), "wrong": wrong.index[:k].tolist()}
