"""``<name>-service-stack``: the compute, redeployed with every change (``cdk deploy <name>-service-stack``).

The inference function (container image from model/) and the REST API in
front of it. Optional features, each behind a context switch validated in
``AppConfig`` and each a construct in its own file, hang off this stack;
see ``_optional_features``.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from lambda_docker.alarms import Alarms
from lambda_docker.api import STAGE_NAME, ApiSettings, ClassifierApi
from lambda_docker.config import AppConfig
from lambda_docker.dashboard import Dashboard, DashboardSettings
from lambda_docker.edge import ApiDistribution
from lambda_docker.function_url import ClassifierFunctionUrl, invoker_principal
from lambda_docker.inference import InferenceFunction, InferenceSettings
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.storage_stack import UPLOADS_PREFIX, StorageStack, retention
from lambda_docker.upload_classifier import UploadClassifier


class ServiceStack(Stack):
    @property
    def availability_zones(self) -> list[str]:
        """The region's first two AZs, resolved at deploy time (see ``StorageStack.availability_zones``)."""
        return [Fn.select(index, Fn.get_azs()) for index in range(2)]

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, storage: StorageStack, **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(storage, "the functions mount the storage stack's file system")
        self.storage = storage
        self.inference_settings = InferenceSettings(
            model_name=config.model_name,
            backend=config.backend,
            architecture=config.architecture,
            memory_mb=config.memory_mb,
            timeout_seconds=config.timeout_seconds,
            reserved_concurrency=config.reserved_concurrency,
            provisioned_concurrency=config.provisioned_concurrency,
            model_refresh_seconds=config.model_refresh_seconds,
            inference_threads=config.inference_threads,
            log_retention=retention(config),
        )

        self.inference = InferenceFunction(
            self, "Inference",
            settings=self.inference_settings,
            vpc=storage.network.vpc,
            subnets=storage.network.subnets,
            security_group=storage.model_storage.inference_security_group,
            access_point=storage.model_storage.inference_access_point,
            uploads_bucket_name=storage.uploads.bucket_name,
        )
        function = self.inference.function
        # Presigned POSTs are signed with the function's role, so it needs
        # PutObject for the browser's upload to be accepted; GetObject to
        # classify it; ListBucket so a missing key is a 404, not a 403.
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[storage.uploads.arn_for_objects(f"{UPLOADS_PREFIX}*")],
        ))
        function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[storage.uploads.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{UPLOADS_PREFIX}*"]}},
        ))
        suppress_vpc_function_role(function, NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="Uploaded images get random keys under uploads/: the function may read and "
                   "write that prefix of the uploads bucket only.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::.*\/uploads\/\*$/")],
        ))

        self.api = ClassifierApi(
            self, "Api",
            handler=self.inference.alias,
            settings=ApiSettings(
                throttle_rate_limit=config.throttle_rate_limit,
                throttle_burst_limit=config.throttle_burst_limit,
                cors_allow_origins=config.cors_allow_origins,
                api_key=config.api_key,
                log_retention=retention(config),
            ),
        )
        self.alarms = Alarms(self, "Alarms", api=self.api.api, email=config.alarm_email)
        self._optional_features(config)

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the classification API")
        CfnOutput(self, "InboxBucket", value=storage.inbox.bucket.bucket_name,
                  description="python -m classifier publish --s3 s3://<this bucket>")
        CfnOutput(self, "FunctionName", value=function.function_name, description="The inference function")
        CfnOutput(self, "UploadsBucket", value=storage.uploads.bucket_name,
                  description="Large images go here through POST /uploads")
        if self.alarms.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn,
                      description="Alarm notifications (alarm_email is subscribed; confirm its mail)")
        if self.api.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.api.api_key.key_id,
                      description="aws apigateway get-api-key --include-value --api-key <this id>")
        if self.api.api_key_secret is not None:
            CfnOutput(self, "ApiKeySecret", value=self.api.api_key_secret.secret_arn,
                      description="aws secretsmanager get-secret-value --query SecretString --secret-id <this>")

    def _optional_features(self, config: AppConfig) -> None:
        """Features behind context switches: each one a construct in its own file, wired here."""
        self.dashboard: Dashboard | None = None
        self.function_url: ClassifierFunctionUrl | None = None
        self.edge: ApiDistribution | None = None
        self.upload_classifier: UploadClassifier | None = None

        if config.dashboard:
            self.dashboard = Dashboard(
                self, "Dashboard",
                settings=DashboardSettings(
                    architecture=config.architecture,
                    certificate_arn=config.dashboard_certificate_arn,
                    domain_name=config.dashboard_domain_name,
                    allowed_cidrs=config.dashboard_allowed_cidrs,
                    log_retention=retention(config),
                ),
                api_url=self.api.url,
                api_key_secret=self.api.api_key_secret,
            )
            CfnOutput(self, "DashboardUrl", value=self.dashboard.url,
                      description="The Streamlit dashboard (point dashboard_domain_name's DNS record at the "
                                  "load balancer when it is set)")
            if config.dashboard_domain_name is not None:
                CfnOutput(self, "DashboardLoadBalancer", value=self.dashboard.load_balancer.load_balancer_dns_name,
                          description="CNAME (or alias) dashboard_domain_name to this name")

        if config.function_url:
            self.function_url = ClassifierFunctionUrl(
                self, "FunctionUrlAccess",
                alias=self.inference.alias,
                invoker_principal=invoker_principal(config.function_url_invoker_principal),
            )
            CfnOutput(self, "FunctionUrl", value=self.function_url.url.url,
                      description="python -m classifier classify IMAGE --url <this> --sigv4 (as InvokerRoleArn)")
            CfnOutput(self, "InvokerRoleArn", value=self.function_url.invoker_role.role_arn,
                      description="Assume this role to call FunctionUrl")

        if config.edge:
            self.edge = ApiDistribution(self, "Edge", api=self.api.api, stage_name=STAGE_NAME)
            CfnOutput(self, "EdgeUrl", value=self.edge.url,
                      description="The API through CloudFront (same paths as ApiUrl)")

        if config.classify_on_upload:
            self.upload_classifier = UploadClassifier(
                self, "UploadClassifier",
                settings=self.inference_settings,
                vpc=self.storage.network.vpc,
                subnets=self.storage.network.subnets,
                security_group=self.storage.model_storage.inference_security_group,
                access_point=self.storage.model_storage.inference_access_point,
                uploads_bucket=self.storage.uploads,
                uploads_prefix=UPLOADS_PREFIX,
            )
            self.alarms.watch(self.upload_classifier.alarm)
            CfnOutput(self, "UploadFailuresQueue", value=self.upload_classifier.dead_letter_queue.queue_url,
                      description="Uploads that could not be classified after every retry (alarmed)")
            CfnOutput(self, "UploadClassifierFunction", value=self.upload_classifier.function.function_name,
                      description="Classifies uploads; invoke it with a dead-lettered message body to re-drive it")
