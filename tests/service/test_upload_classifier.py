"""Classify on upload: ``classifier.aws.upload_classifier.handler`` fed AWS's S3 Put event shape
(tests/events/s3_put.json, the Lambda console's sample), reading from moto's S3
server, writing records into a real store directory.

Delivery is at least once; whatever is redelivered, one upload (bucket, key,
ETag) is one record.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from classifier.aws.upload_classifier import upload_digest
from classifier.config import Settings
from classifier.errors import ModelUnavailable, StorageUnavailable
from classifier.records import open_record_store
from classifier.records.deferral import DirectoryDeferral, open_deferral, replay
from classifier.records.ids import is_record_id, record_id
from classifier.records.sqlite import SqliteRecordStore
from classifier.store.s3_notifications import created_objects

from helpers.aws import new_bucket, point_boto3_at, s3_client
from helpers.lambda_events import EVENTS, FakeContext, load_handler, make_event, read_response
from helpers.photos import jpeg
from helpers.processes import free_port
from helpers.stores import stored_records

KEY = "uploads/2026/11/22/my cat (1).jpg"  # a space and parentheses: URL-encoded in the event

Handler = Callable[..., dict[str, Any]]


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, store: Path) -> str:
    """A fresh bucket; the environment of the trigger function pointing at it and at the store."""
    point_boto3_at(monkeypatch, s3_endpoint, MODEL_STORE=str(store))
    return new_bucket(s3_endpoint)


def fresh_handler() -> Handler:
    """``classifier.aws.upload_classifier.handler`` as a new Lambda instance would import it."""
    module = importlib.reload(importlib.import_module("classifier.aws.upload_classifier"))
    handler: Handler = module.handler
    return handler


def put(s3_endpoint: str, bucket: str, key: str, data: bytes) -> str:
    """Upload an object; return its ETag as S3 events carry it (no quotes)."""
    etag: str = s3_client(s3_endpoint).put_object(Bucket=bucket, Key=key, Body=data)["ETag"]
    return etag.strip('"')


def put_event(bucket: str, key: str, etag: str, size: int, event_time: str = "2026-11-22T10:00:00.123Z",
              name: str = "ObjectCreated:Put") -> dict[str, Any]:
    """AWS's sample S3 Put event, naming this object."""
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / "s3_put.json").read_text()))
    record = event["Records"][0]
    record["eventTime"] = event_time
    record["eventName"] = name
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"].update(key=quote_plus(key, safe="/"), eTag=etag, size=size)
    return event


def records(store: Path) -> list[dict[str, Any]]:
    return open_record_store(Settings(model_store=store)).list(100).items


def record_files(store: Path) -> list[str]:
    """Every record in the store's database, whatever the record store's own listing would show."""
    return list(stored_records(store))


def test_an_upload_is_classified_and_stored_with_its_key(s3_endpoint: str, bucket: str, store: Path) -> None:
    # GIVEN a photo uploaded under a key that S3 URL-encodes in the event
    image = jpeg("chelsea")
    etag = put(s3_endpoint, bucket, KEY, image)
    event = put_event(bucket, KEY, etag, len(image))
    assert "my+cat+%281%29.jpg" in event["Records"][0]["s3"]["object"]["key"]
    # WHEN the trigger runs
    out = fresh_handler()(event, FakeContext())
    # THEN one record holds the classification of exactly those bytes, with the decoded key
    assert [r["status"] for r in out["results"]] == ["classified"]
    (record,) = records(store)
    assert record["id"] == out["results"][0]["id"] and is_record_id(record["id"])
    assert record["id"].startswith("20261122T100000123000Z-")  # the event's time
    assert record["s3_key"] == KEY
    assert record["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert len(record["predictions"]) == 5 and record["model"]["name"] == "resnet50"


def test_the_same_event_delivered_twice_stores_one_record(s3_endpoint: str, bucket: str, store: Path) -> None:
    image = jpeg("coffee")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    handler = fresh_handler()
    first = handler(event, FakeContext())
    again = handler(copy.deepcopy(event), FakeContext())
    # A new Lambda instance (nothing cached in memory) gets it a third time.
    third = fresh_handler()(copy.deepcopy(event), FakeContext())
    assert first["results"][0]["status"] == "classified"
    assert again["results"][0]["status"] == third["results"][0]["status"] == "duplicate"
    assert again["results"][0]["id"] == first["results"][0]["id"]
    assert len(record_files(store)) == 1 and len(records(store)) == 1


def test_another_event_for_the_same_key_and_etag_stores_nothing_new(s3_endpoint: str, bucket: str,
                                                                    store: Path) -> None:
    image = jpeg("rocket")
    etag = put(s3_endpoint, bucket, KEY, image)
    handler = fresh_handler()
    handler(put_event(bucket, KEY, etag, len(image), "2026-11-22T10:00:00.000Z"), FakeContext())
    # A later event (another time, e.g. a retried notification or a copy of identical content)
    later = handler(put_event(bucket, KEY, etag, len(image), "2026-11-22T11:30:00.000Z",
                              "ObjectCreated:CompleteMultipartUpload"), FakeContext())
    assert later["results"][0]["status"] == "duplicate"
    assert len(record_files(store)) == 1


def test_racing_deliveries_of_different_events_store_one_record(s3_endpoint: str, bucket: str,
                                                                store: Path) -> None:
    # GIVEN eight different events for the same object, processed at once: all of them
    # find no index entry, all classify, then race to claim it
    image = jpeg("astronaut")
    etag = put(s3_endpoint, bucket, KEY, image)
    handler = fresh_handler()
    events = [put_event(bucket, KEY, etag, len(image), f"2026-11-22T10:00:0{i}.000Z") for i in range(8)]
    outcomes: list[dict[str, Any]] = []
    barrier = threading.Barrier(len(events))

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        outcomes.append(handler(event, FakeContext())["results"][0])

    threads = [threading.Thread(target=deliver, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN they agree on one record id, and one record exists
    assert len(outcomes) == 8 and {o["status"] for o in outcomes} <= {"classified", "duplicate"}
    assert len({o["id"] for o in outcomes}) == 1
    assert len(record_files(store)) == 1


def test_a_new_version_of_the_object_is_a_new_record(s3_endpoint: str, bucket: str, store: Path) -> None:
    # Idempotent on the ETag, not only the key: new content under the same key is classified again.
    handler = fresh_handler()
    for name in ("chelsea", "coffee"):
        image = jpeg(name)
        event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image),
                          f"2026-11-22T10:0{len(records(store))}:00.000Z")
        assert handler(event, FakeContext())["results"][0]["status"] == "classified"
    assert len(records(store)) == 2 and {r["s3_key"] for r in records(store)} == {KEY}


def test_classifications_api_shows_the_upload(s3_endpoint: str, bucket: str, store: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an upload classified by the trigger, twice delivered
    image = jpeg("chelsea")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    handler = fresh_handler()
    handler(event, FakeContext())
    handler(event, FakeContext())
    # WHEN the API lists classifications over the same store
    api = load_handler(monkeypatch, store)
    listing = read_response(api(make_event("v2", "GET", "/classifications"), FakeContext())).json()
    # THEN it shows the upload once, with its key, and nothing of the index
    assert [item["s3_key"] for item in listing["items"]] == [KEY]
    one = read_response(api(make_event("v1", "GET", f"/classifications/{listing['items'][0]['id']}"),
                            FakeContext()))
    assert one.status == 200 and one.json()["s3_key"] == KEY


def test_eventbridge_object_created_is_accepted(s3_endpoint: str, bucket: str, store: Path) -> None:
    image = jpeg("coffee")
    event = eventbridge_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    out = fresh_handler()(event, FakeContext())
    assert out["results"][0]["status"] == "classified"
    assert [r["s3_key"] for r in records(store)] == [KEY]


def eventbridge_event(bucket: str, key: str, etag: str, size: int,
                      detail_type: str = "Object Created") -> dict[str, Any]:
    """The EventBridge sample event (tests/events), of ``detail_type``, naming this object."""
    event: dict[str, Any] = json.loads((EVENTS / "s3_object_created_eventbridge.json").read_text())
    event["detail-type"] = detail_type
    event["detail"]["bucket"]["name"] = bucket
    event["detail"]["object"].update(key=key, etag=etag, size=size)  # not URL-encoded in EventBridge
    return event


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_eventbridge_events_other_than_object_created_do_nothing(s3_endpoint: str, bucket: str, store: Path,
                                                                 detail_type: str) -> None:
    # GIVEN an image in the bucket, and an EventBridge event of another kind naming it
    image = jpeg("coffee")
    event = eventbridge_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image), detail_type)
    # WHEN the trigger runs, THEN it classifies nothing and stores nothing
    assert fresh_handler()(event, FakeContext()) == {"results": []}
    assert stored_records(store) == {}


def test_the_test_event_s3_sends_when_notifications_are_configured_does_nothing(
    bucket: str, store: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN S3's s3:TestEvent (no Records: it names no object)
    event = json.loads((EVENTS / "s3_test_event.json").read_text())
    # WHEN the trigger gets it
    with caplog.at_level(logging.INFO):
        out = fresh_handler()(event, FakeContext())
    # THEN it is not an error: nothing to do, said once in the log
    assert out == {"results": []}
    (said,) = [r for r in caplog.records if r.name == "classifier.store.s3_notifications"]
    assert (said.levelno, said.getMessage()) == (logging.WARNING, "event names no created object; nothing to do")
    assert stored_records(store) == {}


def test_a_notification_with_several_records_acts_on_each_in_order(s3_endpoint: str, bucket: str,
                                                                   store: Path) -> None:
    # GIVEN one notification carrying three records: two uploads and, between them, a deletion
    keys = ["uploads/2026/11/22/first cat.jpg", "uploads/2026/11/22/gone.jpg", "uploads/2026/11/22/second.jpg"]
    images = [jpeg("chelsea"), jpeg("rocket"), jpeg("astronaut")]
    parts = [put_event(bucket, key, put(s3_endpoint, bucket, key, image), len(image), f"2026-11-22T10:00:0{i}.000Z",
                       "ObjectRemoved:Delete" if i == 1 else "ObjectCreated:Put")
             for i, (key, image) in enumerate(zip(keys, images, strict=True))]
    event = {"Records": [part["Records"][0] for part in parts]}
    # WHEN the trigger runs
    out = fresh_handler()(event, FakeContext())
    # THEN both uploads are classified, in order, each into its own record; the deletion is skipped
    assert [(r["status"], r["object"]) for r in out["results"]] == [
        ("classified", f"s3://{bucket}/{keys[0]}"), ("classified", f"s3://{bucket}/{keys[2]}")]
    by_key = {r["s3_key"]: r for r in records(store)}
    assert set(by_key) == {keys[0], keys[2]}
    assert [by_key[keys[0]]["id"], by_key[keys[2]]["id"]] == [r["id"] for r in out["results"]]
    assert by_key[keys[2]]["image"]["sha256"] == hashlib.sha256(images[2]).hexdigest()


def test_a_claim_whose_record_was_never_written_is_recovered(s3_endpoint: str, bucket: str, store: Path) -> None:
    # The by-upload index entries are gone; what replaced them is the record store's claim (claim_upload).
    # Its one unreadable state: a claim that names a record which does not exist (the delivery that
    # claimed it crashed, or timed out, before it stored the record).
    # GIVEN such a claim for an upload, under an id from an earlier delivery's time
    image = jpeg("coffee")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    (obj,) = created_objects(event)
    claimed = record_id(obj.event_time.replace(hour=9), upload_digest(obj))
    open_record_store(Settings(model_store=store)).claim_upload(upload_digest(obj), claimed)
    # WHEN the event is delivered again
    out = fresh_handler()(event, FakeContext())
    # THEN it is not taken for a duplicate: the image is classified into the claimed record
    assert out["results"][0]["status"] == "classified" and out["results"][0]["id"] == claimed
    (record,) = records(store)
    assert record["id"] == claimed and record["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    # and the next delivery is the duplicate of that record
    assert fresh_handler()(event, FakeContext())["results"][0] == {
        "status": "duplicate", "object": f"s3://{bucket}/{KEY}", "id": claimed}


# -- uploads that can never be classified: logged, not retried, nothing stored ------------

def test_a_non_image_upload_stores_nothing_and_does_not_raise(s3_endpoint: str, bucket: str,
                                                              store: Path) -> None:
    data = b"%PDF-1.7 not an image at all"
    key = "uploads/2026/11/22/report.jpg"
    event = put_event(bucket, key, put(s3_endpoint, bucket, key, data), len(data))
    out = fresh_handler()(event, FakeContext())
    assert out["results"][0]["status"] == "refused"
    assert "unsupported_media_type" in out["results"][0]["reason"]
    assert stored_records(store) == {}


@pytest.mark.parametrize("case", ["too large", "deleted since", "replaced since", "outside uploads/", "removed",
                                  "another bucket"])
def test_other_permanent_outcomes(s3_endpoint: str, bucket: str, store: Path, case: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    image = jpeg("rocket")
    key = KEY if case != "outside uploads/" else "elsewhere/cat.jpg"
    etag = put(s3_endpoint, bucket, key, image)
    size, name = len(image), "ObjectCreated:Put"
    expected = "refused"
    if case == "too large":
        size = 20 * 1024 * 1024 + 1  # the event says so: refused without downloading
    elif case == "deleted since":
        s3_client(s3_endpoint).delete_object(Bucket=bucket, Key=key)
    elif case == "replaced since":
        put(s3_endpoint, bucket, key, jpeg("coffee"))
    elif case == "outside uploads/":
        expected = "ignored"
    elif case == "removed":
        name, expected = "ObjectRemoved:Delete", None
    elif case == "another bucket":  # the function is configured for one bucket and acts on no other
        monkeypatch.setenv("UPLOADS_BUCKET", "the-real-uploads-bucket")
        expected = "ignored"
    out = fresh_handler()(put_event(bucket, key, etag, size, name=name), FakeContext())
    assert [r["status"] for r in out["results"]] == ([expected] if expected else [])
    assert stored_records(store) == {}


# -- transient failures raise, so Lambda retries and finally dead-letters the event ---------

def test_no_model_raises_for_a_retry(s3_endpoint: str, bucket: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-store"
    monkeypatch.setenv("MODEL_STORE", str(empty))
    image = jpeg("chelsea")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    with pytest.raises(ModelUnavailable):
        fresh_handler()(event, FakeContext())
    assert stored_records(empty) == {}


def test_unreachable_s3_raises_for_a_retry(bucket: str, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    image = jpeg("chelsea")
    with pytest.raises(StorageUnavailable):
        fresh_handler()(put_event(bucket, KEY, "0" * 32, len(image)), FakeContext())
    assert stored_records(store) == {}


def test_a_refused_record_write_is_deferred_then_replayed_under_the_claimed_id(
    s3_endpoint: str, bucket: str, store: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a database that refuses the record write (a hiccup) after the upload was claimed
    image = jpeg("coffee")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    original = SqliteRecordStore.put

    def refusing_put(self: SqliteRecordStore, record: dict[str, Any]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(SqliteRecordStore, "put", refusing_put)
    # WHEN the upload is delivered: it is classified, and its record deferred rather than lost
    out = fresh_handler()(event, FakeContext())["results"][0]
    assert out["status"] == "classified" and records(store) == []
    # THEN once the database takes writes again, the replay stores it under the claimed id, once
    monkeypatch.setattr(SqliteRecordStore, "put", original)
    settings = Settings(model_store=store)
    counts = replay(open_record_store(settings, defer=False), open_deferral(settings))
    assert (counts.replayed, counts.failed) == (1, 0)
    assert [r["id"] for r in records(store)] == [out["id"]]
    assert fresh_handler()(event, FakeContext())["results"][0]["status"] == "duplicate"


def test_a_retry_after_a_failed_record_write_stores_the_record(s3_endpoint: str, bucket: str, store: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a record write that fails once after the upload was claimed, where even the deferral
    # place refuses it (a disk or S3 outage)
    image = jpeg("coffee")
    event = put_event(bucket, KEY, put(s3_endpoint, bucket, KEY, image), len(image))
    original = SqliteRecordStore.put
    calls = {"n": 0}

    def flaky_put(self: SqliteRecordStore, record: dict[str, Any]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "Input/output error")
        original(self, record)

    def refusing_add(self: DirectoryDeferral, records: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SqliteRecordStore, "put", flaky_put)
    monkeypatch.setattr(DirectoryDeferral, "add", refusing_add)
    handler = fresh_handler()
    # WHEN the first delivery fails, it raises (Lambda retries) ...
    with pytest.raises(OSError):
        handler(event, FakeContext())
    assert records(store) == []
    # ... and the retry is not mistaken for a duplicate: it stores the record under the claimed id
    retried = handler(event, FakeContext())["results"][0]
    assert retried["status"] == "classified"
    assert [r["id"] for r in records(store)] == [retried["id"]]
