"""Records written concurrently by many processes (Lambda instances sharing EFS)
are never lost, never partial, and page exactly once, newest first."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from classifier.records import RecordStore, new_record_id

WRITERS = 8
PER_WRITER = 50
# A realistic record: the shape the API stores, with a bulky predictions list.
TEMPLATE: dict[str, Any] = {
    "created_at": "",
    "model": {"name": "resnet50", "version": "20261122T100000Z-0123456789ab", "backend": "onnx", "trained": True},
    "predictions": [{"label": f"class {i}", "index": i, "score": 1 / (i + 2)} for i in range(20)],
    "image": {"format": "JPEG", "width": 451, "height": 300, "sha256": "0" * 64},
    "timing_ms": {"decode": 1.0, "inference": 20.0, "total": 22.0},
}


def write_records(root: str, writer: int, start: multiprocessing.synchronize.Event) -> list[str]:
    records = RecordStore(root)
    start.wait()  # all writers start together
    ids = []
    base = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    for i in range(PER_WRITER):
        # spread over three days (and a month boundary is not needed: days are enough)
        when = base + timedelta(days=i % 3, microseconds=writer * 1000 + i)
        record = {**TEMPLATE, "id": new_record_id(when), "created_at": when.isoformat(), "writer": writer, "n": i}
        records.put(record)
        ids.append(record["id"])
    return ids


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    # GIVEN 8 processes writing 50 records each, at the same time, into one store
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(WRITERS) as pool:
            pending = [pool.apply_async(write_records, (str(tmp_path), w, start)) for w in range(WRITERS)]
            start.set()
            written = [id_ for p in pending for id_ in p.get(timeout=300)]
    assert len(written) == len(set(written)) == WRITERS * PER_WRITER

    records = RecordStore(tmp_path)
    # THEN paging (odd page size) returns every record exactly once, newest first
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = records.list(limit=7, cursor=cursor)
        seen.extend(r["id"] for r in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(written)
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert pages == -(-len(written) // 7)
    # AND each record is readable and whole
    for record_id in written:
        record = records.get(record_id)
        assert record is not None and record["id"] == record_id
        assert record["predictions"] == TEMPLATE["predictions"]
    # AND no temporary file is left behind
    leftovers = [p for p in (tmp_path / "records").rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert leftovers == []
    for path in (tmp_path / "records").rglob("*.json"):
        json.loads(path.read_bytes())


def test_last_page_has_no_cursor(tmp_path: Path) -> None:
    records = RecordStore(tmp_path)
    ids = [new_record_id() for _ in range(4)]
    for record_id in ids:
        records.put({"id": record_id})
    first = records.list(limit=4)
    assert [r["id"] for r in first.items] == sorted(ids, reverse=True)
    assert first.next_cursor is None
    two = records.list(limit=2)
    assert two.next_cursor == sorted(ids, reverse=True)[1]
    assert [r["id"] for r in records.list(limit=2, cursor=two.next_cursor).items] == sorted(ids, reverse=True)[2:]
