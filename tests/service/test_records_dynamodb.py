"""Records in DynamoDB, through moto's server: the record store contract (helpers.record_contract),
TTLs, upload claims, and many processes writing at once (SQLite and DynamoDB)."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records import open_record_store
from classifier.records.dynamodb import TTL_ATTRIBUTE, DynamoRecordStore, table_definition
from classifier.records.keys import KeyLayout

from helpers.aws import point_boto3_at
from helpers.record_contract import (  # noqa: F401  (the contract's tests and fixtures, run against DynamoDB)
    BASE,
    LABELS,
    PER_WRITER,
    VERSIONS,
    WRITERS,
    filled,
    open_fresh_and_write,
    page_through,
    record,
    test_a_caller_reads_only_its_own_records,
    test_a_record_that_is_not_there_reads_as_none,
    test_an_upload_is_claimed_once,
    test_done_record_names_what_the_same_version_made,
    test_filters_select_exactly_their_records,
    test_forged_edited_or_foreign_cursors_are_invalid_parameters,
    test_since_is_inclusive_and_until_exclusive,
    write_records,
)


def opened_with(kind: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process opens the store with: SQLite in the model store, or a fresh table on moto."""
    if kind == "sqlite":
        return Settings(model_store=tmp_path)
    endpoint = request.getfixturevalue("s3_endpoint")  # moto's server serves DynamoDB on the same port
    point_boto3_at(monkeypatch, endpoint)
    import boto3

    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(**table_definition(table))
    return Settings(model_store=tmp_path, records_table=table, records_ttl_days=30,
                    records_cursor_secret="a test secret")


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The contract's store: a fresh DynamoDB table."""
    return opened_with("dynamodb", request, tmp_path, monkeypatch)


@pytest.fixture(params=["sqlite", "dynamodb"])
def either(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Each store in turn, for what needs several processes."""
    return opened_with(request.param, request, tmp_path, monkeypatch)


def test_concurrent_writers_are_all_listed_exactly_once(either: Settings) -> None:
    # GIVEN 8 processes writing 50 records each, at the same time, into one store
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(WRITERS) as pool:
            pending = [pool.apply_async(write_records, (either, w, start)) for w in range(WRITERS)]
            start.set()
            written = [id_ for p in pending for id_ in p.get(timeout=300)]
    assert len(set(written)) == WRITERS * PER_WRITER
    # THEN paging (an odd page size) returns every record exactly once, newest first, across the year's end
    store = open_record_store(either)
    seen = [r["id"] for r in page_through(store, 37)]
    assert seen == sorted(written, reverse=True)
    assert seen[0].startswith("20270101") and seen[-1].startswith("20261231")
    # AND each record reads back whole
    for record_id in written[:: 17]:
        got = store.get(record_id)
        assert got is not None and got["id"] == record_id and got["predictions"][0]["label"] in LABELS


OPENERS = 24
TRIALS = 20


def test_many_processes_open_one_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    # GIVEN 24 processes of 4 threads, released at once by a barrier onto a file none has created yet,
    # 20 times over (before the fix, about one trial in ten saw "database is locked")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(OPENERS) as pool:
        for trial in range(TRIALS):
            path = str(tmp_path / f"trial-{trial}" / "records.sqlite3")
            barrier = manager.Barrier(OPENERS)
            # WHEN each opens a SqliteRecordStore there and writes a record
            pending = [pool.apply_async(open_fresh_and_write, (path, barrier)) for _ in range(OPENERS)]
            written = [i for p in pending for i in p.get(timeout=300)]  # re-raises "database is locked"
            # THEN every one opened it and wrote, and the file is in WAL mode with every record
            store = open_record_store(Settings(model_store=tmp_path, records_db=Path(path)))
            assert sorted(r["id"] for r in page_through(store, 100)) == sorted(written)
            import sqlite3

            assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


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


def test_dynamodb_cannot_say_which_images_are_done(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # bulk --skip-done asks the local store; against a table it says what to do instead.
    point_boto3_at(monkeypatch, s3_endpoint)
    with pytest.raises(NotImplementedError) as refused:
        DynamoRecordStore("any-table", ttl_days=0).done_record("0" * 64, "20261122T100000Z-0123456789ab")
    assert str(refused.value) == "--skip-done reads the local SQLite store; unset RECORDS_TABLE"


TODAYS_INDEXES = ("time", "label", "model_version", "label_version")


def test_sharded_indexes_list_page_by_page_what_one_shard_lists(s3_endpoint: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same 240 records (spread over two days, three labels, two versions) in two tables with
    # the indexes of the design before (one key per value) and the same indexes in 16 shards
    point_boto3_at(monkeypatch, s3_endpoint)
    import boto3

    stores = []
    for shards in (1, 16):
        layout = KeyLayout(TODAYS_INDEXES, shards=shards)
        table = f"records-{shards}-{uuid.uuid4().hex[:8]}"
        boto3.client("dynamodb").create_table(**table_definition(table, layout))
        stores.append(DynamoRecordStore(table, ttl_days=0, secret=b"one key", layout=layout))
    records = [record(BASE + timedelta(minutes=12 * n, microseconds=n), n) for n in range(240)]
    for store in stores:
        store.put_many(records)
    since, until = BASE + timedelta(hours=5), BASE + timedelta(hours=30)
    for filters in ({}, {"label": "wallet"}, {"model_version": VERSIONS[1]},
                    {"label": "rocket", "model_version": VERSIONS[0]}, {"since": since}, {"until": until},
                    {"label": "tabby", "since": since, "until": until}):
        # WHEN each is paged through (an odd page size)
        pages = [pages_of(store, 7, **filters) for store in stores]
        # THEN the pages are the same, page by page, newest first, and hold what the filters select
        assert pages[0] == pages[1], filters
        assert sum(len(p) for p in pages[1]) == sum(1 for r in records if selected(r, filters)) > 0
    # AND a cursor of one listing used for another is still refused
    cursor = stores[1].list(limit=5, label="wallet").next_cursor
    assert cursor is not None
    for other in ({"label": "rocket"}, {}, {"label": "wallet", "model_version": VERSIONS[0]},
                  {"label": "wallet", "owner": "someone"}):
        with pytest.raises(InvalidParameter, match="other filters"):
            stores[1].list(limit=5, cursor=cursor, **other)


def pages_of(store: DynamoRecordStore, limit: int, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = store.list(limit=limit, cursor=cursor, **filters)
        pages.append([r["id"] for r in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def selected(r: dict[str, Any], filters: dict[str, Any]) -> bool:
    created = datetime.strptime(r["id"][:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    return ((filters.get("label") in (None, r["predictions"][0]["label"]))
            and (filters.get("model_version") in (None, r["model"]["version"]))
            and ("since" not in filters or created >= filters["since"])
            and ("until" not in filters or created < filters["until"]))


def test_a_filter_no_index_serves_reads_a_bounded_page(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the default indexes (time, owner) and a label filter they do not serve
    point_boto3_at(monkeypatch, s3_endpoint)
    import boto3

    table = f"records-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(**table_definition(table))
    store = DynamoRecordStore(table, ttl_days=0, secret=b"k")
    records = [record(BASE + timedelta(minutes=n), n) for n in range(300)]
    store.put_many(records)
    reads: list[int] = []
    query_shard = store.query_shard

    def counted(*args: Any) -> Any:
        answer = query_shard(*args)
        reads.append(answer[3])
        return answer

    monkeypatch.setattr(store, "query_shard", counted)
    # WHEN the listing is paged through, 5 a page
    cursor, seen = None, []
    while True:
        reads.clear()
        page = store.list(limit=5, cursor=cursor, label="wallet")
        # THEN no page reads more than (limit + 1) items a shard
        assert sum(reads) <= 6 * store.layout.shards
        seen.extend(r["id"] for r in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # AND every matching record comes, once, newest first
    assert seen == sorted((r["id"] for r in records if r["predictions"][0]["label"] == "wallet"), reverse=True)
