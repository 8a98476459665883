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

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from classifier.config import Settings
from classifier.errors import InvalidParameter

log = logging.getLogger(__name__)

RECORD_ID_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T\d{12}Z-[0-9a-f]{12}$")
RECORDS_DB_NAME = "records.sqlite3"
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p"})
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]00:00)$")


def record_id(at: datetime, suffix: str) -> str:
    """``<yyyymmddThhmmss><microseconds>Z-<12 hex>``: ids sort by time; ``suffix`` makes them unique."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{suffix[:12]}"


def new_record_id(now: datetime | None = None) -> str:
    """A new, unique, time-ordered record id."""
    return record_id(now or datetime.now(UTC), secrets.token_hex(6))


def is_record_id(value: str) -> bool:
    return RECORD_ID_RE.fullmatch(value) is not None


def parse_timestamp(name: str, value: str) -> datetime:
    """An ISO 8601 UTC instant (``Z`` or ``+00:00``); anything else is a 422 naming the parameter."""
    if not _TIMESTAMP_RE.fullmatch(value):
        raise InvalidParameter(f"{name} must be an ISO 8601 UTC time such as 2026-11-22T10:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        raise InvalidParameter(f"{name} is not a valid time: {value!r}") from None


def id_bound(at: datetime) -> str:
    """The smallest record id created at ``at``: ``since`` and ``until`` as id bounds."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z"


@dataclass(frozen=True)
class Filters:
    """What a page is restricted to: top-1 ``label``, ``model_version``, [``since``, ``until``)."""

    label: str | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def key(self) -> str:
        """A stable text of the filters, bound into cursors."""
        return json.dumps([self.label, self.model_version, self.since and id_bound(self.since),
                           self.until and id_bound(self.until)])


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
    secret = settings.records_cursor_secret.encode() if settings.records_cursor_secret else None
    if settings.records_table:
        return DynamoRecordStore(settings.records_table, ttl_days=settings.records_ttl_days, secret=secret)
    path = settings.records_db or settings.model_store / RECORDS_DB_NAME
    return SqliteRecordStore(path, secret=secret)


# --- cursors ----------------------------------------------------------------------------------------


class Cursors:
    """Opaque, tamper-evident page cursors: ``base64url(json [key, filters]) . base64url(hmac)``."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def make(self, key: Any, filters: Filters) -> str:
        body = base64.urlsafe_b64encode(json.dumps([key, filters.key()], separators=(",", ":")).encode())
        return f"{body.decode().rstrip('=')}.{self._sign(body.rstrip(b'='))}"

    def read(self, cursor: str, filters: Filters) -> Any:
        """The key a cursor holds, if this API signed it for these filters; else 422."""
        body, _, signature = cursor.partition(".")
        if not body or not signature or not hmac.compare_digest(signature, self._sign(body.encode())):
            raise InvalidParameter("cursor: not a cursor returned by this API")
        try:
            key, bound = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error, TypeError):
            raise InvalidParameter("cursor: not a cursor returned by this API") from None
        if bound != filters.key():
            raise InvalidParameter("cursor: it was returned for other filters; start again without it")
        return key

    def _sign(self, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.secret, body, hashlib.sha256).digest()[:18]).decode()


# --- SQLite ---------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model_version TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_label ON records (label, id);
CREATE INDEX IF NOT EXISTS records_by_model_version ON records (model_version, id);
CREATE INDEX IF NOT EXISTS records_by_label_version ON records (label, model_version, id);
CREATE INDEX IF NOT EXISTS records_by_image ON records (image_sha256);
CREATE TABLE IF NOT EXISTS uploads (digest TEXT PRIMARY KEY, record_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def filesystem_type(path: Path, mounts: Path = Path("/proc/self/mounts")) -> str | None:
    """The type of the file system ``path`` is on (the longest mount point that holds it), on Linux."""
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None  # not Linux: no mount table to read
    target = str(path.resolve())
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        # ">=": of two mounts on one point, the later one (listed after) hides the earlier.
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


class SqliteRecordStore:
    """Records in one SQLite file; a connection per thread."""

    def __init__(self, path: Path | str, *, secret: bytes | None = None,
                 mounts: Path = Path("/proc/self/mounts")) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kind = filesystem_type(self.path.parent, mounts)
        if kind in NETWORK_FILESYSTEMS:
            raise RuntimeError(f"{self.path} is on a network file system ({kind}): SQLite's locking is not safe "
                               "there. Set RECORDS_TABLE to keep records in DynamoDB (what the CDK app deploys)")
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(_SCHEMA)
        self.cursors = Cursors(secret or self._stored_secret())

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
            self._local.db = db
        return db

    def _stored_secret(self) -> bytes:
        """A random signing key kept in the database itself (created once, by whoever comes first)."""
        db = self._connection()
        db.execute("INSERT OR IGNORE INTO settings (name, value) VALUES ('cursor_secret', ?)", (secrets.token_hex(32),))
        (value,) = db.execute("SELECT value FROM settings WHERE name = 'cursor_secret'").fetchone()
        return bytes.fromhex(value)

    def put(self, record: Mapping[str, Any]) -> None:
        self.put_many([record])

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        rows = [(r["id"], _top_label(r), r["model"]["version"], r["image"]["sha256"],
                 json.dumps(r, separators=(",", ":"))) for r in records]
        db = self._connection()
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO records (id, label, model_version, image_sha256, body) "
                           "VALUES (?, ?, ?, ?, ?)", rows)

    def get(self, record_id: str) -> dict[str, Any] | None:
        row = self._connection().execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None) -> Page:
        filters = Filters(label, model_version, since, until)
        sql, params = self.page_query(limit, cursor, filters)
        rows = self._connection().execute(sql, params).fetchall()
        items = [json.loads(body) for _, body in rows[:limit]]
        next_cursor = self.cursors.make(rows[limit - 1][0], filters) if len(rows) > limit else None
        return Page(items, next_cursor)

    def page_query(self, limit: int, cursor: str | None, filters: Filters) -> tuple[str, Sequence[Any]]:
        """The SQL of one page (limit + 1 rows, to know whether there is a next), and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        if filters.label is not None:
            where.append("label = ?")
            params.append(filters.label)
        if filters.model_version is not None:
            where.append("model_version = ?")
            params.append(filters.model_version)
        if filters.since is not None:
            where.append("id >= ?")
            params.append(id_bound(filters.since))
        if filters.until is not None:
            where.append("id < ?")
            params.append(id_bound(filters.until))
        if cursor is not None:
            last = self.cursors.read(cursor, filters)
            if not isinstance(last, str):
                raise InvalidParameter("cursor: not a cursor returned by this API")
            where.append("id < ?")
            params.append(last)
        # Only the fixed conditions above are joined; every value is a bound parameter.
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT id, body FROM records{clause} ORDER BY id DESC LIMIT ?", [*params, limit + 1]  # noqa: S608

    def claim_upload(self, digest: str, record_id: str) -> str:
        db = self._connection()
        db.execute("INSERT OR IGNORE INTO uploads (digest, record_id) VALUES (?, ?)", (digest, record_id))
        winner = self.upload_record(digest)
        assert winner is not None
        return winner

    def upload_record(self, digest: str) -> str | None:
        row = self._connection().execute("SELECT record_id FROM uploads WHERE digest = ?", (digest,)).fetchone()
        return str(row[0]) if row else None

    def has_image(self, sha256: str) -> bool:
        sql = "SELECT 1 FROM records WHERE image_sha256 = ? LIMIT 1"
        return self._connection().execute(sql, (sha256,)).fetchone() is not None


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _top_label(record: Mapping[str, Any]) -> str:
    predictions = record.get("predictions") or [{}]
    return str(predictions[0].get("label", ""))


# --- DynamoDB ---------------------------------------------------------------------------------------------

# The table's keys and indexes (lambda_docker/records.py creates them; tests create the same on moto).
TABLE_KEY = "id"
TIME_INDEX, TIME_KEY, RECORD_KIND = "by_time", "kind", "record"
LABEL_INDEX, LABEL_KEY = "by_label", "label"
VERSION_INDEX, VERSION_KEY = "by_model_version", "model_version"
LABEL_VERSION_INDEX, LABEL_VERSION_KEY = "by_label_version", "label_version"
TTL_ATTRIBUTE = "expires_at"
UPLOAD_PREFIX = "upload#"
BATCH_WRITE_ITEMS = 25  # DynamoDB's BatchWriteItem limit


def table_definition(name: str) -> dict[str, Any]:
    """``create_table`` arguments for the records table (on-demand), as the CDK app declares it."""
    def index(index_name: str, partition: str) -> dict[str, Any]:
        return {"IndexName": index_name, "Projection": {"ProjectionType": "ALL"},
                "KeySchema": [{"AttributeName": partition, "KeyType": "HASH"},
                              {"AttributeName": TABLE_KEY, "KeyType": "RANGE"}]}

    keys = (TABLE_KEY, TIME_KEY, LABEL_KEY, VERSION_KEY, LABEL_VERSION_KEY)
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": TABLE_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"} for key in keys],
        "GlobalSecondaryIndexes": [index(TIME_INDEX, TIME_KEY), index(LABEL_INDEX, LABEL_KEY),
                                   index(VERSION_INDEX, VERSION_KEY),
                                   index(LABEL_VERSION_INDEX, LABEL_VERSION_KEY)],
    }


class DynamoRecordStore:
    """Records in a DynamoDB table: one item per record, the record itself in ``body``.

    Indexes are sparse: only record items carry ``kind``/``label``/..., so the
    upload-claim items (``upload#<digest>``) never show in a listing.
    """

    def __init__(self, table: str, *, ttl_days: int = 365, secret: bytes | None = None) -> None:
        self.table = table
        self.ttl_days = ttl_days
        # Without a configured key, one derived from the table: still tamper-evident against
        # edits, but anyone who knows the table's name could sign a cursor (it leads only to
        # pages of the same listing). The CDK app sets RECORDS_CURSOR_SECRET.
        self.cursors = Cursors(secret or hashlib.sha256(f"classifier-cursor:{table}".encode()).digest())
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """One DynamoDB client per process, made on first use (boto3 costs cold start otherwise)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    self._client = boto3.client("dynamodb", config=Config(
                        connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}))
        return self._client

    def item(self, record: Mapping[str, Any]) -> dict[str, Any]:
        label, version = _top_label(record), str(record["model"]["version"])
        item = {
            TABLE_KEY: {"S": record["id"]},
            TIME_KEY: {"S": RECORD_KIND},
            LABEL_KEY: {"S": label},
            VERSION_KEY: {"S": version},
            LABEL_VERSION_KEY: {"S": f"{label}\x1f{version}"},
            "body": {"S": json.dumps(record, separators=(",", ":"), default=_json_number)},
        }
        item.update(self._expiry(_created(record)))
        return item

    def _expiry(self, start: datetime) -> dict[str, dict[str, str]]:
        """The TTL attribute of an item that DynamoDB may delete ``ttl_days`` after ``start`` (none with 0)."""
        if self.ttl_days <= 0:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(int(start.timestamp()) + self.ttl_days * 86400)}}

    def put(self, record: Mapping[str, Any]) -> None:
        self.client().put_item(TableName=self.table, Item=self.item(record))

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """``BatchWriteItem`` in chunks of 25, re-sending what DynamoDB leaves unprocessed."""
        import time

        for start in range(0, len(records), BATCH_WRITE_ITEMS):
            requests = {self.table: [{"PutRequest": {"Item": self.item(r)}}
                                     for r in records[start:start + BATCH_WRITE_ITEMS]]}
            for attempt in range(8):
                unprocessed = self.client().batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                requests = unprocessed
                time.sleep(min(2.0, 0.05 * 2**attempt))
            else:
                raise RuntimeError(f"DynamoDB left {len(requests[self.table])} records unwritten after 8 attempts")

    def get(self, record_id: str) -> dict[str, Any] | None:
        item = self.client().get_item(TableName=self.table, Key={TABLE_KEY: {"S": record_id}}).get("Item")
        if not item or "body" not in item:
            return None
        record: dict[str, Any] = json.loads(item["body"]["S"])
        return record

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None) -> Page:
        filters = Filters(label, model_version, since, until)
        if label is not None and model_version is not None:
            index, partition = LABEL_VERSION_INDEX, (LABEL_VERSION_KEY, f"{label}\x1f{model_version}")
        elif label is not None:
            index, partition = LABEL_INDEX, (LABEL_KEY, label)
        elif model_version is not None:
            index, partition = VERSION_INDEX, (VERSION_KEY, model_version)
        else:
            index, partition = TIME_INDEX, (TIME_KEY, RECORD_KIND)
        condition, values = "#p = :p", {":p": {"S": partition[1]}}
        if since is not None and until is not None:
            condition += " AND #id BETWEEN :since AND :until"
            # BETWEEN is inclusive: the largest id before ``until`` ends with "Z-" + 12 hex below ours.
            values.update({":since": {"S": id_bound(since)}, ":until": {"S": id_bound(until)[:-1] + "Y"}})
        elif since is not None:
            condition += " AND #id >= :since"
            values[":since"] = {"S": id_bound(since)}
        elif until is not None:
            condition += " AND #id < :until"
            values[":until"] = {"S": id_bound(until)}
        query: dict[str, Any] = {
            "TableName": self.table, "IndexName": index, "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#p": partition[0], **({"#id": TABLE_KEY} if "#id" in condition else {})},
            "ExpressionAttributeValues": values, "ScanIndexForward": False, "Limit": limit,
        }
        if cursor is not None:
            start = self.cursors.read(cursor, filters)
            if not (isinstance(start, dict) and all(isinstance(v, str) for v in start.values())
                    and set(start) == {TABLE_KEY, partition[0]} and start[partition[0]] == partition[1]):
                raise InvalidParameter("cursor: not a cursor returned by this API")
            query["ExclusiveStartKey"] = {k: {"S": v} for k, v in start.items()}
        answer = self.client().query(**query)
        items = [json.loads(item["body"]["S"]) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        next_cursor = None
        if last and len(items) == limit:
            next_cursor = self.cursors.make({k: v["S"] for k, v in last.items()}, filters)
        return Page(items, next_cursor)

    def claim_upload(self, digest: str, record_id: str) -> str:
        """The conditional put: of racing deliveries of one upload, exactly one record id wins."""
        from botocore.exceptions import ClientError

        try:
            self.client().put_item(
                TableName=self.table,
                # The claim expires with the record it names, not a day later than it.
                Item={TABLE_KEY: {"S": UPLOAD_PREFIX + digest}, "record_id": {"S": record_id},
                      **self._expiry(datetime.now(UTC))},
                ConditionExpression="attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": TABLE_KEY},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            winner = self.upload_record(digest)
            if winner is not None:
                return winner
        return record_id

    def upload_record(self, digest: str) -> str | None:
        item = self.client().get_item(TableName=self.table, Key={TABLE_KEY: {"S": UPLOAD_PREFIX + digest}},
                                      ConsistentRead=True).get("Item")
        return item["record_id"]["S"] if item and "record_id" in item else None

    def has_image(self, sha256: str) -> bool:
        raise NotImplementedError("--skip-done reads the local SQLite store; unset RECORDS_TABLE")


def _created(record: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00")).astimezone(UTC)
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _json_number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
