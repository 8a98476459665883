"""Derive an int8 version from an fp32 one: ``python -m classifier quantize``.

ONNX Runtime's static quantization (``onnxruntime.quantization``): the fp32
graph is pre-processed (symbolic shape inference and graph optimisation, without
which ORT cannot fuse the result into integer kernels), activation ranges are
calibrated on real photos run through the serving preprocessing, and the model is
rewritten in QDQ form with per-channel int8 weights. The new version keeps the
labels and preprocessing, says ``precision: int8`` and ``derived_from``, and has
no safetensors: only the onnx backend serves it.

The types (see docs/performance.md for the measurements): activations uint8,
weights int8 (U8S8), with ``reduce_range`` (7-bit weights). On x86 without VNNI
(AVX2, AVX-512F: this project's CI machine, and Lambda hosts of those
generations) ORT's U8S8 kernels use VPMADDUBSW, whose 16-bit intermediate sums
can saturate; 7-bit weights cannot overflow it, and ORT's documentation asks for
reduce_range with per-channel weights on those CPUs. On VNNI and on ARM64's
dot-product instructions (Graviton) there is no saturation to avoid. S8S8 QDQ,
ORT's default, is slower than U8S8 on both kinds of x86 host (docs/performance.md
has the measurements): ORT on AVX2 does not fuse it into integer convolutions.

Heavy (imports onnx and ``onnxruntime.quantization``): a command of the
developer environment, never of the serving path.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from classifier.serving.imaging import Preprocessing, ignored_text, preprocess, sort_images
from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import MANIFEST, StoreError, make_version, precision, validate_manifest

SETTINGS = {"format": "QDQ", "activations": "uint8", "weights": "int8", "per_channel": True,
            "reduce_range": True, "calibration_method": "MinMax"}


class QuantizeError(Exception):
    pass


def calibration_images(directory: Path | None) -> tuple[list[Path], dict[str, int]]:
    """The images under ``directory`` (recursively, by their bytes), or the bundled CC0 photos; and
    how many files were ignored, by reason."""
    ignored: dict[str, int] = {}
    if directory is None:
        bundled = resources.files("classifier").joinpath("assets", "calibration")
        with resources.as_file(bundled) as folder:
            paths = sorted(Path(folder).glob("*.jpg"))
    else:
        if not directory.is_dir():
            raise QuantizeError(f"--calibration {directory} is not a directory")
        paths, ignored = sort_images(sorted(p for p in directory.rglob("*") if p.is_file()), directory)
    if not paths:
        why = f" ({ignored_text(ignored)})" if ignored else ""
        raise QuantizeError(f"no calibration images in {directory}{why}")
    return paths, ignored


def calibration_tensors(paths: Sequence[Path], spec: Preprocessing) -> list[np.ndarray]:
    """Each photo as the server would feed it, and mirrored (twice the ranges from the same photos)."""
    tensors = []
    for path in paths:
        tensor, _ = preprocess(path.read_bytes(), spec, max_pixels=10**9, fast_jpeg=False)
        tensors += [tensor, np.ascontiguousarray(tensor[:, :, ::-1])]
    return tensors


def quantize(store: ModelStore, name: str, version: str | None = None, *, calibration: Path | None = None,
             activate: bool = True) -> dict[str, Any]:
    """Install the int8 version derived from ``version`` (default: the current one); return its manifest."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        version = version or store.current(name)
        if version is None:
            raise QuantizeError(f"model {name} has no current version to quantize: pass --version")
        manifest = store.verify(name, version)
    except StoreError as exc:
        raise QuantizeError(str(exc)) from None
    if precision(manifest) != "fp32":
        raise QuantizeError(f"{name} {version} is already {precision(manifest)}: quantize an fp32 version")
    if "model.onnx" not in manifest["artifacts"]:
        raise QuantizeError(f"{name} {version} has no model.onnx to quantize")
    source_dir = store.version_dir(name, version)
    spec = Preprocessing.from_manifest(manifest["preprocessing"])
    images, ignored = calibration_images(calibration)
    tensors = calibration_tensors(images, spec)
    input_name = manifest.get("onnx", {}).get("input", "input")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feed: Iterator[dict[str, np.ndarray]] = iter({input_name: t[None]} for t in tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feed, None)

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        work = Path(tmp)
        quant_pre_process(str(source_dir / "model.onnx"), str(work / "prepared.onnx"))
        quantize_static(
            str(work / "prepared.onnx"), str(work / "model.onnx"), Reader(),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
        )
        (work / "prepared.onnx").unlink()
        shutil.copyfile(source_dir / "labels.json", work / "labels.json")
        verification = check_int8(work / "model.onnx", source_dir / "model.onnx", tensors, manifest)
        artifacts = {}
        for artifact in ("model.onnx", "labels.json"):
            size, digest = sha256_file(work / artifact)
            artifacts[artifact] = {"bytes": size, "sha256": digest}
        created = datetime.now(UTC).replace(microsecond=0)
        derived = {key: value for key, value in manifest.items() if key not in ("verification", "artifacts")}
        derived.update({
            "version": make_version(artifacts, created),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "precision": "int8",
            "derived_from": version,
            "quantization": {**SETTINGS, "calibration": {"images": len(images), "samples": len(tensors),
                                                          "source": str(calibration or "bundled CC0 photos"),
                                                          "ignored": ignored}},
            "verification": verification,
            "tools": {**manifest.get("tools", {}), "onnxruntime": onnxruntime.__version__},
            "artifacts": artifacts,
        })
        validate_manifest(derived)
        (work / MANIFEST).write_text(json.dumps(derived, indent=2) + "\n")
        store.install_dir(work, make_current=activate)
    return derived


def check_int8(int8: Path, fp32: Path, tensors: Sequence[np.ndarray], manifest: dict[str, Any]) -> dict[str, Any]:
    """Run the calibration photos through both models: the int8 one must load, answer the
    label count, and its top-1 agreement with fp32 is recorded (``evaluate --compare`` measures
    it on real data)."""
    from classifier.serving.backends.onnx_backend import OnnxBackend

    batch = np.stack(tensors)
    try:
        quantized = OnnxBackend(int8, threads=1)
        got = quantized.run(batch)
    except Exception as exc:
        raise QuantizeError(f"the quantized model does not run: {exc}") from None
    if quantized.num_classes != manifest["labels"]["count"] or not np.isfinite(got).all():
        raise QuantizeError("the quantized model's output is not one finite score per label")
    want = OnnxBackend(fp32, threads=1).run(batch)
    same = float(np.mean(np.argmax(got, axis=1) == np.argmax(want, axis=1)))
    return {"photos": len(tensors), "top1_agreement_with_fp32": round(same, 4)}
