"""The store's own commands: ``models`` (versions, the current one, the last switches) and ``rollback``.

Standard library only: they run without numpy, torch or ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from classifier.cli.common import add_store_args, refused

# How many of the latest switches of CURRENT ``models`` prints under its table (``--json`` has them all).
SWITCHES_SHOWN = 5
# ``models --current``'s exit status when the store holds no version of the model at all.
NO_VERSIONS = 1


def cmd_models(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.listing import version_summaries
    from classifier.store.manifest import StoreError

    store = ModelStore(args.store)
    try:
        listing = version_summaries(store, args.name)
        history = store.history(args.name)
    except StoreError as exc:
        return refused(exc)
    if args.current:
        return print_current(args, listing)
    if args.json:
        print(json.dumps({**listing, "store": str(args.store), "history": [s.as_dict() for s in reversed(history)]},
                         indent=2))
        return 0
    if not listing["versions"]:
        print(f"no versions of {args.name} in {args.store}")
        return 0
    print(f"{'':2}{'VERSION':31} {'CREATED':21} {'SOURCE':18} {'TRAINED':8} {'PRECISION':10} "
          f"{'TOP-1 (LATEST EVALUATION)':26} {'SIZE':7} EVALUATED ON")
    for entry in listing["versions"]:
        mark = "* " if entry["current"] else "  "
        if "problem" in entry:
            print(f"{mark}{entry['version']:31} BROKEN: {entry['problem']}")
            continue
        source = entry["source"] if len(entry["source"]) <= 18 else entry["source"][:15] + "..."
        report = entry["evaluation"]
        score = f"{report['top1']:.3f} on {report['images']} images" if report else "-"
        size = f"{entry['bytes'] / 1e6:.0f} MB"
        print(f"{mark}{entry['version']:31} {entry['created_at']:21} {source:18} "
              f"{'yes' if entry['trained'] else 'NO':8} {entry['precision']:10} {score:26} {size:7} "
              f"{data_set(report)}")
    if history:
        print("\nLast switches of CURRENT, newest first (`rollback` undoes the newest one not yet undone):")
        for switch in reversed(history[-SWITCHES_SHOWN:]):
            undid = f" (undid #{switch.undoes})" if switch.undoes is not None else ""
            print(f"  #{switch.n:<4} {switch.at}  {switch.reason + undid:22} {switch.previous or '(none)':29} -> "
                  f"{switch.version}  by {switch.actor}")
    return 0


def data_set(report: dict[str, Any] | None) -> str:
    """Which data set an evaluation ran on: its folder, and the digest of its files (``-`` for none)."""
    data = (report or {}).get("data")
    if not isinstance(data, dict):
        return "-"
    return f"{data.get('path', '?')} (data sha256 {str(data.get('sha256', '?'))[:12]})"


def print_current(args: argparse.Namespace, listing: dict[str, Any]) -> int:
    """``models --current``: a yes/no a script can branch on, with no output to parse.

    Prints the current version (exit 0); exit 1 when the store holds no version of the
    model (nothing to serve yet: publishing one is safe); exit 2 when it holds versions
    but none is current, or the store cannot be read: something a person must decide.
    """
    if listing["current"] is not None:
        print(listing["current"])
        return 0
    if not listing["versions"]:
        return NO_VERSIONS
    return refused(f"{args.store} holds {len(listing['versions'])} version(s) of {args.name} but none is current: "
                   f"make one current with `python -m classifier promote VERSION --store {args.store}`")


def cmd_rollback(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError

    store = ModelStore(args.store)
    try:
        history = {s.n: s for s in store.history(args.name)}
        switch = store.rollback(args.name, args.to)
    except StoreError as exc:
        return refused(exc)
    if switch is None:
        print(f"{args.name}: {args.to} is already current; nothing changed")
        return 0
    undone = history.get(switch.undoes) if switch.undoes is not None else None
    why = (f"; undid #{undone.n} ({undone.reason} by {undone.actor} at {undone.at})" if undone is not None
           else "")
    print(f"{args.name}: current version is now {switch.version} (was {switch.previous}){why}")
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("models", help="list versions (* marks the current one) and the last switches of CURRENT")
    add_store_args(p)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true",
                       help="print the versions, their latest evaluations and every switch as JSON")
    shown.add_argument("--current", action="store_true",
                       help="print the current version alone; exit 1 if the store holds no version of the model, "
                            "2 if it holds some but none is current")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("rollback", help="undo the last switch of the current version (or choose one with --to)")
    add_store_args(p)
    p.add_argument("--to", metavar="VERSION",
                   help="make this version current (default: the one that served before the last switch)")
    p.set_defaults(func=cmd_rollback)
