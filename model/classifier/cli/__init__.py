"""The command line, ``python -m classifier COMMAND``: one module per group of commands.

- ``store_commands``: ``models``, ``rollback`` (standard library only);
- ``lifecycle``: ``publish``, ``evaluate``, ``promote``, ``quantize``;
- ``rollout_commands``: ``rollout start|status|promote|abort|judge``, on a store or through the S3 inbox;
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

from classifier import __version__
from classifier.cli import batch, classify, lifecycle, records, rollout_commands, serve, store_commands

DESCRIPTION = """Image classification from a versioned model store: publish a model, measure it on your
own photos, make it current (or roll it back), and serve it over HTTP, here or on AWS Lambda.
The store is a directory here and an EFS file system in AWS."""

EPILOG = """a first session:
  python -m classifier publish --weights random     # or IMAGENET1K_V2, or your checkpoint with --labels
  python -m classifier serve                        # the API on http://127.0.0.1:8000 (docs at /docs)
  python -m classifier classify photo.jpg --url http://127.0.0.1:8000

The store commands take --store DIR (default: $MODEL_STORE or ./.model-store) and --name N
(default: $MODEL_NAME or resnet50). `python -m classifier COMMAND --help` shows a command's
options; README.md and docs/ have the rest."""


def build_parser() -> argparse.ArgumentParser:
    """Every command and option (the docs' tests parse each documented command line with it)."""
    parser = argparse.ArgumentParser(prog="python -m classifier", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"classifier {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for group in (lifecycle, store_commands, rollout_commands, batch, records, serve, classify):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
