"""Where and in what precision a model runs: chosen once per run, from what the machine has.

CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient scaler; channels_last.
Apple MPS: fp32. CPU: the instruction set decides, and where it does not, a measurement does —
on Intel CPUs with AMX, bf16 autocast with channels_last trained DenseNet-121 3.5× faster than
fp32; on AMD CPUs with AVX2 only, bf16 was about 6× slower; CPUs with AVX-512 BF16 but no AMX
(e.g. AMD Zen 4) are measured on the spot (two timed steps each) and the answer remembered per CPU,
torch version, backbone and input size.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from crc_core.errors import CrcInputError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "fp32", "bf16" or "fp16"
    channels_last: bool
    reason: str
    cpu_capability: str = ""

    def describe(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"{self.device} {self.precision}{layout} ({self.reason})"

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _state_file() -> Path:
    from crc_core.workspace import state_dir

    return state_dir() / "cpu_precision.json"


def _remembered(key: str) -> str | None:
    try:
        return json.loads(_state_file().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _remember(key: str, precision: str) -> None:
    from crc_core.workspace import atomic_write_text

    try:
        known = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        known = {}
    known[key] = precision
    try:
        atomic_write_text(_state_file(), json.dumps(known, indent=2))
    except OSError:
        pass


def plan_device(device: str = "auto", precision: str = "auto", *,
                probe: Callable[[str], float] | None = None, probe_key: str = "") -> DevicePlan:
    """The device and precision a run uses. ``probe(precision) -> seconds per step`` is called
    for the CPUs whose instruction set does not settle the question."""
    import torch

    if device not in DEVICES:
        raise CrcInputError(f"Device must be one of {', '.join(DEVICES)}; got {device!r}.")
    if precision not in PRECISIONS:
        raise CrcInputError(f"Precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise CrcInputError("CUDA was chosen but no CUDA GPU is available here; choose the CPU or 'auto'.")
        chosen = precision if precision != "auto" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
        return DevicePlan("cuda", chosen, True, f"{torch.cuda.get_device_name(0)}")
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise CrcInputError("Apple MPS was chosen but is not available here; choose the CPU or 'auto'.")
        return DevicePlan("mps", "fp32" if precision == "auto" else precision, False, "Apple GPU")
    capability = torch.backends.cpu.get_cpu_capability()
    if precision != "auto":
        return DevicePlan("cpu", precision, True, "chosen", capability)
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return DevicePlan("cpu", "bf16", True, "AMX-BF16: bf16 autocast is several times faster", capability)
    if "avx512_bf16" not in flags:
        return DevicePlan("cpu", "fp32", True, f"{capability} without BF16 instructions: bf16 would be slower", capability)
    key = f"{cpu_name()}|torch {torch.__version__}|{probe_key}"
    known = _remembered(key)
    if known in ("fp32", "bf16"):
        return DevicePlan("cpu", known, True, "AVX-512 BF16: measured earlier on this CPU", capability)
    if probe is None:
        return DevicePlan("cpu", "fp32", True, "AVX-512 BF16, not measured: fp32", capability)
    timings = {p: probe(p) for p in ("fp32", "bf16")}
    faster = min(timings, key=timings.get)
    _remember(key, faster)
    ratio = timings["fp32"] / timings["bf16"]
    return DevicePlan("cpu", faster, True, f"AVX-512 BF16: measured bf16 {ratio:.2f}× the speed of fp32", capability)


def autocast(plan: DevicePlan):
    """The autocast context of the plan (a no-op for fp32)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(plan.precision)
    return torch.autocast(plan.device if plan.device != "mps" else "cpu", dtype=dtype, enabled=dtype is not None)


def time_steps(step: Callable[[], None], n: int = 2) -> float:
    """Seconds per call of ``step`` after one warm-up call."""
    step()
    started = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - started) / n
