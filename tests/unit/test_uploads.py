"""Upload keys: what POST /classify {"s3_key"} accepts (classifier.aws.uploads.check_upload_key)."""

from __future__ import annotations

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


