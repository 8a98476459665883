"""Bulk classification (switch ``bulk``): a Step Functions Distributed Map over an S3 prefix.

``python -m classifier batch s3://bucket/prefix`` starts an execution of this
state machine (the ``BulkStateMachineArn`` output) with the input
``{"bucket": ..., "prefix": ..., "top_k": ...}`` (``prefix`` and ``top_k``
optional). The execution:

1. checks its input: the bucket must be the one this deployment may read
   (context ``bulk_source_bucket``, by default the uploads bucket), the
   ``prefix`` under one of the prefixes jobs may read there
   (``bulk_source_prefixes``: by default ``bulk/`` in the uploads bucket, never
   the callers' ``uploads/``), ``top_k`` an integer in 1..20, ``owner`` (who
   started the job, which ``batch s3://`` sends) printable text. A wrong
   input fails at once, with an error that says so, before anything is listed;
2. lists the objects under the prefix (``ItemReader``: S3 ListObjectsV2, run
   by Step Functions itself) and hands them, 16 at a time with
   ``{"bucket", "top_k"}`` as ``BatchInput``, to child executions, at most
   ``bulk_max_concurrency`` at once;
3. each child invokes the worker: a function of the API's image with the
   handler ``classifier.aws.bulk_worker.handler``, the store mounted read-only, writing
   records (carrying the job's ``owner``) to the records table. It may read
   those prefixes and nothing else, and runs at most ``bulk_max_concurrency``
   at once (its reserved concurrency, ``bulk_reserved_concurrency``, at least
   that many). It returns one result per object and raises
   only on trouble worth retrying (no model, S3 or DynamoDB unreachable),
   which the child retries with backoff; an object that cannot be classified
   is a result, not a failure;
4. writes every child's input and output to the results bucket
   (``ResultWriter``), and fails if more than ``bulk_tolerated_failure_percent``
   of the children failed even so. An alarm fires on a failed execution.

It costs nothing while idle: Step Functions and Lambda are billed per use.
Limits and an estimate per million images: docs/bulk-and-records.md.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from classifier.config import Settings
from lambda_docker.alarms import ALARM_PERIOD, alarm_at_or_above
from lambda_docker.bucket_access import allow_objects
from lambda_docker.checkov import LOG_GROUP_KMS, CheckovSkip, skip_checks
from lambda_docker.config import AppConfig
from lambda_docker.inference import ClassifierRuntime, classifier_function
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.records import BATCH_WRITE_ITEM, PUT_ITEM

HANDLER = "classifier.aws.bulk_worker.handler"
# The runtime's MAX_BATCH: one invocation gets as many objects as one batched inference takes.
MAX_ITEMS_PER_BATCH = Settings.max_batch
# The worker reads objects up to the runtime's default S3 limit (MAX_S3_IMAGE_BYTES), set
# explicitly so that the limit a job applies is visible in the function's configuration.
MAX_S3_IMAGE_BYTES = Settings.max_s3_image_bytes
# POST /classify's top_k range (the API's query parameter table), and its default.
TOP_K_MIN, TOP_K_MAX, DEFAULT_TOP_K = 1, 20, 5
# A cold start (model from EFS) and 16 objects of up to 20 MiB each, downloaded,
# decoded and classified, take well under a minute; no API Gateway limit applies.
WORKER_TIMEOUT = Duration.minutes(3)
# Retries of a batch the worker could not do (it raises only on transient trouble):
# 10 s, 20 s, 40 s, 80 s with full jitter, long enough for a model being installed
# or a throttled table; a batch still failing then counts against the tolerance.
RETRY_INTERVAL = Duration.seconds(10)
RETRY_ATTEMPTS = 4
RETRY_BACKOFF = 2.0
RETRY_MAX_DELAY = Duration.minutes(2)
# Names the map run in the console and scopes its redrive permission.
MAP_LABEL = "ClassifyObjects"
RESULTS_PREFIX = "jobs"

_INPUT = "$states.input"
# The Map's fields read the execution's own input (the context object is there in
# every field, BatchInput included), whatever states come before the Map.
_EXECUTION_INPUT = "$states.context.Execution.Input"
# The input's prefix, "" when it has none.
_PREFIX = f"($exists({_INPUT}.prefix) ? {_INPUT}.prefix : '')"


def _or_default(field: str, default: str) -> str:
    """A JSONata expression: the execution input's ``field``, or ``default`` when absent."""
    return f"{{% $exists({_EXECUTION_INPUT}.{field}) ? {_EXECUTION_INPUT}.{field} : {default} %}}"


def _objects_finding(bucket: s3.IBucket, prefix: str = "") -> RegexAppliesTo:
    """How cdk-nag names a ``<bucket>/<prefix>*`` resource: a bucket of this app (maybe another stack's), or one
    by name."""
    objects = re.escape(f"/{prefix}*").replace("/", "\\/")
    cfn_bucket = bucket.node.default_child
    if isinstance(cfn_bucket, s3.CfnBucket):
        logical_id = Stack.of(cfn_bucket).get_logical_id(cfn_bucket)
        return RegexAppliesTo(regex=rf"/^Resource::.*{logical_id}.*{objects}$/")
    # The partition is a literal or <AWS::Partition>, as the stack's environment has it.
    return RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:s3:::{re.escape(bucket.bucket_name)}{objects}$/")


class BulkClassification(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        runtime: ClassifierRuntime,
        source_bucket: s3.IBucket,
        results_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.source_bucket = source_bucket
        self.results_bucket = results_bucket
        config = runtime.config
        self.prefixes = config.bulk_prefixes

        self.function = classifier_function(
            self,
            runtime=runtime,
            description="Classifies the batches of a bulk job (Step Functions Distributed Map over an S3 prefix)",
            timeout=WORKER_TIMEOUT,
            cmd=[HANDLER],
            environment={"MAX_S3_IMAGE_BYTES": str(MAX_S3_IMAGE_BYTES)},
            # At least as many as the Map runs batches at once: a job is never throttled, takes no more,
            # and never takes the API's own reservation.
            reserved_concurrency=config.bulk_reserved_concurrency,
        )
        skip_checks(self.function, CheckovSkip(
            "CKV_AWS_116",
            "Invoked synchronously by the state machine's Map: a failed batch is retried there and then counted "
            "against bulk_tolerated_failure_percent in the map run; a dead-letter queue only ever receives "
            "failed asynchronous invocations.",
        ))
        self.log_group = self.function.log_group
        # BatchWriteItem for a batch's records; PutItem because the classify use case it runs can store
        # one record itself (Classifier._store, which the worker's path skips but its code holds).
        runtime.records.grant(self.function, BATCH_WRITE_ITEM, PUT_ITEM)
        # Read (GET and HEAD) whatever the prefixes hold, in the source bucket only.
        allow_objects(self.function, source_bucket, "s3:GetObject", prefixes=self.prefixes)

        self.state_machine_logs = logs.LogGroup(
            self, "StateMachineLogs",
            # Step Functions delivers logs under a CloudWatch Logs resource policy, which has
            # a size limit; one policy for /aws/vendedlogs/ covers every group below it.
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-bulk",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            comment="Classifies every object under an S3 prefix: input {bucket, prefix, top_k}",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(config)),
            query_language=sfn.QueryLanguage.JSONATA,
            state_machine_type=sfn.StateMachineType.STANDARD,
            logs=sfn.LogOptions(destination=self.state_machine_logs, level=sfn.LogLevel.ERROR,
                                include_execution_data=True),
            tracing_enabled=config.tracing,
        )
        skip_checks(self.state_machine_logs, LOG_GROUP_KMS)
        self.alarm = alarm_at_or_above(
            self, "FailedAlarm",
            metric=self.state_machine.metric_failed(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=1,
            description="A bulk classification job failed: its input was refused, or more batches than "
                        "bulk_tolerated_failure_percent failed after their retries (see the execution's map run)",
        )
        self._suppress_findings()

    def _definition(self, config: AppConfig) -> sfn.IChainable:
        bucket = self.source_bucket.bucket_name
        check = sfn.Choice.jsonata(self, "CheckInput", comment="Refuse a job this deployment cannot run")
        check.when(
            sfn.Condition.jsonata(f"{{% $not({_INPUT}.bucket = '{bucket}') %}}"),
            sfn.Fail.jsonata(self, "BucketNotAllowed", error="BucketNotAllowed",
                             cause="This state machine reads one bucket only: the stack's bulk_source_bucket "
                                   "(by default its uploads bucket); the input's bucket is another"),
        )
        check.when(
            sfn.Condition.jsonata(
                f"{{% ($exists({_INPUT}.prefix) and $type({_INPUT}.prefix) != 'string') or "
                f"($exists({_INPUT}.top_k) and $not($type({_INPUT}.top_k) = 'number' and "
                f"{_INPUT}.top_k = $floor({_INPUT}.top_k) and "
                f"{_INPUT}.top_k >= {TOP_K_MIN} and {_INPUT}.top_k <= {TOP_K_MAX})) or "
                f"($exists({_INPUT}.owner) and $not($type({_INPUT}.owner) = 'string' and "
                f"$contains({_INPUT}.owner, /^[!-~]{{1,2048}}$/))) %}}"
            ),
            sfn.Fail.jsonata(self, "InvalidInput", error="InvalidInput",
                             cause=f"The input is {{\"bucket\": ..., \"prefix\": \"<text>\", \"top_k\": "
                                   f"<integer {TOP_K_MIN}..{TOP_K_MAX}>, \"owner\": \"<printable text>\"}}; "
                                   "prefix, top_k and owner may be left out"),
        )
        if "" not in self.prefixes:
            under = " or ".join(f"$substring({_PREFIX}, 0, {len(p)}) = '{p}'" for p in self.prefixes)
            check.when(
                sfn.Condition.jsonata(f"{{% $not({under}) %}}"),
                sfn.Fail.jsonata(self, "PrefixNotAllowed", error="PrefixNotAllowed",
                                 cause="Jobs may read only under the stack's bulk_source_prefixes: "
                                       f"{', '.join(self.prefixes)}"),
            )
        return check.otherwise(self._map(config))

    def _map(self, config: AppConfig) -> sfn.DistributedMap:
        classify = sfn.DistributedMap.jsonata(
            self, "ClassifyObjects",
            comment="Every object under the prefix, in batches, to the worker",
            label=MAP_LABEL,
            # Reads the one allowed bucket (the input named it, CheckInput made sure): with a
            # bucket from the input, aws-cdk-lib would grant ListBucket on every bucket.
            item_reader=sfn.S3ObjectsItemReader(bucket=self.source_bucket, prefix=_or_default("prefix", "''")),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=MAX_ITEMS_PER_BATCH,
                batch_input={"bucket": self.source_bucket.bucket_name,
                             "top_k": _or_default("top_k", str(DEFAULT_TOP_K)),
                             "owner": _or_default("owner", "null")},
            ),
            max_concurrency=config.bulk_max_concurrency,
            # aws-cdk-lib leaves 0 out of the definition, which is Step Functions' default: no tolerance.
            tolerated_failure_percentage=config.bulk_tolerated_failure_percent,
            # Standard children: exactly-once batches, each one's history in the console, and redrive.
            map_execution_type=sfn.StateMachineType.STANDARD,
            result_writer_v2=sfn.ResultWriterV2(bucket=self.results_bucket, prefix=RESULTS_PREFIX),
        )
        batch = tasks.LambdaInvoke.jsonata(
            self, "ClassifyBatch",
            comment="The worker classifies one batch; it raises only on trouble worth retrying",
            lambda_function=self.function,
            outputs="{% $states.result.Payload %}",
        )
        batch.add_retry(
            errors=[sfn.Errors.TASKS_FAILED],
            interval=RETRY_INTERVAL,
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=RETRY_BACKOFF,
            max_delay=RETRY_MAX_DELAY,
            jitter_strategy=sfn.JitterType.FULL,
        )
        classify.item_processor(batch)
        return classify

    def _suppress_findings(self) -> None:
        suppress_vpc_function_role(self.function, NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="A bulk job reads whichever objects its prefix holds, unknown at deploy time: GetObject on "
                   "the objects under bulk_source_prefixes of the one source bucket (bulk_source_bucket) only.",
            applies_to=[_objects_finding(self.source_bucket, prefix) for prefix in self.prefixes],
        ))
        NagSuppressions.add_resource_suppressions(self.state_machine, [
            NagPackSuppression(
                id="AwsSolutions-SF1",
                reason="Errors only: a Standard workflow keeps every execution's full history in Step "
                       "Functions for 90 days already; logging every event of every child execution would "
                       "multiply CloudWatch Logs ingestion by the number of batches for no new information.",
            ),
            NagPackSuppression(
                id="AwsSolutions-SF2",
                reason="No X-Ray by default: a trace per child execution costs per trace, and the execution "
                       "history, map run and worker logs already show where a batch went.",
            ),
        ])
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        function_id = Stack.of(self).get_logical_id(cfn_function)
        # On the state machine's children: its role, that role's policy, and the
        # policy aws-cdk-lib adds beside it for the Distributed Map.
        NagSuppressions.add_resource_suppressions(self.state_machine, [
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="What aws-cdk-lib grants a Distributed Map: invoke the worker (and its versions), "
                       "write result objects under per-run keys of the results bucket, describe, stop and "
                       "redrive this state machine's own child executions.",
                applies_to=[
                    f"Resource::<{function_id}.Arn>:*",
                    _objects_finding(self.results_bucket),
                    # The account is <AWS::AccountId> when the stack's environment has none.
                    RegexAppliesTo(regex=r"/^Resource::arn:.+:states:.+:execution:.+:\*$/"),
                ],
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Step Functions' log delivery to CloudWatch Logs (logs:CreateLogDelivery and the "
                       "rest) supports no resource-level permissions: AWS documents Resource '*' for it.",
                applies_to=["Resource::*"],
            ),
        ], apply_to_children=True)
