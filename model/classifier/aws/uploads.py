"""Large images through S3: presigned uploads, and reading an uploaded image back.

``POST /uploads`` hands the client a presigned POST for one new key under
``uploads/``; the client sends the image straight to S3 (no 6 MB Lambda
payload limit on that path), then ``POST /classify {"s3_key": ...}``, and the
classify-on-upload trigger (``classifier.aws.upload_classifier``), read it back here.

Key layout: ``uploads/<yyyy>/<mm>/<dd>/<32 hex>.<ext>``. The date keeps a
listing browsable and lets a lifecycle rule or an operator find old uploads;
the random part makes every key unguessable and never reused.

Ownership: the presigned POST pins the caller's identity as the object's
metadata ``owner`` (``x-amz-meta-owner``; the policy's signature covers it, so
the uploader cannot change it), and pins the size to exactly the ``bytes`` the
caller declared. ``POST /classify {"s3_key"}`` then accepts the key only from
that owner (anyone else gets the 404 of a missing key), and the
classify-on-upload records carry it. Locally there is no identity, and no
metadata is pinned.

boto3 is imported on first use, never at import time: it costs tens of
milliseconds of cold start that requests without S3 should not pay.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from classifier.config import Settings
from classifier.errors import (
    InvalidParameter,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UploadChanged,
    UploadsDisabled,
)
from classifier.store.s3_notifications import NOT_FOUND_CODES

log = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"
# A presigned POST is short-lived: a client uploads right after asking for it, and S3 checks
# the expiry when the upload starts, not when it ends, so a slow 20 MiB upload still
# completes; a leaked or replayed one is soon useless.
UPLOAD_EXPIRES_SECONDS = 60
# The object metadata (x-amz-meta-owner) that names who asked for the upload.
OWNER_METADATA = "owner"
MAX_KEY_BYTES = 1024  # S3's own limit on a key

# The image types the classifier decodes (imaging.SUPPORTED_FORMATS), by the
# Content-Type a client declares; the value is the key's extension.
UPLOAD_CONTENT_TYPES = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}

_CHANGED_CODES = ("412", "PreconditionFailed")


@dataclass(frozen=True)
class UploadRequest:
    content_type: str
    size: int


@dataclass(frozen=True)
class S3Image:
    """An image read from S3, and the owner its upload was presigned for (None: no owner pinned)."""

    data: bytes
    owner: str | None


def check_upload_key(key: object) -> str:
    """Return ``key`` if it names an object under ``uploads/``; refuse anything else.

    S3 keys are opaque strings, but a key like ``uploads/../models/x`` means
    something else to every tool that treats keys as paths (the console, the
    CLI's sync, an IAM policy author), so such keys are refused outright.
    """
    if not isinstance(key, str):
        raise InvalidRequest("'s3_key' must be a string")
    problem = None
    if not key.startswith(UPLOAD_PREFIX) or key == UPLOAD_PREFIX:
        problem = f"must name an object under {UPLOAD_PREFIX} (as returned by POST /uploads)"
    elif len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    elif any(ord(c) < 32 or ord(c) == 127 for c in key) or "\\" in key:
        problem = "contains control characters or a backslash"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "contains an empty, '.' or '..' path segment"
    if problem:
        raise InvalidParameter(f"s3_key: {key[:100]!r} {problem}")
    return key


def new_upload_key(content_type: str, now: datetime | None = None) -> str:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{UPLOAD_PREFIX}{now:%Y/%m/%d}/{uuid.uuid4().hex}.{UPLOAD_CONTENT_TYPES[content_type]}"


class Uploads:
    """The uploads bucket: presign uploads into it, read images back out of it."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.uploads_bucket
        self.max_bytes = settings.max_s3_image_bytes
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    def require_enabled(self) -> str:
        """The bucket's name; ``UploadsDisabled`` (501) when UPLOADS_BUCKET is unset."""
        if self.bucket is None:
            raise UploadsDisabled("uploads through S3 are not configured on this server (UPLOADS_BUCKET is unset)")
        return self.bucket

    def presign(self, request: UploadRequest, *, owner: str | None = None) -> dict[str, Any]:
        """A presigned POST for a new key; its policy pins the key, the type, the exact size and the owner."""
        bucket = self.require_enabled()
        key = new_upload_key(request.content_type)
        from botocore.exceptions import BotoCoreError, ClientError

        fields = {"Content-Type": request.content_type}
        if owner is not None:
            fields[f"x-amz-meta-{OWNER_METADATA}"] = owner
        try:
            post = self.client().generate_presigned_post(
                Bucket=bucket,
                Key=key,
                Fields=fields,
                Conditions=[
                    *({name: value} for name, value in fields.items()),
                    ["content-length-range", request.size, request.size],
                ],
                ExpiresIn=UPLOAD_EXPIRES_SECONDS,
            )
        # With no credentials at all, botocore signs a POST policy with None and fails with
        # AttributeError ('NoneType' object has no attribute 'access_key'), not NoCredentialsError.
        except (BotoCoreError, ClientError, AttributeError) as exc:
            log.error("cannot presign an upload: %s", exc, extra={"bucket": bucket})
            raise StorageUnavailable("the uploads bucket cannot be used right now; try again later") from None
        log.info("upload presigned", extra={"key": key, "bytes": request.size, "content_type": request.content_type,
                                            "owner": owner})
        return {"key": key, "url": post["url"], "fields": post["fields"], "expires_in": UPLOAD_EXPIRES_SECONDS}

    def read(self, key: str, *, bucket: str | None = None, etag: str | None = None,
             owner: str | None = None) -> S3Image:
        """The image at ``key``; its size (and owner) are checked from the response headers before the body is read.

        With ``etag``, only that exact version is read: a different one
        raises ``UploadChanged`` (S3 answers 412 to the If-Match). With
        ``owner``, only an upload presigned for that owner is read: another's
        is the ``NotFound`` of a missing key, so a caller learns nothing of
        keys it was not given.
        """
        bucket = bucket or self.require_enabled()
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{bucket}/{key}"
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if etag:
            params["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
        try:
            obj = self.client().get_object(**params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in NOT_FOUND_CODES:
                raise NotFound(f"no uploaded object {key!r}") from None
            if code in _CHANGED_CODES:
                raise UploadChanged(f"{key!r} was replaced since the event (ETag is no longer {etag})") from None
            # AccessDenied lands here too: without s3:ListBucket S3 answers 403
            # for a missing key, so the function's role needs it on uploads/.
            log.error("cannot read an upload: %s", exc, extra={"object": where, "s3_error": code})
            raise StorageUnavailable("the uploaded object could not be read; try again later") from None
        except BotoCoreError as exc:
            log.error("cannot read an upload: %s", exc, extra={"object": where})
            raise StorageUnavailable("the uploads bucket could not be reached; try again later") from None
        body = obj["Body"]
        pinned = (obj.get("Metadata") or {}).get(OWNER_METADATA)
        try:
            if owner is not None and pinned != owner:
                log.warning("upload of another owner refused", extra={"object": where, "owner": owner})
                raise NotFound(f"no uploaded object {key!r}")
            size = int(obj["ContentLength"])
            if size > self.max_bytes:
                raise PayloadTooLarge(f"the uploaded image is {size} bytes; the limit is {self.max_bytes}")
            data: bytes = body.read()
        except (BotoCoreError, OSError) as exc:
            log.error("reading an upload failed midway: %s", exc, extra={"object": where})
            raise StorageUnavailable("the uploaded object could not be read; try again later") from None
        finally:
            body.close()
        if len(data) != size:
            log.error("short read", extra={"object": where, "expected": size, "got": len(data)})
            raise StorageUnavailable("the uploaded object could not be read completely; try again later")
        return S3Image(data, pinned)

    def client(self) -> Any:
        """One S3 client per process, created on first use (clients are thread-safe; creating one is not)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = _make_client()
        return self._client


def _make_client() -> Any:
    import boto3
    from botocore.config import Config

    # Regional virtual-hosted URLs (bucket.s3.<region>.amazonaws.com): the
    # global endpoint answers a new bucket in another region with a redirect
    # that a form POST does not follow. A custom endpoint (a local S3 server
    # in tests) keeps botocore's choice, which is path style for an IP.
    custom_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "auto" if custom_endpoint else "virtual"},
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.client("s3", config=config)
