"""Forward-only passes through ONNX Runtime where it is faster than torch on this machine.

A network that is only read (frozen features, a run's probabilities) is exported once to ONNX and
kept in a cache folder under a key made of a checksum of its weights, the input shape, the opset and
the torch version, so other weights or another crop size export again and nothing else does. Each
graph is saved with a golden pair — a fixed input and torch's output for it — and, before a graph
is used, ONNX Runtime must give that output (within :data:`TOLERANCE`) and the torch model in hand
must give it too: a damaged, foreign or stale graph is exported again, never used.

Whether ONNX Runtime is used is measured, as :mod:`crc_core.networks.devices` does for precision: a few
timed batches of each engine, interleaved, the minimum of each; the answer is remembered per CPU,
torch and onnxruntime versions, network and input size. Torch stays on a GPU, for bf16/fp16 plans
(the device plan measured those faster), and wherever onnxruntime is not installed. Grad-CAM needs
gradients and never comes here.

Measured on an AVX2-only CPU (2 cores, 224² crops): DenseNet-121 about 2× faster than torch fp32
channels_last, ResNet-50 about even — which is why it is measured rather than assumed
(``bench/onnx_forward.py`` prints the figures).

The exporter is torch's TorchScript one (``dynamo=False``): torch 2.14's default exporter needs the
extra package ``onnxscript``; the TorchScript one needs only ``onnx`` and gives equal outputs for
these convolutional networks.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

OPSET = 17
#: Largest difference allowed between ONNX Runtime's and torch's outputs, relative to the output's
#: size (an absolute 1e-4 for outputs of size up to 1).
TOLERANCE = 1e-4
#: Batches of the speed measurement: this many crops, timed this many times per engine.
PROBE_BATCH, PROBE_ROUNDS = 4, 2
GOLDEN_BATCH = 2
ENGINES = ("auto", "torch", "onnxruntime")


def available() -> bool:
    """Whether onnxruntime and onnx are installed (both are needed: one runs, the other exports)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def weights_checksum(model) -> str:
    """SHA-256 of the model's class and every tensor of its state dict (names, shapes, values)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        try:
            digest.update(value.numpy().tobytes())
        except TypeError:  # bfloat16 has no numpy type
            digest.update(value.float().numpy().tobytes())
    return digest.hexdigest()


def graph_key(model, input_shape: Sequence[int], opset: int = OPSET) -> str:
    import torch

    shape = "x".join(str(int(s)) for s in input_shape)
    text = f"{weights_checksum(model)}|{shape}|opset{opset}|torch {torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _golden_input(input_shape: Sequence[int]) -> np.ndarray:
    # Standard normal, as ImageNet-normalised crops roughly are; fixed, so the pair is reproducible.
    return np.random.default_rng(0).standard_normal((GOLDEN_BATCH, *input_shape)).astype(np.float32)


def _torch_output(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(x)).float().cpu().numpy()


def close_enough(got: np.ndarray, expected: np.ndarray, tolerance: float = TOLERANCE) -> bool:
    """Same shape, finite, and no element further than ``tolerance`` × max(1, the largest |value|)."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape or not np.isfinite(got).all():
        return False
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    return float(np.abs(got - expected).max(initial=0.0)) <= tolerance * scale


def session_options(threads: int | None = None):
    """ONNX Runtime's options: as many intra-op threads as torch uses here (it respects the
    machine's cores and ``OMP_NUM_THREADS``), one inter-op thread, every graph optimisation."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers etc. are not the user's business
    return options


def new_session(path_or_bytes, threads: int | None = None):
    import onnxruntime as ort

    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxGraph:
    """An exported graph and its golden pair, checked against the torch model it came from."""

    path: Path
    golden: Path
    key: str
    input_shape: tuple[int, ...]
    rebuilt: bool  # exported now (absent, damaged or mismatching before), not read from the cache


def _export_bytes(model, input_shape: Sequence[int], opset: int) -> bytes:
    import torch

    buffer = io.BytesIO()
    example = torch.from_numpy(_golden_input(input_shape)[:1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return buffer.getvalue()


def _golden_holds(graph_path: Path, golden_path: Path, key: str, expected: np.ndarray) -> bool:
    """Whether the cached pair belongs to ``key``, its output is the torch model's, and ONNX
    Runtime reproduces it from the graph on disk."""
    try:
        with np.load(golden_path, allow_pickle=False) as pair:
            if str(pair["key"]) != key or not close_enough(pair["output"], expected):
                return False
            x, y = pair["input"], pair["output"]
        return close_enough(new_session(graph_path).run(None, {"input": x})[0], y)
    except Exception:  # any unreadable, truncated or foreign file: export again
        return False


def exported_graph(model, folder: Path | str, input_shape: Sequence[int], opset: int = OPSET) -> OnnxGraph:
    """The model's ONNX graph in ``folder``, exported now unless a cached one passes its golden
    check. Both files are written through a temporary file and a rename. Raises ``RuntimeError``
    when even a fresh export disagrees with torch (the caller then keeps torch)."""
    from crc_core.workspace import atomic_write_bytes

    model = model.eval()
    shape = tuple(int(s) for s in input_shape)
    key = graph_key(model, shape, opset)
    folder = Path(folder)
    path, golden = folder / f"{key}.onnx", folder / f"{key}.golden.npz"
    x = _golden_input(shape)
    expected = _torch_output(model, x)
    if path.exists() and golden.exists() and _golden_holds(path, golden, key, expected):
        return OnnxGraph(path, golden, key, shape, rebuilt=False)
    data = _export_bytes(model, shape, opset)
    got = new_session(data).run(None, {"input": x})[0]
    if not close_enough(got, expected):
        raise RuntimeError(f"ONNX Runtime's output differs from torch's by {float(np.abs(got - expected).max()):.2e}")
    atomic_write_bytes(path, data)
    buffer = io.BytesIO()
    np.savez(buffer, key=np.asarray(key), input=x, output=expected)
    atomic_write_bytes(golden, buffer.getvalue())
    return OnnxGraph(path, golden, key, shape, rebuilt=True)


class OnnxModule:
    """An ONNX Runtime session that reads like the torch module it replaces: a float tensor in
    (any memory layout, on the CPU), a float tensor out. It holds no parameters, so ``.to()`` and
    ``.eval()`` return it unchanged; it computes no gradients (not a torch module, so importing
    this file costs no torch import)."""

    engine = "onnxruntime"

    def __init__(self, graph: OnnxGraph, session, reason: str = ""):
        self.graph, self.session, self.reason = graph, session, reason

    def to(self, *args, **kwargs) -> "OnnxModule":
        return self

    def eval(self) -> "OnnxModule":
        return self

    def __call__(self, x):
        import torch

        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {"input": array})[0])


# ---------------------------------------------------------------------------------------------
# Which engine: measured once per CPU, versions, network and input size


def _state_file() -> Path:
    from crc_core.workspace import state_dir

    return state_dir() / "onnx_forward.json"


def _remembered(key: str) -> dict | None:
    try:
        found = json.loads(_state_file().read_text()).get(key)
        return found if isinstance(found, dict) and found.get("engine") in ("torch", "onnxruntime") else None
    except (OSError, ValueError, AttributeError):
        return None


def _remember(key: str, answer: dict) -> None:
    from crc_core.workspace import atomic_write_text

    try:
        known = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        known = {}
    known[key] = answer
    try:
        atomic_write_text(_state_file(), json.dumps(known, indent=2))
    except OSError:
        pass  # a read-only home folder only means measuring again next time


def measurement_key(model, input_shape: Sequence[int], threads: int) -> str:
    import onnxruntime
    import torch

    from crc_core.networks.devices import cpu_name

    size = sum(p.numel() for p in model.parameters())
    shape = "x".join(str(int(s)) for s in input_shape)
    return (f"{cpu_name()}|torch {torch.__version__}|onnxruntime {onnxruntime.__version__}|"
            f"{type(model).__name__} {size}|{shape}|{threads} threads")


def measure(model, session, input_shape: Sequence[int], *, channels_last: bool = True,
            batch: int = PROBE_BATCH, rounds: int = PROBE_ROUNDS) -> dict[str, float]:
    """Seconds per batch of ``batch`` crops of each engine: one warm-up each, then ``rounds``
    interleaved timings, the minimum of each (the least disturbed by other work on the machine)."""
    import torch

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((batch, *input_shape)).astype(np.float32))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    reference = model.to(memory_format=layout)
    x_torch = x.contiguous(memory_format=layout)
    x_onnx = x.numpy()

    def torch_step():
        with torch.inference_mode():
            reference(x_torch)

    def onnx_step():
        session.run(None, {"input": x_onnx})

    best = {"torch": float("inf"), "onnxruntime": float("inf")}
    for step in (torch_step, onnx_step):
        step()
    for _ in range(rounds):
        for engine, step in (("torch", torch_step), ("onnxruntime", onnx_step)):
            started = time.perf_counter()
            step()
            best[engine] = min(best[engine], time.perf_counter() - started)
    return best


def fastest_forward(model, plan, folder: Path | str, image_shape: Sequence[int], *, engine: str = "auto",
                    probe=None):
    """``model`` itself, or an :class:`OnnxModule` equal to it, whichever reads crops faster here.

    ``plan`` is the run's :class:`~crc_core.networks.devices.DevicePlan`; ``image_shape`` is a crop's
    (C, H, W) (one channel is read as three, as :func:`crc_core.training.features.model_input` does);
    ``folder`` keeps the exported graphs. ``engine``: ``"auto"`` (measured), ``"torch"`` or
    ``"onnxruntime"`` (on a CPU in fp32; elsewhere torch). ``probe(model, session, shape)`` →
    ``{"torch": s, "onnxruntime": s}`` replaces the timing (tests). The choice and its reason are on
    the returned module's ``engine`` and ``reason`` (a torch module gets them as attributes too).
    """
    import torch

    from crc_core.errors import CrcInputError

    if engine not in ENGINES:
        raise CrcInputError(f"The forward engine must be one of {', '.join(ENGINES)}; got {engine!r}.")

    def keep_torch(reason: str):
        model.engine, model.reason = "torch", reason
        return model

    if engine == "torch":
        return keep_torch("chosen")
    if plan.device != "cpu":
        return keep_torch(f"torch on {plan.device}")
    if plan.precision != "fp32":
        return keep_torch(f"torch {plan.precision} (the device plan found it faster than fp32)")
    if not available():
        return keep_torch("onnxruntime is not installed")
    shape = (3, *[int(s) for s in image_shape[1:]])
    model = model.eval()
    try:
        graph = exported_graph(model, folder, shape)
    except (RuntimeError, OSError, ValueError) as exc:  # an operator ONNX lacks, a disagreement, a full disk
        return keep_torch(f"ONNX export not usable ({type(exc).__name__}: {exc})")
    session = new_session(graph.path)
    if engine == "onnxruntime":
        return OnnxModule(graph, session, "chosen")
    threads = torch.get_num_threads()
    key = measurement_key(model, shape, threads)
    known = _remembered(key)
    if known is None:
        timings = (probe or (lambda m, s, sh: measure(m, s, sh, channels_last=plan.channels_last)))(model, session, shape)
        ratio = timings["onnxruntime"] / timings["torch"]
        known = {"engine": "onnxruntime" if ratio < 1 else "torch", "ratio": round(ratio, 3)}
        _remember(key, known)
        how = "measured"
    else:
        how = "measured earlier"
    reason = f"{how} on this CPU: ONNX Runtime takes {known['ratio']:.2f}× torch's time"
    if known["engine"] == "onnxruntime":
        return OnnxModule(graph, session, reason)
    return keep_torch(reason)
