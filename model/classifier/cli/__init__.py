"""The command line, ``python -m classifier COMMAND``: one module per group of commands.

- ``store_commands``: ``models``, ``rollback`` (standard library only);
- ``lifecycle``: ``publish``, ``evaluate``, ``promote``, ``quantize``;
- ``batch``: a folder in process, or an S3 prefix on Step Functions;
- ``records``: ``records replay``, the records the database refused, written back;
- ``serve``: the API under uvicorn;
- ``classify``: the client of a running API.

Imports stay inside the commands: ``models`` and ``rollback`` need only the
standard library, ``serve`` never imports torch, ``classify`` needs neither the
model store nor the model. Every refusal goes through ``common.refused`` (exit 2).
May import every other part of the package; nothing imports it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from classifier.cli import batch, classify, lifecycle, records, serve, store_commands

DESCRIPTION = """Publish, evaluate, promote and serve image classifiers from a versioned model store
(a directory here, EFS in AWS), and call a running API."""


def build_parser() -> argparse.ArgumentParser:
    """Every command and option (the docs' tests parse each documented command line with it)."""
    parser = argparse.ArgumentParser(prog="python -m classifier", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (lifecycle, store_commands, batch, records, serve, classify):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
