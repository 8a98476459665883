"""Nothing lost: records the database will not take wait in a durable place until ``records replay``.

A record write that DynamoDB still throttles after its retries (``DynamoRecordStore.retry_seconds``),
or that fails for any other reason, is not dropped: ``DeferringRecordStore`` writes the whole
record as one JSON object to the deferral place, counts it in the ``RecordsDeferred`` metric
(an alarm watches it), and the caller carries on. ``replay`` writes them back and then deletes
them: a record keeps its id, and a write of the same id replaces the item, so a replay that is
interrupted and run again makes no duplicate.

The place is ``RECORDS_DEFERRED``: ``s3://bucket/prefix`` in AWS (the functions reach S3 through
the VPC's gateway endpoint, free, where SQS would need an interface endpoint), or a directory
(locally: ``records-deferred/`` beside the SQLite file).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from classifier.config import ConfigError, Settings
from classifier.observability import metrics
from classifier.records import Page, RecordStore, sqlite_path
from classifier.records.ids import is_record_id
from classifier.store.fsio import write_atomic

log = logging.getLogger(__name__)

DEFERRED_DIR_NAME = "records-deferred"
REPLAY_BATCH = 25


class DeferredRecords(Protocol):
    """A durable place for whole records, one object per record id."""

    where: str

    def add(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def pending(self) -> Iterator[str]:
        """The ids of the records waiting, oldest first."""
        ...

    def read(self, record_id: str) -> dict[str, Any] | None: ...

    def remove(self, record_id: str) -> None: ...


class DirectoryDeferral:
    """Deferred records as ``<dir>/<id>.json``, each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.where = str(directory)

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for record in records:
            write_atomic(self.directory / f"{record['id']}.json", _dumps(record))

    def pending(self) -> Iterator[str]:
        if self.directory.is_dir():
            yield from sorted(p.stem for p in self.directory.glob("*.json") if is_record_id(p.stem))

    def read(self, record_id: str) -> dict[str, Any] | None:
        try:
            record: dict[str, Any] = json.loads((self.directory / f"{record_id}.json").read_bytes())
        except FileNotFoundError:
            return None
        return record

    def remove(self, record_id: str) -> None:
        (self.directory / f"{record_id}.json").unlink(missing_ok=True)


class S3Deferral:
    """Deferred records as ``s3://bucket/<prefix><id>.json`` (the bucket encrypts them at rest)."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.where = f"s3://{bucket}/{prefix}"
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client("s3", config=Config(
                        connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 5}))
        return self._client

    def add(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self.client().put_object(Bucket=self.bucket, Key=f"{self.prefix}{record['id']}.json", Body=_dumps(record),
                                     ContentType="application/json")

    def pending(self) -> Iterator[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                name = str(obj["Key"])[len(self.prefix):]
                if name.endswith(".json") and is_record_id(name[:-5]):
                    yield name[:-5]

    def read(self, record_id: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client().get_object(Bucket=self.bucket, Key=f"{self.prefix}{record_id}.json")["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        record: dict[str, Any] = json.loads(body)
        return record

    def remove(self, record_id: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=f"{self.prefix}{record_id}.json")


def open_deferral(settings: Settings) -> DeferredRecords:
    """``RECORDS_DEFERRED`` (``s3://bucket/prefix`` or a directory), else a directory beside the records."""
    where = settings.records_deferred
    if where and where.startswith("s3://"):
        bucket, _, prefix = where[len("s3://"):].partition("/")
        if not bucket:
            raise ConfigError(f"RECORDS_DEFERRED must be s3://bucket/prefix or a directory, got {where!r}")
        return S3Deferral(bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/")
    if where:
        return DirectoryDeferral(Path(where))
    base = settings.model_store if settings.records_table else sqlite_path(settings).parent
    return DirectoryDeferral(base / DEFERRED_DIR_NAME)


class DeferringRecordStore:
    """A record store whose writes are never lost: what the database refuses is deferred.

    Reads go straight to the store. A write raises only if the deferral place refuses too
    (then the bulk worker's batch is retried, and the API logs the loss).
    """

    def __init__(self, store: RecordStore, deferred: DeferredRecords) -> None:
        self.store, self.deferred = store, deferred

    def put(self, record: Mapping[str, Any]) -> None:
        self.put_many([record])

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        try:
            if len(records) == 1:
                self.store.put(records[0])
            else:
                self.store.put_many(records)
            return
        except Exception as exc:
            unwritten: Sequence[Mapping[str, Any]] = getattr(exc, "records", None) or records
            cause = exc
        self.deferred.add(unwritten)
        metrics.records_deferred(len(unwritten))
        log.warning("records deferred", extra={"deferred": len(unwritten), "where": self.deferred.where,
                                               "record_ids": [r["id"] for r in unwritten], "cause": repr(cause)})

    def get(self, record_id: str, *, owner: str | None = None) -> dict[str, Any] | None:
        return self.store.get(record_id, owner=owner)

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None, *, model: str | None = None, owner: str | None = None) -> Page:
        return self.store.list(limit, cursor, label, model_version, since, until, model=model, owner=owner)

    def claim_upload(self, digest: str, record_id: str) -> str:
        return self.store.claim_upload(digest, record_id)

    def upload_record(self, digest: str) -> str | None:
        return self.store.upload_record(digest)

    def done_record(self, sha256: str, model_version: str) -> str | None:
        return self.store.done_record(sha256, model_version)


@dataclass
class ReplayCounts:
    replayed: int = 0
    failed: int = 0
    unreadable: int = 0


def replay(store: RecordStore, deferred: DeferredRecords, *, limit: int | None = None) -> ReplayCounts:
    """Write deferred records back (``REPLAY_BATCH`` at a time), deleting each once it is written.

    Idempotent: a record written but not yet deleted when a replay stops is written again next time,
    under the same id, replacing itself. What the store still refuses stays deferred, counted.
    """
    counts = ReplayCounts()
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        try:
            store.put_many(batch)
        except Exception as exc:
            counts.failed += len(batch)
            log.warning("replay: records still refused", extra={"records": len(batch), "cause": repr(exc)})
        else:
            for record in batch:
                deferred.remove(record["id"])
            counts.replayed += len(batch)
        batch.clear()

    for record_id in deferred.pending():
        if limit is not None and counts.replayed + counts.failed + len(batch) >= limit:
            break
        record = deferred.read(record_id)
        if record is None or record.get("id") != record_id:
            counts.unreadable += 1
            continue
        batch.append(record)
        if len(batch) >= REPLAY_BATCH:
            flush()
    flush()
    metrics.records_replayed(counts.replayed)
    return counts


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), default=str).encode()
