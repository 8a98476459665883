"""The model installer Lambda: copies a published version from the S3 inbox into the EFS store.

Runs when an object lands in the inbox bucket (an EventBridge "Object
Created" event; S3 notification records and a plain ``{"bucket", "key"}``
payload for a manual re-run are accepted too: ``classifier.store.s3_notifications``). Only
``[<prefix>/]models/<name>/<version>/manifest.json`` keys are acted on
(``classifier.store.inbox`` defines the layout); any other key is ignored.

For a promotion object (``[<prefix>/]models/<name>/CURRENT``, written by
``promote VERSION --s3``) it makes that installed version current; a version
that is not installed is refused.

For a rollout request (``[<prefix>/]models/<name>/ROLLOUT``, written by
``rollout start|promote|abort --s3`` and by the AWS judge) it starts, promotes
or aborts the model's rollout (``classifier.store.rollout``), then mirrors the
rollout state to ``rollouts/<name>.json`` in the same bucket, where the judge
and ``rollout status --s3`` read it. A switch of CURRENT by a promotion or an
install also ends a rollout it overtakes, and updates the mirror.

For a manifest, it:

1. reads and validates the manifest, and checks that it names the same model
   and version as its key;
2. checks that every artifact is in the bucket with the manifest's size, and
   refuses an incomplete upload before touching the store;
3. downloads the artifacts straight into a ``ModelStore.stage`` directory on
   EFS and commits it: the store verifies every sha256, renames the version
   into place and flips ``CURRENT`` (the same code as ``publish --store``),
   unless the manifest's metadata says ``activate: false`` (``--no-activate``).

A refused install (invalid manifest, incomplete upload, sha256 mismatch) is
logged at ERROR with the reason and returns ``status: refused``; the store is
left as it was. Retrying cannot fix those, so they do not raise. Transient
failures (S3 errors, timeouts) raise, and Lambda retries the event.

Standard library and boto3 only: this module ships in a plain Python zip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

from classifier.observability import logs
from classifier.store.inbox import (
    ACTIVATE_METADATA,
    MAX_PROMOTION_BYTES,
    MAX_ROLLOUT_REQUEST_BYTES,
    ManifestKey,
    PromotionKey,
    RolloutRequestKey,
    parse_manifest_key,
    parse_promotion_key,
    parse_rollout_request_key,
    rollout_state_key,
)
from classifier.store.layout import ModelStore, iter_staging_dirs
from classifier.store.manifest import StoreError, check_name, check_version, validate_manifest
from classifier.store.rollout import RolloutStore, utc_now
from classifier.store.s3_notifications import created_objects, is_not_found

log = logging.getLogger("classifier.store.installer")

DEFAULT_STORE = "/mnt/store"
MAX_MANIFEST_BYTES = 1024 * 1024
# A staging directory this old belongs to a crashed install, not a running one
# (the function's timeout is far shorter).
STALE_STAGING_SECONDS = 3600


class InstallRefused(Exception):
    """The upload cannot be installed as it is; the message says why."""


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: install every manifest the event names."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        # In Lambda: JSON lines to CloudWatch. Elsewhere (tests, a manual
        # call) the caller's logging setup stays as it is.
        logs.configure()
    import boto3

    s3 = boto3.client("s3")
    store = ModelStore(os.environ.get("MODEL_STORE") or DEFAULT_STORE)
    results = [install(s3, store, obj.bucket, obj.key) for obj in created_objects(event)]
    return {"results": results}


def install(s3: Any, store: ModelStore, bucket: str, key: str) -> dict[str, Any]:
    """Act on ``s3://bucket/key``: install a version (a manifest) or promote one; return what happened."""
    where = f"s3://{bucket}/{key}"
    target = parse_manifest_key(key)
    promotion = parse_promotion_key(key) if target is None else None
    rollout = parse_rollout_request_key(key) if target is None and promotion is None else None
    if rollout is not None:
        return _rollout_request(s3, store, bucket, rollout, where)
    if target is None and promotion is None:
        log.info("ignored: not a model manifest or promotion", extra={"object": where})
        return {"status": "ignored", "object": where}
    try:
        actor = f"installer ({where})"
        result = (_install(s3, store, bucket, target, actor) if target
                  else _promote(s3, store, bucket, promotion, actor))
        if result.get("current"):
            _overtaken_rollout(s3, store, bucket, result["name"])
    except (InstallRefused, StoreError) as exc:
        log.error("install refused: %s", exc, extra={"object": where, "reason": str(exc)})
        return {"status": "refused", "object": where, "reason": str(exc)}
    except PermissionError as exc:
        reason = (f"cannot write the model store ({exc}); the installer's EFS access point "
                  "must own models/")
        log.error("install refused: %s", reason, extra={"object": where, "reason": reason})
        return {"status": "refused", "object": where, "reason": reason}
    current = "is current" if result.get("current") else "is installed, not current"
    log.info("%s %s %s", result["name"], result["version"], current, extra={"object": where, "install": result})
    return {"object": where, **result}


def _rollout_request(s3: Any, store: ModelStore, bucket: str, request_key: RolloutRequestKey,
                     where: str) -> dict[str, Any]:
    """Start, promote or abort a rollout as the request object says; mirror the state whatever happened."""
    name = request_key.name
    request: dict[str, Any] = {}
    try:
        check_name(name)
        _, request = _small_json_object(s3, bucket, request_key.key, MAX_ROLLOUT_REQUEST_BYTES,
                                        "a rollout request is a few KB", what="the rollout request")
        result = RolloutStore(store).apply(name, request, actor=f"installer ({where})")
    except (InstallRefused, StoreError) as exc:
        log.error("rollout request refused: %s", exc, extra={"object": where, "reason": str(exc)})
        result = {"status": "refused", "name": name, "reason": str(exc)}
    else:
        log.info("rollout %s: %s", result["status"], name, extra={"object": where, "rollout": result})
    last_request = {"action": request.get("action"), "id": request.get("id"), "status": result["status"],
                    "reason": result.get("reason"), "at": utc_now()}
    try:
        known = store.model_dir(name).is_dir()
    except StoreError:  # not a model name: there is nothing to mirror
        known = False
    if known:
        _mirror_rollout_state(s3, store, bucket, name, last_request)
    return {"object": where, **result}


def _overtaken_rollout(s3: Any, store: ModelStore, bucket: str, name: str) -> None:
    """After CURRENT switched: end a rollout it overtook, and say so in the mirror."""
    ended = RolloutStore(store).reconcile(name)
    if ended is not None:
        log.warning("rollout %s of %s %s: %s", ended["outcome"], name, ended["candidate"], ended["reason"])
        _mirror_rollout_state(s3, store, bucket, name, None)


def _mirror_rollout_state(s3: Any, store: ModelStore, bucket: str, name: str,
                          last_request: dict[str, Any] | None) -> None:
    state = RolloutStore(store).state(name)
    state["last_request"] = last_request
    s3.put_object(Bucket=bucket, Key=rollout_state_key(name), Body=json.dumps(state, indent=1).encode(),
                  ContentType="application/json")


def _promote(s3: Any, store: ModelStore, bucket: str, promotion: PromotionKey | None, actor: str) -> dict[str, Any]:

    assert promotion is not None
    obj = _small_object(s3, bucket, promotion.key, MAX_PROMOTION_BYTES, "it holds one version id")
    version = obj["Body"].read().decode("utf-8", "replace").strip()
    check_version(version)
    if version not in store.versions(promotion.name):
        raise InstallRefused(f"{promotion.name} {version} is not installed: publish it (its manifest) first")
    previous = store.current(promotion.name)
    store.set_current(promotion.name, version, reason="promote", actor=actor)
    return {"status": "promoted", "name": promotion.name, "version": version, "previous": previous, "current": True}


def _install(s3: Any, store: ModelStore, bucket: str, target: ManifestKey, actor: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    manifest, activate = _read_manifest(s3, bucket, target)
    name, version = manifest["name"], manifest["version"]
    _remove_stale_staging(store, name)

    if version in store.versions(name):
        # Versions are content-addressed: the same id is the same bytes.
        # Make it current again without downloading it twice.
        if activate:
            store.set_current(name, version, reason="publish", actor=actor)
        return {"status": "already-installed", "name": name, "version": version, "current": activate}

    missing, wrong_size = [], []
    for artifact, meta in sorted(manifest["artifacts"].items()):
        try:
            head = s3.head_object(Bucket=bucket, Key=target.artifact_key(artifact))
        except ClientError as exc:
            if is_not_found(exc):
                missing.append(artifact)
                continue
            raise
        if head["ContentLength"] != meta["bytes"]:
            wrong_size.append(f"{artifact} has {head['ContentLength']} bytes, the manifest says {meta['bytes']}")
    if missing:
        raise InstallRefused(
            f"incomplete upload: {', '.join(missing)} missing under s3://{bucket}/{target.version_prefix} "
            "(upload the artifacts before manifest.json, as `python -m classifier publish --s3` does)"
        )
    if wrong_size:
        raise InstallRefused(f"{name} {version}: {'; '.join(wrong_size)}")

    started = time.monotonic()
    with store.stage(name) as staged:
        for artifact in sorted(manifest["artifacts"]):
            with open(staged.path / artifact, "xb") as f:
                s3.download_fileobj(bucket, target.artifact_key(artifact), f)
        # Verifies sizes and sha256, renames into versions/, flips CURRENT;
        # on any failure the staging directory is discarded.
        staged.commit(manifest, make_current=activate, reason="publish", actor=actor)
    return {
        "status": "installed",
        "name": name,
        "version": version,
        "current": activate,
        "bytes": sum(meta["bytes"] for meta in manifest["artifacts"].values()),
        "seconds": round(time.monotonic() - started, 3),
    }


def _read_manifest(s3: Any, bucket: str, target: ManifestKey) -> tuple[dict[str, Any], bool]:
    """The validated manifest, and whether to make it current (its ``activate`` metadata)."""

    obj, manifest = _small_json_object(s3, bucket, target.key, MAX_MANIFEST_BYTES, "a manifest is a few KB",
                                       what="manifest.json")
    validate_manifest(manifest)
    if (manifest["name"], manifest["version"]) != (target.name, target.version):
        raise InstallRefused(
            f"manifest names {manifest['name']} {manifest['version']} but sits under "
            f"{target.version_prefix}"
        )
    activate = str(obj.get("Metadata", {}).get(ACTIVATE_METADATA, "true")).strip().lower() != "false"
    return manifest, activate


def _small_json_object(s3: Any, bucket: str, key: str, limit: int, expected: str, *,
                       what: str) -> tuple[Any, dict[str, Any]]:
    """``_small_object`` holding a JSON object: the ``get_object`` answer and the object, refused otherwise."""
    obj = _small_object(s3, bucket, key, limit, expected)
    try:
        loaded = json.loads(obj["Body"].read())
    except ValueError as exc:
        raise InstallRefused(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise InstallRefused(f"{what} is not a JSON object")
    return obj, loaded


def _small_object(s3: Any, bucket: str, key: str, limit: int, expected: str) -> Any:
    """``get_object`` of a small control object (a manifest, a promotion): refused if gone or too large."""
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            raise InstallRefused(f"s3://{bucket}/{key} no longer exists") from None
        raise
    if obj["ContentLength"] > limit:
        raise InstallRefused(f"{key.rsplit('/', 1)[-1]} is {obj['ContentLength']} bytes; {expected}")
    return obj


def _remove_stale_staging(store: ModelStore, name: str) -> None:
    now = time.time()
    for path in iter_staging_dirs(store, name):
        try:
            if now - path.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
                log.warning("removed a crashed install's staging directory", extra={"path": str(path)})
        except FileNotFoundError:
            pass
