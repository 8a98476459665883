"""cdk-nag suppressions shared by several constructs, each with its reason.

Constructs apply them to the specific resources they concern; nothing here
is applied stack-wide.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions

LAMBDA_BASIC_EXECUTION = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
LAMBDA_VPC_ACCESS = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"


def suppress_vpc_function_role(function: lambda_.Function, *extra: NagPackSuppression) -> None:
    """The findings every EFS-mounting VPC function's role has, plus ``extra`` ones."""
    role = function.role
    assert isinstance(role, iam.Role)
    NagSuppressions.add_resource_suppressions(role, [
        NagPackSuppression(
            id="AwsSolutions-IAM4",
            reason="AWS-managed Lambda execution policies: CloudWatch Logs writes, and the ENI "
                   "management a VPC function needs (ec2:CreateNetworkInterface has no "
                   "resource-level scoping). AWS maintains them at least privilege.",
            applies_to=[LAMBDA_BASIC_EXECUTION, LAMBDA_VPC_ACCESS],
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="elasticfilesystem:ClientMount on '*' is what aws-lambda's "
                   "FileSystem.fromEfsAccessPoint grants; its elasticfilesystem:AccessPointArn "
                   "condition pins it to this function's own access point.",
            applies_to=["Resource::*"],
        ),
        *extra,
    ], apply_to_children=True)
