"""Which int8 recipe ``quantize`` uses: each candidate's CPU time per forward pass against fp32.

Every variant is quantized from the bench store's fp32 ``model.onnx`` with the same
calibration tensors as ``classifier.lifecycle.quantize``, then timed in this process on one
intra-op thread (CPU time of the calling thread: robust to a busy shared machine),
variants interleaved round by round. Writes ``<work>/profile-quantize.json``.

    python bench/profile/quantize.py [--work bench/.work] [--rounds 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# (name, quantize_static keyword arguments, pre-processed first)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "S8S8, QDQ (ONNX Runtime's default)": ({"activation_type": "QInt8", "weight_type": "QInt8"}, True),
    "U8S8, QDQ": ({"activation_type": "QUInt8", "weight_type": "QInt8"}, True),
    "U8S8, QDQ, reduce_range (classifier.lifecycle.quantize)": (
        {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": True}, True),
    "U8S8, QDQ, per-tensor weights": ({"activation_type": "QUInt8", "weight_type": "QInt8", "per_channel": False},
                                      True),
    "U8S8, QOperator, reduce_range": ({"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": True,
                                       "quant_format": "QOperator"}, True),
    "U8U8, QDQ": ({"activation_type": "QUInt8", "weight_type": "QUInt8"}, True),
    "U8S8, QDQ, reduce_range, not pre-processed": (
        {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": True}, False),
}


def quantize_variants(fp32: Path, spec: Any, out: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from classifier.lifecycle.quantize import calibration_images, calibration_tensors

    tensors = calibration_tensors(calibration_images(None)[0], spec)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feed = iter({"input": t[None]} for t in tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feed, None)

    prepared = out / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    paths = {}
    for i, (name, (options, pre)) in enumerate(VARIANTS.items()):
        kwargs = {"per_channel": True, **options}
        kwargs["activation_type"] = getattr(QuantType, kwargs["activation_type"])
        kwargs["weight_type"] = getattr(QuantType, kwargs["weight_type"])
        kwargs["quant_format"] = getattr(QuantFormat, kwargs.get("quant_format", "QDQ"))
        paths[name] = out / f"variant-{i}.onnx"
        quantize_static(str(prepared if pre else fp32), str(paths[name]), Reader(), **kwargs)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[1] / ".work")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)

    from classifier.serving.backends.onnx_backend import OnnxBackend
    from classifier.serving.imaging import Preprocessing
    from classifier.store.layout import ModelStore

    store = ModelStore(args.work / "store")
    version = store.current("resnet50")
    if version is None:
        raise SystemExit(f"no model in {args.work / 'store'}: run `python bench/run.py --quick` first")
    spec = Preprocessing.from_manifest(store.manifest("resnet50", version)["preprocessing"])
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        paths = {"fp32": store.version_dir("resnet50", version) / "model.onnx",
                 **quantize_variants(store.version_dir("resnet50", version) / "model.onnx", spec, Path(tmp))}
        sessions = {name: OnnxBackend(path, threads=1, spin=False) for name, path in paths.items()}
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for session in sessions.values():
            session.run(x)
        cpu: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, session in sessions.items():
                for _ in range(3):
                    started = time.thread_time()
                    session.run(x)
                    cpu[name].append((time.thread_time() - started) * 1000)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
    base = statistics.median(cpu["fp32"])
    report = {name: {"cpu_ms_p50": round(statistics.median(v), 1), "ratio": round(statistics.median(v) / base, 2),
                     "bytes": sizes[name]} for name, v in cpu.items()}
    (args.work / "profile-quantize.json").write_text(json.dumps(report, indent=1) + "\n")
    for name, row in report.items():
        print(f"{name:48} {row['cpu_ms_p50']:7.1f} ms  {row['ratio']:.2f}x  {row['bytes'] / 1e6:6.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
