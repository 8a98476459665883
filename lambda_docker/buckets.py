"""S3 buckets with the project's defaults, and the bucket that receives their access logs.

Every bucket: all public access blocked, non-TLS requests denied by policy,
encrypted with S3-managed keys (SSE-S3: no KMS calls, so the isolated subnets
need no KMS endpoint), object ownership enforced (no ACLs), retained when the
stack is deleted (CloudFormation cannot delete a bucket that holds objects).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_docker.checkov import CheckovSkip, accept_finding, skip_checks


def _bucket(
    scope: Construct,
    *,
    lifecycle_rules: Sequence[s3.LifecycleRule],
    versioned: bool = False,
    access_logs: s3.IBucket | None = None,
    access_logs_prefix: str | None = None,
    cors: Sequence[s3.CorsRule] | None = None,
) -> s3.Bucket:
    return s3.Bucket(
        scope, "Bucket",
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        encryption=s3.BucketEncryption.S3_MANAGED,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        removal_policy=RemovalPolicy.RETAIN,
        versioned=versioned,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=access_logs_prefix,
        lifecycle_rules=list(lifecycle_rules),
        cors=list(cors) if cors else None,
    )


class AccessLogsBucket(Construct):
    """Server access logs of the other buckets, kept for ``retention_days``."""

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int = 90) -> None:
        super().__init__(scope, construct_id)
        self.bucket = _bucket(self, lifecycle_rules=[
            s3.LifecycleRule(id="expire-logs", expiration=Duration.days(retention_days)),
        ])
        accept_finding(
            self.bucket, nag_id="AwsSolutions-S1", checkov_id="CKV_AWS_18",
            reason="This bucket is the access-log destination of the other buckets; logging "
                   "it into itself would log its own log deliveries without end.",
        )
        skip_checks(self.bucket, CheckovSkip(
            "CKV_AWS_21",
            "S3 writes each access-log object once and never changes it; versions would only keep "
            "expired logs longer.",
        ))


class SecureBucket(Construct):
    """A versioned bucket with access logging and the given lifecycle rules.

    ``event_bridge``: S3 reports every object event to the account's default
    EventBridge bus, where rules (in this stack or another) pick what they
    need. CloudFormation sets this switch on the bucket itself, whereas CDK's
    direct notifications need a custom resource (an extra Lambda and role),
    and a rule in the service stack adds no reference back from this bucket,
    so the stacks stay free of cycles. S3's events to EventBridge are free.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        access_logs: s3.IBucket,
        lifecycle_rules: Sequence[s3.LifecycleRule],
        cors: Sequence[s3.CorsRule] | None = None,
        versioned: bool = True,
        event_bridge: bool = False,
        unversioned_because: str = ("Objects written once under keys never reused (uploads under random keys, bulk "
                                    "results under each job's own prefix) and expired by a lifecycle rule: there is "
                                    "no earlier version worth keeping."),
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = _bucket(
            self,
            lifecycle_rules=lifecycle_rules,
            versioned=versioned,
            access_logs=access_logs,
            access_logs_prefix=f"{construct_id.lower()}/",
            cors=cors,
        )
        if not versioned:
            skip_checks(self.bucket, CheckovSkip("CKV_AWS_21", unversioned_because))
        if event_bridge:
            cfn_bucket = self.bucket.node.default_child
            assert isinstance(cfn_bucket, s3.CfnBucket)
            cfn_bucket.add_property_override(
                "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True,
            )
