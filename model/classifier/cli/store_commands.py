"""The store's own commands: ``models`` (versions, the current one) and ``rollback``.

Standard library only: they run without numpy, torch or ONNX Runtime.
"""

from __future__ import annotations

import argparse
from typing import Any

from classifier.cli.common import add_store_args, refused


def cmd_models(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError, precision

    store = ModelStore(args.store)
    try:
        infos = store.list(args.name)
    except StoreError as exc:
        return refused(exc)
    if not infos:
        print(f"no versions of {args.name} in {args.store}")
        return 0
    print(f"{'':2}{'VERSION':31} {'CREATED':21} {'SOURCE':18} {'TRAINED':8} {'PRECISION':10} "
          f"{'TOP-1 (LATEST EVALUATION)':26} SIZE")
    for info in reversed(infos):
        mark = "* " if info.current else "  "
        if info.manifest is None:
            print(f"{mark}{info.version:31} BROKEN: {info.problem}")
            continue
        m = info.manifest
        size = sum(a["bytes"] for a in m["artifacts"].values()) / 1e6
        source = m["source"] if len(m["source"]) <= 18 else m["source"][:15] + "..."
        report = store.latest_evaluation(args.name, info.version)
        score = f"{report['top1']:.3f} on {report['images']} images" if report else "-"
        print(f"{mark}{info.version:31} {m['created_at']:21} {source:18} "
              f"{'yes' if m['trained'] else 'NO':8} {precision(m):10} {score:26} {size:.0f} MB")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError

    store = ModelStore(args.store)
    try:
        previous = store.current(args.name)
        version = store.rollback(args.name, args.to)
    except StoreError as exc:
        return refused(exc)
    print(f"{args.name}: current version is now {version} (was {previous})")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("models", help="list versions; * marks the current one")
    add_store_args(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("rollback", help="make an earlier version current")
    add_store_args(p)
    p.add_argument("--to", metavar="VERSION", help="version to restore (default: the one before current)")
    p.set_defaults(func=cmd_rollback)
