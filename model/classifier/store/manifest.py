"""What a version is: its name and id rules, its manifest's schema, and the check of an artifact.

Standard library only: the installer Lambda's zip holds this package.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.store.fsio import sha256_file
from classifier.store.preprocessing import PreprocessingError, normalize_preprocessing

MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "int8")
ARTIFACT_NAMES = frozenset({"model.onnx", "weights.safetensors", "labels.json"})
BACKEND_ARTIFACT = {"onnx": "model.onnx", "torch": "weights.safetensors"}

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# torchvision's builder names (resnet50, vit_b_16, ...), or ONNX_ARCHITECTURE.
ARCHITECTURE_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
# The architecture of a version published from an ONNX file (``publish --onnx``): only the onnx
# backend serves it.
ONNX_ARCHITECTURE = "onnx"
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")


class StoreError(Exception):
    """Base class for model store failures; the message is meant for a human."""


class ModelNotFound(StoreError):
    """No such model, version, or no current version."""


class IntegrityError(StoreError):
    """A version is partial, corrupt, or its manifest is invalid."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise StoreError(
            f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'"
        )
    return name


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise StoreError(
            f"invalid version {version!r}: expected <yyyymmddThhmmssZ>-<12 hex>"
        )
    return version


def artifacts_digest(artifacts: Mapping[str, Mapping[str, Any]]) -> str:
    """The 12-hex content id of a set of artifacts (the version's suffix)."""
    lines = "".join(f"{name}\0{artifacts[name]['sha256']}\n" for name in sorted(artifacts))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def make_version(artifacts: Mapping[str, Mapping[str, Any]], created_at: datetime) -> str:
    """A version id that sorts by time and names its content."""
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{artifacts_digest(artifacts)}"


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Raise ``IntegrityError`` unless ``manifest`` is well formed and self-consistent."""
    try:
        name = manifest["name"]
        version = manifest["version"]
        artifacts = manifest["artifacts"]
        preprocessing = manifest["preprocessing"]
        labels = manifest["labels"]
        manifest["trained"]
        manifest["source"]
    except (KeyError, TypeError) as exc:
        raise IntegrityError(f"manifest is missing required field {exc}") from None
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise IntegrityError(f"manifest has an invalid model name {name!r}")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise IntegrityError(f"manifest has an invalid version {version!r}")
    if not isinstance(artifacts, dict) or not artifacts:
        raise IntegrityError("manifest lists no artifacts")
    for artifact, meta in artifacts.items():
        if artifact not in ARTIFACT_NAMES:
            raise IntegrityError(f"manifest lists an unknown artifact {artifact!r}")
        if not (
            isinstance(meta, dict)
            and isinstance(meta.get("bytes"), int)
            and isinstance(meta.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", meta["sha256"])
        ):
            raise IntegrityError(f"manifest entry for {artifact} needs 'bytes' and 'sha256'")
    if "labels.json" not in artifacts or not (artifacts.keys() & BACKEND_ARTIFACT.values()):
        raise IntegrityError("manifest needs labels.json and model.onnx or weights.safetensors")
    if version.rsplit("-", 1)[1] != artifacts_digest(artifacts):
        raise IntegrityError(f"version {version} does not match the sha256 of its artifacts")
    try:
        normalize_preprocessing(preprocessing)
    except PreprocessingError as exc:
        raise IntegrityError(f"manifest {exc}") from None
    if not isinstance(labels, dict) or not isinstance(labels.get("count"), int) or labels["count"] < 1:
        raise IntegrityError("manifest needs labels.count")
    if manifest.get("precision", "fp32") not in PRECISIONS:
        raise IntegrityError(f"manifest precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {manifest.get('precision')!r}")
    architecture = manifest.get("architecture", "resnet50")
    if not isinstance(architecture, str) or not ARCHITECTURE_RE.fullmatch(architecture):
        raise IntegrityError(f"manifest has an invalid architecture {architecture!r}")
    derived_from = manifest.get("derived_from")
    if derived_from is not None and not (isinstance(derived_from, str) and VERSION_RE.fullmatch(derived_from)):
        raise IntegrityError(f"manifest derived_from is not a version id: {derived_from!r}")


def architecture(manifest: Mapping[str, Any]) -> str:
    """The torchvision builder a version was made with, or ``onnx`` (manifests from before
    architectures were recorded are ResNet-50s)."""
    return str(manifest.get("architecture", "resnet50"))


def precision(manifest: Mapping[str, Any]) -> str:
    """``fp32`` or ``int8`` (manifests from before precisions were recorded are fp32)."""
    return str(manifest.get("precision", "fp32"))


def check_artifact(path: Path, expected: Mapping[str, Any] | None, where: str, *, hash_it: bool = True) -> None:
    """Raise ``IntegrityError`` unless ``path`` has the expected size and (with ``hash_it``) sha256."""
    if expected is None:
        raise IntegrityError(f"{where}: {path.name} is not listed in the manifest")
    try:
        size, digest = sha256_file(path) if hash_it else (path.stat().st_size, None)
    except FileNotFoundError:
        raise IntegrityError(f"{where}: {path.name} is missing (partial version)") from None
    if size != expected["bytes"]:
        raise IntegrityError(
            f"{where}: {path.name} has {size} bytes, the manifest says {expected['bytes']}"
        )
    if hash_it and digest != expected["sha256"]:
        raise IntegrityError(f"{where}: {path.name} sha256 does not match the manifest")
