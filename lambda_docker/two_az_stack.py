"""The base of both stacks: their VPCs span the region's first two AZs, resolved at deploy time."""

from __future__ import annotations

from aws_cdk import Fn, Stack

AZ_COUNT = 2


class TwoAzStack(Stack):
    @property
    def availability_zones(self) -> list[str]:
        """The region's first ``AZ_COUNT`` AZs, resolved by CloudFormation at deploy time.

        With an account and region set, CDK would otherwise look the AZs up
        through the AWS API during synth (and write placeholders without
        credentials); this keeps `cdk synth` offline and the template portable.
        """
        return [Fn.select(index, Fn.get_azs()) for index in range(AZ_COUNT)]
