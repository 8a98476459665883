"""Nothing lost when DynamoDB throttles: records deferred to S3, counted, and replayed exactly once.

DynamoDB is moto's server behind a loopback proxy (helpers.proxies.throttling_dynamodb) that throttles
every write of 40% of the record ids, as a hot partition would; S3 (the deferral place) is moto's
server itself. The API runs as a real server; the bulk worker in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.aws.bulk_worker import BatchWorker
from classifier.config import Settings
from classifier.records.dynamodb import table_definition
from classifier.serving.service import Classifier

from helpers.aws import aws_env, new_bucket, point_boto3_at, s3_client
from helpers.photos import jpeg
from helpers.processes import live_server
from helpers.proxies import ThrottlingDynamoDB, throttling_dynamodb

PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]


@pytest.fixture
def places(s3_endpoint: str) -> dict[str, str]:
    """A fresh records table and deferral bucket on moto, and the settings a process reaches them by."""
    import boto3

    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", **client_args(s3_endpoint)).create_table(**table_definition(table))
    bucket = new_bucket(s3_endpoint, "deferred")
    return {"RECORDS_TABLE": table, "RECORDS_DEFERRED": f"s3://{bucket}/records-deferred/",
            "RECORDS_CURSOR_SECRET": "a test secret", "RECORDS_RETRY_SECONDS": "0.3", "bucket": bucket}


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[ThrottlingDynamoDB]:
    with throttling_dynamodb(s3_endpoint, percent=40) as throttling:
        yield throttling


def client_args(endpoint: str) -> dict[str, str]:
    return {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing"}


def settings_env(places: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in places.items() if k != "bucket"}


def deferred_ids(endpoint: str, places: dict[str, str]) -> set[str]:
    listed = s3_client(endpoint).list_objects_v2(Bucket=places["bucket"], Prefix="records-deferred/")
    return {obj["Key"].removeprefix("records-deferred/").removesuffix(".json") for obj in listed.get("Contents", [])}


def replay(endpoint: str, places: dict[str, str], store: Path) -> subprocess.CompletedProcess[str]:
    """``records replay`` in a process of its own, talking to DynamoDB directly: the throttling is over."""
    env = {**os.environ, **aws_env(endpoint, **settings_env(places))}
    env.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    return subprocess.run([sys.executable, "-m", "classifier", "records", "replay", "--store", str(store)],
                          capture_output=True, text=True, env=env, timeout=300)


def listed(client: httpx.Client) -> list[str]:
    ids, cursor = [], None
    while True:
        page = client.get("/classifications", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        ids.extend(r["id"] for r in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


def emf_counts(log: str, metric: str) -> float:
    total = 0.0
    for line in log.splitlines():
        if line.startswith("{") and f'"{metric}"' in line:
            record: dict[str, Any] = json.loads(line)
            if any(m["Name"] == metric for d in record["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]):
                value = record[metric]
                total += sum(value) if isinstance(value, list) else value
    return total


def test_throttled_api_records_are_deferred_counted_and_replayed_once(
    s3_endpoint: str, places: dict[str, str], proxy: ThrottlingDynamoDB, store: Path, tmp_path: Path,
) -> None:
    # GIVEN the API, its records table behind a proxy that throttles 40% of the record ids
    env = aws_env(s3_endpoint, AWS_ENDPOINT_URL_DYNAMODB=proxy.url, POWERTOOLS_METRICS_NAMESPACE="ClassifierTest",
                  **settings_env(places))
    with live_server(store, tmp_path, env=env) as server, server.client() as client:
        # WHEN 12 images are classified one by one and 4 in one multipart batch
        ids = []
        for n in range(12):
            answer = client.post("/classify", content=jpeg(PHOTOS[n % 4], quality=80 + n),
                                 headers={"content-type": "image/jpeg"})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
        batch = client.post("/classify", files=[("file", (f"{p}.jpg", jpeg(p), "image/jpeg")) for p in PHOTOS])
        assert batch.status_code == 200, batch.text
        ids += [r["id"] for r in batch.json()["results"]]
        # THEN every request was answered, the throttled records are missing from the listing and waiting in
        # S3, whole, and the RecordsDeferred metric counted each of them
        throttled = proxy.throttled & set(ids)
        assert throttled, "the proxy throttled none of the records: the test would show nothing"
        assert set(listed(client)) == set(ids) - throttled
        assert deferred_ids(s3_endpoint, places) == throttled
        one = next(iter(throttled))
        body = s3_client(s3_endpoint).get_object(Bucket=places["bucket"], Key=f"records-deferred/{one}.json")["Body"]
        assert json.loads(body.read())["id"] == one
        assert emf_counts(server.logs(), "RecordsDeferred") == len(throttled)

        # WHEN the deferred records are replayed (the throttling is over)
        done = replay(s3_endpoint, places, store)
        # THEN every classification is listed, exactly once, and nothing waits any more
        assert done.returncode == 0, done.stderr
        assert f"{len(throttled)} records replayed" in done.stderr
        after = listed(client)
        assert sorted(after) == sorted(ids) and len(after) == len(set(after))
        assert deferred_ids(s3_endpoint, places) == set()
        for record_id in throttled:
            record = client.get(f"/classifications/{record_id}")
            assert record.status_code == 200 and record.json()["id"] == record_id

        # AND a second replay finds nothing and duplicates nothing
        again = replay(s3_endpoint, places, store)
        assert again.returncode == 0 and "0 records replayed" in again.stderr
        assert sorted(listed(client)) == sorted(ids)


def test_a_throttled_bulk_batch_defers_its_records_and_classifies_each_image_once(
    s3_endpoint: str, places: dict[str, str], proxy: ThrottlingDynamoDB, store: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 16 photos in the source bucket and the bulk worker, its table behind the throttling proxy
    point_boto3_at(monkeypatch, s3_endpoint, MODEL_STORE=str(store), AWS_ENDPOINT_URL_DYNAMODB=proxy.url,
                   **settings_env(places))
    source = new_bucket(s3_endpoint, "photos")
    keys = [f"in/{n:02d}.jpg" for n in range(16)]
    for n, key in enumerate(keys):
        s3_client(s3_endpoint).put_object(Bucket=source, Key=key, Body=jpeg(PHOTOS[n % 4], quality=70 + n))
    classified: list[int] = []
    classify_each = Classifier.classify_each

    def counting(self: Classifier, images: Any, **kwargs: Any) -> Any:
        classified.append(len(images))
        return classify_each(self, images, **kwargs)

    monkeypatch.setattr(Classifier, "classify_each", counting)
    event = {"Items": [{"Key": k} for k in keys], "BatchInput": {"bucket": source, "top_k": 3}}

    # WHEN the worker handles the batch
    out = BatchWorker(Settings.from_env()).process(event)

    # THEN it succeeds (so the Map does not run it again), each image classified once, and the records
    # DynamoDB refused are deferred, not lost
    assert (out["classified"], out["failed"]) == (16, 0)
    assert sum(classified) == 16
    record_ids = {r["record_id"] for r in out["results"]}
    throttled = proxy.throttled & record_ids
    assert throttled and deferred_ids(s3_endpoint, places) == throttled
    # AND after a replay the table holds every record of the batch, once
    assert replay(s3_endpoint, places, store).returncode == 0
    import boto3

    items = boto3.client("dynamodb", **client_args(s3_endpoint)).scan(TableName=places["RECORDS_TABLE"])["Items"]
    stored = [i["id"]["S"] for i in items if "body_z" in i]
    assert sorted(stored) == sorted(record_ids)
