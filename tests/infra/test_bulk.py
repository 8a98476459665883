"""Bulk classification (switch ``bulk``, on by default): the Distributed Map, its worker, IAM and alarm.

The state machine's definition is read as Step Functions will: the rendered
``DefinitionString`` is joined back into JSON (each CloudFormation reference
in it replaced by a placeholder that names it) and parsed.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from .conftest import Synth
from .test_service_stack import inference_function
from .test_storage_stack import (
    actions,
    function_statements,
    gateway_endpoint,
    only,
    resources,
    role_statements,
    uploads_bucket,
)

HANDLER = "classifier.aws.bulk_worker.handler"
RESULTS_PREFIX = "jobs"


def worker_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    return only(synth.service, "AWS::Lambda::Function", {"ImageConfig": {"Command": [HANDLER]}})


def state_machine(synth: Synth) -> tuple[str, dict[str, Any]]:
    return only(synth.service, "AWS::StepFunctions::StateMachine")


def definition(synth: Synth) -> tuple[dict[str, Any], list[Any]]:
    """The parsed definition, and the references whose placeholders (``@@<n>@@``) it holds."""
    _, machine = state_machine(synth)
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    references = [part for part in parts if not isinstance(part, str)]
    text, index = "", 0
    for part in parts:
        if isinstance(part, str):
            text += part
        else:
            text += f"@@{index}@@"
            index += 1
    return json.loads(text), references


def reference(references: list[Any], placeholder: str) -> Any:
    """The CloudFormation reference a placeholder stands for (the whole value must be that placeholder)."""
    assert placeholder.startswith("@@") and placeholder.endswith("@@"), placeholder
    return references[int(placeholder.strip("@"))]


def classify_map(synth: Synth) -> tuple[dict[str, Any], list[Any]]:
    machine, references = definition(synth)
    (state,) = [s for s in machine["States"].values() if s["Type"] == "Map"]
    return state, references


def bucket_id(synth: Synth, props: dict[str, Any]) -> str:
    bucket, _ = only(synth.storage, "AWS::S3::Bucket", props)
    return bucket


def uploads_bucket_id(synth: Synth) -> str:
    bucket, _ = uploads_bucket(synth)
    return bucket


def results_bucket_id(synth: Synth) -> str:
    return bucket_id(synth, {"LifecycleConfiguration": {"Rules": [Match.object_like({"Id": "expire-bulk-results"})]}})


def imports(value: Any, logical_id: str) -> bool:
    """``value`` is the service stack's import of a storage-stack reference to ``logical_id``."""
    return isinstance(value, dict) and f"ExportsOutputRef{logical_id}" in value.get("Fn::ImportValue", "")


# -- the state machine's definition ------------------------------------------------------------------


def test_input_is_checked_before_anything_is_listed(default: Synth) -> None:
    # A Choice first: a bucket other than the source, or a malformed prefix or top_k, ends in a named Fail.
    machine, references = definition(default)
    assert machine["QueryLanguage"] == "JSONata"
    check = machine["States"][machine["StartAt"]]
    assert check["Type"] == "Choice"
    assert machine["States"][check["Default"]]["Type"] == "Map"
    bucket_rule, input_rule = check["Choices"]
    refused = [machine["States"][rule["Next"]] for rule in (bucket_rule, input_rule)]
    assert [(state["Type"], state["Error"]) for state in refused] == [("Fail", "BucketNotAllowed"),
                                                                      ("Fail", "InvalidInput")]
    assert all(len(state["Cause"]) > 40 for state in refused)
    placeholder = bucket_rule["Condition"].split("'")[1]
    assert imports(reference(references, placeholder), uploads_bucket_id(default))
    for field in ("$states.input.prefix", "$states.input.top_k", "<= 20", ">= 1"):
        assert field in input_rule["Condition"]


def test_a_distributed_map_lists_the_prefix_with_listobjectsv2(default: Synth) -> None:
    # ItemReader: Step Functions' own ListObjectsV2 over the source bucket, the prefix from the input.
    state, references = classify_map(default)
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = state["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:listObjectsV2")
    assert imports(reference(references, reader["Arguments"]["Bucket"]), uploads_bucket_id(default))
    assert "Execution.Input.prefix" in reader["Arguments"]["Prefix"]


def test_objects_go_to_the_worker_sixteen_at_a_time_with_bucket_and_top_k(default: Synth) -> None:
    # ItemBatcher: 16 objects a batch (the runtime's MAX_BATCH), BatchInput {bucket, top_k} (default 5).
    state, references = classify_map(default)
    batcher = state["ItemBatcher"]
    assert batcher["MaxItemsPerBatch"] == 16
    assert set(batcher["BatchInput"]) == {"bucket", "top_k"}
    assert imports(reference(references, batcher["BatchInput"]["bucket"]), uploads_bucket_id(default))
    top_k = batcher["BatchInput"]["top_k"]
    assert top_k.startswith("{%") and "Execution.Input.top_k" in top_k and top_k.endswith(": 5 %}")


def test_concurrency_and_tolerated_failures_come_from_the_context(default: Synth, options: Synth) -> None:
    # bulk_max_concurrency (the Lambda concurrency a job takes) and bulk_tolerated_failure_percent.
    state, _ = classify_map(default)
    assert (state["MaxConcurrency"], state["ToleratedFailurePercentage"]) == (10, 5)
    state, _ = classify_map(options)
    assert (state["MaxConcurrency"], state["ToleratedFailurePercentage"]) == (25, 12)


def test_results_are_written_to_the_results_bucket(default: Synth) -> None:
    # ResultWriter: every child execution's input and output, under jobs/ in the results bucket.
    state, references = classify_map(default)
    writer = state["ResultWriter"]
    assert writer["Resource"].endswith(":states:::s3:putObject")
    assert writer["Arguments"]["Prefix"] == RESULTS_PREFIX
    assert imports(reference(references, writer["Arguments"]["Bucket"]), results_bucket_id(default))


def test_each_batch_is_one_worker_invocation_retried_with_backoff(default: Synth) -> None:
    # The child runs one Task, the worker through lambda:invoke; any failure it raises is retried
    # with exponential backoff before the batch counts as failed.
    state, references = classify_map(default)
    processor = state["ItemProcessor"]
    (task,) = processor["States"].values()
    assert processor["StartAt"] in processor["States"] and task["Type"] == "Task"
    assert task["Resource"].endswith(":states:::lambda:invoke")
    worker_id, _ = worker_function(default)
    assert reference(references, task["Arguments"]["FunctionName"]) == {"Fn::GetAtt": [worker_id, "Arn"]}
    assert task["Arguments"]["Payload"] == "{% $states.input %}"
    (retry,) = [r for r in task["Retry"] if r["ErrorEquals"] == ["States.TaskFailed"]]
    assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 2 and retry["IntervalSeconds"] >= 1


# -- the results bucket --------------------------------------------------------------------------------


def test_results_bucket_expires_results_and_logs_access(default: Synth) -> None:
    # In the storage stack (it holds data), private like every bucket, results kept 30 days.
    results = resources(default.storage, "AWS::S3::Bucket")[results_bucket_id(default)]
    props = results["Properties"]
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 30)
    assert "LoggingConfiguration" in props and "VersioningConfiguration" not in props
    assert results["DeletionPolicy"] == "Retain"


# -- the worker -------------------------------------------------------------------------------------


def test_worker_is_the_api_image_with_the_bulk_handler(default: Synth) -> None:
    # One image asset for every function: only the CMD differs.
    _, worker = worker_function(default)
    _, inference = inference_function(default)
    assert worker["Properties"]["Code"] == inference["Properties"]["Code"]
    assert worker["Properties"]["ImageConfig"] == {"Command": [HANDLER]}
    assert list(default.images(default.deployment.service)) == ["model"]


def test_worker_mounts_the_store_and_runs_like_the_inference_function(default: Synth) -> None:
    # The same read-only mount, subnets, security group, size and runtime settings, plus MAX_S3_IMAGE_BYTES.
    _, worker = worker_function(default)
    _, inference = inference_function(default)
    for key in ("FileSystemConfigs", "VpcConfig", "Architectures", "MemorySize"):
        assert worker["Properties"][key] == inference["Properties"][key], key
    env, inference_env = (f["Properties"]["Environment"]["Variables"] for f in (worker, inference))
    assert {k: v for k, v in env.items() if k != "MAX_S3_IMAGE_BYTES"} == inference_env
    assert env["MAX_S3_IMAGE_BYTES"] == str(20 * 1024 * 1024)
    assert inference["Properties"]["Timeout"] < worker["Properties"]["Timeout"] <= 900


def test_worker_may_only_read_the_source_bucket(default: Synth) -> None:
    # GetObject on the source bucket's objects and ListBucket on it; no other bucket, no write (the
    # deferral of refused records aside: tests/infra/test_records.py).
    worker_id, _ = worker_function(default)
    s3 = [s for s in function_statements(default.service, worker_id)
          if "s3:" in json.dumps(s["Action"]) and "RecordsDeferred" not in json.dumps(s)]
    assert sorted(json.dumps(s["Action"]) for s in s3) == ['"s3:GetObject"', '"s3:ListBucket"']
    uploads = f"ExportsOutputFnGetAtt{uploads_bucket_id(default)}Arn"
    for statement in s3:
        assert uploads in json.dumps(statement["Resource"])


# -- the state machine's role -----------------------------------------------------------------------


def state_machine_statements(synth: Synth) -> list[dict[str, Any]]:
    _, machine = state_machine(synth)
    return role_statements(synth.service, machine["Properties"]["RoleArn"]["Fn::GetAtt"][0])


def test_state_machine_lists_the_source_and_writes_only_results(default: Synth) -> None:
    # S3: ListBucket on the source bucket, object writes under the results bucket; nothing on '*'.
    s3 = [s for s in state_machine_statements(default) if any(a.startswith("s3:") for a in actions(s))]
    listing = [s for s in s3 if actions(s) == ["s3:ListBucket"]]
    objects = [s for s in s3 if s not in listing]
    assert len(listing) == 1 and f"ExportsOutputFnGetAtt{uploads_bucket_id(default)}Arn" in json.dumps(listing[0])
    assert len(objects) == 1 and set(actions(objects[0])) == {
        "s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"}
    assert f"ExportsOutputRef{results_bucket_id(default)}" in json.dumps(objects[0]["Resource"])
    assert all(s["Resource"] != "*" for s in s3)


def test_state_machine_invokes_only_the_worker(default: Synth) -> None:
    # lambda:InvokeFunction on the worker (and its versions) alone.
    worker_id, _ = worker_function(default)
    invoke = [s for s in state_machine_statements(default) if "lambda:InvokeFunction" in actions(s)]
    assert len(invoke) == 1
    assert all(worker_id in json.dumps(resource) for resource in invoke[0]["Resource"])


def test_a_named_source_bucket_is_the_only_one_jobs_read(options: Synth) -> None:
    # bulk_source_bucket: the Choice, the reader, the worker's and state machine's grants and the S3
    # endpoint's policy all name that bucket; the uploads bucket is not a job's source then.
    machine, _ = definition(options)
    assert "= 'acme-images'" in machine["States"]["CheckInput"]["Choices"][0]["Condition"]
    state, _ = classify_map(options)
    assert state["ItemReader"]["Arguments"]["Bucket"] == "acme-images"
    assert state["ItemBatcher"]["BatchInput"]["bucket"] == "acme-images"
    worker_id, _ = worker_function(options)
    worker_s3 = [s for s in function_statements(options.service, worker_id)
                 if "s3:" in json.dumps(s["Action"]) and "RecordsDeferred" not in json.dumps(s)]
    assert sorted(json.dumps(s["Resource"]) for s in worker_s3) == [
        '"arn:aws:s3:::acme-images"', '"arn:aws:s3:::acme-images/*"']
    listing = [s for s in state_machine_statements(options) if actions(s) == ["s3:ListBucket"]]
    assert [s["Resource"] for s in listing] == ["arn:aws:s3:::acme-images"]
    endpoint = gateway_endpoint(options.storage, "s3")
    assert {"arn:aws:s3:::acme-images", "arn:aws:s3:::acme-images/*"} <= {
        r for r in endpoint["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] if isinstance(r, str)}


# -- alarm, logs, outputs -------------------------------------------------------------------------


def test_a_failed_execution_raises_the_alarm(default: Synth, options: Synth) -> None:
    # ExecutionsFailed of this state machine, one in five minutes; wired to the alarm topic when there is one.
    for synth in (default, options):
        machine_id, _ = state_machine(synth)
        _, alarm = only(synth.service, "AWS::CloudWatch::Alarm", {"Namespace": "AWS/States"})
        props = alarm["Properties"]
        assert (props["MetricName"], props["Statistic"], props["Threshold"]) == ("ExecutionsFailed", "Sum", 1)
        assert props["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
        assert props["TreatMissingData"] == "notBreaching"
    topic_id, _ = only(options.service, "AWS::SNS::Topic")
    assert props["AlarmActions"] == [{"Ref": topic_id}] and props["OKActions"] == [{"Ref": topic_id}]


def test_state_machine_logs_errors_with_a_retention(default: Synth) -> None:
    # Errors, with their data, to a vended-logs group kept as long as the other logs.
    _, machine = state_machine(default)
    logging = machine["Properties"]["LoggingConfiguration"]
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ERROR", True)
    group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    group = resources(default.service, "AWS::Logs::LogGroup")[group_id]["Properties"]
    assert group["RetentionInDays"] == 30 and group["LogGroupName"].startswith("/aws/vendedlogs/states/")
    assert machine["Properties"]["StateMachineType"] == "STANDARD"


def test_outputs_name_the_state_machine_and_the_results_bucket(default: Synth) -> None:
    # `python -m classifier batch s3://...` reads BulkStateMachineArn from the service stack.
    machine_id, _ = state_machine(default)
    default.service.has_output("BulkStateMachineArn", {"Value": {"Ref": machine_id}})
    (output,) = default.service.find_outputs("BulkResultsBucket").values()
    assert imports(output["Value"], results_bucket_id(default))


def test_bulk_false_removes_it_all(imported: Synth) -> None:
    # No state machine, worker, results bucket, alarm or outputs; the endpoint reaches inbox and uploads only.
    assert imported.deployment.config.bulk is False
    imported.service.resource_count_is("AWS::StepFunctions::StateMachine", 0)
    assert resources(imported.service, "AWS::Lambda::Function", {"ImageConfig": {"Command": [HANDLER]}}) == {}
    assert resources(imported.service, "AWS::CloudWatch::Alarm", {"Namespace": "AWS/States"}) == {}
    assert not imported.service.find_outputs("BulkStateMachineArn")
    assert not imported.service.find_outputs("BulkResultsBucket")
    imported.storage.resource_count_is("AWS::S3::Bucket", 4)  # inbox, uploads, access logs, deferred records
    assert resources(imported.storage, "AWS::S3::Bucket", {"LifecycleConfiguration": {
        "Rules": [Match.object_like({"Id": "expire-bulk-results"})]}}) == {}
