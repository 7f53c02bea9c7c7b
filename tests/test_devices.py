"""Device and precision: the CPU's instruction set decides where it can, a measurement where it
cannot, and the measurement is remembered per CPU, torch version and model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from crc_core.networks import devices  # noqa: E402
from crc_core.errors import CrcInputError  # noqa: E402


def test_amx_means_bf16_and_avx2_only_means_fp32(monkeypatch):
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "amx_bf16", "avx512_bf16"})
    plan = devices.plan_device("cpu")
    assert (plan.precision, plan.channels_last) == ("bf16", True) and "AMX" in plan.reason
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "fma"})
    plan = devices.plan_device("cpu", probe=lambda p: pytest.fail("no measurement needed"))
    assert plan.precision == "fp32" and "bf16 would be slower" in plan.reason


def test_avx512_bf16_without_amx_is_measured_once_and_remembered(monkeypatch):
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    calls = []

    def probe(precision: str) -> float:
        calls.append(precision)
        return {"fp32": 2.0, "bf16": 1.0}[precision]

    plan = devices.plan_device("cpu", probe=probe, probe_key="densenet121 finetune 224")
    assert plan.precision == "bf16" and "measured bf16 2.00× the speed of fp32" in plan.reason
    again = devices.plan_device("cpu", probe=probe, probe_key="densenet121 finetune 224")
    assert again.precision == "bf16" and "measured earlier" in again.reason
    assert calls == ["fp32", "bf16"]  # measured once
    slower = devices.plan_device("cpu", probe=lambda p: {"fp32": 1.0, "bf16": 6.0}[p], probe_key="resnet50 finetune 224")
    assert slower.precision == "fp32"


def test_a_chosen_precision_wins_and_a_missing_gpu_is_said(monkeypatch):
    assert devices.plan_device("cpu", "fp32").precision == "fp32"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(CrcInputError, match="CUDA was chosen but no CUDA GPU is available"):
            devices.plan_device("cuda")
    with pytest.raises(CrcInputError, match="Precision must be one of"):
        devices.plan_device("cpu", "int8")
