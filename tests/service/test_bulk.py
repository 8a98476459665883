"""Bulk classification: ``batch`` over a local folder, the Step Functions batch worker against moto's
S3 and DynamoDB, and ``batch s3://...`` starting and following a state machine on moto's Step Functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.aws.bulk_worker import BatchWorker
from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records.dynamodb import table_definition
from classifier.serving.service import Classifier, ImageInput

from helpers.aws import aws_env, new_bucket, point_boto3_at, s3_client
from helpers.photos import encode, jpeg, photo
from helpers.stores import stored_records


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def lines(path: Path) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Good photos in nested folders, a file that is not an image, a truncated JPEG, and a text file."""
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "a" / "b").mkdir()
    (root / "a" / "cat.jpg").write_bytes(jpeg("chelsea"))
    (root / "a" / "b" / "coffee.png").write_bytes(encode(photo("coffee"), "PNG"))
    (root / "rocket.webp").write_bytes(encode(photo("rocket"), "WEBP"))
    (root / "astronaut.jpg").write_bytes(jpeg("astronaut"))
    (root / "fake.jpg").write_bytes(b"%PDF-1.7, not an image")
    (root / "cut.jpg").write_bytes(jpeg("coffee")[:5000])
    (root / "notes.txt").write_text("not an image, not even named like one")
    return root


GOOD = {"a/cat.jpg", "a/b/coffee.png", "rocket.webp", "astronaut.jpg"}
BAD = {"fake.jpg": "unsupported_media_type", "cut.jpg": "invalid_image"}


def test_batch_on_a_folder_writes_a_line_per_file(folder: Path, store: Path, tmp_path: Path) -> None:
    # WHEN the folder is classified in process
    out = tmp_path / "out.jsonl"
    done = cli("batch", str(folder), "--store", str(store), "--out", str(out), env={"FAST_JPEG_DECODE": "0"})
    # THEN there is one line per image file, bad ones with their error, and the run says it had failures
    assert done.returncode == 1, done.stderr
    assert "6 files: 4 classified, 2 failed" in done.stderr
    got = lines(out)
    assert set(got) == GOOD | set(BAD)
    for source, code in BAD.items():
        assert got[source]["error"]["code"] == code and "predictions" not in got[source]
    # AND each good line's predictions equal a single-image classification, and its record is stored
    settings = Settings(model_store=store, fast_jpeg_decode=False)
    from classifier.serving.manager import ModelManager

    single = Classifier(settings, ModelManager(settings), None)
    records = stored_records(store)
    for source in GOOD:
        (alone,) = single.classify([ImageInput((folder / source).read_bytes())], store=False)
        for a, b in zip(got[source]["predictions"], [p.as_dict() for p in alone.predictions], strict=True):
            assert a["index"] == b["index"] and abs(a["score"] - b["score"]) <= 1e-5
        assert records[got[source]["record_id"]]["predictions"] == got[source]["predictions"]
    assert len(records) == 4


def test_batch_can_be_run_again_skipping_what_is_done(folder: Path, store: Path, tmp_path: Path) -> None:
    assert cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "1.jsonl")).returncode == 1
    # WHEN it runs again with --skip-done, after one more photo was added
    (folder / "late.jpg").write_bytes(jpeg("rocket", quality=80))
    done = cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "2.jsonl"), "--skip-done")
    # THEN the four classified files are skipped, the new one classified, and the bad ones fail again
    got = lines(tmp_path / "2.jsonl")
    assert {s for s, line in got.items() if line.get("skipped")} == GOOD
    assert "record_id" in got["late.jpg"] and {s for s, line in got.items() if "error" in line} == set(BAD)
    assert "1 classified, 2 failed, 4 skipped" in done.stderr
    assert len(stored_records(store)) == 5


# --- the Step Functions batch worker ---------------------------------------------------------------

OWNER = "arn:aws:sts::123456789012:assumed-role/operator"



@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, store: Path) -> dict[str, str]:
    """A source bucket and a records table on moto, and the worker's environment pointing at them."""
    table = f"records-{uuid.uuid4().hex[:8]}"
    point_boto3_at(monkeypatch, s3_endpoint, MODEL_STORE=str(store), RECORDS_TABLE=table)
    import boto3

    boto3.client("dynamodb").create_table(**table_definition(table))
    return {"bucket": new_bucket(s3_endpoint, "photos"), "table": table, "endpoint": s3_endpoint}


def test_the_worker_stores_a_record_per_image_and_reports_each_failure(aws: dict[str, str]) -> None:
    # GIVEN three photos and a non-image in the source bucket, and an ItemBatcher batch naming them
    # and one key that is gone
    s3 = s3_client(aws["endpoint"])
    keys = ["in/cat.jpg", "in/coffee.jpg", "in/rocket.jpg"]
    for key, name in zip(keys, ("chelsea", "coffee", "rocket"), strict=True):
        s3.put_object(Bucket=aws["bucket"], Key=key, Body=jpeg(name))
    s3.put_object(Bucket=aws["bucket"], Key="in/readme.jpg", Body=b"plain text")
    event = {"Items": [{"Key": k, "Size": 1, "Etag": '"x"', "StorageClass": "STANDARD"}
                       for k in [*keys, "in/readme.jpg", "in/gone.jpg"]],
             "BatchInput": {"bucket": aws["bucket"], "top_k": 3, "owner": OWNER}}

    # WHEN the worker handles it (a new Lambda instance)
    out = BatchWorker(Settings.from_env()).process(event)

    # THEN each item has its outcome, in order, and the three records are in DynamoDB
    assert (out["items"], out["classified"], out["failed"]) == (5, 3, 2)
    results = {r["key"]: r for r in out["results"]}
    assert [r["key"] for r in out["results"]] == [i["Key"] for i in event["Items"]]
    assert results["in/readme.jpg"]["error"]["code"] == "unsupported_media_type"
    assert results["in/gone.jpg"]["error"]["code"] == "not_found"
    import boto3

    items = boto3.client("dynamodb").scan(TableName=aws["table"])["Items"]
    bodies = {json.loads(i["body"]["S"])["id"]: json.loads(i["body"]["S"]) for i in items if "body" in i}
    assert set(bodies) == {results[k]["record_id"] for k in keys}
    for key in keys:
        record = bodies[results[key]["record_id"]]
        assert record["s3_key"] == key and record["s3_bucket"] == aws["bucket"]
        assert record["owner"] == OWNER  # who started the job
        assert len(record["predictions"]) == 3 and record["predictions"][0]["label"] == results[key]["label"]


@pytest.mark.parametrize("event", [
    {}, {"Items": [{"Key": "a.jpg"}]}, {"Items": "a.jpg", "BatchInput": {"bucket": "b"}},
    {"Items": [{"Size": 3}], "BatchInput": {"bucket": "b"}},
    {"Items": [{"Key": "a.jpg"}], "BatchInput": {"bucket": "b", "top_k": 50}},
])
def test_a_malformed_batch_is_refused(aws: dict[str, str], event: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameter):
        BatchWorker(Settings.from_env()).process(event)


# --- batch s3://... on moto's Step Functions ---------------------------------------------------------

# A stand-in for the deployed Distributed Map (moto's state machine runner executes Pass states, not
# Lambda-backed maps): it answers as the Map's ResultWriter does, so the CLI's start, follow and report
# run against a real Step Functions API.
STAND_IN = {"StartAt": "Map", "States": {"Map": {"Type": "Pass", "End": True, "Result": {
    "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:bulk/run:1",
    "ResultWriterDetails": {"Bucket": "results-bucket", "Key": "runs/1/manifest.json"}}}}}


@pytest.fixture
def state_machine(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    point_boto3_at(monkeypatch, s3_endpoint)
    httpx.post(f"{s3_endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}})
    import boto3

    created = boto3.client("stepfunctions").create_state_machine(
        name=f"bulk-{uuid.uuid4().hex[:8]}", definition=json.dumps(STAND_IN),
        roleArn="arn:aws:iam::123456789012:role/bulk")
    return str(created["stateMachineArn"])


def test_batch_s3_starts_the_state_machine_and_reports_where_the_results_are(
    s3_endpoint: str, state_machine: str,
) -> None:
    env = aws_env(s3_endpoint)
    done = cli("batch", "s3://photos/2026/", "--state-machine", state_machine, "--top-k", "3",
               "--poll-seconds", "0.2", env=env)
    assert done.returncode == 0, done.stderr
    assert "SUCCEEDED" in done.stdout and "results in s3://results-bucket/runs/1/manifest.json" in done.stdout
    import boto3

    client = boto3.client("stepfunctions", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    (execution,) = client.list_executions(stateMachineArn=state_machine)["executions"]
    started = client.describe_execution(executionArn=execution["executionArn"])
    # The job carries who started it: the CLI's own identity, as STS names it
    starter = boto3.client("sts", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing").get_caller_identity()["Arn"]
    assert json.loads(started["input"]) == {"bucket": "photos", "prefix": "2026/", "top_k": 3, "owner": starter}


def test_batch_s3_finds_the_state_machine_in_the_stack_outputs(s3_endpoint: str, state_machine: str) -> None:
    import boto3

    stack = f"demo-service-stack-{uuid.uuid4().hex[:6]}"
    boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps({
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"BulkStateMachineArn": {"Value": state_machine}}}))
    done = cli("batch", "s3://photos", "--stack", stack, "--no-wait", env=aws_env(s3_endpoint))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("arn:aws:states:")
    missing = cli("batch", "s3://photos", "--stack", "no-such-stack", "--no-wait", env=aws_env(s3_endpoint))
    assert missing.returncode == 2 and "error:" in missing.stderr and "Traceback" not in missing.stderr
