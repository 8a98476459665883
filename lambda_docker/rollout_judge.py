"""The rollout judge: a function an EventBridge schedule runs every minute (``classifier.store.rollout_judge``).

It reads the rollout state the installer mirrors to ``rollouts/<name>.json`` in
the model inbox, reads each running rollout's evidence from CloudWatch (the
inference function's EMF metrics), and acts by writing a rollout request
(``models/<name>/ROLLOUT``) that the installer carries out on EFS: it never
mounts EFS, so it runs outside the VPC, where CloudWatch's API is reachable
without an interface endpoint.

Least privilege: read the mirrored states (and list them when the models are
not known at deploy time), write rollout requests and nothing else in the
bucket, and ``cloudwatch:GetMetricData``, which has no resource-level scoping.
Its cost: docs/rollouts.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from classifier.store.inbox import MODELS_SEGMENT, ROLLOUT_REQUEST_NAME, ROLLOUT_STATE_PREFIX
from lambda_docker.bucket_access import allow_objects
from lambda_docker.checkov import ENVIRONMENT_KMS, LOG_GROUP_KMS, NO_RESERVED_CONCURRENCY, CheckovSkip, skip_checks
from lambda_docker.inbox import INSTALLER_ARCHITECTURE, INSTALLER_RUNTIME, installer_code
from lambda_docker.nag import LAMBDA_BASIC_EXECUTION

JUDGE_HANDLER = "classifier.store.rollout_judge.handler"
JUDGE_RATE = Duration.minutes(1)


class RolloutJudge(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        inbox: s3.IBucket,
        model_names: Sequence[str],
        metrics_namespace: str,
        service_name: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.function = lambda_.Function(
            self, "Function",
            description="Judges running model rollouts on their CloudWatch metrics; acts through the installer",
            code=installer_code(),  # the installer's zip: the store package holds the judge too
            handler=JUDGE_HANDLER,
            runtime=INSTALLER_RUNTIME,
            architecture=INSTALLER_ARCHITECTURE,
            # A few small S3 reads and one GetMetricData call a model.
            memory_size=256,
            timeout=Duration.seconds(50),  # under the schedule's minute: runs never pile up
            environment={
                "INBOX_BUCKET": inbox.bucket_name,
                "ROLLOUT_MODELS": ",".join(model_names),
                "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
                "POWERTOOLS_SERVICE_NAME": service_name,
            },
            log_group=self.log_group,
        )
        allow_objects(self.function, inbox, "s3:GetObject", prefix=ROLLOUT_STATE_PREFIX)
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"],
            resources=[inbox.arn_for_objects(f"{MODELS_SEGMENT}/*/{ROLLOUT_REQUEST_NAME}")],
        ))
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["cloudwatch:GetMetricData"], resources=["*"],
        ))
        self.schedule = events.Rule(
            self, "Schedule",
            description="Every minute: judge the running model rollouts",
            schedule=events.Schedule.rate(JUDGE_RATE),
            # A missed run is made up by the next one, a minute later, on the same evidence.
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        self._suppress_findings(inbox)

    def _suppress_findings(self, inbox: s3.IBucket) -> None:
        skip_checks(self.log_group, LOG_GROUP_KMS)
        skip_checks(self.function, ENVIRONMENT_KMS, NO_RESERVED_CONCURRENCY, CheckovSkip(
            "CKV_AWS_116",
            "A scheduled run that fails is followed by the next one a minute later, on the same (cumulative) "
            "evidence; a dead-letter queue would hold nothing worth replaying.",
        ), CheckovSkip(
            "CKV_AWS_117",
            "The judge calls CloudWatch's API, which the isolated subnets reach only through an interface "
            "endpoint (a monthly fee per AZ, far above the judge's cost); it never touches EFS or the VPC.",
        ))
        cfn_bucket = inbox.node.default_child
        bucket_ref = (f"<{Stack.of(inbox).get_logical_id(cfn_bucket)}.Arn>"  # type: ignore[arg-type]
                      if cfn_bucket is not None else None)
        role = self.function.role
        assert isinstance(role, iam.Role)
        NagSuppressions.add_resource_suppressions(role, [
            NagPackSuppression(
                id="AwsSolutions-IAM4",
                reason="AWS's managed Lambda execution policy: writes to CloudWatch Logs, nothing else.",
                applies_to=[LAMBDA_BASIC_EXECUTION],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="cloudwatch:GetMetricData has no resource-level permissions. In the inbox: the "
                       "mirrored rollout states under rollouts/ (read), and the rollout request of any model "
                       "(models/<name>/ROLLOUT, write): model names are not all known at deploy time.",
                applies_to=["Resource::*",
                            *([f"Resource::{bucket_ref}/{ROLLOUT_STATE_PREFIX}*",
                               f"Resource::{bucket_ref}/{MODELS_SEGMENT}/*/{ROLLOUT_REQUEST_NAME}"]
                              if bucket_ref else [])],
            ),
        ], apply_to_children=True)
        NagSuppressions.add_resource_suppressions(self.function, [NagPackSuppression(
            id="AwsSolutions-L1",
            reason="The judge runs the installer's zip on the installer's runtime (Python 3.12, the version "
                   "uv.lock resolves for); both move to a newer Python together.",
        )])
