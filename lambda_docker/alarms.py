"""The service's alarms, and where they go (context ``alarm_email``).

Alarms watch for what a user would otherwise learn from a customer:

- ``ApiServerErrors``: the REST API answered 5xx (the function failed, timed
  out, or has no model to serve) at least ``API_5XX_THRESHOLD`` times in five
  minutes. A single 503 while a fresh deployment waits for its first model
  does not page anyone; a broken deployment does within five minutes.
- the p99 latency and 5xx-rate alarms of ``observability.py``;
- the upload classifier's dead-letter queue alarm (switch
  ``classify_on_upload``), built by ``UploadClassifier`` and handed to
  ``watch``.

Without ``alarm_email`` the alarms have no action: they show in the
CloudWatch console, and anyone may subscribe them later. With it, every alarm
notifies an SNS topic (state ALARM and back to OK) with that address
subscribed; AWS mails a confirmation link first. The topic is encrypted with
a customer-managed KMS key, because CloudWatch can only publish to an
encrypted topic whose key policy lets it use the key (the AWS-managed SNS key
cannot be granted).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

API_5XX_THRESHOLD = 5
ALARM_PERIOD = Duration.minutes(5)


def alarm_at_or_above(
    scope: Construct, construct_id: str, *, metric: cloudwatch.IMetric, threshold: float, description: str,
    evaluation_periods: int = 1,
) -> cloudwatch.Alarm:
    """An alarm when ``evaluation_periods`` periods in a row of ``metric`` reach ``threshold``; no data (no
    traffic) is not a breach."""
    return cloudwatch.Alarm(
        scope, construct_id,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        evaluation_periods=evaluation_periods,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


class Alarms(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, api: apigw.RestApi | apigwv2.HttpApi, email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.topic: sns.Topic | None = None
        if email is not None:
            key = kms.Key(
                self, "TopicKey",
                description="Encrypts the classifier's alarm notifications (SNS)",
                enable_key_rotation=True,
                removal_policy=RemovalPolicy.DESTROY,  # it protects transient notifications only
            )
            key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
            self.topic = sns.Topic(
                self, "Topic",
                display_name="Image classifier alarms",
                master_key=key,
                enforce_ssl=True,
            )
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

        self.api_server_errors = alarm_at_or_above(
            self, "ApiServerErrors",
            metric=api.metric_server_error(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=API_5XX_THRESHOLD,
            description=f"The classification API answered 5xx at least {API_5XX_THRESHOLD} times in "
                        "5 minutes: see the inference function's log group",
        )
        self.watch(self.api_server_errors)

    def watch(self, alarm: cloudwatch.Alarm) -> None:
        """Send ``alarm``'s changes to ALARM and back to OK to the topic, when there is one."""
        if self.topic is not None:
            alarm.add_alarm_action(actions.SnsAction(self.topic))
            alarm.add_ok_action(actions.SnsAction(self.topic))
