"""Publishing through the S3 model inbox: a version's artifacts, or a promotion, for the installer Lambda.

The installer (``classifier.store.installer``) stays the only writer of models on
EFS; these put objects where it acts on them (key layout: ``classifier.store.inbox``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from classifier.lifecycle.publish import PublishError, PublishRequest, build_version
from classifier.store.inbox import ACTIVATE_METADATA, MANIFEST_NAME, ManifestKey, PromotionKey, parse_s3_url
from classifier.store.manifest import StoreError, check_name, check_version
from classifier.store.s3_notifications import is_not_found


def publish_to_s3(s3_url: str, request: PublishRequest, *, activate: bool = True) -> dict[str, Any]:
    """Build a version (as ``publish`` does: any torchvision architecture, or an ONNX file) and
    upload it to the inbox; return its manifest.

    The bucket is checked before the (slow) build, so a typo fails fast. Without
    ``activate`` the manifest carries the metadata ``activate: false``: the
    installer installs the version but leaves CURRENT alone (``promote --s3`` later).
    """
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, prefix = parse_s3_url(s3_url)
    except ValueError as exc:
        raise PublishError(str(exc)) from None
    request.model_name()  # a bad name fails before the bucket is asked

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
        manifest = build_version(request, workdir)
        target = ManifestKey(prefix, manifest["name"], manifest["version"])
        try:
            # Artifacts first, the manifest last: the manifest's arrival is
            # what starts the installer.
            for artifact in sorted(manifest["artifacts"]):
                s3.upload_file(str(workdir / artifact), bucket, target.artifact_key(artifact))
            s3.upload_file(str(workdir / MANIFEST_NAME), bucket, target.key,
                           ExtraArgs={"ContentType": "application/json",
                                      "Metadata": {ACTIVATE_METADATA: "true" if activate else "false"}})
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            raise PublishError(f"upload to s3://{bucket}/{target.version_prefix} failed: {exc}") from None
    return manifest


def promote_in_inbox(s3_url: str, name: str, version: str) -> str:
    """Ask the installer to make ``version`` current: the promotion object, next to the versions
    ``publish --s3`` uploads. Returns its key."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        bucket, prefix = parse_s3_url(s3_url)
        check_name(name)
        check_version(version)
    except (ValueError, StoreError) as exc:
        raise PublishError(str(exc)) from None
    s3 = boto3.client("s3")
    manifest_key = ManifestKey(prefix, name, version).key
    try:
        s3.head_object(Bucket=bucket, Key=manifest_key)
    except ClientError as exc:
        if is_not_found(exc):
            raise PublishError(f"s3://{bucket}/{manifest_key} does not exist: publish {version} there first") from None
        raise PublishError(f"cannot read s3://{bucket}/{manifest_key}: {exc}") from None
    except BotoCoreError as exc:
        raise PublishError(f"cannot reach bucket {bucket!r}: {exc}") from None
    key = PromotionKey(prefix, name).key
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=f"{version}\n".encode(), ContentType="text/plain")
    except (ClientError, BotoCoreError) as exc:
        raise PublishError(f"writing s3://{bucket}/{key} failed: {exc}") from None
    return key
