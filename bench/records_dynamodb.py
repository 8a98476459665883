"""The records-at-volume figures of ``make bench`` (issue 22), in one run on this machine.

1. Write units per classification, computed from a real record's DynamoDB item size (DynamoDB's
   own rule: attribute names plus values, 1 KB a write unit) and the indexes it lands in: the
   design before (four indexes, one key each) against the default now (two, sharded), and every
   optional index.
2. Record-list latency on DynamoDB through moto's server on loopback, same run, same records: the
   design before (4 indexes, 1 shard) against 16 shards (the same indexes, and the default two, where
   a label is a filter read): a first page, a page from a cursor, a label page, 20 records each;
   medians of repeated calls. moto answers from memory in this process's neighbour: the ratio shows
   what the merge costs in calls and Python, not DynamoDB's network time.

    python bench/records_dynamodb.py [--summary bench/results-records.md] [--records 2000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "model"))
sys.path.insert(0, str(ROOT / "tests"))

# The design before this change: every record in four indexes, each keyed by one value.
BEFORE = ("time", "label", "model_version", "label_version")
LABELS = [f"class-{i}" for i in range(10)]


def real_record() -> dict[str, Any]:
    """A record as the API stores it: chelsea classified by the published model, with an IAM caller as owner."""
    from classifier.config import Settings
    from classifier.serving.manager import ModelManager
    from classifier.serving.service import Classifier, ImageInput

    from helpers.photos import jpeg
    from helpers.stores import publish

    store = BENCH / ".work" / "records-store"
    if not (store / "models").is_dir():
        publish(store, "random")
    settings = Settings(model_store=store)
    (result,) = Classifier(settings, ModelManager(settings), None).classify([ImageInput(jpeg("chelsea"))],
                                                                            store=False)
    record = result.as_dict()
    record["owner"] = "arn:aws:sts::123456789012:assumed-role/image-pipeline/i-0abc12345def67890"
    return record


def write_units(record: dict[str, Any]) -> list[tuple[str, int, int]]:
    from classifier.records.dynamodb import DynamoRecordStore, item_bytes
    from classifier.records.keys import FAMILIES, KeyLayout

    rows = []
    # Before: the same record as plain JSON in "body", in four indexes (kind, label, version, both).
    plain = json.dumps(record, separators=(",", ":"))
    before = {"id": {"S": record["id"]}, "kind": {"S": "record"}, "label": {"S": "tabby"},
              "model_version": {"S": record["model"]["version"]},
              "label_version": {"S": "tabby\x1f" + record["model"]["version"]}, "body": {"S": plain},
              "expires_at": {"N": "1830000000"}}
    rows.append(("before: plain JSON, 4 indexes", item_bytes(before), KeyLayout(BEFORE, 1).write_units(
        item_bytes(before))))
    for name, families in (("now, default: time and owner, 16 shards", KeyLayout().families),
                           ("now, every index (7)", tuple(FAMILIES))):
        layout = KeyLayout(families, 16)
        size = item_bytes(DynamoRecordStore("t", ttl_days=365, layout=layout).item(record))
        rows.append((name, size, layout.write_units(size)))
    return rows


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def list_latencies(count: int, repeats: int) -> list[tuple[str, dict[str, float]]]:
    import boto3

    from classifier.records.dynamodb import DynamoRecordStore, table_definition
    from classifier.records.keys import KeyLayout

    from helpers.aws import moto_server, point_boto3_at  # noqa: F401
    from helpers.record_contract import record

    base = datetime(2026, 12, 1, tzinfo=UTC)
    records = [record(base + timedelta(seconds=37 * n), n) for n in range(count)]
    for r in records:
        r["predictions"][0]["label"] = LABELS[hash(r["id"]) % len(LABELS)]
    rows = []
    with moto_server() as endpoint:
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        for name, layout in (("before: 4 indexes, 1 shard", KeyLayout(BEFORE, 1)),
                             ("4 indexes, 16 shards", KeyLayout(BEFORE, 16)),
                             ("default: time+owner, 16 shards (label filtered)", KeyLayout())):
            table = f"bench-{uuid.uuid4().hex[:8]}"
            boto3.client("dynamodb").create_table(**table_definition(table, layout))
            store = DynamoRecordStore(table, ttl_days=0, secret=b"bench", layout=layout)
            store.put_many(records)
            middle = store.list(limit=count // 2).next_cursor
            rows.append((name, {
                "first_page_ms": median_ms(lambda s=store: s.list(limit=20), repeats),
                "middle_page_ms": median_ms(lambda s=store, c=middle: s.list(limit=20, cursor=c), repeats),
                "label_page_ms": median_ms(lambda s=store: s.list(limit=20, label=LABELS[3]), repeats),
            }))
    return rows


def host() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.CalledProcessError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", type=Path, default=BENCH / "results-records.md")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    units = write_units(real_record())
    latencies = list_latencies(args.records, args.repeats)
    before = latencies[0][1]
    lines = [
        "# Records on DynamoDB: write units and list latency",
        "",
        f"`python bench/records_dynamodb.py --records {args.records} --repeats {args.repeats}`, "
        f"{datetime.now(UTC):%Y-%m-%d}, on {host()}.",
        "",
        "## Write units per classification (a real record: chelsea, 5 predictions, an IAM owner)",
        "",
        "| layout | item bytes | write units |",
        "|---|---:|---:|",
        *(f"| {name} | {size} | {wcu} |" for name, size, wcu in units),
        "",
        f"## List latency through moto's server ({args.records} records, page of 20, medians)",
        "",
        "| layout | first page ms | page from a cursor ms | label page ms | first page vs before |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {r['first_page_ms']:.1f} | {r['middle_page_ms']:.1f} | {r['label_page_ms']:.1f} | "
          f"{r['first_page_ms'] / before['first_page_ms']:.2f}x |" for name, r in latencies),
        "",
    ]
    args.summary.write_text("\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({"units": units, "latencies": latencies}), file=sys.stderr)


if __name__ == "__main__":
    main()
