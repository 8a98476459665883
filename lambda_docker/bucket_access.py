"""How a function uses a bucket: IAM access to the objects under a prefix, and a rule for the ones created there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct


def allow_objects(function: lambda_.IFunction, bucket: s3.IBucket, *actions: str, prefix: str = "",
                  prefixes: Sequence[str] = ()) -> None:
    """Let ``function`` do ``actions`` on the objects under ``prefix`` (or each of ``prefixes``; all of the
    bucket's objects when empty), and list them.

    ListBucket (on those prefixes only, when there are some) makes a missing key
    a 404 instead of a 403, so that the function can tell "not there" from
    "not allowed".
    """
    scopes = [p for p in (prefixes or (prefix,))]
    function.add_to_role_policy(iam.PolicyStatement(
        actions=list(actions), resources=[bucket.arn_for_objects(f"{p}*") for p in scopes],
    ))
    function.add_to_role_policy(iam.PolicyStatement(
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{p}*" for p in scopes]}} if all(scopes) else None,
    ))


def object_created_rule(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    bucket: s3.IBucket,
    key_filters: Sequence[Mapping[str, str]],
    target: events.IRuleTarget,
) -> events.Rule:
    """An EventBridge rule that hands ``target`` every object created in ``bucket`` whose key matches a filter.

    ``key_filters`` are EventBridge content filters such as ``{"prefix": "uploads/"}``,
    any of which may match; the bucket must send its events to EventBridge
    (``SecureBucket(event_bridge=True)``).
    """
    return events.Rule(
        scope, construct_id,
        description=description,
        event_pattern=events.EventPattern(
            source=["aws.s3"],
            detail_type=["Object Created"],
            detail={
                "bucket": {"name": [bucket.bucket_name]},
                "object": {"key": [dict(f) for f in key_filters]},
            },
        ),
        targets=[target],
    )
