"""``<name>-storage-stack``: everything that holds data, deployed once and rarely changed.

The VPC, the EFS model store with its access points, the records table, the
model inbox with its installer, the uploads bucket for large images, the
bulk jobs' results bucket (switch ``bulk``), and the bucket of access logs.
The service stack mounts and uses these, so compute can be redeployed or
destroyed without touching data.
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
from lambda_docker.records import READ_ACTIONS, RECORDS_DEFERRED_ACTIONS, WRITE_ACTIONS, RecordsTable
from lambda_docker.storage import ModelStorage
from lambda_docker.two_az_stack import TwoAzStack

# Browsers upload large images straight to S3 with the presigned POST that
# POST /uploads returns.
UPLOADS_PREFIX = "uploads/"
# A bulk job's results are read once, by whoever started it.
BULK_RESULTS_EXPIRATION_DAYS = 30


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
        self.records = RecordsTable(self, "Records", ttl_days=config.records_ttl_days, layout=config.records_layout,
                                    access_logs=self.access_logs)
        self.network.allow_dynamodb_tables(self.records.table, actions=[*READ_ACTIONS, *WRITE_ACTIONS])
        # Bulk jobs: the worker reads the source bucket from the VPC; Step Functions lists
        # it and writes the results bucket from outside, so only the source needs the endpoint.
        self.bulk_source: s3.IBucket | None = None
        self.bulk_results: s3.IBucket | None = None
        if config.bulk:
            self.bulk_source = self._bulk_source_bucket(config)
            self.bulk_results = self._bulk_results_bucket()
        endpoint_buckets: list[s3.IBucket] = [self.inbox.bucket, self.uploads]
        if self.bulk_source is not None and self.bulk_source is not self.uploads:
            endpoint_buckets.append(self.bulk_source)
        self.network.allow_s3_buckets(*endpoint_buckets)
        # Writers defer records there; the replay reads, then deletes them.
        self.network.allow_s3_buckets(self.records.deferred, actions=RECORDS_DEFERRED_ACTIONS)

        CfnOutput(self, "InboxBucket", value=self.inbox.bucket.bucket_name,
                  description="python -m classifier publish --s3 s3://<this bucket>")
        CfnOutput(self, "InstallerLogGroup", value=self.inbox.log_group.log_group_name,
                  description="aws logs tail <this group>: what the installer did with each upload")
        CfnOutput(self, "InstallerFunction", value=self.inbox.function.function_name,
                  description="The installer Lambda; invoke it with {bucket, key} to re-run an install")
        CfnOutput(self, "RecordsTable", value=self.records.table.table_name,
                  description="Classification records (GET /classifications reads them)")
        CfnOutput(self, "RecordsDeferredBucket", value=self.records.deferred.bucket_name,
                  description="Records DynamoDB refused, until the scheduled replay (or records replay) writes them")

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

    def _bulk_source_bucket(self, config: AppConfig) -> s3.IBucket:
        """The bucket bulk jobs may read: ``bulk_source_bucket``, by default the uploads bucket."""
        if config.bulk_source_bucket is None:
            return self.uploads
        return s3.Bucket.from_bucket_name(self, "BulkSource", config.bulk_source_bucket)

    def _bulk_results_bucket(self) -> s3.Bucket:
        # Here rather than beside the state machine: its access logs go to this stack's
        # log bucket, whose policy names the buckets it logs (a service-stack bucket
        # would make this stack refer to that one: a cycle).
        return SecureBucket(
            self, "BulkResults",
            access_logs=self.access_logs,
            versioned=False,  # each job writes its own keys, once
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-bulk-results",
                expiration=Duration.days(BULK_RESULTS_EXPIRATION_DAYS),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )],
        ).bucket
