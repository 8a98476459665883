"""``records replay``: write back the records the database refused (``classifier.records.deferral``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from classifier.cli.common import add_store_args, refused, runtime_settings


def cmd_records_replay(args: argparse.Namespace) -> int:
    from classifier.records import open_record_store
    from classifier.records.deferral import open_deferral, replay

    settings = runtime_settings(args)
    if args.deferred:
        settings = replace(settings, records_deferred=args.deferred)
    try:
        deferred = open_deferral(settings)
        counts = replay(open_record_store(settings, defer=False), deferred, limit=args.limit)
    except Exception as exc:  # a store or a place that cannot be reached: say which and why
        return refused(f"cannot replay from {settings.records_deferred or 'the default place'}: {exc}")
    print(f"{counts.replayed} records replayed from {deferred.where}; {counts.failed} still refused, "
          f"{counts.unreadable} unreadable", file=sys.stderr)
    return 1 if counts.failed or counts.unreadable else 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("records", help="classification records: replay what the database refused")
    group = p.add_subparsers(dest="records_command", required=True)
    replay = group.add_parser("replay", help="write deferred records back (idempotent: same id, no duplicate)")
    add_store_args(replay)
    replay.add_argument("--deferred", metavar="s3://bucket/prefix|DIR",
                        help="where the deferred records are (default: $RECORDS_DEFERRED, else beside the records)")
    replay.add_argument("--limit", type=int, metavar="N", help="replay at most N records")
    replay.set_defaults(func=cmd_records_replay)
