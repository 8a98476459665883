"""Nothing lost, in AWS: the scheduled replay of deferred records, and the alarms that watch them.

A record DynamoDB refuses after its retries (a throttled key, an outage) is written whole to
the records' deferral bucket (``records.RecordsTable.deferred``) and counted by the
``RecordsDeferred`` metric (``classifier.observability.metrics``). This construct:

- runs ``classifier.aws.records_replay.handler`` (the API's image) every
  ``REPLAY_EVERY``, which writes them back, idempotently (same id, no duplicate), and deletes
  each once written; one run at a time (reserved concurrency 1);
- raises ``RecordsDeferred`` (any record deferred in five minutes: DynamoDB is refusing
  writes, worth a look even though nothing is lost) and ``RecordsReplayFailing`` (the replay
  itself failed twice in a row).

``python -m classifier records replay`` does the same by hand (docs/bulk-and-records.md).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from lambda_docker.alarms import ALARM_PERIOD, alarm_at_or_above
from lambda_docker.checkov import CheckovSkip, skip_checks
from lambda_docker.inference import METRICS_NAMESPACE, POWERTOOLS_SERVICE_NAME, ClassifierRuntime, classifier_function
from lambda_docker.nag import suppress_vpc_function_role

HANDLER = "classifier.aws.records_replay.handler"
REPLAY_EVERY = Duration.minutes(15)
# A run replays at most classifier.aws.records_replay.RECORDS_PER_RUN records, well inside this.
REPLAY_TIMEOUT = Duration.minutes(10)


class RecordsReplay(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, runtime: ClassifierRuntime) -> None:
        super().__init__(scope, construct_id)

        self.function = classifier_function(
            self,
            runtime=runtime,
            description="Writes records DynamoDB refused back from the deferral bucket (scheduled)",
            timeout=REPLAY_TIMEOUT,
            cmd=[HANDLER],
            reserved_concurrency=1,  # one replay at a time: two would write the same records twice
        )
        skip_checks(self.function, CheckovSkip(
            "CKV_AWS_116",
            "Invoked by a schedule with no retry: a failed run leaves every record where it was, and the next "
            "run (REPLAY_EVERY later) replays it; the RecordsReplayFailing alarm watches the failures. A "
            "dead-letter queue would hold only empty schedule events.",
        ))
        runtime.records.grant_replay(self.function)
        suppress_vpc_function_role(self.function)
        self.schedule = events.Rule(
            self, "Schedule",
            description="Replays deferred classification records",
            schedule=events.Schedule.rate(REPLAY_EVERY),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
        self.deferred_alarm = alarm_at_or_above(
            self, "RecordsDeferred",
            metric=cloudwatch.Metric(
                namespace=METRICS_NAMESPACE, metric_name="RecordsDeferred",
                dimensions_map={"service": POWERTOOLS_SERVICE_NAME},
                statistic=cloudwatch.Stats.SUM, period=ALARM_PERIOD,
            ),
            threshold=1,
            description="DynamoDB refused classification records (throttling or an outage): they wait in the "
                        "deferral bucket for the scheduled replay, nothing is lost. See docs/bulk-and-records.md",
        )
        self.failing_alarm = alarm_at_or_above(
            self, "RecordsReplayFailing",
            metric=self.function.metric_errors(period=REPLAY_EVERY, statistic=cloudwatch.Stats.SUM),
            threshold=1,
            evaluation_periods=2,
            description="The scheduled replay of deferred records failed twice in a row: see its log group",
        )
