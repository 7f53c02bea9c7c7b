"""Grad-CAM: where in the crop a model looked, with checks that the map can be trusted.

:func:`grad_cams` weights a convolutional layer's activations by the mean gradient of the chosen
class's score (Selvaraju et al. 2017), or by Grad-CAM++'s weights (Chattopadhay et al. 2018), as
``pytorch_grad_cam.GradCAM`` / ``GradCAMPlusPlus`` compute them (a test holds them equal): ReLU,
min-max scaling, then bilinear resizing to the input. The target class is always explicit. Maps of
a batch come from one forward pass and one gradient back to the explained layer, never further: a
cohort's maps cost about what the network's forward passes cost.

A map is only worth showing if it depends on what the model learned and lands on the tumour:
:func:`roi_share` measures the map's mass inside the ROI, and the randomisation check (Adebayo et
al. 2018) compares each map with the map of the same network whose learned top — the logistic
regression of a features run, the classifier of a fine-tuned one — is drawn at random, in the same
batch; a fine-tuned network is randomised further down, block by block (the cascade). Maps of a
cohort are computed by ``crc-time cam`` in a worker and cached in the run folder.
"""

from __future__ import annotations

import copy
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
#: Patients per forward pass: large enough to keep the cores busy, small enough for a laptop's memory.
CAM_BATCH = 16
#: The first batch is small, so the page shows progress within seconds of the start.
FIRST_BATCH = 4
#: Patients whose maps the cascade (deeper randomisation of a fine-tuned network) compares.
CASCADE_PATIENTS = 8
Progress = Callable[..., None]


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


def _maps(activation: np.ndarray, gradient: np.ndarray, method: str, size: tuple[int, int]) -> np.ndarray:
    """Maps (B, H, W) in [0, 1] from a layer's activations and gradients (B, C, h, w)."""
    import torch
    import torch.nn.functional as F

    if method == "gradcam":
        weights = gradient.mean(axis=(2, 3))
    else:
        squared, cubed = gradient ** 2, gradient ** 3
        alpha = squared / (2 * squared + activation.sum(axis=(2, 3))[:, :, None, None] * cubed + 1e-6)
        alpha = np.where(gradient != 0, alpha, 0)
        weights = (np.maximum(gradient, 0) * alpha).sum(axis=(2, 3))
    cam = np.maximum((weights[:, :, None, None] * activation).sum(axis=1), 0)
    cam = cam - cam.min(axis=(1, 2), keepdims=True)
    cam = cam / (1e-7 + cam.max(axis=(1, 2), keepdims=True))
    resized = F.interpolate(torch.from_numpy(cam)[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return np.clip(resized.numpy(), 0.0, 1.0).astype(np.float32)


def grad_cams(model, images, target_class: int = 1, layer=None, *, method: str = "gradcam", top=None,
              random_top=None) -> tuple[np.ndarray, np.ndarray | None]:
    """The class-activation maps of ``target_class`` for a batch of normalised images (B, 3, H, W),
    as (B, H, W) in [0, 1]; and, with ``top`` (the model's last layer, which gives the logits) and
    ``random_top`` (a layer of the same shape with random weights), the maps the model would give
    with that random top instead — from the same forward pass.

    ``layer``: a module of ``model`` or its dotted name (the run's default comes from
    :attr:`crc_core.runs.store.RunModel.cam_layer`). ``method``: ``gradcam`` or ``gradcam++``.
    """
    import torch

    if method not in METHODS:
        raise CrcInputError(f"The CAM method must be one of {', '.join(METHODS)}; got {method!r}.")
    if layer is None:
        raise CrcInputError("Name the layer to explain (e.g. 'layer4' for a ResNet, 'features.norm5' for a DenseNet).")
    _, module = find_layer(model, layer)
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise CrcInputError(f"Grad-CAM takes normalised images (B, 3, H, W); got shape {tuple(x.shape)}.")
    model.eval()
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        # As pytorch_grad_cam: the activation as the forward pass leaves it (DenseNet's in-place
        # ReLU after norm5 included), the gradient with respect to the layer's own output. The
        # network goes on with a copy, so the in-place ReLU changes the copy and not the output.
        captured["output"] = output
        captured["after"] = output.clone()
        return captured["after"]

    def keep_top_input(_module, inputs):
        captured["top_input"] = inputs[0]

    handles = [module.register_forward_hook(keep)]
    if top is not None:
        handles.append(top.register_forward_pre_hook(keep_top_input))
    try:
        with torch.enable_grad():
            output = model(x)
            if not 0 <= target_class < output.shape[1]:
                raise CrcInputError(f"The model has {output.shape[1]} classes; class {target_class} does not exist.")
            activation = captured["after"].detach().float().numpy()
            if activation.shape[2:] == (1, 1):
                raise CrcInputError(
                    f"The layer {layer!r} sees a 1 × 1 map at this input size ({x.shape[-2]} × {x.shape[-1]} px): there is "
                    "nowhere to point. Use larger crops (the paper's 224 px) or an earlier layer."
                )
            # The scores of different images do not mix (batch norm in eval mode), so the gradient of
            # their sum is each image's own gradient.
            gradient = torch.autograd.grad(output[:, target_class].sum(), captured["output"],
                                           retain_graph=random_top is not None)[0]
            maps = _maps(activation, gradient.float().numpy(), method, tuple(x.shape[-2:]))
            random_maps = None
            if random_top is not None:
                random_output = random_top(captured["top_input"])
                random_gradient = torch.autograd.grad(random_output[:, target_class].sum(), captured["output"])[0]
                random_maps = _maps(activation, random_gradient.float().numpy(), method, tuple(x.shape[-2:]))
    finally:
        for handle in handles:
            handle.remove()
    return maps, random_maps


def grad_cam(model, image, target_class: int = 1, layer=None, *, method: str = "gradcam") -> np.ndarray:
    """The class-activation map of ``target_class`` for one normalised image, (H, W) in [0, 1]."""
    return grad_cams(model, _as_batch(image), target_class, layer, method=method)[0][0]


def random_like(top, seed: int = 12345):
    """A copy of the last layer ``top`` with its weights drawn at random, at the learned weights'
    own size (the same Frobenius norm), so the logits keep their scale and only what was learned
    is gone."""
    import torch

    randomised = copy.deepcopy(top)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = randomised.weight
        drawn = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
        weight.copy_(drawn * (top.weight.norm() / drawn.norm().clamp_min(1e-12)))
    return randomised.eval()


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


def median(values) -> float:
    """The median of the finite values (NaN when there are none, without a warning): a map with no
    evidence at all has no ROI share and no rank correlation."""
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    return float(np.median(finite)) if finite.size else float("nan")


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps' pixels (as R ``cor(method = "spearman")``)."""
    from scipy import stats

    a, b = np.ravel(a), np.ravel(b)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


# ---------------------------------------------------------------------------------------------
# A run's maps


def why_not_explainable(run) -> str | None:
    """Why a run has no network of its own to explain, or None when it has (fine-tuned and
    features runs)."""
    if run.has_network:
        return None
    if run.mode == "combined":
        return (f"A combined model has no network of its own: its DL score comes from run {run.info.get('parent_run', '?')}; "
                "choose that run to see its maps.")
    return "A radiomics run has no network to explain: its features are handcrafted, not learned from pixels."


def layer_choices(run) -> list[str]:
    """The layers a user may explain a run at, deepest first: the backbone's last convolutional
    block (the default) and the stages before it, whose larger maps stay informative on small
    crops (a 32 px crop leaves ResNet's layer4 a 1 × 1 map). Named without building the network."""
    from crc_core.networks.backbones import backbone

    if why_not_explainable(run):
        return []
    spec = backbone(run.backbone)
    stages = (["features.norm5", "features.denseblock3", "features.denseblock2"] if spec.family == "densenet"
              else ["layer4", "layer3", "layer2"])
    prefix = "backbone." if run.mode == "features" else ""
    return [prefix + stage for stage in stages]


def check_layer(run, layer: str | None) -> None:
    """Refuse, before any map is computed, a layer that is not one the run's network offers."""
    if not layer:
        return
    choices = layer_choices(run)
    if layer not in choices:
        raise CrcInputError(f"Run {run.run_id} cannot be explained at layer {layer!r}; choose one of {', '.join(choices)}.")


def cascade_stages(run) -> list[tuple[str, ...]]:
    """What the cascading randomisation of a fine-tuned network re-draws, cumulatively from the
    top (Adebayo et al. 2018): the classifier, then the last block, then the block before."""
    from crc_core.networks.backbones import backbone

    if run.mode != "finetune":
        return []
    if backbone(run.backbone).family == "densenet":
        top, blocks = "classifier", [("features.denseblock4", "features.norm5"), ("features.transition3", "features.denseblock3")]
    else:
        top, blocks = "fc", [("layer4",), ("layer3",)]
    stages, randomised = [], (top,)
    stages.append(randomised)
    for block in blocks:
        randomised = randomised + block
        stages.append(randomised)
    return stages


def _randomised(network, modules: tuple[str, ...], seed: int):
    """A copy of ``network`` with ``modules`` re-initialised (their own default initialisation)."""
    import torch

    copied = copy.deepcopy(network)
    torch.manual_seed(seed)
    named = dict(copied.named_modules())
    for name in modules:
        for sub in named[name].modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            if hasattr(sub, "reset_running_stats"):
                sub.reset_running_stats()
    return copied.eval()


# ---------------------------------------------------------------------------------------------
# A cohort's maps, cached


def _batches(items: list, size: int, *, first: int) -> list[list]:
    """``items`` in batches of ``size``, the first of ``first``."""
    first = max(1, min(first, size))
    return [items[:first]] + [items[i:i + size] for i in range(first, len(items), size)] if items else []


def cohort_maps(workspace: Workspace, run_id: str, cohort: str = "validation", *, method: str = "gradcam",
                target_class: int = 1, layer: str | None = None, batch_size: int = CAM_BATCH,
                progress: Progress | None = None) -> Path:
    """Maps of every patient of a run's cohort (crop set of the run), their ROI shares, and the
    randomisation check of each (the learned top drawn at random, in the same batches); for a
    fine-tuned run also the cascade on the first :data:`CASCADE_PATIENTS`. Each patient is
    explained by the model that predicted it (its fold's). Written to the run folder."""
    from crc_core.training.features import model_input
    from crc_core.evaluate.predict import cohort_workspace
    from crc_core.imaging.preprocess import load_crop, read_crop_set
    from crc_core.runs.store import NO_FOLD, RunStore, load_run_model

    workspace = Workspace.of(workspace)
    store = RunStore(workspace)
    run = store.run(run_id)
    reason = why_not_explainable(run)
    if reason:
        raise CrcInputError(reason)
    check_layer(run, layer)
    if method not in METHODS:
        raise CrcInputError(f"The CAM method must be one of {', '.join(METHODS)}; got {method!r}.")
    predictions = store.predictions(run_id, cohort)
    if predictions.empty:
        raise CrcInputError(f"Run {run_id} has no predictions for the {cohort} cohort.")
    # An external cohort's crops were cut in its centre's workspace when it was predicted.
    crops = read_crop_set(cohort_workspace(workspace, run, cohort).crops_dir / run.info["crop_key"])
    rows = crops.index.set_index("patient_id")
    fold_of = predictions.drop_duplicates("patient_id").set_index("patient_id")["fold"]
    patients = list(fold_of.index)
    # A patient whose crop is not in the crop set, or whose file went missing since, is named, not counted.
    missing = [p for p in patients if p not in rows.index or not (crops.folder / str(rows.loc[p, "npz"])).is_file()]
    if len(missing) == len(patients):
        raise CrcInputError(f"No patient of the {cohort} cohort has a crop in {crops.folder}; run preprocessing again.")
    total = len(patients) - len(missing)
    if progress:
        progress(0, total, f"Grad-CAM: loading the model of run {run_id}")
    ids, maps, random_maps, shares, areas, notes, layer_used, cascade_input = [], [], [], [], [], [], None, None
    first_model = None
    for fold, group in fold_of.groupby(fold_of, sort=True):
        model = load_run_model(workspace, run, None if fold == NO_FOLD else int(fold))
        first_model = first_model or model
        network = model.network
        named = dict(network.named_modules())
        top = named[model.top]
        random_top = random_like(top)
        layer_used = layer or model.cam_layer
        if fold == NO_FOLD and model.note:
            notes.append(model.note)
        chosen = [p for p in group.index if p not in missing]
        for batch in _batches(chosen, batch_size, first=FIRST_BATCH if not ids else batch_size):
            loaded = [load_crop(crops.folder, rows.loc[p].to_dict()) for p in batch]
            kept = [(p, c) for p, c in zip(batch, loaded) if c is not None]
            missing += [p for p, c in zip(batch, loaded) if c is None]
            if not kept:
                continue
            x = model_input(np.stack([c.pixels for _, c in kept]))
            learned, randomised = grad_cams(network, x, target_class, layer_used, method=method, top=top, random_top=random_top)
            for (patient, crop), cam, other in zip(kept, learned, randomised):
                ids.append(patient)
                maps.append(cam.astype(np.float16))
                random_maps.append(rank_correlation(cam, other))
                shares.append(roi_share(cam, crop.roi))
                areas.append(roi_area_share(crop.roi))
            if cascade_input is None:
                cascade_input = (network, x[:CASCADE_PATIENTS], learned[:CASCADE_PATIENTS])
            if progress:
                progress(len(ids), total, f"Grad-CAM: {len(ids)} of {total} patients")
    if not ids:
        raise CrcInputError(f"No patient of the {cohort} cohort has a crop in {crops.folder}; run preprocessing again.")
    folds_used = sorted(int(f) for f in set(fold_of) if f != NO_FOLD)
    if folds_used:
        notes.append(f"each patient explained by the model of the fold that predicted it ({len(folds_used)} folds)")
    elif run.mode == "features" and not notes:
        notes.append("the frozen backbone feeding the logistic regression")
    cascade = []
    if cascade_input is not None and run.mode == "finetune":
        network, x, learned = cascade_input
        stages = cascade_stages(run)
        # The first stage (the classifier alone) is the check every patient already had.
        cascade.append({"randomised": ", ".join(stages[0]), "median_rho": median(random_maps)})
        for stage in stages[1:]:
            randomised_maps = grad_cams(_randomised(network, stage, seed=12345), x, target_class, layer_used, method=method)[0]
            rhos = [rank_correlation(a, b) for a, b in zip(learned, randomised_maps)]
            cascade.append({"randomised": ", ".join(stage), "median_rho": median(rhos)})
    path = run.folder(workspace).cam_maps(cohort, method)
    meta = {"cohort": cohort, "layer": layer_used, "method": method, "target_class": target_class, "missing": missing, "note": "; ".join(notes),
            "randomised": "the logistic regression on the frozen features" if run.mode == "features" else f"the classifier ({first_model.top})",
            "cascade": cascade}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, patient_ids=np.asarray(ids), maps=np.stack(maps), roi_share=np.asarray(shares),
                        roi_area=np.asarray(areas), sanity=np.asarray(random_maps), meta=np.asarray(json.dumps(meta)))
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


def overlay_images(workspace: Workspace, run, maps: CohortMaps, patients: list[str],
                   cohort: str | None = None) -> dict[str, tuple]:
    """(central slice of the crop, map, ROI) of each patient that still has a crop in the run's
    crop set: what an overlay draws, for the page and the report alike. ``cohort``: the maps'
    (default: as they were computed; maps kept before that was noted are of the run's own cohorts).
    Raises :class:`CrcInputError` when an external cohort's workspace is no longer there."""
    from crc_core.evaluate.predict import cohort_workspace
    from crc_core.imaging.preprocess import load_crop, read_crop_set

    source = cohort_workspace(Workspace.of(workspace), run, cohort or maps.meta.get("cohort", "validation"))
    crops = read_crop_set(source.crops_dir / run.info["crop_key"])
    rows = crops.index.set_index("patient_id")
    images = {}
    for patient in patients:
        if patient in rows.index:
            crop = load_crop(crops.folder, rows.loc[patient].to_dict())
            images[patient] = (crop.pixels[crop.pixels.shape[0] // 2], maps.maps[maps.patient_ids.index(patient)], crop.roi)
    return images


def cached_maps(workspace: Workspace, run, cohort: str, method: str) -> CohortMaps | None:
    """A run's cached maps of ``cohort`` by ``method``, or None when none were computed."""
    return read_cohort_maps(run.folder(workspace).cam_maps(cohort, method))


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
