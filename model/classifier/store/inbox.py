"""The S3 model inbox's key layout, shared by ``publish --s3`` and the installer Lambda.

A published version lives under one prefix of the inbox bucket::

    [<prefix>/]models/<name>/<version>/model.onnx
    [<prefix>/]models/<name>/<version>/weights.safetensors
    [<prefix>/]models/<name>/<version>/labels.json
    [<prefix>/]models/<name>/<version>/manifest.json     uploaded last

The installer Lambda (``classifier.store.installer``) runs when a ``manifest.json``
lands there. Artifacts go up first and the manifest last, so the installer
only ever sees a complete version; it still verifies every sha256. A manifest
whose object metadata says ``activate: false`` (``publish --s3 --no-activate``)
is installed without becoming current.

Promotion (``promote VERSION --s3``) is a small object of its own::

    [<prefix>/]models/<name>/CURRENT     its body: one line, the version to make current

Its arrival makes the installer switch the store's ``CURRENT`` to that
(installed) version: the installer stays the only writer of models on EFS.

Rollouts (``rollout start|promote|abort --s3``, and the AWS judge) go the same way::

    [<prefix>/]models/<name>/ROLLOUT     its body: JSON, {"action": "start"|"promote"|"abort"|"sync", ...}

and the installer, having acted on the store, mirrors the model's rollout state
where the judge and ``rollout status --s3`` read it (they cannot reach EFS)::

    rollouts/<name>.json                 {"name", "current", "rollout", "last_outcome", "last_request", "updated_at"}

Standard library only: the installer's zip includes this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MODELS_SEGMENT = "models"
MANIFEST_NAME = "manifest.json"
PROMOTION_NAME = "CURRENT"
# S3 user metadata on manifest.json (x-amz-meta-activate): "false" installs without activating.
ACTIVATE_METADATA = "activate"
MAX_PROMOTION_BYTES = 1024
ROLLOUT_REQUEST_NAME = "ROLLOUT"
# A request carries at most a rollout's settings and the judge's evidence: a few KB.
MAX_ROLLOUT_REQUEST_BYTES = 64 * 1024
ROLLOUT_STATE_PREFIX = "rollouts/"

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


@dataclass(frozen=True)
class PromotionKey:
    """Where a model's promotion object sits in the inbox."""

    prefix: str  # "" or ends with "/"
    name: str

    @property
    def key(self) -> str:
        return f"{self.prefix}{MODELS_SEGMENT}/{self.name}/{PROMOTION_NAME}"


_PROMOTION_KEY_RE = re.compile(rf"^(?P<prefix>(?:.+/)?){MODELS_SEGMENT}/(?P<name>[^/]+)/{PROMOTION_NAME}$")


def parse_promotion_key(key: str) -> PromotionKey | None:
    """The parts of ``[<prefix>/]models/<name>/CURRENT``, or None for any other key."""
    match = _PROMOTION_KEY_RE.fullmatch(key)
    return PromotionKey(match["prefix"], match["name"]) if match else None


@dataclass(frozen=True)
class RolloutRequestKey:
    """Where a model's rollout requests land in the inbox."""

    prefix: str  # "" or ends with "/"
    name: str

    @property
    def key(self) -> str:
        return f"{self.prefix}{MODELS_SEGMENT}/{self.name}/{ROLLOUT_REQUEST_NAME}"


_ROLLOUT_KEY_RE = re.compile(rf"^(?P<prefix>(?:.+/)?){MODELS_SEGMENT}/(?P<name>[^/]+)/{ROLLOUT_REQUEST_NAME}$")


def parse_rollout_request_key(key: str) -> RolloutRequestKey | None:
    """The parts of ``[<prefix>/]models/<name>/ROLLOUT``, or None for any other key."""
    match = _ROLLOUT_KEY_RE.fullmatch(key)
    return RolloutRequestKey(match["prefix"], match["name"]) if match else None


def rollout_state_key(name: str) -> str:
    """Where the installer mirrors a model's rollout state: ``rollouts/<name>.json``."""
    return f"{ROLLOUT_STATE_PREFIX}{name}.json"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``; the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected s3://bucket or s3://bucket/prefix, got {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""
