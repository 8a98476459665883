"""The VPC: two AZs of isolated subnets, no NAT gateway, S3 and DynamoDB gateway endpoints.

Nothing here reaches the internet. The functions need only EFS (mount targets
in these subnets), S3 and DynamoDB (gateway endpoints, free of charge). Lambda itself
pulls the container image and ships logs outside the VPC, so no interface
endpoint (about 7 USD a month per AZ each) and no NAT gateway (about 32 USD a
month each, plus data) is needed. A future feature that calls another AWS API
from inside the VPC must add that service's interface endpoint; for that reason
the records' cursor key (Secrets Manager) reaches the functions at deploy time,
as a CloudFormation dynamic reference (``records.py``).

``vpc_without_nat`` and ``log_rejected_flows`` build this VPC and the dashboard's (public
subnets) alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_docker.checkov import CDK_PROVIDER_FUNCTION, LOG_GROUP_KMS, skip_checks
from lambda_docker.two_az_stack import AZ_COUNT

# The stack-wide handler aws-cdk-lib adds for @aws-cdk/aws-ec2:restrictDefaultSecurityGroup.
RESTRICT_DEFAULT_SG_PROVIDER = "Custom::VpcRestrictDefaultSGCustomResourceProvider"


def vpc_without_nat(scope: Construct, *, subnet_name: str, subnet_type: ec2.SubnetType) -> ec2.Vpc:
    """A VPC in ``scope`` ("Vpc"): one ``subnet_type`` subnet per AZ, no NAT gateway."""
    vpc = ec2.Vpc(
        scope, "Vpc",
        max_azs=AZ_COUNT,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name=subnet_name, subnet_type=subnet_type, cidr_mask=24)],
    )
    provider = Stack.of(scope).node.try_find_child(RESTRICT_DEFAULT_SG_PROVIDER)
    handler = provider.node.try_find_child("Handler") if provider is not None else None
    if isinstance(handler, CfnResource):
        skip_checks(handler, *CDK_PROVIDER_FUNCTION)
    return vpc


def log_rejected_flows(scope: Construct, vpc: ec2.Vpc, *, log_retention: logs.RetentionDays) -> logs.LogGroup:
    """``vpc``'s rejected flows into a log group in ``scope`` ("FlowLogs").

    Rejected flows only: they are what an investigation needs, and logging
    every accepted flow (NFS, S3, HTTPS) would cost more than it tells.
    """
    flow_logs = logs.LogGroup(scope, "FlowLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    skip_checks(flow_logs, LOG_GROUP_KMS)
    vpc.add_flow_log(
        "FlowLog",
        destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
        traffic_type=ec2.FlowLogTrafficType.REJECT,
    )
    return flow_logs


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)

        self.vpc = vpc_without_nat(self, subnet_name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        # The only ways out of the subnets: S3 and DynamoDB, through the route tables.
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets],
        )
        self.dynamodb_endpoint = self.vpc.add_gateway_endpoint(
            "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.subnets],
        )
        self.flow_log_group = log_rejected_flows(self, self.vpc, log_retention=log_retention)

    def allow_s3_buckets(self, *buckets: s3.IBucket,
                         actions: Sequence[str] = ("s3:GetObject", "s3:PutObject", "s3:ListBucket")) -> None:
        """Let the endpoint reach only these buckets (a data-exfiltration guard), for ``actions`` only.

        The functions' IAM roles decide what each may do; the endpoint policy
        only limits where traffic from the VPC may go.
        """
        self.s3_endpoint.add_to_policy(iam.PolicyStatement(
            principals=[iam.AnyPrincipal()],
            actions=list(actions),
            resources=[arn for b in buckets for arn in (b.bucket_arn, b.arn_for_objects("*"))],
        ))

    def allow_dynamodb_tables(self, *tables: dynamodb.ITable, actions: Sequence[str]) -> None:
        """Let the DynamoDB endpoint reach only these tables and their indexes, for ``actions`` only."""
        self.dynamodb_endpoint.add_to_policy(iam.PolicyStatement(
            principals=[iam.AnyPrincipal()],
            actions=list(actions),
            resources=[arn for t in tables for arn in (t.table_arn, f"{t.table_arn}/index/*")],
        ))
