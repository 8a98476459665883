"""Classify on upload: the Lambda handler ``classifier.aws.upload_classifier.handler``.

Runs from the same container image as the API (a CMD override) when an object
is created under ``uploads/`` in the uploads bucket. Accepts S3 event
notifications and EventBridge "Object Created" events
(``classifier.store.s3_notifications``); with ``UPLOADS_BUCKET`` set, other buckets
are ignored. Each
image is classified and stored as a record carrying its ``s3_key``, so
``GET /classifications`` lists it like any other.

Delivery is at least once, so the work is idempotent on (bucket, key, ETag):

- ``digest = sha256([bucket, key, etag])``. The record id is the event time
  plus the first 12 hex of the digest (``records.record_id``), so a redelivered
  event rewrites the same record instead of adding one.
- The record store keeps which record holds the upload's classification
  (``claim_upload``: a DynamoDB conditional put, or SQLite's primary key), so of
  several events for the same object (a retry with a new event time, or two
  deliveries racing) exactly one id wins; every other event skips the work, or,
  if the winner has not stored its record yet, writes under the winner's id.

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
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from classifier.aws.s3_worker import S3Worker
from classifier.aws.uploads import check_upload_key
from classifier.errors import ClassifierError
from classifier.records.ids import record_id
from classifier.serving.service import ImageInput
from classifier.store.s3_notifications import CreatedObject, created_objects

log = logging.getLogger("classifier.aws.upload_classifier")

INDEX_DIR = "by-upload"


def upload_digest(obj: CreatedObject) -> str:
    """Identifies this exact object version: same bucket, key and content tag."""
    return hashlib.sha256(json.dumps([obj.bucket, obj.key, obj.etag]).encode()).hexdigest()


def upload_record_id(obj: CreatedObject) -> str:
    """Deterministic: the event time and 12 hex of the upload's digest."""
    return record_id(obj.event_time, upload_digest(obj))


class UploadWorker(S3Worker):
    """Classifies uploaded objects and stores one record per (bucket, key, ETag)."""

    def process(self, obj: CreatedObject) -> dict[str, Any]:
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
        claimed = self.records.upload_record(upload_digest(obj))
        if claimed is not None and self.records.get(claimed) is not None:
            log.info("duplicate: already classified", extra={"object": where, "record_id": claimed})
            return {"status": "duplicate", "object": where, "id": claimed}
        try:
            data = self.uploads.read(obj.key, bucket=obj.bucket, etag=obj.etag or None)
            image = ImageInput(data, obj.key, self.settings.max_s3_image_bytes, {"s3_key": obj.key})
            (result,) = self.classifier.classify([image], record_ids=[claimed or upload_record_id(obj)],
                                                 store=False)
        except ClassifierError as exc:
            if exc.status >= 500:  # model unavailable, S3 unreachable: Lambda retries
                raise
            return self._refused(obj, f"{exc.code}: {exc.message}")
        # Claimed only once there is a record to point at (a refused upload leaves nothing
        # behind); a delivery that raced this one and claimed first decides the id.
        winner = self.records.claim_upload(upload_digest(obj), result.id)
        if winner != result.id:
            result = replace(result, id=winner)
        # A write the database refuses is deferred for the replay (records.deferral); if the
        # deferral place refuses too, it raises: the event is retried rather than the record lost.
        self.records.put(result.as_dict())
        top = result.predictions[0]
        log.info("classified upload", extra={"object": where, "record_id": result.id, "label": top.label,
                                             "score": top.score, "model_version": result.model["version"]})
        return {"status": "classified", "object": where, "id": result.id}

    def _refused(self, obj: CreatedObject, reason: str) -> dict[str, Any]:
        log.error("upload not classified: %s", reason, extra={"object": obj.where, "reason": reason})
        return {"status": "refused", "object": obj.where, "reason": reason}


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: classify every object the event says was created."""
    return {"results": [UploadWorker.for_this_instance().process(obj) for obj in created_objects(event)]}
