"""The classification records table (DynamoDB), the key that signs its page cursors, and the
bucket where records DynamoDB refused wait for the replay.

Both live in the storage stack, so records survive a redeploy or a
``cdk destroy`` of the service stack. The table's keys and indexes are the
runtime's own (``classifier.records.dynamodb.table_definition``, which the tests also
create on moto), read from that function here rather than retyped, so the
two cannot drift apart. Access patterns: docs/bulk-and-records.md.

The table's indexes and their shard count are the context keys ``records_indexes`` and
``records_shards`` (``classifier.records.keys``); the functions get the same values, so
writers and readers agree on the keys.

The functions that write records get, through ``environment``,
``RECORDS_TABLE``, ``RECORDS_TTL_DAYS``, ``RECORDS_SHARDS``, ``RECORDS_INDEXES`` and
``RECORDS_DEFERRED`` (model/classifier/config.py), and through ``grant`` exactly the
DynamoDB actions their code calls, on this table only (tests/infra/test_least_privilege.py
derives each function's list from the code); a writer also gets PutObject under the
deferral prefix (``classifier.records.deferral``), nothing else there. Only the replay
(``grant_replay``) may read and delete what waits. Only the function that signs page
cursors (the API's) gets ``RECORDS_CURSOR_SECRET`` too (``cursor_environment``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from classifier.records.keys import TTL_ATTRIBUTE, KeyLayout
from lambda_docker.bucket_access import allow_objects
from lambda_docker.buckets import SecureBucket
from lambda_docker.checkov import CheckovSkip, skip_checks

# What classifier.records.dynamodb.DynamoRecordStore calls: get and upload_record (GetItem), list
# (Query, on the indexes), put and claim_upload (PutItem: DynamoDB has no separate action for a
# conditional write), put_many (BatchWriteItem). Each function is granted the ones its code calls.
GET_ITEM, QUERY, PUT_ITEM, BATCH_WRITE_ITEM = (
    "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem")
RECORD_ACTIONS = (GET_ITEM, QUERY, PUT_ITEM, BATCH_WRITE_ITEM)
# Letters and digits: the value is an HMAC key, copied into an environment variable.
CURSOR_SECRET_LENGTH = 64
# What functions do in the deferral bucket: writers put, the replay lists, reads and deletes.
RECORDS_DEFERRED_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket")
# Where deferred records wait, one object per record, until the replay writes them back.
DEFERRED_PREFIX = "records-deferred/"

_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER,
                    "B": dynamodb.AttributeType.BINARY}


def _keys(
    key_schema: list[dict[str, str]], attribute_types: dict[str, str],
) -> tuple[dynamodb.Attribute, dynamodb.Attribute | None]:
    """A ``create_table`` KeySchema as CDK's partition key and sort key (None without one)."""
    keys = {
        key["KeyType"]: dynamodb.Attribute(
            name=key["AttributeName"], type=_ATTRIBUTE_TYPES[attribute_types[key["AttributeName"]]],
        )
        for key in key_schema
    }
    return keys["HASH"], keys.get("RANGE")


class RecordsTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, ttl_days: int, layout: KeyLayout,
                 access_logs: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.ttl_days = ttl_days
        self.layout = layout

        definition: dict[str, Any] = layout.table_definition("unused")
        types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
        assert definition["BillingMode"] == "PAY_PER_REQUEST"
        partition_key, sort_key = _keys(definition["KeySchema"], types)
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=partition_key,
            sort_key=sort_key,
            # On demand: nothing to pay while idle, and bulk jobs' bursts need no capacity planning.
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True,
            ),
            encryption=dynamodb.TableEncryption.DEFAULT,
            # Always on, even with ttl_days 0 (items then carry no expires_at): DynamoDB
            # allows one TTL change per hour, so the setting never flips with the context.
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        skip_checks(self.table, CheckovSkip(
            "CKV_AWS_119",
            "Encrypted at rest with an AWS-owned key, on purpose: records hold labels, scores, sizes and image "
            "digests, never images. That key costs nothing and needs no key policy; a customer key would add a "
            "monthly fee and KMS calls, and pays off only for key-level audit or cross-account access.",
        ))
        for index in definition["GlobalSecondaryIndexes"]:
            assert index["Projection"] == {"ProjectionType": "ALL"}
            partition_key, sort_key = _keys(index["KeySchema"], types)
            self.table.add_global_secondary_index(
                index_name=index["IndexName"],
                partition_key=partition_key,
                sort_key=sort_key,
                projection_type=dynamodb.ProjectionType.ALL,
            )

        # Records DynamoDB refused after their retries (throttling), whole, until the replay
        # writes them back: S3, reached through the VPC's free gateway endpoint (SQS would need an
        # interface endpoint). Unversioned: each record is written once under its own id and deleted
        # only once DynamoDB holds it; nothing expires here (a lost record is what this prevents).
        self.deferred = SecureBucket(
            self, "Deferred", access_logs=access_logs, versioned=False,
            unversioned_because="Each deferred record is written once under its own id and deleted only after "
                                "DynamoDB holds it (the replay): no object is ever overwritten, so no earlier "
                                "version exists to keep.",
            lifecycle_rules=[s3.LifecycleRule(
                id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1),
            )],
        ).bucket

        self.cursor_secret = secretsmanager.Secret(
            self, "CursorSecret",
            description="Signs the cursors of GET /classifications (RECORDS_CURSOR_SECRET)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=CURSOR_SECRET_LENGTH, exclude_punctuation=True, include_space=False,
            ),
        )
        skip_checks(self.cursor_secret, CheckovSkip(
            "CKV_AWS_149",
            "Encrypted with Secrets Manager's AWS-managed key: the value only signs page cursors (a forged one "
            "is refused; it guards no data), and CloudFormation reads it at deploy time, which a customer key "
            "would need a key policy for.",
        ))
        NagSuppressions.add_resource_suppressions(self.cursor_secret, [NagPackSuppression(
            id="AwsSolutions-SMG4",
            reason="The functions receive the key when the service stack deploys (see environment), so a "
                   "rotation takes effect only at the next deploy, and a new key merely ends the page "
                   "cursors in flight. Rotate by hand: put-secret-value, then cdk deploy the service stack.",
        )])

    @property
    def environment(self) -> dict[str, str]:
        """The runtime's records settings (model/classifier/config.py), for every function that stores records."""
        return {
            "RECORDS_TABLE": self.table.table_name,
            "RECORDS_TTL_DAYS": str(self.ttl_days),
            "RECORDS_SHARDS": str(self.layout.shards),
            "RECORDS_INDEXES": ",".join(self.layout.families),
            "RECORDS_DEFERRED": f"s3://{self.deferred.bucket_name}/{DEFERRED_PREFIX}",
        }

    @property
    def cursor_environment(self) -> dict[str, str]:
        """``RECORDS_CURSOR_SECRET``, for the function that signs page cursors (``GET /classifications``) only.

        A CloudFormation dynamic reference: the template holds only the
        secret's ARN, and CloudFormation puts the value into the function's
        configuration when it deploys. Reading it at run time instead would
        need a Secrets Manager interface endpoint in the isolated subnets
        (about 7 USD a month per AZ) or a NAT gateway; the price is that
        anyone who may read that function's configuration may read the key,
        and a new value needs a deploy.
        """
        return {"RECORDS_CURSOR_SECRET": self.cursor_secret.secret_value.unsafe_unwrap()}

    def grant(self, function: lambda_.IFunction, *actions: str) -> None:
        """Let ``function`` do ``actions`` (of ``RECORD_ACTIONS``) on this table: Query on its indexes, the
        others on the table itself (indexes are never written or read by key directly)."""
        unknown = set(actions) - set(RECORD_ACTIONS)
        assert not unknown, f"not a records action: {sorted(unknown)}"
        on_table = [a for a in RECORD_ACTIONS if a in actions and a != QUERY]
        if on_table:
            function.add_to_role_policy(iam.PolicyStatement(actions=on_table, resources=[self.table.table_arn]))
        if PUT_ITEM in actions or BATCH_WRITE_ITEM in actions:
            # A writer defers what DynamoDB refuses: PutObject under the deferral prefix, nothing more.
            function.add_to_role_policy(iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self.deferred.arn_for_objects(f"{DEFERRED_PREFIX}*")],
            ))
            self._suppress_prefix_finding(function)
        if QUERY in actions:
            function.add_to_role_policy(iam.PolicyStatement(
                actions=[QUERY], resources=[f"{self.table.table_arn}/index/*"],
            ))
            _suppress_wildcard(function, r"/^Resource::.*RecordsTable.*\/index\/\*$/",
                               "GET /classifications queries the records table's indexes (newest first, a caller's "
                               "own, and the optional ones of records_indexes): Query on this table's indexes only.")

    def grant_replay(self, function: lambda_.IFunction) -> None:
        """The scheduled replay: list, read and delete deferred records, and write them to the table."""
        function.add_to_role_policy(iam.PolicyStatement(actions=[BATCH_WRITE_ITEM], resources=[self.table.table_arn]))
        allow_objects(function, self.deferred, "s3:GetObject", "s3:DeleteObject", prefix=DEFERRED_PREFIX)
        self._suppress_prefix_finding(function)

    @staticmethod
    def _suppress_prefix_finding(function: lambda_.IFunction) -> None:
        _suppress_wildcard(function, r"/^Resource::.*RecordsDeferred.*\/records-deferred\/\*$/",
                           "Deferred records are one object per record id under records-deferred/: writers may put "
                           "objects there and the replay read and delete them, in that prefix of that bucket only.")


def _suppress_wildcard(function: lambda_.IFunction, regex: str, reason: str) -> None:
    """Accept cdk-nag's IAM5 (a wildcard resource) on ``function``'s role, for resources matching ``regex`` only."""
    role = function.role
    assert role is not None
    NagSuppressions.add_resource_suppressions(role, [NagPackSuppression(
        id="AwsSolutions-IAM5", reason=reason, applies_to=[RegexAppliesTo(regex=regex)],
    )], apply_to_children=True)
