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

Any fp32 version can be quantized, whatever its architecture or origin (an ONNX file published
with ``--onnx`` included): the calibration photos go through that version's own preprocessing.
Not every model survives static quantization of every operator. So before installing,
``quantize`` compares the int8 model with fp32 on the calibration photos (how far the outputs
drift, how often the top-1 agrees, one forward pass's time each), records the figures in the
manifest, and says what it measured:

- a vision transformer (ViT, Swin, MaxViT) is refused, figures given, unless ``--force``: static
  int8 of its attention, Softmax and LayerNorm activations is known to lose accuracy on trained
  weights, whose outlier channels do not fit one scale per tensor;
- a version that drifts beyond the bounds below is installed but not made current, whatever
  ``--no-activate`` says (``--force`` makes it current as asked): ``evaluate --compare`` on real
  data, then ``promote``, decides.

Heavy (imports onnx and ``onnxruntime.quantization``): a command of the
developer environment, never of the serving path.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
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
# How far the int8 outputs may drift from fp32's on the calibration photos before quantize stops
# short of making the version current: ||int8 - fp32|| / ||fp32|| over every output (each row
# centred: a softmax ignores a shift), and the share of photos whose top-1 stays the same. What the
# bench's networks measured is in docs/models.md.
MAX_RELATIVE_ERROR = 0.4
MIN_TOP1_AGREEMENT = 0.6
# Architectures whose attention layers static int8 is known to hurt (torchvision's builder names).
TRANSFORMER_PREFIXES = ("vit_", "swin_", "maxvit_")
SPEED_ROUNDS = 5


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
    width_axis = 1 if spec.layout == "NHWC" else 2
    for path in paths:
        tensor, _ = preprocess(path.read_bytes(), spec, max_pixels=10**9, fast_jpeg=False)
        tensors += [tensor, np.ascontiguousarray(np.flip(tensor, axis=width_axis))]
    return tensors


def quantize(store: ModelStore, name: str, version: str | None = None, *, calibration: Path | None = None,
             activate: bool = True, force: bool = False) -> dict[str, Any]:
    """Install the int8 version derived from ``version`` (default: the current one); return its manifest.

    Raises ``QuantizeError`` (nothing installed) for a vision transformer, unless ``force``. A version
    that drifts beyond the bounds is installed but made current only with ``force``; the manifest's
    ``verification.drift`` says why.
    """
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
    architecture = manifest.get("architecture", "resnet50")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feed: Iterator[dict[str, np.ndarray]] = iter({input_name: t[None]} for t in tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feed, None)

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        work = Path(tmp)
        try:
            try:
                quant_pre_process(str(source_dir / "model.onnx"), str(work / "prepared.onnx"))
            except AssertionError:
                # ORT's symbolic shape inference gives up on some graphs (a ViT's reshapes with a
                # dynamic batch); ONNX's own shape inference and the graph optimisation still run.
                quant_pre_process(str(source_dir / "model.onnx"), str(work / "prepared.onnx"),
                                  skip_symbolic_shape=True)
            quantize_static(
                str(work / "prepared.onnx"), str(work / "model.onnx"), Reader(),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
            )
        except Exception as exc:  # ONNX Runtime's tools on a graph they cannot handle (an ONNX of any origin)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QuantizeError(f"ONNX Runtime could not quantize {name} {version} ({architecture}): "
                                f"{type(exc).__name__}: {first}; nothing was installed") from None
        (work / "prepared.onnx").unlink()
        shutil.copyfile(source_dir / "labels.json", work / "labels.json")
        verification = check_int8(work / "model.onnx", source_dir / "model.onnx", tensors, manifest, spec)
        verification.update(forward_times(work / "model.onnx", source_dir / "model.onnx", tensors[0], spec))
        refusal = transformer_problem(architecture)
        if refusal is not None and not force:
            raise QuantizeError(
                f"the int8 version of {name} {version} was not installed: {refusal}. {measured(verification)}. "
                f"--force installs it anyway; then measure it on your data with "
                f"`evaluate --version INT8 --compare {version}`")
        verification["drift"] = drift_problems(verification)
        if refusal is not None:
            verification["forced"] = refusal
        make_current = activate and (force or not verification["drift"])
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
        store.install_dir(work, make_current=make_current, reason="quantize")
    return derived


def check_int8(int8: Path, fp32: Path, tensors: Sequence[np.ndarray], manifest: dict[str, Any],
               spec: Preprocessing) -> dict[str, Any]:
    """Run the calibration photos through both models: the int8 one must load and answer the
    label count; how far its outputs are from fp32's is measured (``evaluate --compare`` measures
    it on real data): top-1 agreement, and the relative error of the outputs as a whole."""
    from classifier.serving.backends.onnx_backend import OnnxBackend

    batch = np.stack(tensors)
    try:
        quantized = OnnxBackend(int8, threads=1, spin=False, input_shape=spec.input_shape)
        got = quantized.run(batch)
    except Exception as exc:
        raise QuantizeError(f"the quantized model does not run: {exc}") from None
    if quantized.num_classes != manifest["labels"]["count"] or not np.isfinite(got).all():
        raise QuantizeError("the quantized model's output is not one finite score per label")
    want = OnnxBackend(fp32, threads=1, spin=False, input_shape=spec.input_shape).run(batch)
    same = float(np.mean(np.argmax(got, axis=1) == np.argmax(want, axis=1)))
    # The outputs minus each row's mean: a softmax ignores a shift, and a constant offset is no error.
    centred_got = got - got.mean(axis=1, keepdims=True)
    centred_want = want - want.mean(axis=1, keepdims=True)
    norm = float(np.linalg.norm(centred_want))
    relative = float(np.linalg.norm(centred_got - centred_want)) / norm if norm > 0 else None
    return {"photos": len(tensors), "top1_agreement_with_fp32": round(same, 4),
            "relative_error_vs_fp32": None if relative is None else round(relative, 4)}


def forward_times(int8: Path, fp32: Path, tensor: np.ndarray, spec: Preprocessing) -> dict[str, float]:
    """One image's forward pass through each model on one thread, medians of interleaved runs: what
    int8 saves on this machine (it depends on the CPU's integer instructions; docs/models.md)."""
    from classifier.serving.backends.onnx_backend import OnnxBackend

    batch = tensor[None]
    models = {kind: OnnxBackend(path, threads=1, spin=False, input_shape=spec.input_shape)
              for kind, path in (("int8", int8), ("fp32", fp32))}
    times: dict[str, list[float]] = {kind: [] for kind in models}
    for round_ in range(SPEED_ROUNDS + 1):
        for kind, model in models.items():
            start = time.perf_counter()
            model.run(batch)
            if round_:  # the first round sizes ORT's buffers
                times[kind].append((time.perf_counter() - start) * 1000)
    int8_ms, fp32_ms = statistics.median(times["int8"]), statistics.median(times["fp32"])
    return {"int8_forward_ms": round(int8_ms, 2), "fp32_forward_ms": round(fp32_ms, 2),
            "forward_time_ratio": round(int8_ms / fp32_ms, 3)}


def transformer_problem(architecture: str) -> str | None:
    """Why an architecture is not quantized without ``--force`` (None: it is)."""
    if not architecture.startswith(TRANSFORMER_PREFIXES):
        return None
    return (f"{architecture} is a vision transformer, and static int8 of its attention, Softmax and LayerNorm "
            "activations loses accuracy on trained weights (their outlier channels do not fit one scale per "
            "tensor), which a few calibration photos cannot rule out")


def drift_problems(verification: dict[str, Any]) -> list[str]:
    """How the int8 outputs drift from fp32's beyond the bounds (none: within them)."""
    relative, agreement = verification["relative_error_vs_fp32"], verification["top1_agreement_with_fp32"]
    problems = []
    if relative is None:
        problems.append("the fp32 outputs are the same for every class, so the drift cannot be measured")
    elif relative > MAX_RELATIVE_ERROR:
        problems.append(f"its outputs drift from fp32's by a relative error of {relative:.3f} "
                        f"(at most {MAX_RELATIVE_ERROR})")
    if agreement < MIN_TOP1_AGREEMENT:
        problems.append(f"its top-1 agrees with fp32's on {agreement:.0%} of the photos "
                        f"(at least {MIN_TOP1_AGREEMENT:.0%})")
    return problems


def measured(verification: dict[str, Any]) -> str:
    """The measurements, in a sentence."""
    relative, agreement = verification["relative_error_vs_fp32"], verification["top1_agreement_with_fp32"]
    return (f"Measured on the {verification['photos']} calibration photos: relative error "
            f"{'n/a' if relative is None else f'{relative:.3f}'}, top-1 agreement {agreement:.0%}; one forward "
            f"pass {verification['int8_forward_ms']:.1f} ms int8 against {verification['fp32_forward_ms']:.1f} ms "
            f"fp32 ({verification['forward_time_ratio']:.2f}x) on one thread of this machine")
