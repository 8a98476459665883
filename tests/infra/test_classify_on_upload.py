"""Classification on upload (switch ``classify_on_upload``) and the uploads bucket it listens to."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from .conftest import Synth, image_kind
from .test_service_stack import inference_function
from .test_storage_stack import function_statements, only, resources, uploads_bucket

HANDLER = "classifier.aws.upload_classifier.handler"


def upload_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    return only(synth.service, "AWS::Lambda::Function", {"ImageConfig": {"Command": [HANDLER]}})


def s3_statements(synth: Synth, function_id: str) -> list[dict[str, Any]]:
    return [s for s in function_statements(synth.service, function_id) if "s3:" in json.dumps(s["Action"])]


def dead_letter_queue(synth: Synth) -> str:
    queue_id, _ = only(synth.service, "AWS::SQS::Queue")
    return queue_id


# -- the uploads bucket (storage stack, whatever the switch) ----------------------


def test_uploads_bucket_reports_its_objects_to_eventbridge(default: Synth) -> None:
    # Always on, so the switch only adds a rule in the service stack (no S3 -> Lambda cycle across stacks).
    _, bucket = uploads_bucket(default)
    assert bucket["Properties"]["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True},
    }


def test_uploads_bucket_policy_only_denies_insecure_requests(default: Synth) -> None:
    # The bucket policy grants nobody anything; it refuses requests without TLS. Access is by IAM role.
    bucket_id, _ = uploads_bucket(default)
    (policy,) = [p for p in resources(default.storage, "AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Effect"] for s in statements] == ["Deny"]
    assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def upload_rules(synth: Synth) -> dict[str, Any]:
    """The EventBridge rules on S3 events (the records replay's schedule is a rule too)."""
    return resources(synth.service, "AWS::Events::Rule", {"EventPattern": Match.any_value()})


def test_no_upload_classifier_by_default(default: Synth) -> None:
    # The switch is off in cdk.json: no function with the S3 events handler, no rule, no queue, no queue alarm.
    assert resources(default.service, "AWS::Lambda::Function", {"ImageConfig": {"Command": [HANDLER]}}) == {}
    assert upload_rules(default) == {}
    default.service.resource_count_is("AWS::SQS::Queue", 0)
    assert resources(default.service, "AWS::CloudWatch::Alarm", {"Namespace": "AWS/SQS"}) == {}


# -- the rule and the function ----------------------------------------------------------


def test_objects_created_under_uploads_trigger_the_function(switches: Synth) -> None:
    # EventBridge: "Object Created" in the uploads bucket, keys starting with uploads/, to the upload function.
    bucket_id, _ = uploads_bucket(switches)
    function_id, _ = upload_function(switches)
    switches.service.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [{"Fn::ImportValue": Match.string_like_regexp(f"ExportsOutputRef{bucket_id}")}]},
                "object": {"key": [{"prefix": "uploads/"}]},
            },
        },
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [function_id, "Arn"]}})],
    })
    switches.service.has_resource_properties("AWS::Lambda::Permission", {
        "Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
    })


def test_upload_function_is_the_api_image_with_the_s3_events_handler(switches: Synth) -> None:
    # Same image asset as the inference function (one build), only the CMD differs.
    _, upload = upload_function(switches)
    _, inference = inference_function(switches)
    assert upload["Properties"]["Code"] == inference["Properties"]["Code"]
    assert upload["Properties"]["ImageConfig"] == {"Command": [HANDLER]}
    images = switches.assets(switches.deployment.service)["dockerImages"].values()
    kinds = sorted(image_kind(switches.outdir / image["source"]["directory"]) for image in images)
    assert kinds == ["dashboard", "model"]


def test_upload_function_mounts_the_store_like_the_inference_function(switches: Synth) -> None:
    # Same access point (read models/, write records/), subnets, security group and runtime settings.
    _, upload = upload_function(switches)
    _, inference = inference_function(switches)
    for key in ("FileSystemConfigs", "VpcConfig", "Environment", "Architectures", "MemorySize"):
        assert upload["Properties"][key] == inference["Properties"][key], key


def test_upload_function_may_only_read_uploads(switches: Synth) -> None:
    # GetObject on uploads/* and ListBucket on that prefix: no writes, no other bucket or prefix (the
    # deferral of refused records aside: tests/infra/test_records.py)
    function_id, _ = upload_function(switches)
    statements = [s for s in s3_statements(switches, function_id) if "RecordsDeferred" not in json.dumps(s)]
    assert sorted(json.dumps(s["Action"]) for s in statements) == ['"s3:GetObject"', '"s3:ListBucket"']
    (get,) = [s for s in statements if s["Action"] == "s3:GetObject"]
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert get["Resource"]["Fn::Join"][1][1] == "/uploads/*"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["uploads/*"]}}
    inbox_id, _ = only(switches.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    assert inbox_id not in json.dumps(statements)


def test_upload_function_logs_have_a_retention(switches: Synth) -> None:
    # Its own log group, 30 days.
    _, upload = upload_function(switches)
    group_id = upload["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources(switches.service, "AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] == 30


# -- failures -------------------------------------------------------------------------------


def test_failed_invocations_are_retried_a_bounded_time_then_dead_lettered(switches: Synth) -> None:
    # Lambda retries twice within an hour, then the event goes to the queue.
    function_id, function = upload_function(switches)
    queue_id = dead_letter_queue(switches)
    switches.service.has_resource_properties("AWS::Lambda::EventInvokeConfig", {
        "FunctionName": {"Ref": function_id}, "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600,
    })
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}


def test_failed_deliveries_go_to_the_same_queue(switches: Synth) -> None:
    # EventBridge's own retries are bounded too, and what it cannot deliver lands in the same queue.
    queue_id = dead_letter_queue(switches)
    ((_, rule),) = upload_rules(switches).items()
    (target,) = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600
    assert target["RetryPolicy"]["MaximumRetryAttempts"] <= 185


def test_dead_letter_queue_is_encrypted_tls_only_and_writable_by_the_rule_only(switches: Synth) -> None:
    # SSE-SQS, 14 days' retention; its policy denies non-TLS and lets only this rule's events in.
    queue_id = dead_letter_queue(switches)
    switches.service.has_resource_properties("AWS::SQS::Queue", {
        "SqsManagedSseEnabled": True, "MessageRetentionPeriod": 14 * 24 * 3600,
    })
    _, policy = only(switches.service, "AWS::SQS::QueuePolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    ((rule_id, _),) = upload_rules(switches).items()
    assert (allow["Principal"], allow["Action"]) == ({"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}
    assert allow["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}


def test_alarm_fires_on_a_visible_message(switches: Synth) -> None:
    # One message in the dead-letter queue is one upload that was never classified.
    queue_id = dead_letter_queue(switches)
    switches.service.has_resource_properties("AWS::CloudWatch::Alarm", {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
        "Statistic": "Maximum",
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
    })
    switches.service.has_output("UploadFailuresQueue", {"Value": {"Ref": queue_id}})


def test_upload_function_is_an_output(switches: Synth) -> None:
    # Its name, to re-drive a dead-lettered event by hand.
    function_id, _ = upload_function(switches)
    switches.service.has_output("UploadClassifierFunction", {"Value": {"Ref": function_id}})
