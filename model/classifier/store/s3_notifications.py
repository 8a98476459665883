"""The S3 objects an event says were created, for the functions S3 events invoke.

Shared by the model installer (``classifier.store.installer``) and the classify-on-upload
trigger (``classifier.aws.upload_classifier``). Accepted shapes:

- EventBridge "Object Created" events (keys as they are);
- S3 event notifications, ``Records[]`` of ``ObjectCreated:*`` (keys URL-encoded, space as '+');
- a manual ``{"bucket": ..., "key": ...}`` payload, for re-running an object by hand.

Anything else (another detail type or event name, ``s3:TestEvent``) names no
object and is logged as ignored. Standard library only: the installer's zip
includes this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

log = logging.getLogger(__name__)

# The error codes S3 (and moto) answer for an object that is not there. A missing
# *bucket* (NoSuchBucket) is not among them: that is a deployment's fault, worth
# an alarm and a retry, never "your object is gone".
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True)
class CreatedObject:
    bucket: str
    key: str
    etag: str  # lower case, no quotes; "" when the event has none
    size: int | None
    event_time: datetime

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def created_objects(event: Mapping[str, Any]) -> Iterator[CreatedObject]:
    """Every object ``event`` says was created, in order."""
    if "detail" in event:  # EventBridge
        if event.get("detail-type") != "Object Created":
            log.info("ignored: not an Object Created event", extra={"detail_type": event.get("detail-type")})
            return
        detail = event["detail"]
        obj = detail["object"]
        yield CreatedObject(detail["bucket"]["name"], obj["key"], _etag(obj.get("etag")), obj.get("size"),
                            _event_time(event.get("time")))
    elif "Records" in event:  # S3 event notifications
        for record in event["Records"]:
            if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                log.info("ignored: not an ObjectCreated event", extra={"event_name": record.get("eventName")})
                continue
            s3 = record["s3"]
            obj = s3["object"]
            yield CreatedObject(s3["bucket"]["name"], unquote_plus(obj["key"]), _etag(obj.get("eTag")),
                                obj.get("size"), _event_time(record.get("eventTime")))
    elif isinstance(event.get("bucket"), str) and isinstance(event.get("key"), str):  # by hand
        yield CreatedObject(event["bucket"], event["key"], "", None, datetime.now(UTC))
    else:  # e.g. the s3:TestEvent S3 sends when a notification is configured
        log.warning("event names no created object; nothing to do", extra={"event_keys": sorted(event)})


def is_not_found(error: Any) -> bool:
    """Whether a botocore ``ClientError`` says the object does not exist."""
    return str(error.response.get("Error", {}).get("Code", "")) in NOT_FOUND_CODES


def _etag(value: object) -> str:
    return str(value or "").strip('"').lower()


def _event_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            log.warning("unreadable event time %r; using the current time", value)
    return datetime.now(UTC)
