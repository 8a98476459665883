"""Classification on upload (switch ``classify_on_upload``): images created under ``uploads/`` are classified.

S3 reports "Object Created" to EventBridge (the uploads bucket has
EventBridge notifications on, see ``storage_stack.py``); a rule here matches
the uploads bucket and the ``uploads/`` prefix and invokes a second function
built from the same container image as the API, with its handler set to
``classifier.aws.upload_classifier.handler``. It mounts the store like the inference
function (same access point, read only), stores records in the records table,
and may read ``uploads/*`` only.

Why EventBridge and not an S3 notification to the function: the bucket lives
in the storage stack and the function in the service stack. An S3
notification is configured on the bucket and names the function, so the
storage stack would reference the service stack, which already references
the storage stack: a cycle. The rule lives beside the function and only
names the bucket.

Failures. EventBridge invokes the function asynchronously: a failed delivery
(throttling, a missing permission) is retried by EventBridge, and an error
inside the function is retried by Lambda, both for a bounded time. What is
still failing then lands in one dead-letter queue, with the original
EventBridge event as the message body in both cases, so re-driving is the same
for both (``aws lambda invoke --payload <body>``); the handler is idempotent
on bucket and key, so a re-drive (or a replayed upload) never stores a second
record. An alarm fires as soon as the queue holds a message.

Its concurrency is reserved (``upload_reserved_concurrency``): uploads come at
the callers' pace, and this caps what they can cost at once. Its role may do
exactly what its code calls: GetItem and PutItem on records (a claim is a
conditional PutItem), GetObject under ``uploads/``.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from lambda_docker.alarms import ALARM_PERIOD, alarm_at_or_above
from lambda_docker.bucket_access import allow_objects, object_created_rule
from lambda_docker.checkov import CheckovSkip, skip_checks
from lambda_docker.inference import ClassifierRuntime, classifier_function
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.records import GET_ITEM, PUT_ITEM

HANDLER = "classifier.aws.upload_classifier.handler"
# A cold start loads the model from EFS and an upload may be 20 MiB
# (MAX_S3_IMAGE_BYTES); no API Gateway limit applies to an asynchronous call.
TIMEOUT = Duration.minutes(2)
# Lambda retries a failed asynchronous invocation twice (about 1 and 2
# minutes later): enough for a model being published or a brief S3 or EFS
# error; an event older than an hour is stale and goes to the queue.
RETRY_ATTEMPTS = 2
MAX_EVENT_AGE = Duration.hours(1)
# EventBridge's own retries, for failures to invoke at all.
DELIVERY_RETRY_ATTEMPTS = 10
# SQS's longest retention: two weeks to look at and re-drive a failure.
DLQ_RETENTION = Duration.days(14)


class UploadClassifier(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: ClassifierRuntime,
        uploads_bucket: s3.IBucket,
        uploads_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.dead_letter_queue = sqs.Queue(
            self, "Failures",
            retention_period=DLQ_RETENTION,
            # SQS-managed keys: Lambda and EventBridge can write without a KMS grant.
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        skip_checks(self.dead_letter_queue, CheckovSkip(
            "CKV_AWS_27",
            "Encrypted at rest with SQS-managed keys (SSE-SQS), which checkov does not count: a KMS key would "
            "need grants for Lambda and EventBridge, for messages that hold only S3 event metadata.",
        ))
        self.function = classifier_function(
            self,
            runtime=runtime,
            description="Classifies images created under uploads/ and stores their records (classify_on_upload)",
            timeout=TIMEOUT,
            cmd=[HANDLER],
            reserved_concurrency=runtime.config.upload_reserved_concurrency,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=MAX_EVENT_AGE,
            dead_letter_queue=self.dead_letter_queue,
        )
        self.log_group = self.function.log_group
        # Records, and the claims that make a re-delivered upload keep its first record.
        runtime.records.grant(self.function, GET_ITEM, PUT_ITEM)
        # Read the uploaded objects (GET and HEAD), and write nothing to S3.
        allow_objects(self.function, uploads_bucket, "s3:GetObject", prefix=uploads_prefix)
        self.rule = object_created_rule(
            self, "ObjectCreated",
            description="An object was created under uploads/ in the uploads bucket: classify it",
            bucket=uploads_bucket,
            key_filters=[{"prefix": uploads_prefix}],
            target=targets.LambdaFunction(
                self.function,
                dead_letter_queue=self.dead_letter_queue,
                retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                max_event_age=MAX_EVENT_AGE,
            ),
        )
        self.alarm = self._dead_letter_alarm()
        self._suppress_findings()

    def _dead_letter_alarm(self) -> cloudwatch.Alarm:
        return alarm_at_or_above(
            self, "FailuresAlarm",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=ALARM_PERIOD, statistic=cloudwatch.Stats.MAXIMUM,
            ),
            threshold=1,
            description="Uploads that could not be classified after every retry are waiting in the "
                        "dead-letter queue; see the README (Classification on upload) to re-drive them",
        )

    def _suppress_findings(self) -> None:
        suppress_vpc_function_role(self.function, NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="Uploads get random keys under uploads/, unknown at deploy time: the function may "
                   "read that prefix of the uploads bucket only, and write nothing to S3.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::.*\/uploads\/\*$/")],
        ))
