"""The rollout judge as synthesized: its schedule, its least-privilege permissions, and its zip."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .conftest import ROOT, Synth
from .test_storage_stack import function_statements, only, resources
from helpers.venvs import lambda_python

HANDLER = "classifier.store.rollout_judge.handler"


def judge(synth: Synth) -> tuple[str, dict[str, Any]]:
    function_id, function = only(synth.storage, "AWS::Lambda::Function", {"Handler": HANDLER})
    return function_id, function["Properties"]


def inbox_id(synth: Synth) -> str:
    bucket_id, _ = only(synth.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    return bucket_id


def test_an_eventbridge_schedule_runs_it_every_minute_without_retries(default: Synth) -> None:
    # A missed run is made up by the next, a minute later, on the same cumulative evidence.
    function_id, _ = judge(default)
    rules = [rule["Properties"] for rule in resources(default.storage, "AWS::Events::Rule").values()
             if any(t["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]} for t in rule["Properties"]["Targets"])]
    (rule,) = rules
    assert rule["ScheduleExpression"] == "rate(1 minute)" and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0}
    default.storage.has_resource_properties("AWS::Lambda::Permission", {
        "Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
    })


def test_it_runs_outside_the_vpc_without_efs_and_ends_within_its_minute(default: Synth) -> None:
    _, props = judge(default)
    assert "VpcConfig" not in props and "FileSystemConfigs" not in props
    assert props["Timeout"] < 60 and props["MemorySize"] == 256
    assert (props["Runtime"], props["Architectures"]) == ("python3.12", ["arm64"])


def test_it_knows_the_inbox_the_models_and_the_metrics_it_judges(default: Synth, options: Synth) -> None:
    # The models the functions serve (one GET a minute each, no LIST); ["*"] would leave it to list them.
    for synth, model in ((default, "resnet50"), (options, "defects,resnet50-ft")):
        env = judge(synth)[1]["Environment"]["Variables"]
        assert env == {"INBOX_BUCKET": {"Ref": inbox_id(synth)}, "ROLLOUT_MODELS": model,
                       "POWERTOOLS_METRICS_NAMESPACE": "Classifier", "POWERTOOLS_SERVICE_NAME": "classifier"}


def test_its_permissions_are_the_least_it_needs(default: Synth) -> None:
    # Read the mirrored states under rollouts/ (and list only there), write a model's rollout request
    # and nothing else, read CloudWatch metrics. No EFS, no other bucket, no invoking anything.
    function_id, _ = judge(default)
    bucket = inbox_id(default)
    arn = {"Fn::GetAtt": [bucket, "Arn"]}
    statements = sorted((json.dumps(s["Action"]), json.dumps(s["Resource"]), json.dumps(s.get("Condition")))
                        for s in function_statements(default.storage, function_id))
    assert statements == sorted([
        ('"s3:GetObject"', json.dumps({"Fn::Join": ["", [arn, "/rollouts/*"]]}), "null"),
        ('"s3:ListBucket"', json.dumps(arn), json.dumps({"StringLike": {"s3:prefix": ["rollouts/*"]}})),
        ('"s3:PutObject"', json.dumps({"Fn::Join": ["", [arn, "/models/*/ROLLOUT"]]}), "null"),
        ('"cloudwatch:GetMetricData"', '"*"', "null"),
    ])
    assert all(s["Effect"] == "Allow" for s in function_statements(default.storage, function_id))


def test_its_decisions_are_logged_for_the_retention_period(default: Synth) -> None:
    _, props = judge(default)
    group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources(default.storage, "AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] == 30
    default.storage.has_output("RolloutJudgeLogGroup", {"Value": {"Ref": group_id}})


def test_its_zip_imports_the_handler_under_its_runtimes_python(default: Synth) -> None:
    # The installer's zip: the judge imports only the standard library, boto3 and its own package.
    _, props = judge(default)
    asset_hash = props["Code"]["S3Key"].removesuffix(".zip")
    asset_dir = default.outdir / f"asset.{asset_hash}"
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import classifier.store.rollout_judge as j, boto3; "
             "assert j.__file__.startswith(sys.argv[1]) and callable(j.handler); "
             "heavy = {'numpy', 'onnxruntime', 'torch', 'PIL', 'aws_lambda_powertools'} & set(sys.modules); "
             "assert not heavy, heavy")
    subprocess.run([lambda_python(), "-I", "-S", "-B", "-c", probe, str(asset_dir)], check=True, cwd=ROOT)
