"""The S3 model inbox in tests: small valid versions, uploading them as ``publish --s3`` does, their events."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import MANIFEST, make_version, validate_manifest

from helpers import EVENTS


def tiny_version(published_store: Path, workdir: Path, seed: str = "a") -> dict[str, Any]:
    """A valid, small version (a fake model.onnx + the real labels) written to ``workdir``.

    The installer only moves and verifies bytes, so it needs no real model:
    this keeps the refusal tests fast. The manifest is the published one with
    its artifacts (and so its version id) replaced.
    """
    store = ModelStore(published_store)
    current = store.current("resnet50")
    assert current is not None
    base = store.manifest("resnet50", current)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "model.onnx").write_bytes(f"not really an ONNX model, seed {seed}\n".encode() * 64)
    shutil.copyfile(store.version_dir("resnet50", current) / "labels.json", workdir / "labels.json")
    artifacts = {}
    for artifact in ("model.onnx", "labels.json"):
        size, digest = sha256_file(workdir / artifact)
        artifacts[artifact] = {"bytes": size, "sha256": digest}
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = {**base, "artifacts": artifacts, "version": make_version(artifacts, created),
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    validate_manifest(manifest)
    (workdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def upload_version(s3: Any, bucket: str, source: Path, key_prefix: str, *, skip: tuple[str, ...] = (),
                   manifest: bool = True) -> None:
    """Upload a version directory like ``publish --s3`` does: artifacts, then the manifest."""
    names = json.loads((source / MANIFEST).read_text())["artifacts"]
    for artifact in sorted(names):
        if artifact not in skip:
            s3.upload_file(str(source / artifact), bucket, key_prefix + artifact)
    if manifest:
        s3.upload_file(str(source / MANIFEST), bucket, key_prefix + MANIFEST)


def s3_event(kind: str, bucket: str, key: str) -> dict[str, Any]:
    """A real-shaped event naming ``s3://bucket/key``: eventbridge, notification or manual."""
    if kind == "manual":
        return {"bucket": bucket, "key": key}
    if kind == "eventbridge":
        event: dict[str, Any] = json.loads((EVENTS / "s3_object_created_eventbridge.json").read_text())
        event["resources"] = [f"arn:aws:s3:::{bucket}"]
        event["detail"]["bucket"]["name"] = bucket
        event["detail"]["object"]["key"] = key
        return event
    if kind == "notification":
        from urllib.parse import quote_plus

        event = json.loads((EVENTS / "s3_notification_put.json").read_text())
        record = event["Records"][0]["s3"]
        record["bucket"]["name"] = bucket
        record["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
        record["object"]["key"] = quote_plus(key, safe="/")  # S3 URL-encodes keys in notifications
        return event
    raise ValueError(kind)


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and, for files, size and inode: a before/after snapshot."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        snapshot[path.relative_to(root).as_posix()] = (
            "dir" if path.is_dir() else f"{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}"
        )
    return snapshot
