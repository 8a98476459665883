"""``<name>-service-stack``: the compute, redeployed with every change (``cdk deploy <name>-service-stack``).

The inference function (container image from model/) and the REST API in
front of it. Optional features, each behind a context switch validated in
``AppConfig``, hang off this stack; see ``_optional_features``.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from lambda_docker.api import ApiSettings, ClassifierApi
from lambda_docker.config import AppConfig
from lambda_docker.inference import InferenceFunction, InferenceSettings
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.storage_stack import UPLOADS_PREFIX, StorageStack, retention


class ServiceStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, storage: StorageStack, **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(storage, "the functions mount the storage stack's file system")

        self.inference = InferenceFunction(
            self, "Inference",
            settings=InferenceSettings(
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
            ),
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
        self._optional_features(config)

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the classification API")
        CfnOutput(self, "InboxBucket", value=storage.inbox.bucket.bucket_name,
                  description="python -m classifier publish --s3 s3://<this bucket>")
        CfnOutput(self, "FunctionName", value=function.function_name, description="The inference function")
        CfnOutput(self, "UploadsBucket", value=storage.uploads.bucket_name,
                  description="Large images go here through POST /uploads")
        if self.api.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.api.api_key.key_id,
                      description="aws apigateway get-api-key --include-value --api-key <this id>")

    def _optional_features(self, config: AppConfig) -> None:
        """Features behind context switches: each one a construct in its own file, wired here.

        A switch turned on before its feature exists changes nothing, and
        synth says so rather than ignoring it silently.
        """
        if config.dashboard:
            # The Streamlit dashboard on Fargate behind an ALB, calling
            # self.api.url (lambda_docker/dashboard.py); output DashboardUrl.
            self._not_built_yet("dashboard")
        if config.function_url:
            # A Lambda function URL on self.inference.alias, beside the REST API.
            self._not_built_yet("function_url")
        if config.edge:
            # An edge (CloudFront) entry point in front of the API.
            self._not_built_yet("edge")
        if config.classify_on_upload:
            # Classify objects as they land in storage.uploads (S3 event -> function).
            self._not_built_yet("classify_on_upload")

    def _not_built_yet(self, switch: str) -> None:
        Annotations.of(self).add_warning_v2(
            f"classifier:{switch}-not-implemented",
            f"context switch {switch}=true: this feature is not part of this version; "
            "the stack is synthesized without it",
        )
