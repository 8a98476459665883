"""What every command shares: the one refusal path, the store options, the runtime settings."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from classifier.config import Settings, default_model_name, default_store


def refused(reason: object, *, status: int = 2) -> int:
    """A refusal the user can act on: one ``error:`` line on stderr, and exit status ``status``.

    2 (the default) is a request the command cannot carry out; 1 is a check it ran that
    failed (the promotion gate), as a test runner's exit status would say.
    """
    print(f"error: {reason}", file=sys.stderr)
    return status


def add_store_args(parser: argparse.ArgumentParser, *, name_help: str = "model name (default: %(default)s)",
                   name_default: str | None = None) -> None:
    """``--store`` and ``--name``; ``name_default`` replaces the name's default ($MODEL_NAME or resnet50)
    with a rule the command applies itself (publish: the architecture's name)."""
    parser.add_argument("--store", type=Path, default=default_store(),
                        help=f"model store directory (default: $MODEL_STORE or {Settings.model_store})")
    if name_default is None:
        parser.add_argument("--name", default=default_model_name(), help=name_help)
    else:
        parser.add_argument("--name", default=None, help=f"model name (default: {name_default})")


def runtime_settings(args: argparse.Namespace) -> Settings:
    """Runtime settings from the environment (BACKEND, threads, ...) with this command's store and name."""
    return replace(Settings.from_env(), model_store=args.store, model_name=args.name)


def fraction(text: str) -> float:
    """An argument that is a fraction from 0 to 1 (an accuracy): ``30`` or ``1.5`` is a usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        hint = f" (for {value:g}%, write {value / 100:g})" if 1 < value <= 100 else ""
        raise argparse.ArgumentTypeError(f"{text} is not a fraction from 0 to 1{hint}")
    return value
