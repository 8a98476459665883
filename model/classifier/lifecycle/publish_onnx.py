"""Bring your own ONNX: ``publish --onnx FILE --labels FILE --preprocessing FILE``.

Any ONNX image classifier (exported from timm, Hugging Face, Keras through tf2onnx, or
anywhere) is checked and installed as it is: the file is never rewritten. Refused, with a
message that names the problem, before anything is installed:

- a file the ONNX checker refuses, or whose weights live in external data files;
- an input that is not one float 4-D tensor with 3 channels where the layout puts them, or
  whose fixed height and width are not the crop's;
- an output width that is not the label count;
- a preprocessing file with an unknown key or a value out of bounds
  (``classifier.store.preprocessing``);
- a model that fails on a real photo (run once, through the serving preprocessing, as a batch
  of two), or that says it answers probabilities and does not.

The version's ``architecture`` is ``onnx`` and it has no safetensors: only the onnx backend
serves it (the torch backend answers 503 ``model_unavailable``). Needs onnx and ONNX Runtime,
not torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from classifier.lifecycle.publish import (
    SAMPLE_PHOTO,
    PublishError,
    PublishRequest,
    read_labels,
    read_preprocessing,
    sample_photo,
    write_manifest,
)
from classifier.serving.imaging import Preprocessing, preprocess
from classifier.store.fsio import sha256_file
from classifier.store.manifest import ONNX_ARCHITECTURE

# ONNX's tensor element type for float32 (onnx.TensorProto.FLOAT), the only input type served.
FLOAT = 1
# Operators that only a quantized graph holds: such a file is published as an int8 version.
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                           "MatMulInteger", "DynamicQuantizeLinear"})
# How far from 1 the scores of a model that says it answers probabilities may sum.
PROBABILITY_SUM_TOLERANCE = 1e-3


def build_onnx_version(request: PublishRequest, workdir: Path) -> dict[str, Any]:
    """Check ``request.onnx`` with its labels and preprocessing, and write the version into ``workdir``."""
    import onnx
    import onnxruntime

    assert request.onnx is not None
    path = request.onnx
    if request.labels_file is None or request.preprocessing_file is None:
        raise PublishError("--onnx needs --labels FILE and --preprocessing FILE: an ONNX file says neither "
                           "what its outputs mean nor how its input is made")
    if request.weights is not None:
        raise PublishError("--weights is for torchvision architectures: an ONNX file holds its own weights")
    name = request.model_name()
    labels = read_labels(request.labels_file)
    spec = read_preprocessing(request.preprocessing_file)
    if not path.is_file():
        raise PublishError(f"--onnx {path}: no such file")
    model = check_onnx(path)
    input_facts = check_input(model, spec, path)
    check_output(model, len(labels), path)

    shutil.copyfile(path, workdir / "model.onnx")
    (workdir / "labels.json").write_text(_json_list(labels))
    verification = run_once(workdir / "model.onnx", Preprocessing.from_manifest(spec), len(labels),
                            batch=2 if input_facts["dynamic_batch"] else 1)
    _, digest = sha256_file(path)
    quantized = any(node.op_type in QUANTIZED_OPS for node in model.graph.node)
    return write_manifest(workdir, {
        "name": name,
        "architecture": ONNX_ARCHITECTURE,
        "source": f"file:{digest}",
        "trained": True,
        "precision": "int8" if quantized else "fp32",
        "preprocessing": spec,
        "labels": {"file": "labels.json", "count": len(labels)},
        "onnx": {"opset": _opset(model), "input": input_facts["name"], "output": model.graph.output[0].name,
                 "dynamic_batch": input_facts["dynamic_batch"], "producer": model.producer_name or None},
        "verification": verification,
        "tools": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    })


def check_onnx(path: Path) -> Any:
    """The model, if the ONNX checker accepts it and it is one self-contained file."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except (onnx.checker.ValidationError, DecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PublishError(f"{path} fails the ONNX checker: {first}; nothing was published") from None
    if any(_external(tensor) for tensor in model.graph.initializer):
        raise PublishError(f"{path} keeps its weights in external data files: save it as one file "
                           "(onnx.save_model(model, path, save_as_external_data=False)); nothing was published")
    return model


def check_input(model: Any, spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """The one image input: float, 4-D, 3 channels where ``layout`` puts them, the crop's size if fixed."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise PublishError(f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): an image "
                           "classifier takes one image batch; nothing was published")
    (tensor,) = inputs
    kind = tensor.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
    layout = spec["layout"]
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if kind.elem_type != FLOAT:
        raise PublishError(f"{path}: input {tensor.name!r} is not float32 (ONNX type {kind.elem_type}): the "
                           "service feeds float32 pixels; nothing was published")
    if len(dims) != 4:
        raise PublishError(f"{path}: input {tensor.name!r} is {len(dims)}-D ({shown}), not a 4-D {layout} image "
                           "batch; nothing was published")
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    if channels != 3:
        raise PublishError(f"{path}: input {tensor.name!r} ({shown}) does not have 3 channels where {layout} puts "
                           "them; check the preprocessing's layout; nothing was published")
    crop_h, crop_w = Preprocessing.from_manifest(spec).crop
    if (height is not None and height != crop_h) or (width is not None and width != crop_w):
        raise PublishError(f"{path}: input {tensor.name!r} is {shown}, but the preprocessing crops "
                           f"{crop_h}x{crop_w}; nothing was published")
    if dims[0] is not None and dims[0] != 1:
        raise PublishError(f"{path}: input {tensor.name!r} has a fixed batch of {dims[0]}: export it with a "
                           "dynamic batch axis (or a batch of 1); nothing was published")
    return {"name": tensor.name, "dynamic_batch": dims[0] is None}


def check_output(model: Any, labels: int, path: Path) -> None:
    """The first output, where its width is fixed in the graph: one score per label."""
    output = model.graph.output[0]
    dims = output.type.tensor_type.shape.dim
    width = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    if width is not None and width != labels:
        raise PublishError(f"{path}: output {output.name!r} has {width} scores for {labels} labels; "
                           "nothing was published")


def run_once(model_path: Path, spec: Preprocessing, labels: int, *, batch: int) -> dict[str, Any]:
    """The sample photo through the serving preprocessing and ONNX Runtime (and its mirror image,
    when the batch axis is dynamic): one finite score per label, or a refusal that says what came out."""
    from classifier.serving.backends.onnx_backend import OnnxBackend

    tensor, _ = preprocess(sample_photo(), spec, max_pixels=10**8, fast_jpeg=False)
    mirrored = np.ascontiguousarray(tensor[:, :, ::-1] if spec.layout == "NCHW" else tensor[:, ::-1, :])
    inputs = np.stack([tensor, mirrored][:batch])
    try:
        outputs = OnnxBackend(model_path, threads=1, spin=False, input_shape=spec.input_shape).run(inputs)
    except Exception as exc:  # ONNX Runtime's errors: an operator it lacks, a shape the graph refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PublishError(f"the model fails on a real photo ({SAMPLE_PHOTO}, batch of {batch}): {first}; "
                           "nothing was published") from None
    if outputs.shape != (batch, labels):
        raise PublishError(f"the model answers a {batch}-image batch with shape {list(outputs.shape)}, not "
                           f"[{batch}, {labels}] (one score per label); nothing was published")
    if not np.isfinite(outputs).all():
        raise PublishError(f"the model answers non-finite scores on {SAMPLE_PHOTO}; nothing was published")
    sums = outputs.astype(np.float64).sum(axis=1)
    if spec.output == "probabilities" and (outputs.min() < 0 or np.abs(sums - 1).max() > PROBABILITY_SUM_TOLERANCE):
        raise PublishError(f"the preprocessing says output: probabilities, but the scores on {SAMPLE_PHOTO} range "
                           f"{outputs.min():.3g}..{outputs.max():.3g} and sum to {sums[0]:.4g}: use output: logits; "
                           "nothing was published")
    return {"photo": SAMPLE_PHOTO, "batch": batch, "top5": np.argsort(-outputs[0])[:5].tolist()}


def _external(tensor: Any) -> bool:
    import onnx

    return bool(tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL)


def _opset(model: Any) -> int | None:
    return next((int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)


def _json_list(labels: list[str]) -> str:
    import json

    return json.dumps(labels, indent=0) + "\n"
