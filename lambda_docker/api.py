"""The public REST API (API Gateway v1): every path is proxied to the inference function.

Routes live in the application (``classifier.api``); API Gateway adds what a
public endpoint needs around them: binary media types (so images and
multipart bodies reach the function intact, base64-encoded), stage
throttling, JSON access logs, CORS, and optionally an API key with a usage
plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

STAGE_NAME = "prod"
# Request bodies of these types arrive base64-encoded in the Lambda event,
# byte for byte; anything else (JSON) arrives as text.
BINARY_MEDIA_TYPES = ("image/*", "multipart/form-data", "application/octet-stream")
CORS_HEADERS = ("Content-Type", "X-Api-Key", "Authorization")
API_GATEWAY_PUSH_TO_LOGS = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
)


@dataclass(frozen=True)
class ApiSettings:
    throttle_rate_limit: int
    throttle_burst_limit: int
    cors_allow_origins: Sequence[str]
    api_key: bool
    log_retention: logs.RetentionDays


class ClassifierApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, handler: lambda_.IFunction, settings: ApiSettings,
    ) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=settings.log_retention, removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = apigw.LambdaRestApi(
            self, "Api",
            handler=handler,
            proxy=True,
            description="ResNet-50 image classification",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            # Execution logs need the account's API Gateway CloudWatch role.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
                # Errors only, and never request bodies (they are images).
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
            ),
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(settings.cors_allow_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=list(CORS_HEADERS),
                max_age=Duration.hours(1),
            ),
            default_method_options=apigw.MethodOptions(api_key_required=settings.api_key),
        )
        self.url = self.api.url

        self.api_key: apigw.IApiKey | None = None
        if settings.api_key:
            self.usage_plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Throttling for callers with the API key",
                throttle=apigw.ThrottleSettings(
                    rate_limit=settings.throttle_rate_limit, burst_limit=settings.throttle_burst_limit,
                ),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            self.api_key = self.api.add_api_key("ApiKey", description="Key for the classification API")
            self.usage_plan.add_api_key(self.api_key)
        self._suppress_findings()

    def _suppress_findings(self) -> None:
        NagSuppressions.add_resource_suppressions(self.api, [
            NagPackSuppression(
                id="AwsSolutions-APIG2",
                reason="Request bodies are images (binary) that API Gateway cannot validate; the "
                       "application validates every input and answers with typed 4xx errors.",
            ),
            NagPackSuppression(
                id="AwsSolutions-APIG3",
                reason="No WAF by default (a web ACL costs at least 5 USD a month plus requests): "
                       "stage throttling and the optional API key's usage plan bound abuse. "
                       "Associate a web ACL with the stage for a broadly exposed deployment.",
            ),
            NagPackSuppression(
                id="AwsSolutions-APIG4",
                reason="A public classification endpoint by design; the context switch api_key "
                       "requires an API key. CORS preflight (OPTIONS) must stay unauthenticated.",
            ),
            NagPackSuppression(
                id="AwsSolutions-COG4",
                reason="No user pool: the API is public or API-key protected (context api_key), "
                       "not per-user.",
            ),
        ], apply_to_children=True)
        role = self.api.node.try_find_child("CloudWatchRole")
        if role is not None:
            NagSuppressions.add_resource_suppressions(role, [NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="API Gateway's own managed policy for the account's CloudWatch role, which "
                       "execution logging requires; AWS keeps it to log-group writes.",
                applies_to=[API_GATEWAY_PUSH_TO_LOGS],
            )])
