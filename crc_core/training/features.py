"""Features for the fast models: a frozen backbone's pooled features of every crop, and PyRadiomics
features of every ROI — each computed once and cached in ``<workspace>/features/``.

Deep features are cached per backbone × weights × crop set (the crop set's key already names what
made its pixels), radiomics features per manifest (its files' sizes and times) × settings, so a new
crop set or edited images are computed again and nothing else is.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from crc_core.networks.backbones import IMAGENET_MEAN, IMAGENET_STD, WeightsInfo, backbone, classifier, feature_extractor
from crc_core.networks.devices import DevicePlan, autocast
from crc_core.errors import CrcInputError
from crc_core.networks.onnx_forward import fastest_forward
from crc_core.workspace import Workspace, atomic_write_bytes, atomic_write_csv

Progress = Callable[[int, int], None]
#: The most crops one forward pass takes; the first pass takes :data:`FIRST_BATCH`, to measure the
#: pace, and the rest as many as take about :data:`SECONDS_PER_BATCH`.
FEATURE_BATCH = 32
FIRST_BATCH = 4
SECONDS_PER_BATCH = 2.0


def model_input(batch: np.ndarray, plan: DevicePlan | None = None):
    """Crops in [0, 1] (N, C, H, W; C = 1 or 3) as the network's ImageNet-normalised input tensor."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    if tensor.shape[1] == 1:
        tensor = tensor.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    tensor = (tensor - mean) / std
    if plan is not None:
        tensor = tensor.to(plan.device)
        if plan.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def deep_features(model, images: np.ndarray, plan: DevicePlan, progress: Progress | None = None) -> np.ndarray:
    """The pooled features of every image, in batches, without gradients. ``progress(done, total)``
    after each batch; the batches are sized to take about :data:`SECONDS_PER_BATCH` each (a first
    small one measures the pace), so a slow CPU reports every few seconds rather than every
    :data:`FEATURE_BATCH` images (found in use: a block of 32 every 35 s)."""
    import time

    import torch

    model = model.to(plan.device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    out = []
    start, size = 0, min(FIRST_BATCH, FEATURE_BATCH)
    with torch.inference_mode(), autocast(plan):
        while start < len(images):
            began = time.perf_counter()
            out.append(model(model_input(images[start:start + size], plan)).float().cpu().numpy())
            per_image = (time.perf_counter() - began) / len(out[-1])
            start += len(out[-1])
            if progress:
                progress(start, len(images))
            size = int(min(FEATURE_BATCH, max(1, SECONDS_PER_BATCH / per_image if per_image > 0 else FEATURE_BATCH)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), dtype=np.float32)


def weights_tag(info: WeightsInfo, seed: int) -> str:
    """Names the starting weights in a cache key: the checkpoint's file, or the random seed."""
    return f"imagenet-{Path(info.path).name}" if info.pretrained else f"random-seed{seed}"


def cached_deep_features(
    workspace: Workspace, backbone_name: str, crop_key: str, patient_ids: Sequence[str], images: Callable[[], np.ndarray],
    plan: DevicePlan, *, weights: str = "imagenet", download: bool = False, require_pretrained: bool = False,
    seed: int = 0, progress: Progress | None = None, on_weights: Callable[[WeightsInfo], None] | None = None,
) -> tuple[np.ndarray, WeightsInfo, bool]:
    """Features of ``patient_ids`` (rows in that order), the weights they came from, and whether
    they were served from the cache. ``images()`` is called only on a cache miss; ``on_weights``
    hears where the weights came from before any feature is computed."""
    import torch

    spec = backbone(backbone_name)
    torch.manual_seed(seed)  # random initialisation is part of the cache key through the seed
    model, info = classifier(spec.name, weights=weights, download=download, require_pretrained=require_pretrained)
    if on_weights:
        on_weights(info)
    tag = weights_tag(info, seed)
    path = Workspace.of(workspace).features_dir / f"{spec.name}-{tag}-{crop_key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as cached:
                lookup = {p: i for i, p in enumerate(cached["patient_ids"].tolist())}
                if all(p in lookup for p in patient_ids):
                    return cached["features"][[lookup[p] for p in patient_ids]], info, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is computed again
    crops = images()
    # ONNX Runtime where a measurement on this machine finds it faster (equal outputs, golden-checked).
    extractor = fastest_forward(feature_extractor(model, spec.name), plan, path.parent / "onnx", crops.shape[1:])
    features = deep_features(extractor, crops, plan, progress)
    buffer = io.BytesIO()
    np.savez(buffer, patient_ids=np.asarray(list(patient_ids), dtype=str), features=features)
    atomic_write_bytes(path, buffer.getvalue())
    return features, info, False


# ---------------------------------------------------------------------------------------------
# PyRadiomics


def _radiomics_one(task: tuple[str, str, str, int | None, str]) -> dict:
    from crc_core.imaging import agreement
    from crc_core.imaging import volumes as imaging

    patient, image_path, mask_path, label, roi = task
    try:
        image, mask = imaging.read_case(image_path, mask_path, roi, patient=patient)
        imaging.check_geometry(image, mask)
        values = agreement.radiomics_features(image, imaging.binary_mask(mask, label, where=f"{patient}'s mask"))
        return {"patient_id": patient, **values}
    except CrcInputError as exc:
        return {"patient_id": patient, "_error": str(exc)}


def radiomics_table(workspace: Workspace, patient_ids: Sequence[str], *, label: int | None = None,
                    workers: int | None = None, progress: Progress | None = None) -> tuple[pd.DataFrame, bool]:
    """PyRadiomics features (first order, shape, GLCM, GLRLM, GLSZM) of reader 1's ROI for each
    patient, indexed by patient; cached per manifest and settings. Patients whose ROI cannot be
    read are refused by name."""
    from crc_core.parallel import map_in_workers
    from crc_core.imaging.preprocess import file_stamp, read_manifest
    from crc_core.imaging.reader_study import radiomics_available

    if not radiomics_available():
        raise CrcInputError("PyRadiomics is not installed (`make run` installs it where a C compiler exists); "
                            "the radiomics baseline needs it.")
    manifest = read_manifest(workspace).set_index("patient_id")
    absent = [p for p in patient_ids if p not in manifest.index]
    if absent:
        raise CrcInputError(f"No CT or mask in manifest.csv for {len(absent)} labelled patient(s): {', '.join(absent[:10])}.")
    rows = manifest.loc[list(patient_ids)]
    stamp = "|".join(f"{p}:{file_stamp(r['image'])}:{file_stamp(r['mask'])}" + (f":{r['mask_roi']}" if r.get("mask_roi") else "")
                     for p, r in rows.iterrows())
    key = hashlib.sha1(f"{stamp}|label={label}|v1".encode()).hexdigest()[:12]
    path = Workspace.of(workspace).features_dir / f"radiomics-{key}.csv"
    if path.exists():
        try:
            return pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id").loc[list(patient_ids)], True
        except (OSError, ValueError, KeyError):
            pass
    tasks = [(p, r["image"], r["mask"], label, str(r.get("mask_roi", "") or "")) for p, r in rows.iterrows()]
    results = map_in_workers(_radiomics_one, tasks, workers=workers, progress=progress)
    failed = [r for r in results if "_error" in r]
    if failed:
        raise CrcInputError(f"PyRadiomics could not read the ROI of {len(failed)} patient(s): "
                            + "; ".join(f"{r['patient_id']}: {r['_error']}" for r in failed[:3]))
    table = pd.DataFrame(results).set_index("patient_id").loc[list(patient_ids)]
    atomic_write_csv(path, table.reset_index())
    return table, False
