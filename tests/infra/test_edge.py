"""The edge (switch ``edge``): CloudFront in front of the regional REST API."""

from __future__ import annotations

from typing import Any

from .conftest import Synth
from .test_storage_stack import only, resources

# CloudFront's managed "CachingDisabled" cache policy.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
GET_PATHS = {"/classifications*", "/model", "/health"}


def distribution_config(synth: Synth) -> dict[str, Any]:
    _, distribution = only(synth.service, "AWS::CloudFront::Distribution")
    return dict(distribution["Properties"]["DistributionConfig"])


def behaviours(synth: Synth) -> list[dict[str, Any]]:
    config = distribution_config(synth)
    return [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]


def test_no_distribution_by_default(default: Synth) -> None:
    # The switch is off in cdk.json.
    default.service.resource_count_is("AWS::CloudFront::Distribution", 0)
    assert not default.service.find_outputs("EdgeUrl")


def test_origin_is_the_api_stage_over_tls(switches: Synth) -> None:
    # One origin: the REST API's host, path /prod (the stage), HTTPS only with TLS 1.2.
    api_id, _ = only(switches.service, "AWS::ApiGateway::RestApi")
    (origin,) = distribution_config(switches)["Origins"]
    assert origin["OriginPath"] == "/prod"
    assert {"Ref": api_id} in origin["DomainName"]["Fn::Select"][1]["Fn::Split"][1]["Fn::Join"][1]
    assert origin["CustomOriginConfig"] == {"OriginProtocolPolicy": "https-only", "OriginSSLProtocols": ["TLSv1.2"]}


def test_viewers_must_use_https(switches: Synth) -> None:
    # Every behaviour refuses plain HTTP (a redirect would turn a POST into a bodiless GET).
    assert {b["ViewerProtocolPolicy"] for b in behaviours(switches)} == {"https-only"}


def test_posts_are_never_cached(switches: Synth) -> None:
    # POST /classify (and /uploads) take the default behaviour: every method, the CachingDisabled policy.
    default_behaviour, *others = behaviours(switches)
    assert "POST" in default_behaviour["AllowedMethods"]
    assert default_behaviour["CachePolicyId"] == CACHING_DISABLED
    assert all("POST" not in b["AllowedMethods"] for b in others)


def test_get_paths_are_cached_for_seconds(switches: Synth) -> None:
    # GET /classifications*, /model, /health: a short-TTL policy keyed on the query string and the API key.
    _, *others = behaviours(switches)
    assert {b["PathPattern"] for b in others} == GET_PATHS
    policy_ids = {b["CachePolicyId"]["Ref"] for b in others}
    assert len(policy_ids) == 1
    for behaviour in others:
        assert behaviour["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]
        assert behaviour["CachedMethods"] == ["GET", "HEAD"]
    config = resources(switches.service, "AWS::CloudFront::CachePolicy")[policy_ids.pop()]["Properties"][
        "CachePolicyConfig"]
    assert 0 < config["DefaultTTL"] <= config["MaxTTL"] <= 60 and config["MinTTL"] == 0
    key = config["ParametersInCacheKeyAndForwardedToOrigin"]
    assert key["QueryStringsConfig"] == {"QueryStringBehavior": "all"}
    assert "X-Api-Key" in key["HeadersConfig"]["Headers"]


def test_headers_the_api_needs_are_forwarded_but_not_host(switches: Synth) -> None:
    # An allow list with Content-Type, x-api-key and x-request-id; Host would make API Gateway answer 403.
    policy_id, policy = only(switches.service, "AWS::CloudFront::OriginRequestPolicy")
    headers = policy["Properties"]["OriginRequestPolicyConfig"]["HeadersConfig"]
    assert headers["HeaderBehavior"] == "whitelist"
    names = {h.lower() for h in headers["Headers"]}
    assert {"content-type", "x-api-key", "x-request-id"} <= names
    assert "host" not in names
    assert all(b["OriginRequestPolicyId"] == {"Ref": policy_id} for b in behaviours(switches))


def test_compression_is_on(switches: Synth) -> None:
    # Every behaviour compresses; the cached answers are stored per gzip / brotli encoding.
    assert all(b["Compress"] is True for b in behaviours(switches))
    switches.service.has_resource_properties("AWS::CloudFront::CachePolicy", {"CachePolicyConfig": {
        "ParametersInCacheKeyAndForwardedToOrigin": {
            "EnableAcceptEncodingGzip": True, "EnableAcceptEncodingBrotli": True,
        },
    }})


def test_edge_url_output(switches: Synth) -> None:
    # EdgeUrl: https://<distribution>/ , used like ApiUrl.
    distribution_id, _ = only(switches.service, "AWS::CloudFront::Distribution")
    switches.service.has_output("EdgeUrl", {"Value": {"Fn::Join": ["", [
        "https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}, "/",
    ]]}})
