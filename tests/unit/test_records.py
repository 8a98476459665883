"""Classification records in SQLite: the record store contract (helpers.record_contract), record ids and
timestamps, SQLite's refusal of network file systems, and DynamoDB items as written (without a table).
The same contract against DynamoDB, and many writers at once, are in tests/service/test_records_dynamodb.py.

SQLite's cost is shown by its query plans (every page reads an index in order, never the table
with a sort), not by times.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records.dynamodb import DynamoRecordStore, item_bytes, record_of
from classifier.records.ids import is_record_id, new_record_id, parse_timestamp
from classifier.records.keys import FAMILIES, KeyLayout, shard_of
from classifier.records.sqlite import SqliteRecordStore
from classifier.store.fsio import filesystem_type

from helpers.record_contract import (  # noqa: F401  (the contract's tests and fixtures, run against SQLite)
    BASE,
    VERSIONS,
    filled,
    record,
    test_a_caller_reads_only_its_own_records,
    test_a_record_that_is_not_there_reads_as_none,
    test_an_upload_is_claimed_once,
    test_done_record_names_what_the_same_version_made,
    test_filters_select_exactly_their_records,
    test_forged_edited_or_foreign_cursors_are_invalid_parameters,
    test_since_is_inclusive_and_until_exclusive,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The settings a process opens the store with: SQLite in the model store."""
    return Settings(model_store=tmp_path)


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
    assert record_of(item)["score"] == 0.25
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
    batch = [record(BASE - timedelta(seconds=8.64 * n), n, owner=f"user{n % 4}") for n in range(100_000)]
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
    ({"model": "resnet50"}, "records_by_model"),
    ({"owner": "user3"}, "records_by_owner"),
    ({"owner": "user3", "label": "wallet"}, "records_by_owner_label"),
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




def test_a_million_image_job_spreads_its_writes_over_every_key() -> None:
    # GIVEN a simulated bulk job: 1,000,000 records in ten minutes, one owner, one model version,
    # and one label on 90% of the images
    layout = KeyLayout()  # the default indexes and shards
    rng = random.Random(22)
    # ids as new_record_id makes them (the time to the microsecond, 12 random hex), without its cost a call
    ids = [f"20261206T12{n // 100_000:02d}{n // 1_000 % 100 % 60:02d}{n % 1_000_000:06d}Z-{rng.getrandbits(48):012x}"
           for n in range(1_000_000)]
    labels = ["tabby" if n % 10 else f"label-{n % 997}" for n in range(1_000_000)]
    values = {"owner": "arn:aws:sts::123456789012:assumed-role/bulk/job", "model": "resnet50",
              "label": "tabby", "model_version": VERSIONS[0]}
    # WHEN each is written: the table's key, and the keys of the default indexes
    per_key = Counter(key for record_id in ids for key in layout.index_keys(record_id, values).items())
    # and, for the optional indexes that hold the label, the label's key in each shard
    per_label_key = Counter((label, shard_of(record_id, layout.shards)) for record_id, label in zip(ids, labels))
    # THEN the table's key is every record's own, and no key value takes more than 1/8 of the writes
    assert len(set(ids)) == 1_000_000
    assert {attribute for attribute, _ in per_key} == {"time_key", "owner_key"}
    for counts in (per_key, per_label_key):
        hottest, writes = counts.most_common(1)[0]
        assert writes <= 1_000_000 / 8, (hottest, writes)
    # AND the label a family keys on is the one the counts assumed
    assert FAMILIES["label"].value({"label": "tabby"}, 3) == "tabby#03"
    # AND one shard (the design before) would put every write on one key: the test can fail
    one = KeyLayout(shards=1)
    assert len({one.index_keys(record_id, values)["time_key"] for record_id in ids[:1000]}) == 1


def test_write_units_per_record_follow_the_indexes() -> None:
    # a record of ~900 bytes: 1 unit in the table and 1 in each index it lands in
    assert KeyLayout(("time", "owner")).write_units(900) == 3
    assert KeyLayout(("time",)).write_units(900) == 2
    assert KeyLayout(tuple(FAMILIES)).write_units(900) == 1 + len(FAMILIES)
    assert KeyLayout(("time", "owner")).write_units(1500) == 6  # over 1 KB: 2 units a copy


def test_an_index_set_without_time_or_with_a_stranger_is_refused() -> None:
    with pytest.raises(ValueError, match="time"):
        KeyLayout(("owner",))
    with pytest.raises(ValueError, match="unknown records index 'colour'"):
        KeyLayout(("time", "colour"))
    with pytest.raises(ValueError, match="shards"):
        KeyLayout(("time",), shards=0)


def test_a_full_record_is_one_write_unit_a_copy() -> None:
    # GIVEN a record as large as a real one gets: 5 predictions with long WordNet labels, an image
    # digest, a shadow comparison, an assumed-role ARN as owner, the S3 key it came from
    rec = record(BASE, 1, owner="arn:aws:sts::123456789012:assumed-role/image-pipeline-role/i-0abc12345def67890")
    rec["predictions"] = [{"label": f"Greater Swiss Mountain dog, variant {i}", "index": 238 + i, "score": 0.123456}
                          for i in range(5)]
    rec["s3_key"] = "uploads/2026/12/06/3f1c9a0e-5b7d-4e2a-9c8b-1d2e3f4a5b6c.jpg"
    rec["shadow"] = {"version": VERSIONS[1], "predictions": rec["predictions"], "agrees_top1": True,
                     "inference_ms": 23.4}
    # WHEN it becomes an item with the default indexes
    item = DynamoRecordStore("t", ttl_days=365).item(rec)
    # THEN it stays within 1 KB: one write unit in the table and one in each of the two indexes
    assert item_bytes(item) <= 1024, item_bytes(item)
    assert KeyLayout().write_units(item_bytes(item)) == 3
    # AND it reads back whole
    assert record_of(item) == rec


def test_a_file_of_the_earlier_schema_gains_owner_and_model(tmp_path: Path) -> None:
    # GIVEN a records file as the earlier version made it (no owner or model column), holding two records
    path = tmp_path / "records.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE records (id TEXT PRIMARY KEY, label TEXT NOT NULL, model_version TEXT NOT NULL,
                              image_sha256 TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;
        CREATE INDEX records_by_image ON records (image_sha256);
    """)
    mine, anyones = record(BASE, 4, owner="alice"), record(BASE + timedelta(seconds=1), 1)
    for rec in (mine, anyones):
        old.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)", (rec["id"], rec["predictions"][0]["label"],
                                                                  rec["model"]["version"], rec["image"]["sha256"],
                                                                  json.dumps(rec)))
    old.commit()
    old.close()
    # WHEN this version opens it
    store = SqliteRecordStore(path)
    # THEN the new filters find the old records by their bodies, and the old index is replaced
    assert [r["id"] for r in store.list(model=mine["model"]["name"]).items] == [mine["id"]]
    assert [r["id"] for r in store.list(owner="alice").items] == [mine["id"]]
    assert store.get(mine["id"], owner="alice") == mine and store.get(anyones["id"], owner="alice") is None
    indexes = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "records_by_image" not in indexes and "records_by_image_version" in indexes


def test_deferral_places_are_read_from_the_settings(tmp_path: Path) -> None:
    from classifier.config import ConfigError
    from classifier.records.deferral import DirectoryDeferral, S3Deferral, open_deferral

    s3 = open_deferral(Settings(model_store=tmp_path, records_deferred="s3://bucket/records-deferred"))
    assert isinstance(s3, S3Deferral) and (s3.bucket, s3.prefix) == ("bucket", "records-deferred/")
    local = open_deferral(Settings(model_store=tmp_path))
    assert isinstance(local, DirectoryDeferral) and local.directory == tmp_path / "records-deferred"
    with pytest.raises(ConfigError, match="RECORDS_DEFERRED"):
        open_deferral(Settings(model_store=tmp_path, records_deferred="s3:///prefix"))


def test_a_refused_write_is_deferred_whole_and_replayed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a store whose database refuses a batch of writes
    from classifier.records import open_record_store
    from classifier.records.deferral import open_deferral, replay

    settings = Settings(model_store=tmp_path)
    store = open_record_store(settings)
    records = [record(BASE + timedelta(seconds=n), n) for n in range(30)]
    original = SqliteRecordStore.put_many

    def refusing(self: SqliteRecordStore, batch: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SqliteRecordStore, "put_many", refusing)
    # WHEN they are written: nothing raises, nothing is listed, every record waits whole
    store.put_many(records)
    assert store.list(limit=100).items == []
    deferred = open_deferral(settings)
    assert list(deferred.pending()) == sorted(r["id"] for r in records)
    assert deferred.read(records[3]["id"]) == records[3]
    # THEN a replay, once the database takes writes again, writes each once and empties the place
    monkeypatch.setattr(SqliteRecordStore, "put_many", original)
    counts = replay(open_record_store(settings, defer=False), deferred)
    assert (counts.replayed, counts.failed, counts.unreadable) == (30, 0, 0)
    assert [r["id"] for r in store.list(limit=100).items] == sorted((r["id"] for r in records), reverse=True)
    assert list(deferred.pending()) == []
    assert replay(open_record_store(settings, defer=False), deferred).replayed == 0
