"""Forward-only passes through ONNX Runtime: equal to torch (features, probabilities, AUCs) on real
torchvision networks (random weights: no ImageNet download here), a cached graph that fails its
golden pair is exported again, and the engine is chosen by a measurement remembered per machine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from crc_core.networks import onnx_forward  # noqa: E402
from crc_core.networks.devices import DevicePlan  # noqa: E402

CPU = DevicePlan("cpu", "fp32", True, "test")
SIZE = 64


def _crops(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, channels, SIZE, SIZE), dtype=np.float32)


def _network(name: str, seed: int = 0):
    import torch

    from crc_core.networks.backbones import classifier

    torch.manual_seed(seed)
    return classifier(name, weights="random")[0].eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet121", "resnet50"])
def test_features_probabilities_and_auc_equal_torch(name, tmp_path):
    import copy

    import torch
    from sklearn.metrics import roc_auc_score

    from crc_core.networks.backbones import feature_extractor
    from crc_core.training.features import deep_features
    from crc_core.training.finetune import evaluate

    crops = _crops(24)
    network = _network(name)
    onnx = onnx_forward.fastest_forward(network, CPU, tmp_path, crops.shape[1:], engine="onnxruntime")
    assert isinstance(onnx, onnx_forward.OnnxModule)
    loss = torch.nn.CrossEntropyLoss()
    y = np.array([0, 1] * 12)
    torch_loss, torch_prob = evaluate(network, crops, y, loss, CPU, batch_size=7)
    onnx_loss, onnx_prob = evaluate(onnx, crops, y, loss, CPU, batch_size=7)
    assert np.abs(onnx_prob - torch_prob).max() <= 1e-4
    assert abs(onnx_loss - torch_loss) <= 1e-4
    assert abs(roc_auc_score(y, onnx_prob) - roc_auc_score(y, torch_prob)) <= 1e-4

    extractor = feature_extractor(copy.deepcopy(network), name)
    onnx_features = onnx_forward.fastest_forward(extractor, CPU, tmp_path, crops.shape[1:], engine="onnxruntime")
    got, expected = deep_features(onnx_features, crops, CPU), deep_features(extractor, crops, CPU)
    assert got.shape == expected.shape == (24, extractor_dim(name))
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def extractor_dim(name: str) -> int:
    from crc_core.networks.backbones import backbone

    return backbone(name).feature_dim


def test_a_damaged_or_foreign_cached_graph_is_exported_again(tmp_path):
    network = _network("resnet34")
    first = onnx_forward.exported_graph(network, tmp_path, (3, SIZE, SIZE))
    assert first.rebuilt and first.path.exists() and first.golden.exists()
    assert not onnx_forward.exported_graph(network, tmp_path, (3, SIZE, SIZE)).rebuilt  # from the cache
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file and a rename

    first.path.write_bytes(first.path.read_bytes()[:1000])  # truncated
    again = onnx_forward.exported_graph(network, tmp_path, (3, SIZE, SIZE))
    assert again.rebuilt and again.path == first.path

    # Another network's graph and golden pair under this key: consistent with each other, not with the model.
    other = onnx_forward.exported_graph(_network("resnet34", seed=1), tmp_path / "other", (3, SIZE, SIZE))
    first.path.write_bytes(other.path.read_bytes())
    first.golden.write_bytes(other.golden.read_bytes())
    assert onnx_forward.exported_graph(network, tmp_path, (3, SIZE, SIZE)).rebuilt

    # A graph of other weights beside the right golden pair: ONNX Runtime misses the pair's output.
    first.path.write_bytes(other.path.read_bytes())
    assert onnx_forward.exported_graph(network, tmp_path, (3, SIZE, SIZE)).rebuilt
    crops = _crops(3, channels=3)
    used = onnx_forward.fastest_forward(network, CPU, tmp_path, crops.shape[1:], engine="onnxruntime")
    import torch

    with torch.inference_mode():
        expected = network(torch.from_numpy(crops)).numpy()
    assert np.abs(used(torch.from_numpy(crops)).numpy() - expected).max() <= 1e-4


def test_the_engine_is_measured_once_and_remembered_and_torch_stays_on_gpu_and_bf16(tmp_path):
    network = _network("resnet34")
    calls = []

    def faster_onnx(model, session, shape):
        calls.append(shape)
        return {"torch": 2.0, "onnxruntime": 1.0}

    chosen = onnx_forward.fastest_forward(network, CPU, tmp_path, (1, SIZE, SIZE), probe=faster_onnx)
    assert chosen.engine == "onnxruntime" and "measured on this CPU" in chosen.reason and "0.50×" in chosen.reason
    again = onnx_forward.fastest_forward(network, CPU, tmp_path, (1, SIZE, SIZE), probe=faster_onnx)
    assert again.engine == "onnxruntime" and "measured earlier" in again.reason
    assert calls == [(3, SIZE, SIZE)]

    slower = onnx_forward.fastest_forward(network, CPU, tmp_path, (1, 2 * SIZE, 2 * SIZE),
                                          probe=lambda m, s, sh: {"torch": 1.0, "onnxruntime": 1.5})
    assert slower is network and slower.engine == "torch" and "1.50×" in slower.reason

    never = lambda m, s, sh: pytest.fail("no measurement on a GPU or in bf16")  # noqa: E731
    for plan in (DevicePlan("cuda", "bf16", True, "GPU"), DevicePlan("cpu", "bf16", True, "AMX")):
        kept = onnx_forward.fastest_forward(network, plan, tmp_path / "unused", (1, SIZE, SIZE), probe=never)
        assert kept is network and kept.engine == "torch"
    assert not (tmp_path / "unused").exists()


def test_a_real_measurement_times_both_engines(tmp_path):
    network = _network("resnet34")
    graph = onnx_forward.exported_graph(network, tmp_path, (3, 32, 32))
    timings = onnx_forward.measure(network, onnx_forward.new_session(graph.path), (3, 32, 32), batch=2, rounds=1)
    assert set(timings) == {"torch", "onnxruntime"} and all(0 < t < 60 for t in timings.values())


def test_the_features_mode_computes_its_features_through_onnx_runtime_when_faster(tmp_path, monkeypatch):
    from crc_core.networks.backbones import classifier, feature_extractor
    from crc_core.training.features import cached_deep_features, deep_features

    crops = _crops(10)
    monkeypatch.setattr(onnx_forward, "measure", lambda *a, **k: {"torch": 2.0, "onnxruntime": 1.0})
    features, info, cached = cached_deep_features(tmp_path, "resnet34", "cropkey", [f"P{i}" for i in range(10)],
                                                  lambda: crops, CPU, weights="random", seed=3)
    assert not cached and not info.pretrained
    assert len(list((tmp_path / "features" / "onnx").glob("*.onnx"))) == 1
    import torch

    torch.manual_seed(3)
    expected = deep_features(feature_extractor(classifier("resnet34", weights="random")[0], "resnet34"), crops, CPU)
    assert np.abs(features - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
