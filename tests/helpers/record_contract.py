"""What every record store does, SQLite (tests/unit/test_records.py) or DynamoDB through moto's server
(tests/service/test_records_dynamodb.py): each of those modules imports these tests and fixtures
and gives them its own ``settings`` fixture (the settings a process opens its store with).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import InvalidParameter
from classifier.records import RecordStore, open_record_store
from classifier.records.ids import new_record_id

WRITERS = 8
PER_WRITER = 50
LABELS = ["tabby", "wallet", "rocket"]
VERSIONS = ["20261122T100000Z-0123456789ab", "20261201T090000Z-ba9876543210"]
# Around a year's end: paging crosses a day, a month and a year boundary.
BASE = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)


OWNERS = ["arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/bob", "none"]
MODELS = ["resnet50", "mobilenet_v3_large"]


def record(when: datetime, n: int, writer: int = 0, *, owner: str | None = None) -> dict[str, Any]:
    label = LABELS[n % 3]
    out: dict[str, Any] = {
        "id": new_record_id(when),
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"name": MODELS[n % 5 // 4], "version": VERSIONS[n % 2], "backend": "onnx", "trained": True},
        "predictions": [{"label": label, "index": n % 3, "score": 0.5}, {"label": "other", "index": 9, "score": 0.1}],
        "image": {"format": "JPEG", "width": 451, "height": 300, "sha256": f"{n:064x}"},
        "timing_ms": {"decode": 1.0, "inference": 20.0, "total": 22.0},
        "writer": writer,
    }
    if owner is not None:
        out["owner"] = owner
    return out


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


@pytest.fixture
def filled(settings: Settings) -> tuple[RecordStore, list[dict[str, Any]]]:
    """60 records a minute apart, labels, versions, models and owners interleaved (every 7th has none)."""
    store = open_record_store(settings)
    records = [record(BASE + timedelta(minutes=n), n, owner=None if n % 7 == 6 else OWNERS[n % 7 % 3])
               for n in range(60)]
    store.put_many(records)
    return store, records


def test_a_record_that_is_not_there_reads_as_none(settings: Settings) -> None:
    store = open_record_store(settings)
    store.put(record(BASE, 1))
    assert store.get(new_record_id(BASE)) is None


@pytest.mark.parametrize("filters", [
    {}, {"label": "wallet"}, {"model_version": VERSIONS[1]}, {"label": "rocket", "model_version": VERSIONS[0]},
    {"since": BASE + timedelta(minutes=10)}, {"until": BASE + timedelta(minutes=10)},
    {"label": "tabby", "since": BASE + timedelta(minutes=9), "until": BASE + timedelta(minutes=42)},
    {"label": "nobody"}, {"model": MODELS[1]}, {"owner": OWNERS[0]}, {"owner": OWNERS[1], "label": "wallet"},
    {"owner": OWNERS[2], "model": MODELS[0], "until": BASE + timedelta(minutes=50)}, {"owner": "nobody"},
], ids=["none", "label", "version", "label+version", "since", "until", "label+range", "no match", "model", "owner",
        "owner+label", "owner+model+until", "no owner match"])
def test_filters_select_exactly_their_records(filled: tuple[RecordStore, list[dict[str, Any]]],
                                              filters: dict[str, Any]) -> None:
    store, records = filled

    def wanted(r: dict[str, Any]) -> bool:
        created = datetime.strptime(r["id"][:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
        return ((filters.get("label") in (None, r["predictions"][0]["label"]))
                and (filters.get("model_version") in (None, r["model"]["version"]))
                and (filters.get("model") in (None, r["model"]["name"]))
                and (filters.get("owner") is None or filters["owner"] == r.get("owner"))
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
    for bad in [f"{flipped}.{signature}", f"{body}.{signature[::-1]}", "not-a-cursor", "", "x.y", f"{body}.",
                "abc.é", f"{body}.{signature[:-1]}é", "a" * 10_000 + "." + signature, "\x00\xff.\x80",
                cursor + "\n", "é" * 50]:
        with pytest.raises(InvalidParameter):
            store.list(limit=5, cursor=bad)
    # a cursor is bound to the filters of the page that returned it
    with pytest.raises(InvalidParameter, match="other filters"):
        store.list(limit=5, cursor=cursor, label="wallet")
    with pytest.raises(InvalidParameter, match="other filters"):
        store.list(limit=5, cursor=cursor, owner=OWNERS[0])
    assert store.list(limit=5, cursor=cursor).items


def test_a_caller_reads_only_its_own_records(filled: tuple[RecordStore, list[dict[str, Any]]]) -> None:
    store, records = filled
    alices, bobs, unowned = records[0], records[1], records[6]
    assert alices["owner"] == OWNERS[0] and bobs["owner"] == OWNERS[1] and "owner" not in unowned
    # the owner reads its record; another caller reads nothing; the read-all grant (owner=None) reads both
    assert store.get(alices["id"], owner=OWNERS[0]) == alices
    assert store.get(alices["id"], owner=OWNERS[1]) is None
    assert store.get(unowned["id"], owner=OWNERS[0]) is None
    assert store.get(bobs["id"]) == bobs and store.get(unowned["id"]) == unowned
    # and each listing holds exactly its owner's records, the read-all one every record
    for owner in OWNERS:
        assert {r["id"] for r in page_through(store, 6, owner=owner)} == {
            r["id"] for r in records if r.get("owner") == owner}
    assert len(page_through(store, 6)) == len(records)


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


def test_done_record_names_what_the_same_version_made(filled: tuple[RecordStore, list[dict[str, Any]]],
                                                       settings: Settings) -> None:
    store, records = filled
    first = records[0]
    image, version = first["image"]["sha256"], first["model"]["version"]
    if settings.records_table:
        with pytest.raises(NotImplementedError, match="SQLite"):
            store.done_record(image, version)
        return
    assert store.done_record(image, version) == first["id"]
    # another version has not classified it; an unknown image has no record
    other = next(v for v in VERSIONS if v != version)
    assert store.done_record(image, other) is None
    assert store.done_record("f" * 64, version) is None


def open_fresh_and_write(path: str, barrier: Any, threads: int = 4) -> list[str]:
    """Open the SQLite store at ``path`` the moment every other process does, from ``threads`` threads
    at once (as a server's request threads do), each writing a record; re-raises what one of them met."""
    import threading

    from classifier.records.sqlite import SqliteRecordStore

    written: list[str] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            rec = record(BASE, n)
            SqliteRecordStore(path).put(rec)
            written.append(str(rec["id"]))
        except BaseException as exc:
            errors.append(exc)

    barrier.wait(timeout=120)
    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return written
