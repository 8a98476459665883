"""``<name>-storage-stack``: everything that holds data, deployed once and rarely changed.

The VPC, the EFS model store with its access points, the model inbox with its
installer, the uploads bucket for large images, and the bucket of access
logs. The service stack mounts and uses these, so compute can be redeployed
or destroyed without touching data.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_docker.buckets import AccessLogsBucket, SecureBucket
from lambda_docker.config import AppConfig
from lambda_docker.inbox import ModelInbox
from lambda_docker.network import Network
from lambda_docker.storage import ModelStorage
from lambda_docker.two_az_stack import TwoAzStack

# Browsers upload large images straight to S3 with the presigned POST that
# POST /uploads returns.
UPLOADS_PREFIX = "uploads/"


class StorageStack(TwoAzStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.network = Network(self, "Network", log_retention=config.log_retention)
        self.model_storage = ModelStorage(
            self, "ModelStore",
            vpc=self.network.vpc,
            subnets=self.network.subnets,
            removal_policy=RemovalPolicy.DESTROY if config.efs_removal_policy == "destroy" else RemovalPolicy.RETAIN,
            existing_file_system_id=config.efs_file_system_id,
        )
        self.access_logs = AccessLogsBucket(self, "AccessLogs").bucket
        self.inbox = ModelInbox(
            self, "ModelInbox",
            mount=self.model_storage.installer_mount,
            access_logs=self.access_logs,
            expiration_days=config.inbox_expiration_days,
            log_retention=config.log_retention,
        )
        self.uploads = self._uploads_bucket(config)
        self.network.allow_s3_buckets(self.inbox.bucket, self.uploads)

        CfnOutput(self, "InboxBucket", value=self.inbox.bucket.bucket_name,
                  description="python -m classifier publish --s3 s3://<this bucket>")
        CfnOutput(self, "InstallerLogGroup", value=self.inbox.log_group.log_group_name,
                  description="aws logs tail <this group>: what the installer did with each upload")
        CfnOutput(self, "InstallerFunction", value=self.inbox.function.function_name,
                  description="The installer Lambda; invoke it with {bucket, key} to re-run an install")

    def _uploads_bucket(self, config: AppConfig) -> s3.Bucket:
        return SecureBucket(
            self, "Uploads",
            access_logs=self.access_logs,
            versioned=False,  # transient inputs, deleted after a day
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-uploads",
                expiration=Duration.days(config.uploads_expiration_days),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )],
            # Browsers on the API's CORS origins may POST here too; no origins, no rule.
            cors=[s3.CorsRule(
                allowed_methods=[s3.HttpMethods.POST],
                allowed_origins=list(config.cors_allow_origins),
                allowed_headers=["*"],
                max_age=3600,
            )] if config.cors_allow_origins else None,
            # Always on, whatever classify_on_upload says: the switch then only
            # adds or removes a rule in the service stack, never changes this one.
            event_bridge=True,
        ).bucket
