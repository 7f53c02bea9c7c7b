"""ONNX Runtime against torch for forward-only passes: DenseNet-121 and ResNet-50 (2-class heads)
reading the sample's crops (224 px), in one run. For every batch of 32 crops each engine runs in
turn — torch fp32 as the project runs it on a CPU (channels_last, inference_mode), ONNX Runtime
fp32, and ONNX Runtime int8 (static QDQ, per-channel, calibrated on 16 crops) — and this is repeated
``--rounds`` times; each batch's minimum over the rounds is kept (the least disturbed by other work
on the machine) and summed. Prints the times, the largest probability difference, each engine's AUC
against the TSR labels, and ``ratio R`` = ONNX Runtime fp32 time / torch fp32 time. Never asserts
on time.

    .venv/bin/python bench/onnx_forward.py [--workspace DIR] [--rounds 2] [--crops N] [--networks resnet50] [--no-int8]

Without ImageNet weights in models/ the networks are randomly initialised (as on the machine these
figures were first taken on): the times are the same, the AUCs mean nothing but must agree.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fast_mode import prepared_workspace  # noqa: E402

NETWORKS = ("densenet121", "resnet50")
BATCH = 32
CALIBRATION_CROPS = 16


def int8_graph(fp32: Path, calibration, folder: Path) -> Path:
    """Static QDQ int8 quantisation of ``fp32`` (per-channel weights, int8 activations), calibrated
    with the min-max of ``calibration`` (N, 3, H, W, normalised)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calibration[i:i + 4]} for i in range(0, len(calibration), 4)])

        def get_next(self):
            return next(self.batches, None)

    import logging

    logging.getLogger().setLevel(logging.ERROR)  # per-channel notes about BatchNorm weights, one per layer
    prepared, out = folder / f"{fp32.stem}-pre.onnx", folder / f"{fp32.stem}-int8.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def softmax1(logits):
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e[:, 1] / e.sum(axis=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a prepared workspace (default: build the sample)")
    parser.add_argument("--rounds", type=int, default=2, help="timings of each batch per engine (default 2)")
    parser.add_argument("--crops", type=int, default=0, help="read only the first N crops (default: all)")
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated (default {','.join(NETWORKS)})")
    parser.add_argument("--no-int8", action="store_true", help="leave out the int8 graph")
    parser.add_argument("--smoke", action="store_true", help="toy size (40 patients, 64 px): checks it runs")
    args = parser.parse_args()
    import numpy as np
    import onnxruntime
    import torch
    from sklearn.metrics import roc_auc_score

    from crc_core.networks import onnx_forward
    from crc_core.networks.backbones import backbone, classifier
    from crc_core.training.datasets import labelled_crops
    from crc_core.networks.devices import cpu_flags, cpu_name
    from crc_core.training.features import model_input

    flags = cpu_flags()
    special = sorted(f for f in flags if f.startswith(("avx512", "amx")) or "vnni" in f)
    print(f"CPU: {cpu_name()}; torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads); onnxruntime {onnxruntime.__version__}; "
          f"int8-relevant flags: {', '.join(special) or 'none (AVX2 only: no VNNI, no AMX)'}")
    scratch = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    try:
        started = time.perf_counter()
        root = args.workspace or prepared_workspace(scratch, smoke=args.smoke)
        data = labelled_crops(root, "tsr")
        images, y = data.images(), np.asarray(data.y)
        if args.crops:
            images, y = images[:args.crops], y[:args.crops]
        print(f"workspace ready in {time.perf_counter() - started:.1f} s: {len(images)} crops of {images.shape[-1]} px")
        ratios = {}
        for name in [n.strip() for n in args.networks.split(",")]:
            torch.manual_seed(0)
            network = classifier(name, weights="random")[0].eval()
            shape = (3, *images.shape[2:])
            started = time.perf_counter()
            graph = onnx_forward.exported_graph(network, scratch / "graphs", shape)
            export_s = time.perf_counter() - started
            sessions = {"onnx fp32": onnx_forward.new_session(graph.path)}
            if not args.no_int8:
                started = time.perf_counter()
                calibration = model_input(images[:CALIBRATION_CROPS]).numpy()
                sessions["onnx int8"] = onnx_forward.new_session(int8_graph(graph.path, calibration, scratch / "graphs"))
                quant_s = time.perf_counter() - started
            network = network.to(memory_format=torch.channels_last)
            batches = [model_input(images[i:i + BATCH]) for i in range(0, len(images), BATCH)]

            def run(engine, x):
                if engine == "torch fp32":
                    with torch.inference_mode():
                        return network(x.contiguous(memory_format=torch.channels_last)).float().numpy()
                return sessions[engine].run(None, {"input": np.ascontiguousarray(x.numpy())})[0]

            engines = ["torch fp32", *sessions]
            for engine in engines:  # warm-up
                run(engine, batches[0][:4])
            best = {e: [float("inf")] * len(batches) for e in engines}
            probs = {e: [] for e in engines}
            for round_ in range(max(1, args.rounds)):
                for b, x in enumerate(batches):
                    for engine in engines:
                        began = time.perf_counter()
                        out = run(engine, x)
                        best[engine][b] = min(best[engine][b], time.perf_counter() - began)
                        if round_ == 0:
                            probs[engine].append(softmax1(out))
            seconds = {e: sum(best[e]) for e in engines}
            p = {e: np.concatenate(probs[e]) for e in engines}
            auc = {e: roc_auc_score(y, p[e]) if len(set(y.tolist())) == 2 else float("nan") for e in engines}
            title = backbone(name).title
            print(f"{title}: export {export_s:.1f} s" + ("" if args.no_int8 else f", int8 quantisation {quant_s:.1f} s")
                  + "; " + ", ".join(f"{e} {seconds[e]:.2f} s ({len(images) / seconds[e]:.1f} images/s)" for e in engines))
            for engine in engines[1:]:
                diff = float(np.abs(p[engine] - p["torch fp32"]).max())
                print(f"  {engine}: max |Δ probability| {diff:.2e}, AUC {auc[engine]:.5f} vs torch {auc['torch fp32']:.5f} "
                      f"(Δ {abs(auc[engine] - auc['torch fp32']):.5f}), mean probability {p[engine].mean():.4f} vs "
                      f"{p['torch fp32'].mean():.4f}; time ÷ torch fp32 {seconds[engine] / seconds['torch fp32']:.2f}")
            if "onnx int8" in seconds:
                print(f"  int8 ÷ ONNX Runtime fp32: {seconds['onnx int8'] / seconds['onnx fp32']:.2f}")
            ratios[name] = seconds["onnx fp32"] / seconds["torch fp32"]
        print("ratio R: " + ", ".join(f"{n} {r:.2f}" for n, r in ratios.items())
              + f" (ONNX Runtime fp32 ÷ torch fp32 channels_last, min of {max(1, args.rounds)} interleaved rounds; goal ≤ 0.5)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
