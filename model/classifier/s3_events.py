"""Classify on upload: the Lambda handler ``classifier.s3_events.handler``.

Runs from the same container image as the API (a CMD override) when an object
is created under ``uploads/`` in the uploads bucket. Accepts S3 event
notifications (``Records[]``, keys URL-encoded) and EventBridge "Object
Created" events; with ``UPLOADS_BUCKET`` set, other buckets are ignored. Each
image is classified and stored as a record carrying its ``s3_key``, so
``GET /classifications`` lists it like any other.

Delivery is at least once, so the work is idempotent on (bucket, key, ETag):

- ``digest = sha256([bucket, key, etag])``. The record id is the event time
  plus the first 12 hex of the digest (``RECORD_ID_RE``), so a redelivered
  event rewrites the same record file, atomically, instead of adding one.
- ``records/by-upload/<digest>.json`` names the record that holds the
  upload's classification. It is created with ``link(2)``, which fails if the
  name exists, so of several events for the same object (a retry with a new
  event time, or two deliveries racing) exactly one id wins; every other
  event skips the work, or, if the winner has not stored its record yet,
  writes under the winner's id. ``RecordStore`` lists only the numeric date
  directories, so the index is invisible to the API.

Failures: an upload that can never be classified (not an image, too large,
deleted or replaced since the event) is logged at ERROR and returns
``status: refused``; retrying cannot help. Transient failures (no model
loaded, S3 or EFS errors) raise, so Lambda retries the event and finally sends
it to the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from classifier import logs
from classifier.config import Settings
from classifier.errors import ClassifierError
from classifier.fsio import fsync_dir, temp_name
from classifier.records import RecordStore
from classifier.runtime import ModelManager
from classifier.service import Classifier
from classifier.uploads import Uploads, check_upload_key

log = logging.getLogger("classifier.s3_events")

INDEX_DIR = "by-upload"


@dataclass(frozen=True)
class UploadedObject:
    bucket: str
    key: str
    etag: str
    size: int | None
    event_time: datetime

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def digest(self) -> str:
        """Identifies this exact object version: same bucket, key and content tag."""
        return hashlib.sha256(json.dumps([self.bucket, self.key, self.etag]).encode()).hexdigest()

    @property
    def record_id(self) -> str:
        """Deterministic, and valid for ``RecordStore``: event time + 12 hex of the digest."""
        return f"{self.event_time:%Y%m%dT%H%M%S%f}Z-{self.digest[:12]}"


def uploaded_objects(event: Mapping[str, Any]) -> Iterator[UploadedObject]:
    """The objects an S3 notification or an EventBridge event says were created."""
    if "detail" in event:  # EventBridge: keys are not URL-encoded
        if event.get("detail-type") != "Object Created":
            log.info("ignored: not an Object Created event", extra={"detail_type": event.get("detail-type")})
            return
        detail = event["detail"]
        obj = detail["object"]
        yield UploadedObject(detail["bucket"]["name"], obj["key"], _etag(obj.get("etag")), obj.get("size"),
                             _event_time(event.get("time")))
    elif "Records" in event:  # S3 event notifications: keys are URL-encoded (space as '+')
        for record in event["Records"]:
            if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                log.info("ignored: not an ObjectCreated event", extra={"event_name": record.get("eventName")})
                continue
            s3 = record["s3"]
            obj = s3["object"]
            yield UploadedObject(s3["bucket"]["name"], unquote_plus(obj["key"]), _etag(obj.get("eTag")),
                                 obj.get("size"), _event_time(record.get("eventTime")))
    else:  # e.g. the s3:TestEvent S3 sends when a notification is configured
        log.warning("event names no created object; nothing to do", extra={"event_keys": sorted(event)})


def _etag(value: object) -> str:
    return str(value or "").strip('"').lower()


def _event_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            log.warning("unreadable event time %r; using the current time", value)
    return datetime.now(UTC)


class UploadIndex:
    """``records/by-upload/<digest>.json``: which record holds an upload's classification."""

    def __init__(self, root: Path | str) -> None:
        self.dir = Path(root) / "records" / INDEX_DIR

    def lookup(self, digest: str) -> str | None:
        try:
            entry = json.loads((self.dir / f"{digest}.json").read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("unreadable upload index entry %s; treating it as absent", digest)
            return None
        record_id = entry.get("record_id") if isinstance(entry, dict) else None
        return record_id if isinstance(record_id, str) else None

    def claim(self, obj: UploadedObject, record_id: str) -> str:
        """Make ``record_id`` the upload's record unless another already is; return the one that is.

        The entry is written in full to a temporary name and then hard-linked
        to its final name: ``link`` is atomic and refuses an existing name,
        locally and on NFS, so readers never see a partial entry and only one
        claim can win.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / f"{obj.digest}.json"
        entry = {"bucket": obj.bucket, "key": obj.key, "etag": obj.etag, "record_id": record_id}
        tmp = temp_name(target)
        try:
            with open(tmp, "xb") as f:
                f.write(json.dumps(entry, separators=(",", ":")).encode())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                winner = self.lookup(obj.digest)
                if winner is not None:
                    return winner
                os.replace(tmp, target)  # an unreadable entry: ours replaces it
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.dir)
        return record_id


class UploadWorker:
    """Classifies uploaded objects and stores one record per (bucket, key, ETag)."""

    def __init__(self, settings: Settings, *, manager: ModelManager | None = None,
                 records: RecordStore | None = None, uploads: Uploads | None = None) -> None:
        self.settings = settings
        self.records = records or RecordStore(settings.model_store)
        self.index = UploadIndex(settings.model_store)
        self.uploads = uploads or Uploads(settings)
        self.classifier = Classifier(settings, manager or ModelManager(settings), self.records)

    def process(self, obj: UploadedObject) -> dict[str, Any]:
        where = obj.where
        if self.settings.uploads_bucket and obj.bucket != self.settings.uploads_bucket:
            log.warning("ignored: not the uploads bucket", extra={"object": where})
            return {"status": "ignored", "object": where}
        try:
            check_upload_key(obj.key)
        except ClassifierError:
            log.info("ignored: not under uploads/", extra={"object": where})
            return {"status": "ignored", "object": where}
        if obj.size is not None and obj.size > self.settings.max_s3_image_bytes:
            return self._refused(obj, f"{obj.size} bytes is over MAX_S3_IMAGE_BYTES "
                                      f"({self.settings.max_s3_image_bytes})")
        claimed = self.index.lookup(obj.digest)
        if claimed is not None and self.records.exists(claimed):
            log.info("duplicate: already classified", extra={"object": where, "record_id": claimed})
            return {"status": "duplicate", "object": where, "id": claimed}
        try:
            data = self.uploads.read(obj.key, bucket=obj.bucket, etag=obj.etag or None)
            result = self.classifier.classify(
                [data], max_bytes=self.settings.max_s3_image_bytes, store=False, extra={"s3_key": obj.key}
            )[0]
        except ClassifierError as exc:
            if exc.status >= 500:  # model unavailable, S3 unreachable: Lambda retries
                raise
            return self._refused(obj, f"{exc.code}: {exc.message}")
        record_id = self.index.claim(obj, claimed or obj.record_id)
        result["id"] = record_id
        # Unlike the API, a failed write raises here: the event is retried
        # rather than the classification silently lost.
        self.records.put(result)
        top = result["predictions"][0]
        log.info("classified upload", extra={"object": where, "record_id": record_id, "label": top["label"],
                                             "score": top["score"], "model_version": result["model"]["version"]})
        return {"status": "classified", "object": where, "id": record_id}

    def _refused(self, obj: UploadedObject, reason: str) -> dict[str, Any]:
        log.error("upload not classified: %s", reason, extra={"object": obj.where, "reason": reason})
        return {"status": "refused", "object": obj.where, "reason": reason}


_worker: UploadWorker | None = None


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: classify every object the event says was created."""
    global _worker
    logs.configure()
    if _worker is None:  # once per Lambda instance; the model stays loaded across events
        _worker = UploadWorker(Settings.from_env())
    return {"results": [_worker.process(obj) for obj in uploaded_objects(event)]}
