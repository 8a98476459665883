"""The S3 model inbox: its key layout, and ``publish --s3`` which uploads to it.

A published version lives under one prefix of the inbox bucket::

    [<prefix>/]models/<name>/<version>/model.onnx
    [<prefix>/]models/<name>/<version>/weights.safetensors
    [<prefix>/]models/<name>/<version>/labels.json
    [<prefix>/]models/<name>/<version>/manifest.json     uploaded last

The installer Lambda (``classifier.installer``) runs when a ``manifest.json``
lands there. Artifacts go up first and the manifest last, so the installer
only ever sees a complete version; it still verifies every sha256.

Standard library at import time: the installer's zip includes this module.
boto3 (and torch, for building the model) are imported by ``publish_to_s3``.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MODELS_SEGMENT = "models"
MANIFEST_NAME = "manifest.json"

_MANIFEST_KEY_RE = re.compile(
    rf"^(?P<prefix>(?:.+/)?){MODELS_SEGMENT}/(?P<name>[^/]+)/(?P<version>[^/]+)/{re.escape(MANIFEST_NAME)}$"
)


@dataclass(frozen=True)
class ManifestKey:
    """Where a version's manifest sits in the inbox; its artifacts are its siblings."""

    prefix: str  # "" or ends with "/"
    name: str
    version: str

    @property
    def version_prefix(self) -> str:
        return f"{self.prefix}{MODELS_SEGMENT}/{self.name}/{self.version}/"

    def artifact_key(self, artifact: str) -> str:
        return self.version_prefix + artifact

    @property
    def key(self) -> str:
        return self.artifact_key(MANIFEST_NAME)


def parse_manifest_key(key: str) -> ManifestKey | None:
    """The parts of ``[<prefix>/]models/<name>/<version>/manifest.json``, or None for any other key."""
    match = _MANIFEST_KEY_RE.fullmatch(key)
    if match is None:
        return None
    return ManifestKey(match["prefix"], match["name"], match["version"])


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``; the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected s3://bucket or s3://bucket/prefix, got {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def publish_to_s3(s3_url: str, weights: str, name: str = "resnet50") -> dict[str, Any]:
    """Build a version (as ``publish`` does) and upload it to the inbox; return its manifest.

    The bucket is checked before the (slow) build, so a typo fails fast.
    """
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    from classifier.publish import PublishError, build_version
    from classifier.store import StoreError, check_name

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
