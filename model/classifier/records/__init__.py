"""Classification records: one store, two databases.

``open_record_store(settings)`` gives a ``RecordStore``:

- **SQLite** (the default, local): ``RECORDS_DB``, by default
  ``<MODEL_STORE>/records.sqlite3``. WAL journal and a busy timeout, so several
  processes (a server, ``batch``, tests) write at once. It refuses a file on an
  NFS mount (EFS): SQLite's locks are not safe there; use ``RECORDS_TABLE``.
- **DynamoDB** (in AWS), when ``RECORDS_TABLE`` is set: see ``DynamoRecordStore``.

Both answer the same questions at a cost that grows with the page, not the table:

| question | SQLite | DynamoDB (``keys``: sharded, merged on read) |
|---|---|---|
| one record by id | primary key | ``GetItem`` on ``id`` |
| newest first | ``id`` (ids sort by time) | family ``time``: ``<shard>`` + ``id`` |
| a caller's own | index ``(owner, id)`` | family ``owner``: ``<owner>#<shard>`` + ``id`` |
| by label, version, model, both | an index each, ``(..., id)`` | its family, else the nearest one filtered |
| ``since`` / ``until`` | a range of ``id`` | a range of the sort key ``id`` |
| was this upload classified | table ``uploads`` (primary key) | item ``upload#<digest>``, conditional put |
| has this version done this image | index ``(image_sha256, model_version)`` | (not asked: local only) |

A record id starts with its creation time (``records.record_id``), so time
ranges and newest-first order are ranges and order of one key. Cursors are opaque:
the last id a page covered and the filters it was read with, signed with HMAC-SHA256
(``RECORDS_CURSOR_SECRET``); a forged, edited, malformed or other-filter cursor is a 422.

A record may carry ``owner`` (the caller's identity; ``"none"`` without auth; absent
locally). ``get(id, owner=x)`` and ``list(..., owner=x)`` see only x's records;
``owner=None`` sees every record (the read-all grant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from classifier.config import ConfigError, Settings

RECORDS_DB_NAME = "records.sqlite3"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class RecordStore(Protocol):
    def put(self, record: Mapping[str, Any]) -> None: ...

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None: ...

    def get(self, record_id: str, *, owner: str | None = None) -> dict[str, Any] | None: ...

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None, *, model: str | None = None, owner: str | None = None) -> Page: ...

    def claim_upload(self, digest: str, record_id: str) -> str: ...

    def upload_record(self, digest: str) -> str | None: ...

    def done_record(self, sha256: str, model_version: str) -> str | None:
        """The id of a record of this image by this model version, if there is one."""
        ...


def open_record_store(settings: Settings, *, defer: bool = True) -> RecordStore:
    """DynamoDB when ``RECORDS_TABLE`` is set, else SQLite at ``RECORDS_DB`` (default in the model store);
    with ``defer``, writes the database refuses go to ``RECORDS_DEFERRED`` (``records.deferral``)."""
    if defer:
        from classifier.records.deferral import DeferringRecordStore, open_deferral

        return DeferringRecordStore(open_record_store(settings, defer=False), open_deferral(settings))
    secret = settings.records_cursor_secret.encode() if settings.records_cursor_secret else None
    # Each store's module is imported only where it is used (the cold start pays for one of them).
    if settings.records_table:
        from classifier.records.dynamodb import DynamoRecordStore
        from classifier.records.keys import KeyLayout

        try:
            layout = KeyLayout(settings.records_indexes, settings.records_shards)
        except ValueError as exc:
            raise ConfigError(f"RECORDS_INDEXES / RECORDS_SHARDS: {exc}") from None
        return DynamoRecordStore(settings.records_table, ttl_days=settings.records_ttl_days, secret=secret,
                                 layout=layout, retry_seconds=settings.records_retry_seconds)
    from classifier.records.sqlite import SqliteRecordStore

    return SqliteRecordStore(sqlite_path(settings), secret=secret)


def sqlite_path(settings: Settings) -> Path:
    """Where SQLite keeps the records: ``RECORDS_DB``, else ``records.sqlite3`` in the model store."""
    return settings.records_db or settings.model_store / RECORDS_DB_NAME


def top_label(record: Mapping[str, Any]) -> str:
    """A record's top-1 label ("" for a record without predictions)."""
    predictions = record.get("predictions") or [{}]
    return str(predictions[0].get("label", ""))
