"""Bulk classification: ``batch`` over a local folder, the Step Functions batch worker against moto's
S3 and DynamoDB, and ``batch s3://...`` starting and following a state machine on moto's Step Functions.

The classifications run on the fitted model (``helpers.fitted_model``), which gives each photo its own
class, and are compared with torchvision's answers: a result filed under the wrong image shows."""

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
from classifier.errors import InvalidParameter, StorageUnavailable
from classifier.records.dynamodb import record_of, table_definition

from helpers.aws import aws_env, new_bucket, point_boto3_at, s3_client
from helpers.fitted_model import PHOTO_LABELS
from helpers.photos import encode, jpeg, photo
from helpers.proxies import s3_outage
from helpers.stores import copy_store, stored_records, with_new_identity
from helpers.torchvision_reference import assert_same_top5, reference_model, reference_probs


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def lines(path: Path) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Good photos in nested folders (one without a suffix, one named .jfif), a file that is not an image,
    a truncated JPEG, a text file, and a hidden file."""
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
    (root / "IMG_0001").write_bytes(jpeg("rocket", quality=70))
    (root / "a" / "scan.jfif").write_bytes(jpeg("chelsea", quality=60))
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


# Each good file, and the test photo it holds.
GOOD = {"a/cat.jpg": "chelsea", "a/b/coffee.png": "coffee", "rocket.webp": "rocket", "astronaut.jpg": "astronaut",
        "IMG_0001": "rocket", "a/scan.jfif": "chelsea"}
BAD = {"fake.jpg": "unsupported_media_type", "cut.jpg": "invalid_image", "notes.txt": "unsupported_media_type"}


@pytest.fixture
def fitted(fitted_store: Path, tmp_path: Path) -> Path:
    """A private copy of the store whose model tells the photos apart."""
    return copy_store(fitted_store, tmp_path / "fitted")


def test_batch_on_a_folder_writes_a_line_per_file(folder: Path, fitted: Path, tmp_path: Path) -> None:
    # WHEN the folder is classified in process
    store = fitted
    out = tmp_path / "out.jsonl"
    done = cli("batch", str(folder), "--store", str(store), "--out", str(out), env={"FAST_JPEG_DECODE": "0"})
    # THEN there is one line per file (hidden ones aside), whatever its name: images classified by their
    # bytes, the others with their error; and the run says it had failures
    assert done.returncode == 1, done.stderr
    assert "9 files: 6 classified, 3 failed" in done.stderr
    got = lines(out)
    assert set(got) == set(GOOD) | set(BAD)
    for source, code in BAD.items():
        assert got[source]["error"]["code"] == code and "predictions" not in got[source]
    # AND each good line holds torchvision's answer for its own file (the photo's own class first),
    # and its record is stored
    reference = reference_model(store)
    records = stored_records(store)
    for source, name in GOOD.items():
        assert got[source]["predictions"][0]["label"] == PHOTO_LABELS[name], source
        assert_same_top5(got[source]["predictions"], reference_probs(reference, (folder / source).read_bytes()))
        assert records[got[source]["record_id"]]["predictions"] == got[source]["predictions"]
    assert len(records) == 6


def test_batch_can_be_run_again_skipping_what_is_done(folder: Path, store: Path, tmp_path: Path) -> None:
    assert cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "1.jsonl")).returncode == 1
    first = lines(tmp_path / "1.jsonl")
    # WHEN it runs again with --skip-done, after one more photo was added
    (folder / "late.jpg").write_bytes(jpeg("rocket", quality=80))
    done = cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "2.jsonl"), "--skip-done")
    # THEN the classified files are skipped, each line naming the record of its earlier answer, the new
    # one is classified, and the bad ones fail again
    got = lines(tmp_path / "2.jsonl")
    assert {s for s, line in got.items() if line.get("skipped")} == set(GOOD)
    for source in GOOD:
        assert got[source]["record_id"] == first[source]["record_id"] and "predictions" not in got[source]
    assert "record_id" in got["late.jpg"] and {s for s, line in got.items() if "error" in line} == set(BAD)
    assert "1 classified, 3 failed, 6 skipped" in done.stderr
    assert len(stored_records(store)) == 7


def test_skip_done_classifies_again_what_another_version_classified(folder: Path, store: Path,
                                                                    tmp_path: Path) -> None:
    # GIVEN the folder classified by the current version, then a new version made current
    from classifier.store.layout import ModelStore

    assert cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "1.jsonl")).returncode == 1
    models = ModelStore(store)
    old = models.current("resnet50")
    assert old is not None
    new = with_new_identity(models.version_dir("resnet50", old), tmp_path / "v2")
    models.install_dir(new, make_current=True)
    # WHEN it runs again with --skip-done
    done = cli("batch", str(folder), "--store", str(store), "--out", str(tmp_path / "2.jsonl"), "--skip-done")
    # THEN nothing is skipped: the new version has classified none of them
    got = lines(tmp_path / "2.jsonl")
    assert not any(line.get("skipped") for line in got.values()), done.stderr
    assert "6 classified, 3 failed, 0 skipped" in done.stderr
    assert len(stored_records(store)) == 12


# --- the Step Functions batch worker ---------------------------------------------------------------


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, fitted: Path) -> dict[str, str]:
    """A source bucket and a records table on moto, and the worker's environment pointing at them."""
    table = f"records-{uuid.uuid4().hex[:8]}"
    point_boto3_at(monkeypatch, s3_endpoint, MODEL_STORE=str(fitted), RECORDS_TABLE=table)
    import boto3

    boto3.client("dynamodb").create_table(**table_definition(table))
    return {"bucket": new_bucket(s3_endpoint, "photos"), "table": table, "endpoint": s3_endpoint}


def test_the_worker_stores_a_record_per_image_and_reports_each_failure(aws: dict[str, str]) -> None:
    # GIVEN three photos (one without a suffix) and a non-image named like one in the source bucket,
    # and an ItemBatcher batch naming them and one key that is gone
    s3 = s3_client(aws["endpoint"])
    keys = ["in/cat.jpg", "in/coffee.jpg", "in/IMG_0001"]
    for key, name in zip(keys, ("chelsea", "coffee", "rocket"), strict=True):
        s3.put_object(Bucket=aws["bucket"], Key=key, Body=jpeg(name))
    s3.put_object(Bucket=aws["bucket"], Key="in/readme.jpg", Body=b"plain text")
    event = {"Items": [{"Key": k, "Size": 1, "Etag": '"x"', "StorageClass": "STANDARD"}
                       for k in [*keys, "in/readme.jpg", "in/gone.jpg"]],
             "BatchInput": {"bucket": aws["bucket"], "top_k": 3}}

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
    bodies = {record_of(i)["id"]: record_of(i) for i in items if "body_z" in i}
    assert set(bodies) == {results[k]["record_id"] for k in keys}
    for key, name in zip(keys, ("chelsea", "coffee", "rocket"), strict=True):
        record = bodies[results[key]["record_id"]]
        assert record["s3_key"] == key and record["s3_bucket"] == aws["bucket"]
        assert results[key]["label"] == PHOTO_LABELS[name]  # each key's own photo was classified
        assert len(record["predictions"]) == 3 and record["predictions"][0]["label"] == results[key]["label"]


def test_an_s3_outage_fails_the_batch_so_the_map_retries_it(aws: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN two photos in the source bucket, and S3 answering every object read with 503
    s3 = s3_client(aws["endpoint"])
    keys = ["in/cat.jpg", "in/coffee.jpg"]
    for key, name in zip(keys, ("chelsea", "coffee"), strict=True):
        s3.put_object(Bucket=aws["bucket"], Key=key, Body=jpeg(name))
    event = {"Items": [{"Key": k} for k in keys], "BatchInput": {"bucket": aws["bucket"]}}
    with s3_outage(aws["endpoint"]) as outage:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", outage.url)  # S3 through the outage; DynamoDB direct
        worker = BatchWorker(Settings.from_env())
        # WHEN the worker handles the batch
        with pytest.raises(StorageUnavailable) as failed:
            worker.process(event)
        # THEN the batch fails as a whole (a function error: the Map's Retry runs it again), not as a
        # batch of failed items that Step Functions would count as done; nothing was stored
        assert outage.refused >= 1 and failed.value.status == 503
        import boto3

        assert boto3.client("dynamodb").scan(TableName=aws["table"])["Count"] == 0
        # AND once S3 answers again, the same batch on the same instance classifies every image
        outage.outage_over.set()
        out = worker.process(event)
    assert (out["items"], out["classified"], out["failed"]) == (2, 2, 0)
    assert [r["label"] for r in out["results"]] == [PHOTO_LABELS["chelsea"], PHOTO_LABELS["coffee"]]


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
    assert json.loads(started["input"]) == {"bucket": "photos", "prefix": "2026/", "top_k": 3}


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
