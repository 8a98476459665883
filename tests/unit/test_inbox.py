"""The model inbox's key layout and its s3:// URLs (classifier.store.inbox)."""

from __future__ import annotations

import pytest

from classifier.lifecycle import publish_s3 as publish
from classifier.lifecycle.publish import PublishError, PublishRequest
from classifier.store.inbox import ManifestKey, parse_manifest_key, parse_s3_url


@pytest.mark.parametrize("url", ["https://bucket/models", "s3://", "bucket/prefix", "s3://bucket/p?x=1"])
def test_a_malformed_url_is_refused(url: str) -> None:
    # Only s3://bucket or s3://bucket/prefix.
    with pytest.raises(PublishError, match="s3://bucket"):
        publish.publish_to_s3(url, PublishRequest(weights="random"))


def test_parse_s3_url_normalises_the_prefix() -> None:
    # Slashes around the prefix do not change where the version lands.
    assert parse_s3_url("s3://inbox") == ("inbox", "")
    assert parse_s3_url("s3://inbox/") == ("inbox", "")
    assert parse_s3_url("s3://inbox/a/b") == ("inbox", "a/b/")
    assert parse_s3_url("s3://inbox//a/b/") == ("inbox", "a/b/")


def test_manifest_keys_round_trip() -> None:
    # The installer reads back exactly the layout publish writes.
    key = ManifestKey("team/", "resnet50", "20261122T100000Z-0123456789ab")
    assert key.key == "team/models/resnet50/20261122T100000Z-0123456789ab/manifest.json"
    assert parse_manifest_key(key.key) == key
    assert parse_manifest_key("models/resnet50/20261122T100000Z-0123456789ab/manifest.json") == ManifestKey(
        "", "resnet50", "20261122T100000Z-0123456789ab")
    assert parse_manifest_key("models/resnet50/20261122T100000Z-0123456789ab/model.onnx") is None
    assert parse_manifest_key("xmodels/resnet50/v/manifest.json") is None


