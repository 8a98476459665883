"""Records in a DynamoDB table (what AWS uses): one item per record, sharded indexes merged on read."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records import Page, top_label
from classifier.records.cursors import Cursors, Filters
from classifier.records.ids import id_bound, is_record_id
from classifier.records.keys import TABLE_KEY, TTL_ATTRIBUTE, Family, KeyLayout

UPLOAD_PREFIX = "upload#"
BODY = "body_z"  # the record's JSON, zlib-compressed
BATCH_WRITE_ITEMS = 25  # DynamoDB's BatchWriteItem limit
# Error codes that mean "slow down" (or a passing fault): retried with backoff, then deferred.
RETRYABLE = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                       "InternalServerError", "ServiceUnavailable", "TransactionConflictException"})


def table_definition(name: str, layout: KeyLayout | None = None) -> dict[str, Any]:
    """``create_table`` arguments for the records table (on-demand), as the CDK app declares it."""
    return (layout or KeyLayout()).table_definition(name)


# One shard's answer: (id, record) pairs newest first, the last id read, the continuation key, items read.
ShardAnswer = tuple[list[tuple[str, dict[str, Any]]], str | None, dict[str, Any] | None, int]


class RecordsUnwritten(RuntimeError):
    """Records DynamoDB did not take within the retry budget: the caller defers them."""

    def __init__(self, records: Sequence[Mapping[str, Any]], cause: str) -> None:
        super().__init__(f"{len(records)} records unwritten: {cause}")
        self.records = list(records)


class DynamoRecordStore:
    """Records in a DynamoDB table: one item per record, the record itself in ``body``.

    Index keys are sharded and sparse (``classifier.records.keys``): only record items carry
    them, so the upload-claim items (``upload#<digest>``) never show in a listing.
    """

    def __init__(self, table: str, *, ttl_days: int = 365, secret: bytes | None = None,
                 layout: KeyLayout | None = None, retry_seconds: float = 1.0) -> None:
        self.table = table
        self.ttl_days = ttl_days
        self.layout = layout or KeyLayout()
        self.retry_seconds = retry_seconds
        # Without a configured key, one derived from the table: still tamper-evident against
        # edits, but anyone who knows the table's name could sign a cursor (it leads only to
        # pages of the same listing). The CDK app sets RECORDS_CURSOR_SECRET.
        self.cursors = Cursors(secret or hashlib.sha256(f"classifier-cursor:{table}".encode()).digest())
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """One DynamoDB client per process, made on first use (boto3 costs cold start otherwise)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    # One shard query per thread of the pool below, all at once.
                    self._client = boto3.client("dynamodb", config=Config(
                        connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3},
                        max_pool_connections=max(10, self.layout.shards)))
        return self._client

    def pool(self) -> ThreadPoolExecutor:
        """Threads that query a listing's shards at once (their latencies overlap, not add up)."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self.layout.shards, thread_name_prefix="records")
        return self._pool

    def item(self, record: Mapping[str, Any]) -> dict[str, Any]:
        values = record_values(record)
        item: dict[str, Any] = {
            TABLE_KEY: {"S": record["id"]},
            **{name: {"S": value} for name, value in values.items() if value is not None},
            **{name: {"S": value} for name, value in self.layout.index_keys(record["id"], values).items()},
            # Compressed: a record's JSON (~800 bytes with 5 predictions and an IAM owner) would put the
            # item over 1 KB, and every copy (the table and each index) would cost 2 write units.
            BODY: {"B": zlib.compress(json.dumps(record, separators=(",", ":"), default=_json_number).encode())},
        }
        item.update(self._expiry(_created(record)))
        return item

    def _expiry(self, start: datetime) -> dict[str, dict[str, str]]:
        """The TTL attribute of an item that DynamoDB may delete ``ttl_days`` after ``start`` (none with 0)."""
        if self.ttl_days <= 0:
            return {}
        return {TTL_ATTRIBUTE: {"N": str(int(start.timestamp()) + self.ttl_days * 86400)}}

    def put(self, record: Mapping[str, Any]) -> None:
        """One ``PutItem``, retried with backoff while DynamoDB throttles, for ``retry_seconds`` at most."""
        item = self.item(record)
        self._retrying(lambda: self.client().put_item(TableName=self.table, Item=item), [record])

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """``BatchWriteItem`` in chunks of 25, re-sending what DynamoDB leaves unprocessed with backoff,
        for ``retry_seconds`` in all; what is still unwritten then raises ``RecordsUnwritten``."""
        deadline = time.monotonic() + self.retry_seconds
        by_id = {r["id"]: r for r in records}
        for start in range(0, len(records), BATCH_WRITE_ITEMS):
            chunk = records[start:start + BATCH_WRITE_ITEMS]
            requests = {self.table: [{"PutRequest": {"Item": self.item(r)}} for r in chunk]}
            attempt = 0
            while True:
                try:
                    answer = self.client().batch_write_item(RequestItems=requests)
                    requests = answer.get("UnprocessedItems") or {}
                    cause = "DynamoDB left them unprocessed (throttled)"
                except Exception as exc:
                    if not _retryable(exc):
                        raise RecordsUnwritten([*chunk, *records[start + len(chunk):]], repr(exc)) from exc
                    cause = repr(exc)
                if not requests:
                    break
                pause = _backoff(attempt)
                attempt += 1
                if time.monotonic() + pause > deadline:
                    left = [by_id[r["PutRequest"]["Item"][TABLE_KEY]["S"]] for r in requests[self.table]]
                    raise RecordsUnwritten([*left, *records[start + len(chunk):]], cause)
                time.sleep(pause)

    def _retrying(self, write: Callable[[], Any], records: Sequence[Mapping[str, Any]]) -> None:
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        while True:
            try:
                write()
                return
            except Exception as exc:
                pause = _backoff(attempt)
                attempt += 1
                if not _retryable(exc) or time.monotonic() + pause > deadline:
                    raise RecordsUnwritten(records, repr(exc)) from exc
                time.sleep(pause)

    def get(self, record_id: str, *, owner: str | None = None) -> dict[str, Any] | None:
        """The record, or None when there is none, or it is not ``owner``'s (None: anyone's)."""
        item = self.client().get_item(TableName=self.table, Key={TABLE_KEY: {"S": record_id}}).get("Item")
        if not item or (BODY not in item and "body" not in item):
            return None
        if owner is not None and item.get("owner", {}).get("S") != owner:
            return None
        return record_of(item)

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None, *, model: str | None = None, owner: str | None = None) -> Page:
        """A page newest first: the shards of one index key, queried at once and merged.

        Every shard shares the sort key (the record id), so a cursor is the last id a page
        covered, as in SQLite. A filter the index does not serve is a filter expression:
        a page then reads at most (limit + 1) items a shard, and may hold fewer than ``limit``
        matches with a cursor to go on from.
        """
        filters = Filters(label, model_version, since, until, model, owner)
        before = None
        if cursor is not None:
            before = self.cursors.read(cursor, filters)
            if not (isinstance(before, str) and is_record_id(before)):
                raise InvalidParameter("cursor: not a cursor returned by this API")
        family, keyed, residual = self.layout.plan(filters.equalities())
        lower = id_bound(since) if since is not None else None
        # Ids never equal a bare time bound (they go on with "-<hex>"), so ``until`` may be inclusive.
        bounds: list[str] = [b for b in (before, id_bound(until) if until is not None else None) if b is not None]
        upper = min([*bounds, "~"])
        if lower is not None and lower > upper:
            return Page([], None)
        merge = _Merge(self, family, keyed, residual, lower, upper, want=limit + 1)
        items, frontier = merge.run()
        page = items[:limit]
        if len(items) > limit:
            return Page([r for _, r in page], self.cursors.make(page[-1][0], filters))
        next_cursor = self.cursors.make(frontier, filters) if frontier is not None else None
        return Page([r for _, r in page], next_cursor)

    def query_shard(self, family: Family, key: str, lower: str | None, upper: str, residual: Mapping[str, str],
                    limit: int, start: dict[str, Any] | None) -> ShardAnswer:
        """One shard's items (id, record) newest first below ``upper``, the last id it evaluated
        (None at its end), its continuation key, and how many items it read."""
        names = {"#p": family.attribute, "#id": TABLE_KEY}
        values: dict[str, Any] = {":p": {"S": key}, ":hi": {"S": upper}}
        if lower is not None:
            condition = "#p = :p AND #id BETWEEN :lo AND :hi"
            values[":lo"] = {"S": lower}
        else:
            condition = "#p = :p AND #id < :hi"
        query: dict[str, Any] = {"TableName": self.table, "IndexName": family.index, "ScanIndexForward": False,
                                 "KeyConditionExpression": condition, "Limit": limit}
        if residual:
            terms = []
            for i, (name, value) in enumerate(sorted(residual.items())):
                names[f"#f{i}"] = name
                values[f":f{i}"] = {"S": value}
                terms.append(f"#f{i} = :f{i}")
            query["FilterExpression"] = " AND ".join(terms)
        if start is not None:
            query["ExclusiveStartKey"] = start
        answer = self.client().query(**query, ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        items = [(i[TABLE_KEY]["S"], record_of(i)) for i in answer.get("Items", [])
                 if i[TABLE_KEY]["S"] != upper]  # BETWEEN includes the cursor's own record
        last = answer.get("LastEvaluatedKey")
        return items, (last[TABLE_KEY]["S"] if last else None), last, int(answer.get("ScannedCount", 0))

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

    def done_record(self, sha256: str, model_version: str) -> str | None:
        raise NotImplementedError("--skip-done reads the local SQLite store; unset RECORDS_TABLE")


class _Merge:
    """One page of a listing from the shards of one index key, newest first, within a read budget.

    Each shard is read from the top down; a shard stops being read once every item it could
    still hold is older than the page's last one. The budget, (limit + 1) items a shard, is
    what "a page costs its size times the shard count at most" means.
    """

    def __init__(self, store: DynamoRecordStore, family: Family, keyed: Mapping[str, str],
                 residual: Mapping[str, str], lower: str | None, upper: str, *, want: int) -> None:
        self.store, self.family, self.residual = store, family, residual
        self.lower, self.upper, self.want = lower, upper, want
        shards = store.layout.shards
        self.keys = [family.value(keyed, s) for s in range(shards)]
        self.found: list[tuple[str, dict[str, Any]]] = []
        self.last: dict[int, str | None] = {}  # the last id each shard evaluated; None: it is done
        self.start: dict[int, dict[str, Any] | None] = dict.fromkeys(range(shards))
        self.budget = want * shards
        self.read = 0

    def run(self) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """The items known to be the newest (up to ``want``), and the frontier below which nothing was
        read (None when every shard was read to its end)."""
        shards = len(self.keys)
        first = self.want if self.residual else min(self.want, -(-self.want // shards) + 2)
        self._fetch(list(range(shards)), first)
        while True:
            self.found.sort(key=lambda pair: pair[0], reverse=True)
            open_shards = [s for s, last in self.last.items() if last is not None]
            frontier = max((self.last[s] or "" for s in open_shards), default=None)
            threshold = self.found[self.want - 1][0] if len(self.found) >= self.want else None
            blocking = [s for s in open_shards if threshold is None or (self.last[s] or "") > threshold]
            if not blocking:
                return self.found[:self.want], None if not open_shards or threshold is not None else frontier
            left = self.budget - self.read
            if left <= 0:
                known = [pair for pair in self.found if frontier is None or pair[0] >= frontier]
                return known[:self.want], frontier if len(known) < self.want else None
            need = self.want - sum(1 for pair in self.found if frontier is None or pair[0] > frontier)
            self._fetch(blocking, max(2, min(left // len(blocking), -(-max(need, 1) // len(blocking)) + 1)))

    def _fetch(self, shards: list[int], limit: int) -> None:
        def one(shard: int) -> tuple[int, Any]:
            return shard, self.store.query_shard(self.family, self.keys[shard], self.lower, self.upper,
                                                 self.residual, limit, self.start[shard])

        answers = [one(shards[0])] if len(shards) == 1 else list(self.store.pool().map(one, shards))
        for shard, (items, last, start, read) in answers:
            self.found.extend(items)
            self.last[shard], self.start[shard] = last, start
            self.read += read


def item_bytes(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name plus its value (strings in UTF-8,
    binary as is, numbers about a byte for two digits)."""
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        size += len(name.encode())
        size += len(raw) if kind == "B" else len(raw.encode()) if kind == "S" else (len(raw) + 1) // 2 + 1
    return size


def record_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """The record an item holds: its compressed JSON (``body_z``), or the plain JSON of older items."""
    raw = zlib.decompress(item[BODY]["B"]) if BODY in item else item["body"]["S"]
    record: dict[str, Any] = json.loads(raw)
    return record


def record_values(record: Mapping[str, Any]) -> dict[str, str | None]:
    """The attributes a record is filtered and indexed by: its owner, top-1 label, model and version."""
    model = record.get("model") or {}
    owner = record.get("owner")
    return {"owner": None if owner is None else str(owner), "label": top_label(record),
            "model_version": str(model.get("version", "")), "model": str(model.get("name", ""))}


def _retryable(exc: BaseException) -> bool:
    """Throttling, a DynamoDB fault or an unreachable endpoint: worth another try, then deferral."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code") in RETRYABLE
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, BotoCoreError | ConnectionError | TimeoutError)


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter (AWS's advice for throttled writes), capped at 1 s."""
    return random.uniform(0, min(1.0, 0.025 * 2 ** attempt))


def _created(record: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(record["created_at"]).replace("Z", "+00:00")).astimezone(UTC)
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _json_number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
