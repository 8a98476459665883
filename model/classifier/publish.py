"""Build a ResNet-50 version from torchvision and publish it to the store.

Heavy (imports torch): only the ``publish`` command imports this module, never
the serving path.

Steps: build torchvision's ``resnet50`` with the requested weights, export ONNX
(dynamic batch axis) and safetensors, check on a real photo that ONNX Runtime
and torch agree (refuse to publish otherwise), write the manifest, and install
the version atomically, or upload it to the S3 model inbox (``publish_to_s3``),
whose installer Lambda installs it the same way.
"""

from __future__ import annotations

import json
import logging
import tempfile
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from classifier.fsio import sha256_file
from classifier.imaging import DEFAULT_PREPROCESSING, Preprocessing, preprocess
from classifier.inbox import MANIFEST_NAME, ManifestKey, parse_s3_url
from classifier.store import MANIFEST, ModelStore, StoreError, check_name, make_version, validate_manifest

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


def sample_photo() -> bytes:
    return resources.files("classifier").joinpath("assets", SAMPLE_PHOTO).read_bytes()


def build(weights: str) -> BuiltModel:
    """torchvision's resnet50 with ``weights``: a named enum, a file path, or ``random``."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    if weights in NAMED_WEIGHTS:
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
        return BuiltModel(module.eval(), weights, True)
    if weights == "random":
        return BuiltModel(resnet50(weights=None).eval(), "random", False)

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
    except Exception as exc:
        raise PublishError(f"{path} is not a readable state dict: {exc}") from None
    state = _unwrap_state_dict(state)
    module = resnet50()
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PublishError(f"{path} does not fit torchvision's resnet50: {exc}") from None
    return BuiltModel(module.eval(), f"file:{digest}", True)


def _unwrap_state_dict(state: Any) -> Mapping[str, Any]:
    """Accept the common checkpoint shapes: a bare state dict, {'state_dict': ...},
    {'model': ...}, and DataParallel's 'module.' prefixes."""
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
        return {k.removeprefix("module."): v for k, v in state.items()}
    raise PublishError("the weights file does not hold a state dict")


def labels() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


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

    from classifier.backends.onnx_backend import OnnxBackend

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


def build_version(weights: str, workdir: Path, name: str = "resnet50") -> dict[str, Any]:
    """Write manifest.json and the artifacts of a new version into ``workdir``."""
    import onnx
    import torch
    import torchvision

    built = build(weights)
    export_onnx(built.module, workdir / "model.onnx")
    export_safetensors(built.module, workdir / "weights.safetensors")
    names = labels()
    (workdir / "labels.json").write_text(json.dumps(names, indent=0) + "\n")
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
        "preprocessing": DEFAULT_PREPROCESSING,
        "labels": {"file": "labels.json", "count": len(names)},
        "onnx": {"opset": ONNX_OPSET, "input": "input", "output": "logits", "dynamic_batch": True},
        "verification": agreement,
        "tools": {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__},
        "artifacts": artifacts,
    }
    validate_manifest(manifest)
    (workdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def publish_to_store(store: ModelStore, weights: str, name: str = "resnet50") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        manifest = build_version(weights, Path(tmp), name)
        store.install_dir(Path(tmp))
    return manifest


def publish_to_s3(s3_url: str, weights: str, name: str = "resnet50") -> dict[str, Any]:
    """Build a version (as ``publish`` does) and upload it to the inbox; return its manifest.

    The bucket is checked before the (slow) build, so a typo fails fast.
    """
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, prefix = parse_s3_url(s3_url)
        check_name(name)
    except (ValueError, StoreError) as exc:
        raise PublishError(str(exc)) from None

    s3 = boto3.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        raise PublishError(
            f"cannot reach bucket {bucket!r} ({exc}). Use the InboxBucket output of the "
            "storage stack, and AWS credentials allowed to write to it."
        ) from None

    with tempfile.TemporaryDirectory(prefix="publish-") as tmp:
        workdir = Path(tmp)
        manifest = build_version(weights, workdir, name)
        target = ManifestKey(prefix, manifest["name"], manifest["version"])
        try:
            # Artifacts first, the manifest last: the manifest's arrival is
            # what starts the installer.
            for artifact in sorted(manifest["artifacts"]):
                s3.upload_file(str(workdir / artifact), bucket, target.artifact_key(artifact))
            s3.upload_file(str(workdir / MANIFEST_NAME), bucket, target.key,
                           ExtraArgs={"ContentType": "application/json"})
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise PublishError(f"upload to s3://{bucket}/{target.version_prefix} failed: {exc}") from None
    return manifest
