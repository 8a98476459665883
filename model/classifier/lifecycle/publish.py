"""Build a ResNet-50 version from torchvision and publish it to the store.

Heavy (imports torch): only the ``publish`` command imports this module, never
the serving path.

Steps: build torchvision's ``resnet50`` with the requested weights, export ONNX
(dynamic batch axis) and safetensors, check on a real photo that ONNX Runtime
and torch agree (refuse to publish otherwise), write the manifest, and install
the version atomically, or upload it to the S3 model inbox
(``classifier.lifecycle.publish_s3``), whose installer Lambda installs it the same way.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import tempfile
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from classifier.serving.imaging import DEFAULT_PREPROCESSING, Preprocessing, preprocess
from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import MANIFEST, make_version, validate_manifest

log = logging.getLogger(__name__)

NAMED_WEIGHTS = ("IMAGENET1K_V2", "IMAGENET1K_V1")
ONNX_OPSET = 18
# ONNX Runtime and PyTorch use different convolution kernels; on ResNet-50
# their logits differ by ~1e-5 relative. Anything beyond this is a broken export.
AGREEMENT_RTOL = 1e-3
SAMPLE_PHOTO = "chelsea.jpg"  # a cat photo, CC0, from scikit-image's data set


class PublishError(Exception):
    pass


@dataclass(frozen=True)
class BuiltModel:
    module: Any  # torch.nn.Module
    source: str
    trained: bool
    labels: list[str]


def sample_photo() -> bytes:
    return resources.files("classifier").joinpath("assets", SAMPLE_PHOTO).read_bytes()


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, in index order, as torchvision ships them."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def read_labels(path: Path) -> list[str]:
    """A labels file: ``.txt`` (one label a line; blank lines and surrounding spaces ignored) or
    ``.json`` (a list of strings). Labels must be unique and non-empty."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read the labels file {path}: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            labels: Any = json.loads(text)
        except ValueError as exc:
            raise PublishError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise PublishError(f"{path} must hold a JSON list of strings (one label per class, in index order)")
        labels = [label.strip() for label in labels]
    elif path.suffix.lower() == ".txt":
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        raise PublishError(f"labels file {path}: use .txt (a label a line) or .json (a list)")
    if not labels or any(not label for label in labels):
        raise PublishError(f"{path} holds an empty label")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise PublishError(f"{path} repeats labels: {', '.join(duplicates[:5])}")
    return list(labels)


def build(weights: str, labels_file: Path | None = None) -> BuiltModel:
    """torchvision's resnet50 with ``weights``: a named enum, a file path, or ``random``.

    A checkpoint's head width (``fc.weight``'s rows) decides the number of classes;
    ``labels_file`` must name exactly that many. The ImageNet weights keep their
    built-in labels; ``random`` takes a labels file's width, or ImageNet's 1000.
    """
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    labels = read_labels(labels_file) if labels_file is not None else None
    if weights in NAMED_WEIGHTS:
        if labels is not None:
            raise PublishError(f"--labels is for your own checkpoint: {weights} carries ImageNet's 1000 labels")
        try:
            state = ResNet50_Weights[weights].get_state_dict(progress=False, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise PublishError(
                f"could not download torchvision's {weights} weights ({exc}).\n"
                "Without network access, pass --weights PATH (a state dict saved with "
                "torch.save, or a .safetensors file) or --weights random (an untrained "
                "model, for trying the service out)."
            ) from None
        module = resnet50()
        module.load_state_dict(state)
        return BuiltModel(module.eval(), weights, True, imagenet_labels())
    if weights == "random":
        classes = len(labels) if labels is not None else 1000
        module = resnet50(weights=None, num_classes=classes)
        return BuiltModel(module.eval(), "random", False, labels or imagenet_labels())

    path = Path(weights)
    if not path.is_file():
        raise PublishError(
            f"--weights {weights!r} is neither {', '.join(NAMED_WEIGHTS)}, 'random', nor an existing file"
        )
    _, digest = sha256_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PublishError(pickled_objects_message(path, str(exc))) from None
    except Exception as exc:
        raise PublishError(f"{path} is not a readable state dict: {exc}") from None
    state = _unwrap_state_dict(state)
    classes = head_width(state, path)
    if labels is None and classes != 1000:
        raise PublishError(f"{path} has a {classes}-class head: pass --labels FILE with its {classes} labels")
    if labels is not None and len(labels) != classes:
        raise PublishError(f"{labels_file} has {len(labels)} labels, but the checkpoint's head "
                           f"(fc.weight) has {classes} outputs: nothing was published")
    module = resnet50(num_classes=classes)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PublishError(f"{path} does not fit torchvision's resnet50: {exc}") from None
    return BuiltModel(module.eval(), f"file:{digest}", True, labels or imagenet_labels())


def pickled_objects_message(path: Path, error: str) -> str:
    """What to do about a file torch.load refused with ``weights_only``: it pickles objects, not just tensors.

    torch's own advice (``weights_only=False``, or allowlisting globals) is for the caller of
    torch.load; here the fix is the file: unpickling a whole model runs code from it, and a model
    store shared by every Lambda instance holds tensors only.
    """
    found = re.search(r"GLOBAL (\S+) was not an allowed global", error)
    what = f"a pickled {found.group(1)} object" if found else "pickled Python objects besides tensors"
    return (f"{path} holds {what} (a whole model saved with torch.save(model), or a training checkpoint "
            "holding more than weights), which publish does not unpickle: unpickling runs code from the "
            "file. Save the weights alone and publish that file:\n"
            "    torch.save(model.state_dict(), \"weights.pth\")\n"
            "(docs/models.md shows it step by step)")


def head_width(state: Mapping[str, Any], path: Path) -> int:
    """The number of classes of a resnet50 state dict: the rows of ``fc.weight``."""
    weight = state.get("fc.weight")
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) != 2:
        raise PublishError(f"{path} has no fc.weight of shape (classes, 2048): not a torchvision resnet50")
    return int(shape[0])


def _unwrap_state_dict(state: Any) -> Mapping[str, Any]:
    """Accept the common checkpoint shapes: a bare state dict, {'state_dict': ...},
    {'model': ...}, and DataParallel's 'module.' prefixes."""
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
        return {k.removeprefix("module."): v for k, v in state.items()}
    raise PublishError("the weights file does not hold a state dict")


def export_onnx(module: Any, path: Path) -> None:
    import torch

    dummy = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        module,
        (dummy,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def export_safetensors(module: Any, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))


def check_agreement(module: Any, onnx_path: Path) -> dict[str, Any]:
    """Run the sample photo through torch and ONNX Runtime; raise unless they agree."""
    import torch

    from classifier.serving.backends.onnx_backend import OnnxBackend

    spec = Preprocessing.from_manifest(DEFAULT_PREPROCESSING)
    tensor, _ = preprocess(sample_photo(), spec, max_pixels=10**8, fast_jpeg=False)
    batch = tensor[None]
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch)).numpy()
    actual = OnnxBackend(onnx_path.read_bytes(), threads=1).run(batch)
    scale = float(np.abs(expected).max()) or 1.0
    max_diff = float(np.abs(actual - expected).max())
    top_torch = np.argsort(-expected[0])[:5].tolist()
    top_onnx = np.argsort(-actual[0])[:5].tolist()
    if max_diff > AGREEMENT_RTOL * scale or top_torch[0] != top_onnx[0]:
        raise PublishError(
            f"ONNX and torch disagree on the sample photo (max |diff| {max_diff:.3g} for logits up to "
            f"{scale:.3g}; top-5 {top_onnx} vs {top_torch}): refusing to publish"
        )
    return {"photo": SAMPLE_PHOTO, "max_abs_logit_diff": max_diff, "top5": top_torch}


def build_version(weights: str, workdir: Path, name: str = "resnet50",
                  labels_file: Path | None = None) -> dict[str, Any]:
    """Write manifest.json and the artifacts of a new version into ``workdir``."""
    import onnx
    import torch
    import torchvision

    built = build(weights, labels_file)
    export_onnx(built.module, workdir / "model.onnx")
    export_safetensors(built.module, workdir / "weights.safetensors")
    (workdir / "labels.json").write_text(json.dumps(built.labels, indent=0) + "\n")
    agreement = check_agreement(built.module, workdir / "model.onnx")

    artifacts = {}
    for artifact in ("model.onnx", "weights.safetensors", "labels.json"):
        size, digest = sha256_file(workdir / artifact)
        artifacts[artifact] = {"bytes": size, "sha256": digest}
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = {
        "schema": 1,
        "name": name,
        "version": make_version(artifacts, created),
        "architecture": "resnet50",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": built.source,
        "trained": built.trained,
        "precision": "fp32",
        "preprocessing": DEFAULT_PREPROCESSING,
        "labels": {"file": "labels.json", "count": len(built.labels)},
        "onnx": {"opset": ONNX_OPSET, "input": "input", "output": "logits", "dynamic_batch": True},
        "verification": agreement,
        "tools": {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__},
        "artifacts": artifacts,
    }
    validate_manifest(manifest)
    (workdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def publish_to_store(store: ModelStore, weights: str, name: str = "resnet50", *,
                     labels_file: Path | None = None, activate: bool = True) -> dict[str, Any]:
    """Build a version and install it; with ``activate`` (the default) it becomes current."""
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        manifest = build_version(weights, Path(tmp), name, labels_file)
        store.install_dir(Path(tmp), make_current=activate)
    return manifest
