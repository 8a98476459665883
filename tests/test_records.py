"""Classification records, the same behaviour from both stores: SQLite (local) and DynamoDB (through
moto's server). Concurrent writers lose nothing, pages come newest first and exactly once, filters
select what they say, cursors cannot be forged, and an upload is claimed once.

SQLite's cost is shown by its query plans (every page reads an index in order, never the table
with a sort), not by times.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records import RecordStore, open_record_store
from classifier.records.dynamodb import TTL_ATTRIBUTE, DynamoRecordStore, table_definition
from classifier.records.ids import is_record_id, new_record_id, parse_timestamp
from classifier.records.sqlite import SqliteRecordStore
from classifier.store.fsio import filesystem_type

from helpers.aws import point_boto3_at

WRITERS = 8
PER_WRITER = 50
LABELS = ["tabby", "wallet", "rocket"]
VERSIONS = ["20261122T100000Z-0123456789ab", "20261201T090000Z-ba9876543210"]
# Around a year's end: paging crosses a day, a month and a year boundary.
BASE = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)


def record(when: datetime, n: int, writer: int = 0) -> dict[str, Any]:
    label = LABELS[n % 3]
    return {
        "id": new_record_id(when),
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": "resnet50", "version": VERSIONS[n % 2], "backend": "onnx", "trained": True},
        "predictions": [{"label": label, "index": n % 3, "score": 0.5}, {"label": "other", "index": 9, "score": 0.1}],
        "image": {"format": "JPEG", "width": 451, "height": 300, "sha256": f"{n:064x}"},
        "timing_ms": {"decode": 1.0, "inference": 20.0, "total": 22.0},
        "writer": writer,
    }


@pytest.fixture(params=["sqlite", "dynamodb"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The settings a process opens the store with: SQLite in the model store, or a fresh table on moto."""
    if request.param == "sqlite":
        yield Settings(model_store=tmp_path)
        return
    endpoint = request.getfixturevalue("s3_endpoint")  # moto's server serves DynamoDB on the same port
    point_boto3_at(monkeypatch, endpoint)
    import boto3

    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(**table_definition(table))
    yield Settings(model_store=tmp_path, records_table=table, records_ttl_days=30,
                   records_cursor_secret="a test secret")


def write_records(settings: Settings, writer: int, start: Any) -> list[str]:
    store = open_record_store(settings)
    start.wait()  # all writers start together
    ids = []
    for i in range(PER_WRITER):
        when = BASE + timedelta(seconds=i % 3, microseconds=writer * 1000 + i)
        rec = record(when, writer * PER_WRITER + i, writer)
        store.put(rec)
        ids.append(rec["id"])
    return ids


def page_through(store: RecordStore, limit: int, **filters: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = store.list(limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_concurrent_writers_are_all_listed_exactly_once(settings: Settings) -> None:
    # GIVEN 8 processes writing 50 records each, at the same time, into one store
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(WRITERS) as pool:
            pending = [pool.apply_async(write_records, (settings, w, start)) for w in range(WRITERS)]
            start.set()
            written = [id_ for p in pending for id_ in p.get(timeout=300)]
    assert len(set(written)) == WRITERS * PER_WRITER
    # THEN paging (an odd page size) returns every record exactly once, newest first, across the year's end
    store = open_record_store(settings)
    seen = [r["id"] for r in page_through(store, 37)]
    assert seen == sorted(written, reverse=True)
    assert seen[0].startswith("20270101") and seen[-1].startswith("20261231")
    # AND each record reads back whole
    for record_id in written[:: 17]:
        got = store.get(record_id)
        assert got is not None and got["id"] == record_id and got["predictions"][0]["label"] in LABELS


def test_a_record_that_is_not_there_reads_as_none(settings: Settings) -> None:
    store = open_record_store(settings)
    store.put(record(BASE, 1))
    assert store.get(new_record_id(BASE)) is None


@pytest.fixture
def filled(settings: Settings) -> tuple[RecordStore, list[dict[str, Any]]]:
    """60 records a minute apart, labels and versions interleaved."""
    store = open_record_store(settings)
    records = [record(BASE + timedelta(minutes=n), n) for n in range(60)]
    store.put_many(records)
    return store, records


@pytest.mark.parametrize("filters", [
    {}, {"label": "wallet"}, {"model_version": VERSIONS[1]}, {"label": "rocket", "model_version": VERSIONS[0]},
    {"since": BASE + timedelta(minutes=10)}, {"until": BASE + timedelta(minutes=10)},
    {"label": "tabby", "since": BASE + timedelta(minutes=9), "until": BASE + timedelta(minutes=42)},
    {"label": "nobody"},
], ids=["none", "label", "version", "label+version", "since", "until", "label+range", "no match"])
def test_filters_select_exactly_their_records(filled: tuple[RecordStore, list[dict[str, Any]]],
                                              filters: dict[str, Any]) -> None:
    store, records = filled

    def wanted(r: dict[str, Any]) -> bool:
        created = datetime.strptime(r["id"][:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        return ((filters.get("label") in (None, r["predictions"][0]["label"]))
                and (filters.get("model_version") in (None, r["model"]["version"]))
                and ("since" not in filters or created >= filters["since"])
                and ("until" not in filters or created < filters["until"]))

    want = sorted((r["id"] for r in records if wanted(r)), reverse=True)
    assert [r["id"] for r in page_through(store, 7, **filters)] == want


def test_since_is_inclusive_and_until_exclusive(filled: tuple[RecordStore, list[dict[str, Any]]]) -> None:
    store, records = filled
    at = datetime.strptime(records[5]["id"][:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    assert [r["id"] for r in store.list(limit=100, since=at, until=at + timedelta(microseconds=1)).items] == [
        records[5]["id"]]
    assert records[5]["id"] not in [r["id"] for r in store.list(limit=100, until=at).items]


def test_forged_edited_or_foreign_cursors_are_invalid_parameters(
    filled: tuple[RecordStore, list[dict[str, Any]]],
) -> None:
    store, _ = filled
    cursor = store.list(limit=5).next_cursor
    assert cursor is not None
    body, _, signature = cursor.partition(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in [f"{flipped}.{signature}", f"{body}.{signature[::-1]}", "not-a-cursor", "", "x.y", f"{body}."]:
        with pytest.raises(InvalidParameter):
            store.list(limit=5, cursor=bad)
    # a cursor is bound to the filters of the page that returned it
    with pytest.raises(InvalidParameter, match="other filters"):
        store.list(limit=5, cursor=cursor, label="wallet")
    assert store.list(limit=5, cursor=cursor).items


def test_an_upload_is_claimed_once(settings: Settings) -> None:
    store = open_record_store(settings)
    digest = "d" * 64
    assert store.upload_record(digest) is None
    first = store.claim_upload(digest, "20261122T100000000000Z-aaaaaaaaaaaa")
    second = store.claim_upload(digest, "20261122T100001000000Z-bbbbbbbbbbbb")
    assert first == second == "20261122T100000000000Z-aaaaaaaaaaaa"
    assert store.upload_record(digest) == first
    # and a claim is never listed as a record
    assert store.list(limit=10).items == []


def test_dynamodb_items_expire_after_the_ttl(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    point_boto3_at(monkeypatch, s3_endpoint)
    import boto3

    client = boto3.client("dynamodb")
    for days in (30, 1, 0):
        table = f"records-{uuid.uuid4().hex[:8]}"
        client.create_table(**table_definition(table))
        rec = record(BASE, 1)
        DynamoRecordStore(table, ttl_days=days).put(rec)
        item = client.get_item(TableName=table, Key={"id": {"S": rec["id"]}})["Item"]
        if days:
            assert int(item[TTL_ATTRIBUTE]["N"]) == int(BASE.timestamp()) + days * 86400
        else:
            assert TTL_ATTRIBUTE not in item  # 0 keeps records forever


def test_dynamodb_upload_claims_expire_with_their_records(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A claim outliving its record would stay in the table forever, unseen by any listing.
    point_boto3_at(monkeypatch, s3_endpoint)
    import boto3

    client = boto3.client("dynamodb")
    for days in (30, 0):
        table = f"records-{uuid.uuid4().hex[:8]}"
        client.create_table(**table_definition(table))
        before = int(datetime.now(UTC).timestamp())
        DynamoRecordStore(table, ttl_days=days).claim_upload("e" * 64, "20261122T100000000000Z-aaaaaaaaaaaa")
        item = client.get_item(TableName=table, Key={"id": {"S": "upload#" + "e" * 64}})["Item"]
        if days:
            after = int(datetime.now(UTC).timestamp())
            assert before + 30 * 86400 <= int(item[TTL_ATTRIBUTE]["N"]) <= after + 30 * 86400
        else:
            assert TTL_ATTRIBUTE not in item


@pytest.mark.parametrize(("value", "instant"), [
    ("2026-11-22T10:00Z", datetime(2026, 11, 22, 10, 0, tzinfo=UTC)),
    ("2026-11-22T10:00:05+00:00", datetime(2026, 11, 22, 10, 0, 5, tzinfo=UTC)),
    ("2026-11-22T10:00:05.25-00:00", datetime(2026, 11, 22, 10, 0, 5, 250000, tzinfo=UTC)),
])
def test_since_and_until_read_utc_instants(value: str, instant: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    # in UTC whatever the machine's zone (CI's TZ=UTC would hide a conversion to local time)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        parsed = parse_timestamp("since", value)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parsed == instant and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(("value", "message"), [
    ("2026-11-22T10:00:00+02:00", "since must be an ISO 8601 UTC time such as 2026-11-22T10:00:00Z, got "
                                  "'2026-11-22T10:00:00+02:00'"),
    ("2026-11-22", "since must be an ISO 8601 UTC time such as 2026-11-22T10:00:00Z, got '2026-11-22'"),
    ("2026-13-22T10:00:00Z", "since is not a valid time: '2026-13-22T10:00:00Z'"),
])
def test_since_and_until_refuse_what_is_not_a_utc_instant(value: str, message: str) -> None:
    with pytest.raises(InvalidParameter) as refused:
        parse_timestamp("since", value)
    assert refused.value.message == message


def test_record_ids_are_recognised_by_their_shape() -> None:
    assert is_record_id(new_record_id(BASE))
    assert not is_record_id(new_record_id(BASE) + "0") and not is_record_id("../" + new_record_id(BASE)[3:])


def test_dynamodb_numbers_are_written_as_json_numbers() -> None:
    # boto3's resource layer reads numbers as Decimal: a record holding them is still written as JSON.
    item = DynamoRecordStore("any-table", ttl_days=0).item({**record(BASE, 1), "score": Decimal("0.25")})
    assert json.loads(item["body"]["S"])["score"] == 0.25
    with pytest.raises(TypeError, match=r"^set is not JSON serialisable$"):
        DynamoRecordStore("any-table", ttl_days=0).item({**record(BASE, 1), "tags": {"a"}})


# --- SQLite only ------------------------------------------------------------------------------


def test_sqlite_refuses_a_network_file_system(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nfs-1.efs:/ {tmp_path} nfs4 rw 0 0\n")
    with pytest.raises(RuntimeError, match="RECORDS_TABLE"):
        SqliteRecordStore(tmp_path / "store" / "records.sqlite3", mounts=mounts)
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nfs-1.efs:/ {tmp_path}/elsewhere nfs4 rw 0 0\n")
    SqliteRecordStore(tmp_path / "store" / "records.sqlite3", mounts=mounts)


def test_sqlite_creates_the_directories_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "records.sqlite3"
    SqliteRecordStore(path).put(record(BASE, 1))
    assert path.is_file()


def test_dynamodb_cannot_say_which_images_are_done(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # bulk --skip-done asks the local store; against a table it says what to do instead.
    point_boto3_at(monkeypatch, s3_endpoint)
    with pytest.raises(NotImplementedError) as refused:
        DynamoRecordStore("any-table", ttl_days=0).has_image("0" * 64)
    assert str(refused.value) == "--skip-done reads the local SQLite store; unset RECORDS_TABLE"


# A mount table as /proc/self/mounts writes it: a short line (skipped), a space as \040, the root,
# and a point mounted twice (the later mount hides the earlier one).
MOUNTS = """rootfs /
/dev/vda / ext4 rw 0 0
fs-1.efs:/ /mnt/efs nfs4
/dev/vdb /mnt/my\\040disk xfs rw 0 0
/dev/vdc /mnt/backupX ext2 rw 0 0
tmpfs /mnt/twice tmpfs rw 0 0
fs-2.efs:/ /mnt/twice nfs4 rw 0 0
"""


@pytest.mark.parametrize(("path", "kind"), [
    ("/mnt/efs/store", "nfs4"),  # its line has three fields, the fewest a mount line needs
    ("/mnt/efs", "nfs4"),
    ("/mnt/efsx/store", "ext4"),  # a longer name, not a path under /mnt/efs
    ("/mnt/my disk/store", "xfs"),
    ("/mnt/backupX/store", "ext2"),
    ("/srv/store", "ext4"),  # only the root holds it
    ("/mnt/twice/store", "nfs4"),
])
def test_filesystem_type_is_the_longest_mount_point_holding_the_path(tmp_path: Path, path: str, kind: str) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem_type(Path(path), mounts) == kind


def test_filesystem_type_without_a_mount_table_or_a_matching_point_is_unknown(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    assert filesystem_type(Path("/srv/store"), mounts) is None  # not Linux: no table
    mounts.write_text("fs-1.efs:/ /mnt/efs nfs4 rw 0 0\n")
    assert filesystem_type(Path("/srv/store"), mounts) is None


def plan(store: SqliteRecordStore, **filters: Any) -> str:
    from classifier.records.cursors import Filters

    sql, params = store.page_query(20, filters.pop("cursor", None), Filters(**filters))
    db = sqlite3.connect(store.path)
    return " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> SqliteRecordStore:
    """100,000 records over ten days, for query plans at scale."""
    store = SqliteRecordStore(tmp_path_factory.mktemp("big") / "records.sqlite3")
    batch = [record(BASE - timedelta(seconds=8.64 * n), n) for n in range(100_000)]
    for start in range(0, len(batch), 5_000):
        store.put_many(batch[start:start + 5_000])
    sqlite3.connect(store.path).execute("ANALYZE").connection.commit()
    return store


@pytest.mark.parametrize("filters, index", [
    ({}, "PRIMARY KEY"),
    ({"label": "wallet"}, "records_by_label"),
    ({"model_version": VERSIONS[0]}, "records_by_model_version"),
    ({"label": "wallet", "model_version": VERSIONS[0]}, "records_by_label_version"),
    ({"since": BASE - timedelta(days=3)}, "PRIMARY KEY"),
    ({"label": "tabby", "until": BASE - timedelta(days=3)}, "records_by_label"),
])
def test_every_page_reads_an_index_in_order(big_store: SqliteRecordStore, filters: dict[str, Any],
                                            index: str) -> None:
    # GIVEN 100,000 records; WHEN a first page, and a page from a cursor in the middle, are planned
    middle = page_cursor(big_store, filters)
    first, later = plan(big_store, **filters), plan(big_store, cursor=middle, **filters)
    # THEN SQLite seeks into one index (to the filter's key and the cursor's id) and reads it in order,
    # never sorting: a page costs its rows. The one plain scan is the unfiltered first page, which
    # walks the primary key (the table, WITHOUT ROWID) from the newest id and stops at LIMIT.
    for query in (first, later):
        assert "TEMP B-TREE" not in query, query
        assert query == "SCAN records" if query is first and not filters else query.startswith(
            "SEARCH records USING") and index in query, query


def page_cursor(store: SqliteRecordStore, filters: dict[str, Any]) -> str:
    page = store.list(limit=500, **filters)
    for _ in range(10):  # 5,000 records in: well inside every filtered set of the 100,000
        assert page.next_cursor is not None
        page = store.list(limit=500, cursor=page.next_cursor, **filters)
    assert page.next_cursor is not None
    return page.next_cursor


def test_has_image_finds_a_stored_image(filled: tuple[RecordStore, list[dict[str, Any]]],
                                        settings: Settings) -> None:
    store, records = filled
    if settings.records_table:
        with pytest.raises(NotImplementedError, match="SQLite"):
            store.has_image(records[0]["image"]["sha256"])
        return
    assert store.has_image(records[0]["image"]["sha256"]) and not store.has_image("f" * 64)
