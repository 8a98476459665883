"""Classification records: one store, two databases.

``open_record_store(settings)`` gives a ``RecordStore``:

- **SQLite** (the default, local): ``RECORDS_DB``, by default
  ``<MODEL_STORE>/records.sqlite3``. WAL journal and a busy timeout, so several
  processes (a server, ``batch``, tests) write at once. It refuses a file on an
  NFS mount (EFS): SQLite's locks are not safe there; use ``RECORDS_TABLE``.
- **DynamoDB** (in AWS), when ``RECORDS_TABLE`` is set: see ``DynamoRecordStore``.

Both answer the same questions at a cost that grows with the page, not the table:

| question | SQLite | DynamoDB |
|---|---|---|
| one record by id | primary key | ``GetItem`` on ``id`` |
| newest first | ``id`` (ids sort by time) | GSI ``by_time``: ``kind`` + ``id`` |
| by top-1 label | index ``(label, id)`` | GSI ``by_label``: ``label`` + ``id`` |
| by model version | index ``(model_version, id)`` | GSI ``by_model_version`` |
| by both | index ``(label, model_version, id)`` | GSI ``by_label_version`` |
| ``since`` / ``until`` | a range of ``id`` | a range of the sort key ``id`` |
| was this upload classified | table ``uploads`` (primary key) | item ``upload#<digest>``, conditional put |
| does this image have a record | index ``(image_sha256)`` | (not asked: ``batch --skip-done`` is local) |

A record id starts with its creation time (``records.record_id``), so time
ranges and newest-first order are ranges and order of one key. Cursors are opaque:
the last key of a page and the filters it was read with, signed with HMAC-SHA256
(``RECORDS_CURSOR_SECRET``); a forged, edited or other-filter cursor is a 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from classifier.config import Settings


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class RecordStore(Protocol):
    def put(self, record: Mapping[str, Any]) -> None: ...

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def get(self, record_id: str) -> dict[str, Any] | None: ...

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None) -> Page: ...

    def claim_upload(self, digest: str, record_id: str) -> str: ...

    def upload_record(self, digest: str) -> str | None: ...

    def has_image(self, sha256: str) -> bool: ...


def open_record_store(settings: Settings) -> RecordStore:
    """DynamoDB when ``RECORDS_TABLE`` is set, else SQLite at ``RECORDS_DB`` (default in the model store)."""
    from classifier.records.dynamodb import DynamoRecordStore
    from classifier.records.sqlite import RECORDS_DB_NAME, SqliteRecordStore

    secret = settings.records_cursor_secret.encode() if settings.records_cursor_secret else None
    if settings.records_table:
        return DynamoRecordStore(settings.records_table, ttl_days=settings.records_ttl_days, secret=secret)
    path = settings.records_db or settings.model_store / RECORDS_DB_NAME
    return SqliteRecordStore(path, secret=secret)


def top_label(record: Mapping[str, Any]) -> str:
    """A record's top-1 label ("" for a record without predictions)."""
    predictions = record.get("predictions") or [{}]
    return str(predictions[0].get("label", ""))
