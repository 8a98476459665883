"""Build a version from any torchvision classifier (or, through ``publish_onnx``, any ONNX file)
and publish it to the store.

Heavy (imports torch): only the ``publish`` command imports this module, never the serving path.

Steps for a torchvision architecture (``--arch``, ``resnet50`` by default): build it with the
requested weights (an enum member of that architecture, a state dict file, or ``random``), take
the preprocessing from those weights' own ``transforms()`` (for a file or ``random``: the
architecture's ``DEFAULT`` weights'; ``--preprocessing FILE`` overrides it), export ONNX at the
crop's size (dynamic batch axis) and safetensors, check on a real photo that ONNX Runtime and
torch agree (refuse to publish otherwise), write the manifest, and install the version
atomically, or upload it to the S3 model inbox (``classifier.lifecycle.publish_s3``), whose
installer Lambda installs it the same way.
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

from classifier.serving.imaging import Preprocessing, preprocess
from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import (
    ARTIFACT_NAMES,
    MANIFEST,
    NAME_RE,
    IntegrityError,
    StoreError,
    check_name,
    make_version,
    validate_manifest,
)
from classifier.store.preprocessing import PreprocessingError, crop_size, normalize_preprocessing

log = logging.getLogger(__name__)

DEFAULT_ARCH = "resnet50"
ONNX_OPSET = 18
# ONNX Runtime and PyTorch use different kernels; on ResNet-50 their logits differ by ~1e-5
# relative, on the other architectures the tests publish by under 1e-4. Anything beyond this is a
# broken export.
AGREEMENT_RTOL = 1e-3
SAMPLE_PHOTO = "chelsea.jpg"  # a cat photo, CC0, from scikit-image's data set
# Builder arguments some architectures take beside num_classes: recorded in the manifest so that
# the torch backend builds the very network that was published.
AUX_PREFIXES = {"inception_v3": "AuxLogits.", "googlenet": "aux1."}


class PublishError(Exception):
    pass


@dataclass(frozen=True)
class PublishRequest:
    """What to publish: a torchvision architecture and its weights, or an ONNX file (``onnx``)."""

    arch: str = DEFAULT_ARCH
    weights: str | None = None  # an enum member of arch's weights, a file, or "random"; None: arch's DEFAULT
    labels_file: Path | None = None
    preprocessing_file: Path | None = None
    onnx: Path | None = None
    name: str | None = None  # default: arch, or the ONNX file's name

    def model_name(self) -> str:
        """The store name the version is published under: ``name``, else the architecture's (or
        the ONNX file's, made a valid name)."""
        if self.name is not None:
            name = self.name
        elif self.onnx is not None:
            name = re.sub(r"[^a-z0-9_-]+", "-", self.onnx.stem.lower()).strip("-_")[:64]
            if not NAME_RE.fullmatch(name):
                raise PublishError(f"no model name can be made from {self.onnx.name}: pass --name")
        else:
            name = self.arch
        try:
            return check_name(name)
        except StoreError as exc:
            raise PublishError(str(exc)) from None


@dataclass(frozen=True)
class BuiltModel:
    module: Any  # torch.nn.Module
    source: str
    trained: bool
    labels: list[str]
    preprocessing: dict[str, Any]  # normalised (classifier.store.preprocessing)
    kwargs: dict[str, Any]  # the builder arguments the torch backend rebuilds it with


def sample_photo() -> bytes:
    return resources.files("classifier").joinpath("assets", SAMPLE_PHOTO).read_bytes()


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


def read_preprocessing(path: Path) -> dict[str, Any]:
    """A preprocessing file (JSON; the keys of ``classifier.store.preprocessing``), checked and completed."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PublishError(f"cannot read the preprocessing file {path}: {exc}") from None
    except ValueError as exc:
        raise PublishError(f"{path} is not valid JSON: {exc}") from None
    try:
        return normalize_preprocessing(spec)
    except PreprocessingError as exc:
        raise PublishError(f"{path}: {exc}; nothing was published") from None


def preprocessing_of(weights: Any) -> dict[str, Any]:
    """The preprocessing of a torchvision weights enum member: its ``transforms()``' own values."""
    transforms = weights.transforms()
    try:
        (resize,) = transforms.resize_size
        (crop,) = transforms.crop_size
        spec = {"resize": resize, "crop": crop, "interpolation": transforms.interpolation.value,
                "mean": list(transforms.mean), "std": list(transforms.std)}
        return normalize_preprocessing(spec)
    except (AttributeError, ValueError) as exc:
        raise PublishError(f"{weights} has transforms this runtime cannot reproduce ({exc}): "
                           "pass --preprocessing FILE") from None


def build(request: PublishRequest) -> BuiltModel:
    """torchvision's ``request.arch`` with ``request.weights``: an enum member, a file, or ``random``.

    A checkpoint's head width (its final layer's rows, whatever that layer is called) decides the
    number of classes; ``labels_file`` must name exactly that many. Pretrained weights keep their
    built-in labels; ``random`` takes a labels file's width, or ImageNet's 1000.
    """
    arch = request.arch
    # The user's files first: a mistake in them is reported before torch is even imported.
    labels = read_labels(request.labels_file) if request.labels_file is not None else None
    override = read_preprocessing(request.preprocessing_file) if request.preprocessing_file else None
    if override is not None and (override["layout"] != "NCHW" or override["output"] != "logits"):
        raise PublishError(f"{request.preprocessing_file}: a torchvision {arch} takes NCHW input and answers "
                           "logits (layout and output are for --onnx models); nothing was published")
    import torch
    import torchvision.models

    from classifier.serving.backends import torchvision_models as tvm

    try:
        tvm.check_architecture(arch)
    except tvm.ArchitectureError as exc:
        raise PublishError(str(exc)) from None
    enum = torchvision.models.get_model_weights(arch)
    default = enum.DEFAULT
    names = [member.name for member in enum]
    weights = request.weights or default.name
    builder = torchvision.models.get_model_builder(arch)

    if weights in names or weights == "DEFAULT":
        member = enum[weights]
        if labels is not None:
            raise PublishError(f"--labels is for your own checkpoint: {member.name} carries its "
                               f"{len(member.meta['categories'])} labels")
        try:
            module = builder(weights=member, progress=False)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise PublishError(
                f"could not download torchvision's {arch} {member.name} weights ({exc}).\n"
                "Without network access, pass --weights PATH (a state dict saved with "
                "torch.save, or a .safetensors file) or --weights random (an untrained "
                "model, for trying the service out)."
            ) from None
        spec = override or preprocessing_of(member)
        size = _named_size(arch, module, member)
        classes = len(member.meta["categories"])
        return BuiltModel(module.eval(), member.name, True, list(member.meta["categories"]), spec,
                          _recorded(arch, module, classes, size))

    spec = override or preprocessing_of(default)
    try:
        size = tvm.size_kwargs(arch, crop_size(spec))
    except tvm.ArchitectureError as exc:
        raise PublishError(str(exc)) from None
    imagenet = list(default.meta["categories"])
    if weights == "random":
        classes = len(labels) if labels is not None else len(imagenet)
        module = builder(weights=None, num_classes=classes, **_builder_args(size))
        return BuiltModel(module.eval(), "random", False, labels or imagenet, spec,
                          _recorded(arch, module, classes, size))

    path = Path(weights)
    if not path.is_file():
        raise PublishError(f"--weights {weights!r} is neither a weights name of {arch} ({', '.join(names)}), "
                           "'random', nor an existing file")
    _, digest = sha256_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: Any = load_file(path)
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise PublishError(pickled_objects_message(path, str(exc))) from None
    except Exception as exc:
        raise PublishError(f"{path} is not a readable state dict: {exc}") from None
    state = _unwrap_state_dict(loaded)
    try:
        classes = tvm.head_width(arch, state, size)
    except tvm.ArchitectureError as exc:
        raise PublishError(f"{path}: {exc}") from None
    if labels is None and classes != len(imagenet):
        raise PublishError(f"{path} has a {classes}-class head: pass --labels FILE with its {classes} labels")
    if labels is not None and len(labels) != classes:
        raise PublishError(f"{request.labels_file} has {len(labels)} labels, but the checkpoint's head "
                           f"(its final layer) has {classes} outputs: nothing was published")
    kwargs = {"num_classes": classes, **size, **_aux_args(arch, state)}
    try:
        module = tvm.load(arch, kwargs, state)
    except tvm.ArchitectureError as exc:  # "the state dict does not fit torchvision's <arch>: <torch's reason>"
        raise PublishError(f"{path}: {exc}") from None
    return BuiltModel(module, f"file:{digest}", True, labels or imagenet, spec, _recorded(arch, module, classes, size))


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


def _named_size(arch: str, module: Any, member: Any) -> dict[str, Any]:
    """The size arguments a builder set from pretrained weights' metadata (a ViT's image size)."""
    if arch.startswith("vit_"):
        return {"image_size": int(module.image_size)}
    if arch.startswith("maxvit_"):
        return {"input_size": [int(side) for side in member.meta["min_size"]]}
    return {}


def _aux_args(arch: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """Inception's and GoogLeNet's auxiliary heads: built only if the checkpoint holds them."""
    prefix = AUX_PREFIXES.get(arch)
    return {} if prefix is None else {"aux_logits": any(key.startswith(prefix) for key in state)}


def _recorded(arch: str, module: Any, classes: int, size: Mapping[str, Any]) -> dict[str, Any]:
    """What the torch backend passes the builder to rebuild ``module``."""
    kwargs: dict[str, Any] = {"num_classes": classes, **size}
    for flag in ("transform_input", "aux_logits"):
        if isinstance(getattr(module, flag, None), bool):
            kwargs[flag] = getattr(module, flag)
    return kwargs


def _builder_args(size: Mapping[str, Any]) -> dict[str, Any]:
    return {key: (tuple(value) if key == "input_size" else value) for key, value in size.items()}


def _unwrap_state_dict(state: Any) -> Mapping[str, Any]:
    """Accept the common checkpoint shapes: a bare state dict, {'state_dict': ...},
    {'model': ...}, and DataParallel's 'module.' prefixes."""
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
        return {k.removeprefix("module."): v for k, v in state.items()}
    raise PublishError("the weights file does not hold a state dict")


def export_onnx(module: Any, path: Path, input_shape: tuple[int, ...] = (3, 224, 224)) -> None:
    """ONNX at one image's ``input_shape`` (the crop's size), with a dynamic batch axis."""
    import torch

    dummy = torch.zeros(1, *input_shape)
    try:
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
    except Exception as exc:  # an architecture the exporter cannot trace, an input size it refuses
        raise PublishError(f"the ONNX export failed ({type(exc).__name__}: {exc}); nothing was published") from None


def export_safetensors(module: Any, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))


def check_agreement(module: Any, onnx_path: Path, spec: Preprocessing) -> dict[str, Any]:
    """Run the sample photo through torch and ONNX Runtime; raise unless they agree."""
    import torch

    from classifier.serving.backends.onnx_backend import OnnxBackend

    tensor, _ = preprocess(sample_photo(), spec, max_pixels=10**8, fast_jpeg=False)
    batch = tensor[None]
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch)).numpy()
    actual = OnnxBackend(onnx_path, threads=1, spin=False, input_shape=spec.input_shape).run(batch)
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


def build_version(request: PublishRequest, workdir: Path) -> dict[str, Any]:
    """Write manifest.json and the artifacts of a new version into ``workdir``; return the manifest."""
    if request.onnx is not None:
        from classifier.lifecycle.publish_onnx import build_onnx_version

        return build_onnx_version(request, workdir)
    name = request.model_name()
    built = build(request)
    import onnx
    import torch
    import torchvision

    spec = Preprocessing.from_manifest(built.preprocessing)
    export_onnx(built.module, workdir / "model.onnx", spec.input_shape)
    export_safetensors(built.module, workdir / "weights.safetensors")
    (workdir / "labels.json").write_text(json.dumps(built.labels, indent=0) + "\n")
    agreement = check_agreement(built.module, workdir / "model.onnx", spec)
    return write_manifest(workdir, {
        "name": name,
        "architecture": request.arch,
        "source": built.source,
        "trained": built.trained,
        "precision": "fp32",
        "preprocessing": built.preprocessing,
        "labels": {"file": "labels.json", "count": len(built.labels)},
        "onnx": {"opset": ONNX_OPSET, "input": "input", "output": "logits", "dynamic_batch": True},
        "torchvision": {"kwargs": built.kwargs},
        "verification": agreement,
        "tools": {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__},
    })


def write_manifest(workdir: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest of the artifacts in ``workdir`` (every file there but the manifest), with
    ``fields``, its version id and creation time; validated, then written."""
    artifacts = {}
    for path in sorted(workdir.iterdir()):
        if path.name == MANIFEST:
            continue
        if path.name not in ARTIFACT_NAMES:  # ONNX's external data: the exporter's way past 2 GB
            raise PublishError(f"the export wrote {path.name} beside model.onnx: models over 2 GB (ONNX's "
                               "single-file limit) cannot be published; nothing was published")
        size, digest = sha256_file(path)
        artifacts[path.name] = {"bytes": size, "sha256": digest}
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = {
        "schema": 1,
        "name": fields["name"],
        "version": make_version(artifacts, created),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{key: value for key, value in fields.items() if key != "name"},
        "artifacts": artifacts,
    }
    try:
        validate_manifest(manifest)
    except IntegrityError as exc:
        raise PublishError(f"{exc}; nothing was published") from None
    (workdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def publish_to_store(store: ModelStore, request: PublishRequest, *, activate: bool = True) -> dict[str, Any]:
    """Build a version and install it; with ``activate`` (the default) it becomes current."""
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        manifest = build_version(request, Path(tmp))
        store.install_dir(Path(tmp), make_current=activate)
    return manifest
