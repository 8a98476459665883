"""The cheaper front door (``api_type=http``): an API Gateway HTTP API in front of the inference function.

An HTTP API costs $1.00 per million requests against the REST API's $3.50
(docs/deploy.md, "What it costs"). It sends the function payload format 2.0
events, which ``classifier.handler`` adapts like REST (v1) ones, binary bodies
base64-encoded without a list of binary media types. What it keeps of the REST
API, and how:

- authorization on every route: one ``$default`` route (every method and
  path) with ``AWS_IAM`` for ``api_auth=iam`` (the managed policy of
  ``auth.ApiAccess`` may invoke it), a JWT authorizer on the Cognito user pool
  for ``api_auth=cognito``, none only for ``api_auth=none`` (an explicit
  choice, which synth warns about);
- stage throttling (``throttle_rate_limit``, ``throttle_burst_limit``) and JSON
  access logs, on the ``$default`` stage;
- CORS for the configured origins only (API Gateway answers preflight itself,
  before any authorizer);
- the custom domain (``HttpApiCustomDomain``) and the CloudWatch dashboard and
  alarms (the API's metrics have the REST API's names in CDK).

What it cannot do is refused by ``AppConfig`` before synth: a WAF web ACL on
the stage (put one on the edge's distribution instead) and API keys.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Duration, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from lambda_docker.api import CORS_HEADERS
from lambda_docker.auth import ApiAccess
from lambda_docker.checkov import LOG_GROUP_KMS, CheckovSkip, skip_checks
from lambda_docker.config import AppConfig

# The stage that serves the API's root URL: https://<id>.execute-api.<region>.amazonaws.com/classify.
STAGE_NAME = "$default"
# One JSON line per request, from the $context variables HTTP APIs define (not all of the REST API's
# exist here); never a body or a header that carries a credential.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """The stage's access-log settings (aws-cdk-lib takes any object with these two properties)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT))


class ClassificationHttpApi(Construct):
    """The HTTP API, its ``$default`` stage and route, and who may call it (``ApiAccess``)."""

    def __init__(self, scope: Construct, construct_id: str, *, handler: lambda_.IFunction, config: AppConfig) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY,
        )
        skip_checks(self.access_logs, LOG_GROUP_KMS)
        self.access = ApiAccess(self, "Access", config=config)
        self.api = apigwv2.HttpApi(
            self, "Api",
            description="ResNet-50 image classification",
            create_default_stage=False,
            default_integration=integrations.HttpLambdaIntegration(
                "Function", handler, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
            ),
            default_authorizer=self._authorizer(config),
            # No origins, no preflight answers: browsers on other sites get no CORS answer.
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(config.cors_allow_origins),
                allow_methods=[apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST,
                               apigwv2.CorsHttpMethod.OPTIONS],
                allow_headers=list(CORS_HEADERS),
                max_age=Duration.hours(1),
            ) if config.cors_allow_origins else None,
        )
        self.stage = apigwv2.HttpStage(
            self, "Stage",
            http_api=self.api,
            stage_name=STAGE_NAME,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.throttle_rate_limit, burst_limit=config.throttle_burst_limit,
            ),
            access_log_settings=_AccessLogs(self.access_logs),
        )
        self.url = self.stage.url
        self.access.bind(self.api, STAGE_NAME)
        # What the REST API has and an HTTP API cannot (AppConfig refuses api_auth=api_key here).
        self.api_key: None = None
        self.api_key_secret: None = None
        self._suppress_findings(config)

    def _authorizer(self, config: AppConfig) -> apigwv2.IHttpRouteAuthorizer | None:
        """The ``$default`` route's authorizer: IAM (SigV4), a JWT one on the user pool, or (none) nothing."""
        if config.api_auth == "iam":
            return authorizers.HttpIamAuthorizer()
        if config.api_auth == "cognito":
            pool = self.access.user_pool
            assert pool is not None, "ApiAccess makes or imports the pool for api_auth=cognito"
            if self.access.user_pool_client is None:
                # A JWT authorizer checks the token's audience: the app client users sign in with. An
                # imported pool gets one of its own here (output ApiUserPoolClientId).
                self.access.user_pool_client = pool.add_client(
                    "ApiClient", auth_flows=cognito.AuthFlow(user_srp=True), generate_secret=False,
                )
            return authorizers.HttpUserPoolAuthorizer(
                "Authorizer", pool, user_pool_clients=[self.access.user_pool_client],
                identity_source=["$request.header.Authorization"],
            )
        return None

    def _suppress_findings(self, config: AppConfig) -> None:
        if config.api_auth == "none":
            for route in self.api.node.find_all():
                if isinstance(route, apigwv2.CfnRoute):
                    reason = ("api_auth=none: the deployer chose a public API explicitly (synth warns); the "
                              "default is SigV4 (api_auth=iam).")
                    skip_checks(route, CheckovSkip("CKV_AWS_309", reason))
                    NagSuppressions.add_resource_suppressions(route, [
                        NagPackSuppression(id="AwsSolutions-APIG4", reason=reason),
                    ])


class HttpApiCustomDomain(Construct):
    """``api_domain_name`` for the HTTP API: a regional domain (TLS 1.2) whose root maps to the stage."""

    def __init__(
        self, scope: Construct, construct_id: str, *, api: apigwv2.HttpApi, stage: apigwv2.HttpStage,
        domain_name: str, certificate_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.domain = apigwv2.DomainName(
            self, "Domain",
            domain_name=domain_name,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn),
            endpoint_type=apigwv2.EndpointType.REGIONAL,
            security_policy=apigwv2.SecurityPolicy.TLS_1_2,
        )
        self.mapping = apigwv2.ApiMapping(self, "Mapping", api=api, domain_name=self.domain, stage=stage)
        self.url = f"https://{domain_name}/"
        self.target = self.domain.regional_domain_name
        self.target_hosted_zone_id = self.domain.regional_hosted_zone_id


def http_api_origin(api: apigwv2.HttpApi) -> cloudfront.IOrigin:
    """The HTTP API as a CloudFront origin: its execute-api host, over TLS 1.2, at the ``$default`` stage's root."""
    host = Fn.select(2, Fn.split("/", api.api_endpoint))  # https://<id>.execute-api.<region>.amazonaws.com
    return origins.HttpOrigin(
        host, protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
        origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
    )
