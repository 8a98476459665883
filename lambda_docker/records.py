"""The classification records table (DynamoDB) and the key that signs its page cursors.

Both live in the storage stack, so records survive a redeploy or a
``cdk destroy`` of the service stack. The table's keys and indexes are the
runtime's own (``classifier.records.dynamodb.table_definition``, which the tests also
create on moto), read from that function here rather than retyped, so the
two cannot drift apart. Access patterns: docs/bulk-and-records.md.

The functions that write records get, through ``environment``,
``RECORDS_TABLE`` and ``RECORDS_TTL_DAYS`` (model/classifier/config.py), and
through ``grant`` exactly the DynamoDB actions their code calls, on this table
only (tests/infra/test_least_privilege.py derives each function's list from
the code). Only the function that signs page cursors (the API's) gets
``RECORDS_CURSOR_SECRET`` too (``cursor_environment``).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from classifier.records.dynamodb import TTL_ATTRIBUTE, table_definition
from lambda_docker.checkov import CheckovSkip, skip_checks

# What classifier.records.dynamodb.DynamoRecordStore calls: get and upload_record (GetItem), list
# (Query, on the indexes), put and claim_upload (PutItem: DynamoDB has no separate action for a
# conditional write), put_many (BatchWriteItem). Each function is granted the ones its code calls.
GET_ITEM, QUERY, PUT_ITEM, BATCH_WRITE_ITEM = (
    "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem")
RECORD_ACTIONS = (GET_ITEM, QUERY, PUT_ITEM, BATCH_WRITE_ITEM)
# Letters and digits: the value is an HMAC key, copied into an environment variable.
CURSOR_SECRET_LENGTH = 64

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
    def __init__(self, scope: Construct, construct_id: str, *, ttl_days: int) -> None:
        super().__init__(scope, construct_id)
        self.ttl_days = ttl_days

        definition: dict[str, Any] = table_definition("unused")
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
        if QUERY in actions:
            function.add_to_role_policy(iam.PolicyStatement(
                actions=[QUERY], resources=[f"{self.table.table_arn}/index/*"],
            ))
            role = function.role
            assert role is not None
            NagSuppressions.add_resource_suppressions(role, [NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="GET /classifications queries the records table's indexes (newest first, by label, by "
                       "model version, by both): Query on this table's indexes only.",
                applies_to=[RegexAppliesTo(regex=r"/^Resource::.*RecordsTable.*\/index\/\*$/")],
            )], apply_to_children=True)
