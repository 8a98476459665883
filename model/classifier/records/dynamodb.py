"""Records in a DynamoDB table (what AWS uses): one item per record, indexes per question."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records import Page, top_label
from classifier.records.cursors import Cursors, Filters
from classifier.records.ids import id_bound

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
        label, version = top_label(record), str(record["model"]["version"])
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
