"""The edge (switch ``edge``): a CloudFront distribution in front of the regional API (REST or HTTP).

CloudFront ends TLS close to the caller and keeps warm, pooled connections
to the API's region, which cuts connection set-up for distant users. The
classifier itself stays regional: Lambda@Edge cannot run container images,
caps a package at 1 MB (viewer events) or 50 MB (origin events), cannot
mount EFS and has no VPC access (see the README).

Behaviours:

- default (``POST /classify``, ``POST /uploads`` and every other path): all
  methods, nothing cached; each request reaches the API.
- ``GET /classifications*``, ``/model``, ``/health``: cached a few seconds,
  keyed on the query string and on ``x-api-key`` (so a cached answer is never
  served to a caller with a different key, or none, when the API requires
  one) and ``Origin`` (CORS answers depend on it).

Viewers must use HTTPS (plain HTTP is refused, not redirected: a redirected
POST loses its body); CloudFront talks TLS 1.2 to the API. The origin
request policy forwards an explicit list of headers and never ``Host``: API
Gateway routes on its own host name and answers 403 to any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from lambda_docker.checkov import accept_finding

# The API's read-only paths, as CloudFront path patterns (case-sensitive,
# '*' matches any characters including '/').
CACHED_GET_PATHS = ("/classifications*", "/model", "/health")
# Short: a new classification shows in GET /classifications within seconds,
# a newly published model in GET /model as soon as the API reports it.
CACHE_DEFAULT_TTL = Duration.seconds(5)
CACHE_MAX_TTL = Duration.seconds(30)
# What the API reads from a request (besides the body and the query string).
# Host is deliberately absent; Authorization cannot be forwarded by an origin
# request policy and the API does not use it.
FORWARDED_HEADERS = (
    "Content-Type", "Accept", "X-Api-Key", "X-Request-Id",
    "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers",
)
CACHE_KEY_HEADERS = ("X-Api-Key", "Origin")


def rest_api_origin(api: apigw.RestApi, stage_name: str) -> cloudfront.IOrigin:
    """The REST API as an origin. Origin path = the stage: https://<edge>/classify -> <api>/prod/classify."""
    return origins.RestApiOrigin(api, origin_path=f"/{stage_name}")


class ApiDistribution(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        origin: cloudfront.IOrigin,
        web_acl_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.origin = origin
        self.origin_request_policy = cloudfront.OriginRequestPolicy(
            self, "ForwardToApi",
            comment="The headers, query strings (no cookies) the classifier API reads; never Host",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.allow_list(*FORWARDED_HEADERS),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        self.read_cache_policy = self._read_cache_policy()
        reads = self._behavior(
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
            cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
            cache_policy=self.read_cache_policy,
        )
        self.distribution = cloudfront.Distribution(
            self, "Distribution",
            comment="ResNet-50 classifier API at the edge",
            default_behavior=self._behavior(
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                # POST /classify, /uploads: every request is new work.
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            ),
            additional_behaviors=dict.fromkeys(CACHED_GET_PATHS, reads),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_ipv6=True,
            web_acl_id=web_acl_arn,
        )
        self.url = f"https://{self.distribution.distribution_domain_name}/"
        self._suppress_findings(firewalled=web_acl_arn is not None)

    def _read_cache_policy(self) -> cloudfront.CachePolicy:
        return cloudfront.CachePolicy(
            self, "ShortLivedReads",
            comment="GET /classifications*, /model, /health: seconds, per query string, API key and origin",
            default_ttl=CACHE_DEFAULT_TTL,
            min_ttl=Duration.seconds(0),
            max_ttl=CACHE_MAX_TTL,
            header_behavior=cloudfront.CacheHeaderBehavior.allow_list(*CACHE_KEY_HEADERS),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            # Compressed and uncompressed answers are cached apart.
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )

    def _behavior(
        self,
        *,
        allowed_methods: cloudfront.AllowedMethods,
        cache_policy: cloudfront.ICachePolicy,
        cached_methods: cloudfront.CachedMethods | None = None,
    ) -> cloudfront.BehaviorOptions:
        """To the API over HTTPS only, with the forwarding policy, compressed; what differs is caching."""
        return cloudfront.BehaviorOptions(
            origin=self.origin,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=allowed_methods,
            cached_methods=cached_methods,
            cache_policy=cache_policy,
            origin_request_policy=self.origin_request_policy,
            compress=True,
        )

    def _suppress_findings(self, *, firewalled: bool) -> None:
        NagSuppressions.add_resource_suppressions(self.distribution, list(_DISTRIBUTION_SUPPRESSIONS))
        for nag_id, checkov_id, reason in _DISTRIBUTION_FINDINGS:
            if not (firewalled and nag_id == NO_WEB_ACL[0]):
                accept_finding(self.distribution, nag_id=nag_id, checkov_id=checkov_id, reason=reason)


_DISTRIBUTION_SUPPRESSIONS: Sequence[NagPackSuppression] = (
    NagPackSuppression(
        id="AwsSolutions-CFR1",
        reason="A public API for callers anywhere, like the regional API behind it: no country is "
               "blocked. Add a geo restriction to the distribution if the service must not be.",
    ),
)

# (cdk-nag rule, checkov check, reason): the same finding as each tool names it.
NO_WEB_ACL = (
    "AwsSolutions-CFR2", "CKV_AWS_68",
    "No web ACL: waf is false (the default), or the stacks deploy outside us-east-1, where a "
    "CloudFront web ACL cannot be created (docs/security.md says how to attach one); the API's "
    "stage throttling, and its own web ACL with waf=true, bound abuse.",
)
_DISTRIBUTION_FINDINGS = (
    NO_WEB_ACL,
    ("AwsSolutions-CFR3", "CKV_AWS_86",
     "Standard logging to S3 needs an ACL-enabled bucket (every bucket here enforces owner "
     "ownership, no ACLs); every request CloudFront forwards is in the API's access logs, "
     "and only cached GET answers of a few seconds are not."),
    ("AwsSolutions-CFR4", "CKV_AWS_174",
     "The distribution uses CloudFront's default *.cloudfront.net certificate, with which "
     "CloudFront cannot set a minimum viewer TLS version; a custom domain with an ACM "
     "certificate would allow TLSv1.2_2021."),
)
