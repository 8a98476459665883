"""Upload keys: what POST /classify {"s3_key"} accepts (classifier.aws.uploads.check_upload_key)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from classifier.aws.uploads import check_upload_key
from classifier.errors import InvalidParameter

MiB = 1024 * 1024


# -- the happy path ------------------------------------------------------------------


@pytest.mark.parametrize(("key", "problem"), [
    ("uploads/" + "k" * 1013 + ".jpg", "is longer than 1024 bytes"),  # 1025 bytes
    ("uploads/" + "\u00e9" * 507 + ".jpg", "is longer than 1024 bytes"),  # 519 characters, 1026 bytes in UTF-8
    ("uploads/a\\b.jpg", "contains control characters or a backslash"),
    ("uploads/x\x7f.jpg", "contains control characters or a backslash"),
    ("uploads/./x.jpg", "contains an empty, '.' or '..' path segment"),
    ("uploads/2026/.", "contains an empty, '.' or '..' path segment"),
    ("uploads/2026/../../x.jpg", "contains an empty, '.' or '..' path segment"),
])
def test_upload_key_rules(key: str, problem: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        check_upload_key(key)
    assert refused.value.message == f"s3_key: {key[:100]!r} {problem}"


@pytest.mark.parametrize("key", [
    "uploads/" + "k" * 1012 + ".jpg",  # exactly 1024 bytes
    "uploads/" + "\u00e9" * 505 + ".jpg",  # 1022 bytes
    "uploads/2026/11/22/..x.jpg",  # dots inside a segment are only a name
    "uploads/.hidden.jpg",
])
def test_upload_keys_at_the_limits_are_accepted(key: str) -> None:
    assert check_upload_key(key) == key




# -- the presigned POST's policy: owner, exact size, a short life ------------------------------------


def test_the_presigned_post_pins_the_owner_and_the_declared_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore signs a POST policy locally: no request is sent.
    from classifier.aws.uploads import UPLOAD_EXPIRES_SECONDS, UploadRequest, Uploads
    from classifier.config import Settings

    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDFUNCTIONROLE", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "eu-west-1",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    uploads = Uploads(Settings(uploads_bucket="uploads-bucket"))
    owner = "arn:aws:sts::123456789012:assumed-role/alice"
    presigned = uploads.presign(UploadRequest("image/png", 123_456), owner=owner)
    policy = json.loads(base64.b64decode(presigned["fields"]["policy"]))
    # The owner is a field of the form and an exact condition: the uploader cannot send another.
    assert presigned["fields"]["x-amz-meta-owner"] == owner
    assert {"x-amz-meta-owner": owner} in policy["conditions"]
    # The size is exactly the declared one, not a range up to the limit.
    assert ["content-length-range", 123_456, 123_456] in policy["conditions"]
    # It lives a minute: enough to start the upload at once, too short to replay for long.
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert UPLOAD_EXPIRES_SECONDS == 60 == presigned["expires_in"]
    assert 55 <= (expires - datetime.now(UTC)).total_seconds() <= 61
    # Without an identity (a local server) nothing is pinned.
    local = uploads.presign(UploadRequest("image/png", 10))
    assert "x-amz-meta-owner" not in local["fields"]
